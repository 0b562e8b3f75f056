"""Loading polyhead model dirs safely: checks first, then transformers' Auto classes.

Weights are only ever read from safetensors. A directory that is not a polyhead
model, a corrupted weights file, or tensors that do not match the config raise a
:class:`~polyhead.errors.ModelLoadError` that says which.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import transformers
from safetensors import safe_open
from safetensors import SafetensorError

from .errors import ModelLoadError

__all__ = ["AutoModel", "check_model_dir", "looks_local", "parse_polyhead_config", "load_processor", "read_config_dict", "task_of"]

WEIGHTS_NAME = "model.safetensors"


def looks_local(name_or_path: str | os.PathLike) -> bool:
    """``True`` for things that can only be a local path (Hub ids are ``name`` or ``org/name``)."""
    text = str(name_or_path)
    return Path(text).is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text


def read_config_dict(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``config.json`` of a local polyhead model dir."""
    path = Path(model_dir)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist; expected a polyhead model dir (config.json + {WEIGHTS_NAME}) or a Hub repo id 'org/name'.")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory; expected a polyhead model dir (config.json + {WEIGHTS_NAME}).")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} has no config.json; it is not a saved polyhead model.")
    return parse_polyhead_config(config_file, where=str(path))


def parse_polyhead_config(config_file: Path, *, where: str, hint: str = "") -> dict[str, Any]:
    """Read ``config.json`` and check it describes a polyhead model (``model_type`` ``polyhead-*``)."""
    try:
        config = json.loads(Path(config_file).read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"config.json of {where} is not valid JSON: {err}") from None
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    if not str(model_type).startswith("polyhead-"):
        raise ModelLoadError(
            f"{where} holds a {model_type or 'non-transformers'!s} model, not a polyhead model "
            f"(config.json model_type should start with 'polyhead-'){hint}."
        )
    return config


def check_model_dir(model_dir: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, Any]:
    """Check a local model dir: polyhead config and a readable safetensors file.

    Args:
        allow_pickle: accept a ``pytorch_model.bin`` when there is no safetensors file
            (loaded by transformers with ``torch.load(weights_only=True)``).
    """
    config = read_config_dict(model_dir)
    path = Path(model_dir)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        if allow_pickle and (path / "pytorch_model.bin").is_file():
            return config
        hint = (
            f" It has {pickled}: polyhead does not unpickle weights unless you pass allow_pickle=True "
            "(only for files you trust); better, re-save them as safetensors."
            if pickled else ""
        )
        raise ModelLoadError(f"{path} has no {WEIGHTS_NAME}.{hint}")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():
                handle.get_slice(key).get_shape()
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"{weights} is not a readable safetensors file (truncated or corrupted?): {err}") from None
    return config


def task_of(config: dict[str, Any]) -> str:
    """``"polyhead-forecasting"`` -> ``"forecasting"``."""
    return str(config["model_type"]).removeprefix("polyhead-")


class AutoModel:
    """``polyhead.AutoModel.from_pretrained(dir_or_repo)``: transformers' ``AutoModel`` with checks.

    After ``import polyhead``, ``transformers.AutoModel`` loads polyhead models too;
    this class adds polyhead's checks and errors, and refuses checkpoints whose
    tensors are missing, unexpected or of the wrong shape.
    """

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, allow_pickle: bool = False, **kwargs: Any):
        """Load a polyhead model; ``allow_pickle=True`` accepts a trusted ``pytorch_model.bin``."""
        import polyhead  # noqa: F401  (registers the Auto classes)

        if not (Path(name_or_path).exists() or looks_local(name_or_path)):
            # A Hub repo id: its config.json is checked before any weights are fetched; then load the snapshot.
            from .hub import HUB_KWARGS, hub_model_dir

            name_or_path = hub_model_dir(str(name_or_path), **{k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs})
        check_model_dir(name_or_path, allow_pickle=allow_pickle)
        kwargs.pop("output_loading_info", None)
        kwargs.setdefault("use_safetensors", None if allow_pickle else True)
        try:
            model, info = transformers.AutoModel.from_pretrained(str(name_or_path), output_loading_info=True, **kwargs)
        except RuntimeError as err:  # transformers raises this for tensors of the wrong shape
            if "mismatch" not in str(err):
                raise
            raise ModelLoadError(
                f"The weights in {name_or_path!s} do not match its config: some tensors have other shapes "
                "than config.json implies (was config.json edited, or the weights taken from another model?)."
            ) from None
        except (SafetensorError, OSError, ValueError, KeyError) as err:
            raise ModelLoadError(f"Could not load a polyhead model from {name_or_path!s}: {err}") from None
        problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if problems:
            raise ModelLoadError(
                f"The weights in {name_or_path!s} do not match its config: "
                + "; ".join(f"{k}: {sorted(map(str, v))[:5]}" for k, v in problems.items())
            )
        if not type(model).__name__.startswith("PolyheadFor"):
            raise ModelLoadError(f"{name_or_path!s} is a {type(model).__name__}, not a polyhead model.")
        return model


def load_processor(name_or_path: str | os.PathLike, **kwargs: Any):
    """The processor (feature extractor / image processor) saved with a model."""
    try:
        return transformers.AutoFeatureExtractor.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"Could not load the processor saved with {name_or_path!s}: {err}") from None
