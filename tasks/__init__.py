"""Tasks (``polyhead.tasks``): the glue for each domain.

Every built-in task is declared here by name, package and model types; each model type's config class is
registered with ``transformers.AutoConfig``, and each task's processor with ``AutoFeatureExtractor``, as stand-ins
(:func:`polyhead.lazy.deferred_class`): ``import polyhead`` imports no task. A task's package is imported on first
use: ``polyhead.registry.get(TASKS, "asr")``, ``from polyhead.tasks.asr import ...``, or transformers reading a
``config.json`` of its model type (``transformers.AutoModel.from_pretrained(folder)``, which then finds the models
the package registers) or a ``preprocessor_config.json`` naming its processor class.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoFeatureExtractor

from polyhead.lazy import deferred_class, lazy_exports
from polyhead.registry import declare_task

#: task name -> (its package, {config.json model_type: config class name}, its processor class name); the package
#: registers the task, its models with transformers' Auto classes and its processor when imported
BUILTIN_TASKS: dict[str, tuple[str, dict[str, str], str | None]] = {
    "asr": ("polyhead.tasks.asr", {"polyhead-asr": "ASRConfig"}, "ASRFeatureExtractor"),
    "detection": ("polyhead.tasks.detection", {"polyhead-detection": "DetectionConfig"}, "DetectionImageProcessor"),
    "forecasting": ("polyhead.tasks.forecasting", {"polyhead-forecasting": "ForecastingConfig"}, "ForecastingFeatureExtractor"),
    "recommendation": ("polyhead.tasks.recommendation", {"polyhead-next-item": "NextItemConfig", "polyhead-ctr": "CTRConfig"},
                       "RecommendationProcessor"),
    "rl": ("polyhead.tasks.rl", {"polyhead-ppo": "PPOConfig", "polyhead-decision-transformer": "DecisionTransformerConfig"},
           "RLFeatureExtractor"),
    "segmentation": ("polyhead.tasks.segmentation", {"polyhead-segmentation": "SegmentationConfig"}, "SegmentationProcessor"),
    "multitask": ("polyhead.multitask", {"polyhead-multitask": "MultiTaskConfig"}, None),  # one processor per member task
}

for _name, (_package, _configs, _processor) in BUILTIN_TASKS.items():
    declare_task(_name, _package, model_types=tuple(_configs))
    _stand_ins = [deferred_class(f"{_package}:{_class_name}", model_type=_model_type) for _model_type, _class_name in _configs.items()]
    for _stand_in in _stand_ins:
        AutoConfig.register(_stand_in.model_type, _stand_in)
    if _processor is not None:
        # AutoFeatureExtractor finds a processor by the class name in preprocessor_config.json, before any config.json
        AutoFeatureExtractor.register(_stand_ins[0], deferred_class(f"{_package}:{_processor}"))

__getattr__, __dir__ = lazy_exports(__name__, {
    "Metrics": "polyhead.task", "Task": "polyhead.task", "TaskData": "polyhead.task",
    "ASRTask": ".asr", "DetectionTask": ".detection", "ForecastingTask": ".forecasting",
    "RecommendationTask": ".recommendation", "RLTask": ".rl", "SegmentationTask": ".segmentation",
})

__all__ = ["BUILTIN_TASKS", "Metrics", "Task", "TaskData", "DetectionTask", "ASRTask", "ForecastingTask", "RecommendationTask", "RLTask", "SegmentationTask"]
