"""Loading mmengine config files: ``_base_`` inheritance and ``--cfg-options`` overrides.

A config has four sections: ``model`` (``task`` + the task config's fields,
which become the ``PretrainedConfig``), ``data``, ``train`` (the trainer's
arguments) and optionally ``export`` / ``hub``. ``polyhead train forecasting``
loads the task's packaged recipe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from mmengine.config import Config, DictAction

from .errors import ConfigError, did_you_mean

__all__ = ["load_config", "packaged_configs_dir", "parse_cfg_options", "SECTIONS"]

SECTIONS = ("model", "data", "train", "export", "hub")


def packaged_configs_dir() -> Path:
    """The ``configs/`` folder installed as ``polyhead.configs``."""
    return Path(str(resources.files("polyhead.configs")))


def _resolve(config_or_task: str | Path) -> Path:
    from . import registry

    path = Path(config_or_task)
    if path.is_file():
        return path
    packaged = packaged_configs_dir()
    text = str(config_or_task)
    for candidate in (packaged / text, packaged / text.removeprefix("configs/")):
        if candidate.is_file():
            return candidate
    if text in registry.names(registry.TASKS):
        task = registry.get(registry.TASKS, text)
        return packaged / task.default_config
    raise ConfigError(
        f"{text!r} is neither a config file nor a task name.{did_you_mean(text, registry.names(registry.TASKS))} "
        f"Tasks: {', '.join(registry.names(registry.TASKS))}; packaged configs live in {packaged}."
    )


def parse_cfg_options(options: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=0.01", "model.head.quantiles=[0.1,0.5,0.9]"]`` -> a dict for ``Config.merge_from_dict``."""
    parsed: dict[str, Any] = {}
    action = DictAction(option_strings=["--cfg-options"], dest="cfg_options")
    for option in options:
        if "=" not in option:
            raise ConfigError(f"--cfg-options expects key=value pairs, got {option!r}.")

        class _Namespace:
            pass

        ns = _Namespace()
        try:
            action(None, ns, [option])
        except (AssertionError, RecursionError, ValueError, SyntaxError):
            raise ConfigError(
                f"Could not parse --cfg-options {option!r}; values are numbers, strings, None, True/False or "
                "lists like [1,2]; set nested keys one by one (model.backbone.dim=64)."
            ) from None
        parsed.update(ns.cfg_options)
    return parsed


def load_config(config_or_task: str | Path, cfg_options: Sequence[str] | Mapping[str, Any] = ()) -> Config:
    """Load a config file (or a task's packaged recipe) and apply overrides.

    Args:
        config_or_task: path to a ``.py`` config (mmengine, executed: only files you trust), a
            ``training_config.json`` a run wrote (read as data), a path relative to the packaged
            ``configs/``, or a task name.
        cfg_options: ``key=value`` strings (mmengine ``--cfg-options`` syntax) or a dict.
    """
    path = _resolve(config_or_task)
    if path.suffix == ".json":  # a run's training_config.json: data, read as data
        try:
            sections = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"Could not load config {path}: {err}") from None
        if not isinstance(sections, dict):
            raise ConfigError(f"Config {path} must be a JSON object of sections ({', '.join(SECTIONS)}).")
        cfg = Config(sections)
    else:
        try:
            cfg = Config.fromfile(str(path))  # a config file the user chose to run (mmengine executes it)
        except Exception as err:  # mmengine raises many types for a broken file
            raise ConfigError(f"Could not load config {path}: {err}") from None
    overrides = parse_cfg_options(cfg_options) if not isinstance(cfg_options, Mapping) else dict(cfg_options)
    for key in overrides:
        section = key.split(".")[0]
        if section not in SECTIONS:
            raise ConfigError(f"--cfg-options key {key!r} must start with a section.{did_you_mean(section, SECTIONS)} Sections: {', '.join(SECTIONS)}.")
    if overrides:
        try:
            cfg.merge_from_dict(overrides)
        except (TypeError, KeyError, ValueError) as err:  # mmengine: an override that does not fit the file's value
            raise ConfigError(f"Could not apply the overrides {sorted(overrides)} to {path}: {err}") from None
    for key in cfg.keys():
        if key not in SECTIONS:
            raise ConfigError(f"Config {path} has an unknown section {key!r}.{did_you_mean(key, SECTIONS)} Sections: {', '.join(SECTIONS)}.")
    if "model" not in cfg or "task" not in cfg.model:
        raise ConfigError(f"Config {path} must have a model section with a 'task' key.")
    return cfg
