"""Loading polyhead models safely: checks first, then transformers' Auto classes.

Weights are only ever read from safetensors. A directory that is not a polyhead
model, a corrupted weights file, or tensors that do not match the config raise a
:class:`~polyhead.errors.ModelLoadError` that says which.

* :class:`AutoModel` / :func:`load_model`: a model from a folder or a Hub repo id, on the
  PyTorch or the ONNX Runtime backend (the one place that choice is made);
* :func:`initialise_from`: start a new model from another model's weights (fine-tuning,
  ``polyhead train --init-from``), module by module, with a report of what was loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import ConfigError, ModelLoadError
from .log import quiet_library_progress
from .hub import HUB_KWARGS, hub_model_dir
from .model_dir import MULTITASK_MODEL_TYPE, WEIGHTS_NAME, check_model_dir, looks_local, parse_polyhead_config, read_config_dict, task_of
from .onnx_runtime import OnnxModel
from .upgrade import needs_upgrade

__all__ = [
    "AutoModel",
    "BACKENDS",
    "Initialisation",
    "WEIGHTS_NAME",
    "check_model_dir",
    "initialise_from",
    "load_model",
    "load_processor",
    "local_model_dir",
    "looks_local",
    "parse_polyhead_config",
    "read_config_dict",
    "task_of",
]

#: the backends every entry point (pipeline, evaluate, evaluate_agent) accepts
BACKENDS = ("torch", "onnx")


def local_model_dir(name_or_path: str | os.PathLike, *, include_onnx: bool = False, **hub_kwargs: Any) -> Path:
    """A local model folder for ``name_or_path``: the folder itself, or a Hub repo's snapshot.

    A Hub repo id's ``config.json`` is checked before any weights are fetched; offline, the
    cached snapshot is used.
    """
    if Path(name_or_path).exists() or looks_local(name_or_path):
        return Path(name_or_path)
    return hub_model_dir(str(name_or_path), include_onnx=include_onnx, **hub_kwargs)


class AutoModel:
    """``polyhead.AutoModel.from_pretrained(dir_or_repo)``: transformers' ``AutoModel`` with checks.

    After ``import polyhead``, ``transformers.AutoModel`` loads polyhead models too;
    this class adds polyhead's checks and errors, and refuses checkpoints whose
    tensors are missing, unexpected or of the wrong shape.
    """

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, allow_pickle: bool = False, **kwargs: Any):
        """Load a polyhead model; ``allow_pickle=True`` accepts a trusted ``pytorch_model.bin``."""
        name_or_path = local_model_dir(name_or_path, **{k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs})
        check_model_dir(name_or_path, allow_pickle=allow_pickle)
        if needs_upgrade(name_or_path):
            raise ModelLoadError(
                f"{name_or_path} was written by polyhead 0.1 (one tower per task); run `polyhead upgrade {name_or_path}` "
                "(or polyhead.upgrade.upgrade_model_dir) to rename its tensors to the backbone + adapter layout."
            )
        kwargs.pop("output_loading_info", None)
        kwargs.setdefault("use_safetensors", None if allow_pickle else True)
        try:
            with quiet_library_progress():
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


def load_model(
    name_or_path: str | os.PathLike,
    *,
    backend: str = "torch",
    onnx_file: str | os.PathLike | None = None,
    task: str | None = None,
    **kwargs: Any,
):
    """A polyhead model from a folder or Hub repo id, on ``backend``.

    Args:
        name_or_path: a model folder or a Hub repo id.
        backend: ``"torch"`` (:class:`AutoModel`) or ``"onnx"`` (the exported ``model.onnx``
            in ONNX Runtime, with the same call signature and output type).
        onnx_file: another ONNX file of the same model (``model.int8.onnx``).
        task: one task of a multi-task folder: its model class on the shared tensors
            (``PolyheadForMultiTask.task_model``), or its exported ``model.<task>.onnx``;
            ``None`` gives the whole multi-task model (PyTorch backend).
        **kwargs: Hub options (``revision``, ``token``, ...) and ``from_pretrained`` arguments.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    if backend == "onnx":
        folder = local_model_dir(name_or_path, include_onnx=True, **{k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs})
        return OnnxModel(folder, file=onnx_file, task=task)
    model = AutoModel.from_pretrained(name_or_path, **kwargs)
    if model.config.model_type == MULTITASK_MODEL_TYPE:
        return model if task is None else model.task_model(task)
    if task is not None:
        raise ConfigError(f"{name_or_path} is a single-task model; task={task!r} applies to multi-task models only.")
    return model


