"""Pipelines (``polyhead.pipelines``): ``transformers.Pipeline`` subclasses, registered at import.

``polyhead.pipeline(task, model=None)`` wraps ``transformers.pipeline``; with no
model it loads the task's embedded default checkpoint (no download).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from polyhead.errors import ConfigError, ModelLoadError, UnknownNameError, did_you_mean
from polyhead.loading import BACKENDS, check_model_dir, load_model, load_processor, local_model_dir, task_of

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


#: the tokenizer classes polyhead saves with its models; a tokenizer_config.json naming any other is refused,
#: so a model folder can never make polyhead resolve (or import) a name of its choosing
_TOKENIZERS = {"Wav2Vec2CTCTokenizer": transformers.Wav2Vec2CTCTokenizer}


def _load_tokenizer(model_dir: Path):
    config_file = model_dir / "tokenizer_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{config_file} is not valid JSON: {err}") from None
    name = config.get("tokenizer_class") if isinstance(config, dict) else None
    if not isinstance(name, str) or name not in _TOKENIZERS:
        raise ModelLoadError(
            f"{config_file} names tokenizer_class {name!r}; polyhead loads only {', '.join(_TOKENIZERS)}, the tokenizer it saves with its models."
        )
    try:
        return _TOKENIZERS[name].from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"Could not load the {name} saved with {model_dir}: {err}") from None


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
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    if model is None:
        model = default_model_dir(task)
        if not (model / "config.json").is_file():
            raise ModelLoadError(f"The embedded default model for {task!r} is missing from {model}; reinstall polyhead or run `make defaults`.")
    if isinstance(model, (str, Path)):
        hub = {k: kwargs.pop(k) for k in ("revision", "token") if k in kwargs}
        name = str(local_model_dir(model, include_onnx=backend == "onnx", **hub))  # a Hub id: config.json checked first
        check_model_dir(name)
        model_obj = load_model(name, backend=backend)
        expected = PIPELINES[task][1]
        if task_of({"model_type": model_obj.config.model_type}) != expected:
            raise ConfigError(f"{name} is a {model_obj.config.model_type} model; the {task!r} pipeline needs a model of the {expected!r} task.")
        # image tasks take an image processor, the others a feature extractor
        kwargs.setdefault("image_processor" if getattr(PIPELINES[task][0], "_load_image_processor", False) else "feature_extractor", load_processor(name))
        if (Path(name) / "tokenizer_config.json").is_file():  # e.g. the ASR character tokenizer
            kwargs.setdefault("tokenizer", _load_tokenizer(Path(name)))
        model = model_obj
    if task in _BUILTIN_TASKS:
        kwargs.setdefault("pipeline_class", PIPELINES[task][0])
    return transformers.pipeline(task, model=model, **kwargs)
