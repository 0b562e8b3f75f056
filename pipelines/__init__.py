"""Pipelines (``polyhead.pipelines``): ``transformers.Pipeline`` subclasses, registered at import.

``polyhead.pipeline(task, model=None)`` wraps ``transformers.pipeline``; with no
model it loads the task's embedded default checkpoint (no download).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from polyhead.errors import ConfigError, ModelLoadError, UnknownNameError, did_you_mean
from polyhead.loading import AutoModel as PolyheadAutoModel, check_model_dir, load_processor, looks_local, task_of

from .asr import PolyheadASRPipeline
from .detection import PolyheadObjectDetectionPipeline
from .forecasting import TimeSeriesForecastingPipeline
from .rl import ReinforcementLearningPipeline
from .recommendation import RecommendationPipeline
from .segmentation import SegmentationPipeline

__all__ = [
    "SegmentationPipeline", "PolyheadASRPipeline", "PolyheadObjectDetectionPipeline", "TimeSeriesForecastingPipeline", "ReinforcementLearningPipeline", "RecommendationPipeline", "pipeline", "default_model_dir", "PIPELINES"]

#: pipeline task name -> (pipeline class, embedded default model folder under polyhead/defaults)
PIPELINES: dict[str, tuple[type, str]] = {
    "time-series-forecasting": (TimeSeriesForecastingPipeline, "forecasting"),
    "reinforcement-learning": (ReinforcementLearningPipeline, "rl"),
    "recommendation": (RecommendationPipeline, "recommendation"),
    "segmentation": (SegmentationPipeline, "segmentation"),
    "automatic-speech-recognition": (PolyheadASRPipeline, "asr"),
    "object-detection": (PolyheadObjectDetectionPipeline, "detection"),
}
_ALIASES = {"forecasting": "time-series-forecasting", "rl": "reinforcement-learning", "asr": "automatic-speech-recognition", "detection": "object-detection", "medical-segmentation": "segmentation"}


def default_model_dir(task: str) -> Path:
    """The embedded default checkpoint of a pipeline task."""
    return Path(str(resources.files("polyhead") / "defaults" / PIPELINES[task][1]))


#: transformers' own tasks: polyhead's subclass is passed to transformers.pipeline explicitly, never registered over
#: them, so transformers.pipeline(task, model=<polyhead model>) keeps running transformers' own pipeline
_BUILTIN_TASKS = {t for t in PIPELINES if t in transformers.pipelines.SUPPORTED_TASKS}

for _task, (_cls, _folder) in PIPELINES.items():
    if _task in _BUILTIN_TASKS:
        continue
    PIPELINE_REGISTRY.register_pipeline(
        _task,
        pipeline_class=_cls,
        pt_model=AutoModel,
        default={"model": (str(default_model_dir(_task)), None)},
        type="multimodal",
    )


def pipeline(task: str, model: str | Path | None = None, *, backend: str = "torch", **kwargs: Any):
    """Build a polyhead pipeline.

    Args:
        task: a pipeline task (``"time-series-forecasting"``) or its task alias (``"forecasting"``).
        model: a model dir or Hub repo id; ``None`` loads the embedded default model.
        backend: ``"torch"``, or ``"onnx"`` to run the exported ``model.onnx`` in ONNX Runtime
            with the same pre- and post-processing.
        **kwargs: passed to ``transformers.pipeline``.
    """
    task = _ALIASES.get(task, task)
    if task not in PIPELINES:
        known = sorted(PIPELINES) + sorted(_ALIASES)
        raise UnknownNameError(f"Unknown pipeline task {task!r}.{did_you_mean(task, known)} Known: {', '.join(known)}.")
    if backend not in ("torch", "onnx"):
        raise ConfigError(f"backend must be 'torch' or 'onnx', got {backend!r}.")
    if model is None:
        model = default_model_dir(task)
        if not (model / "config.json").is_file():
            raise ModelLoadError(f"The embedded default model for {task!r} is missing from {model}; reinstall polyhead or run `make defaults`.")
    if isinstance(model, (str, Path)):
        name = str(model)
        if Path(name).exists():
            check_model_dir(name)
        elif not looks_local(name):  # a Hub repo id: config.json checked first, then the snapshot (or the cached one)
            from polyhead.hub import hub_model_dir

            hub = {k: kwargs.pop(k) for k in ("revision", "token") if k in kwargs}
            name = str(hub_model_dir(name, include_onnx=backend == "onnx", **hub))
        if backend == "onnx":
            from polyhead.export import OnnxModel

            model_obj = OnnxModel(name)
        else:
            model_obj = PolyheadAutoModel.from_pretrained(name)
        expected = PIPELINES[task][1]
        if task_of({"model_type": model_obj.config.model_type}) != expected:
            raise ConfigError(f"{name} is a {model_obj.config.model_type} model; the {task!r} pipeline needs a polyhead-{expected} model.")
        # image tasks take an image processor, the others a feature extractor
        kwargs.setdefault("image_processor" if getattr(PIPELINES[task][0], "_load_image_processor", False) else "feature_extractor", load_processor(name))
        if (Path(name) / "tokenizer_config.json").is_file():  # e.g. the ASR character tokenizer
            kwargs.setdefault("tokenizer", transformers.AutoTokenizer.from_pretrained(name))
        model = model_obj
    if task in _BUILTIN_TASKS:
        kwargs.setdefault("pipeline_class", PIPELINES[task][0])
    return transformers.pipeline(task, model=model, **kwargs)