#: short names of module prefixes ``--init-modules`` accepts
_MODULE_ALIASES = {"head": "adapter.head", "stem": "adapter.stem"}


@dataclasses.dataclass(frozen=True)
class Initialisation:
    """Where a new model's weights start (``train.init_from`` / ``--init-from``).

    Attributes:
        source: a polyhead model folder or Hub repo id.
        modules: the parts to copy: ``"backbone"``, ``"adapter"`` (stem, head and the rest
            of the task part), ``"head"``, ``"stem"``, or any dotted module path.
        ignore_mismatched: skip tensors whose shapes differ (listed in the report) instead
            of failing.
    """

    source: str
    modules: tuple[str, ...] = ("backbone", "adapter")
    ignore_mismatched: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise ConfigError(f"init_from must be a model folder or a Hub repo id, got {self.source!r}.")
        modules = (self.modules.split(",") if isinstance(self.modules, str) else list(self.modules))
        modules = tuple(m.strip() for m in modules if m.strip())
        if not modules:
            raise ConfigError("init_modules must name at least one module (backbone, adapter, head, stem).")
        object.__setattr__(self, "source", str(self.source))
        object.__setattr__(self, "modules", modules)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if (folder / WEIGHTS_NAME).is_file() or not index.is_file():
        return load_file(str(folder / WEIGHTS_NAME))
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
        weights.update(load_file(str(folder / shard)))
    return weights


def initialise_from(model: torch.nn.Module, init: Initialisation) -> dict[str, Any]:
    """Copy the weights of ``init.modules`` from ``init.source`` into ``model``; returns what was done.

    Tensors of another shape are listed by name in a :class:`ConfigError` (or skipped, with
    ``ignore_mismatched=True``). Returns ``{"source", "modules", "loaded", "new", "ignored",
    "mismatched"}``: counts and names of tensors loaded, left as initialised (the task's new
    parts), present only in the source, and skipped for their shape.
    """
    folder = local_model_dir(init.source)
    check_model_dir(folder)
    source = _read_weights(folder)
    prefixes = tuple(_MODULE_ALIASES.get(m, m) + "." for m in init.modules)
    selected = {k: v for k, v in source.items() if k.startswith(prefixes)}
    if not selected:
        found = sorted({k.split(".")[0] for k in source})
        raise ConfigError(f"{init.source} has no weights under {', '.join(init.modules)}; its top-level modules are {found}.")
    own = model.state_dict()
    mismatched = [f"{k}: {tuple(v.shape)} in the source, {tuple(own[k].shape)} here" for k, v in selected.items()
                  if k in own and v.shape != own[k].shape]
    if mismatched and not init.ignore_mismatched:
        raise ConfigError(
            f"{len(mismatched)} tensor(s) of {init.source} have other shapes than this model's: " + "; ".join(mismatched[:10])
            + ("; ..." if len(mismatched) > 10 else "") + ". Pass ignore_mismatched=True (--init-ignore-mismatched) to skip them."
        )
    loadable = {k: v for k, v in selected.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    ignored = sorted(k for k in selected if k not in own)
    new = sorted(k for k in own if k not in loadable)
    return {
        "source": init.source,
        "modules": list(init.modules),
        "loaded": len(loadable),
        "new": new,
        "ignored": ignored,
        "mismatched": mismatched,
    }
