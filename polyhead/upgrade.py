"""Bring a model folder written by polyhead 0.1 to the backbone + adapter layout.

polyhead 0.1 saved each task model as one tower (``backbone.*``, ``stem.*``, ``head.*``, ...);
since the composition contract, a model is ``backbone.*`` + ``adapter.*``, the Transformer's
causality is chosen per call (``backbone.causal`` is gone), and RL and recommendation have one
model type per objective. :func:`upgrade_model_dir` rewrites such a folder: the tensors are
renamed, never changed, so the upgraded model computes exactly what the old one did. The
folder is read as data (JSON and safetensors) and written through
:func:`polyhead.model_dir.write_folder`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from .errors import ModelLoadError
from .model_dir import CONFIG_NAME, WEIGHTS_NAME, atomic_write_text, parse_polyhead_config, write_folder

__all__ = ["needs_upgrade", "upgrade_config", "upgrade_model_dir"]

#: 0.1 model types split by objective: (model_type, switch field) -> {switch value: new model_type}
_SPLIT_TYPES = {
    "polyhead-rl": ("algorithm", {"ppo": "polyhead-ppo", "decision_transformer": "polyhead-decision-transformer"}),
    "polyhead-recommendation": ("objective", {"next_item": "polyhead-next-item", "ctr": "polyhead-ctr"}),
}
#: 0.1 model types whose config.json holds no switch field: its head's type was the choice (the same names)
_CHOICE_FROM_HEAD = ("polyhead-recommendation",)
_ARCHITECTURES = {
    "polyhead-ppo": "PolyheadForPPO",
    "polyhead-decision-transformer": "PolyheadForDecisionTransformer",
    "polyhead-next-item": "PolyheadForNextItem",
    "polyhead-ctr": "PolyheadForCTR",
}
#: fields every 0.1 config.json of a split type held, dropped from the new types that have no such field
_DROPPED_FIELDS = {
    "polyhead-ppo": ("max_timestep", "return_scale", "target_return"),
    "polyhead-next-item": ("fields", "rating_threshold"),
    "polyhead-ctr": ("max_length", "item_vocab", "item_titles", "item_id_type"),
}


def _weight_names(folder: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as handle:
        return list(handle.keys())


def needs_upgrade(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a model folder in the 0.1 layout."""
    path = Path(folder)
    config = parse_polyhead_config(path / CONFIG_NAME, where=str(path))
    if config.get("model_type") in _SPLIT_TYPES or "causal" in (config.get("backbone") or {}):
        return True
    return (path / WEIGHTS_NAME).is_file() and any(not k.startswith(("backbone.", "adapter.", "adapters.")) for k in _weight_names(path))


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A 0.1 ``config.json`` in the current layout (a new dict)."""
    config = json.loads(json.dumps(config))
    config.get("backbone", {}).pop("causal", None)
    model_type = config.get("model_type")
    if model_type in _SPLIT_TYPES:
        field, types = _SPLIT_TYPES[model_type]
        choice = config.pop(field, None)
        if choice is None and model_type in _CHOICE_FROM_HEAD:
            choice = (config.get("head") or {}).get("type")
        if choice not in types:
            raise ModelLoadError(f"config.json has model_type {model_type!r} with {field}={choice!r}; expected one of {sorted(types)}.")
        config["model_type"] = types[choice]
        config["architectures"] = [_ARCHITECTURES[types[choice]]]
        for name in _DROPPED_FIELDS.get(types[choice], ()):
            config.pop(name, None)
    return config


def upgrade_model_dir(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Rewrite a 0.1 model folder in the current layout, in place or into ``out``; returns the folder written.

    Only ``config.json`` and the weights change (tensors renamed ``stem.x`` -> ``adapter.stem.x``);
    every other file is copied as it is.
    """
    source = Path(folder)
    config = parse_polyhead_config(source / CONFIG_NAME, where=str(source))
    if not (source / WEIGHTS_NAME).is_file():
        raise ModelLoadError(f"{source} has no {WEIGHTS_NAME} to upgrade (sharded or pickled 0.1 folders are not supported).")
    weights = load_file(str(source / WEIGHTS_NAME))
    renamed = {(k if k.startswith(("backbone.", "adapter.")) else f"adapter.{k}"): v.contiguous() for k, v in weights.items()}
    target = Path(out) if out is not None else source
    with write_folder(target, kind="model", replace=False, what="model folder") as staging:
        if target != source:
            for item in source.iterdir():
                if item.is_file() and not item.name.startswith(".") and item.name not in (CONFIG_NAME, WEIGHTS_NAME):
                    shutil.copy2(item, staging / item.name)
        save_file(renamed, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        atomic_write_text(staging / CONFIG_NAME, json.dumps(upgrade_config(config), indent=2, sort_keys=True) + "\n")
    return target
