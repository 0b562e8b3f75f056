"""Tasks (``polyhead.tasks``): the glue for each domain.

Every built-in task is declared here by name, package and model types, and each model type's config class is
registered with ``transformers.AutoConfig`` as a stand-in (:func:`polyhead.lazy.deferred_class`): ``import
polyhead`` imports no task. A task's package is imported on first use: ``polyhead.registry.get(TASKS, "asr")``,
``from polyhead.tasks.asr import ...``, or transformers reading a ``config.json`` of its model type
(``transformers.AutoModel.from_pretrained(folder)``), which then finds the models the package registers.
"""

from __future__ import annotations

from transformers import AutoConfig

from polyhead.lazy import deferred_class, lazy_exports
from polyhead.registry import declare_task

#: task name -> (its package, {config.json model_type: config class name}); the package registers the task,
#: its models with transformers' Auto classes and its processors when imported
BUILTIN_TASKS: dict[str, tuple[str, dict[str, str]]] = {
    "asr": ("polyhead.tasks.asr", {"polyhead-asr": "ASRConfig"}),
    "detection": ("polyhead.tasks.detection", {"polyhead-detection": "DetectionConfig"}),
    "forecasting": ("polyhead.tasks.forecasting", {"polyhead-forecasting": "ForecastingConfig"}),
    "recommendation": ("polyhead.tasks.recommendation", {"polyhead-next-item": "NextItemConfig", "polyhead-ctr": "CTRConfig"}),
    "rl": ("polyhead.tasks.rl", {"polyhead-ppo": "PPOConfig", "polyhead-decision-transformer": "DecisionTransformerConfig"}),
    "segmentation": ("polyhead.tasks.segmentation", {"polyhead-segmentation": "SegmentationConfig"}),
    "multitask": ("polyhead.multitask", {"polyhead-multitask": "MultiTaskConfig"}),
}

for _name, (_package, _configs) in BUILTIN_TASKS.items():
    declare_task(_name, _package, model_types=tuple(_configs))
    for _model_type, _class_name in _configs.items():
        AutoConfig.register(_model_type, deferred_class(f"{_package}:{_class_name}", model_type=_model_type))

__getattr__, __dir__ = lazy_exports(__name__, {
    "Metrics": "polyhead.task", "Task": "polyhead.task", "TaskData": "polyhead.task",
    "ASRTask": ".asr", "DetectionTask": ".detection", "ForecastingTask": ".forecasting",
    "RecommendationTask": ".recommendation", "RLTask": ".rl", "SegmentationTask": ".segmentation",
})

__all__ = ["BUILTIN_TASKS", "Metrics", "Task", "TaskData", "DetectionTask", "ASRTask", "ForecastingTask", "RecommendationTask", "RLTask", "SegmentationTask"]
