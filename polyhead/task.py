"""The task contract (``polyhead.task``): what each domain gives the generic trainer, CLI, pipeline and export.

A task is registered in :data:`polyhead.registry.TASKS`. It names its model classes
(one per objective: a backbone + that objective's adapter, see :mod:`polyhead.adapters`),
its processor, and builds configs, data, metrics, baselines and the export spec.
Everything generic (training, evaluation, export, the CLI) talks to a task only through
this class; a task changes generic behaviour by overriding a method (RL trains PPO in its
own loop: :meth:`Task.train`), never through a hook that exists for one task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch.utils.data import Dataset

from polyhead import workflows
from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError, InputError, did_you_mean
from polyhead.export import ExportSpec
from polyhead.modeling import PolyheadModel
from polyhead.streaming import STREAMING_OPTIONS, StreamRows
from polyhead.training import evaluate, simple_inferer

__all__ = ["Task", "TaskData", "Metrics", "simple_inferer"]


class Metrics(Protocol):
    """Accumulates a task's metrics over gathered batches."""

    def names(self) -> list[str]:
        """Names of the metrics :meth:`compute` returns."""
        ...

    def reset(self) -> None: ...

    def select(self, outputs: Any, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors to gather across processes (``accelerator.gather_for_metrics``)."""
        ...

    def update(self, gathered: dict[str, torch.Tensor]) -> None: ...

    def compute(self) -> dict[str, float]: ...


@dataclass
class TaskData:
    """The splits a task trains and evaluates on, and how to batch them.

    Attributes:
        eval_batch_size: evaluation batch size the data forces (whole volumes of different
            sizes: 1), or ``None`` to use the training arguments'.
        batch_sampler: ``(dataset, *, batch_size, shuffle, seed, num_processes) -> Sampler`` when
            batches need more than shuffling (a multi-task step draws one task), else ``None``.
        train_stream: the training split as rows and a per-example function, what ``data.streaming=True``
            trains from (:mod:`polyhead.streaming`); ``None``: the task cannot stream its training data yet.
    """

    train: Dataset
    validation: Dataset
    test: Dataset
    collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None
    description: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = None
    batch_sampler: Callable[..., Any] | None = None
    train_stream: StreamRows | None = None


class Task:
    """Base class of every task; subclasses are registered with ``@register_task``.

    Class attributes:
        name: registry name (``"forecasting"``).
        pipeline_task: the pipeline name users pass to ``polyhead.pipeline``.
        domain: the field the task belongs to (``"time-series"``), a tag on its model cards.
        models: the task's model classes, one per objective (each names its ``config_class``
            and ``adapter_class``); the first is the default.
        processor_class: the processor saved with every model of the task.
        default_config: the packaged recipe under ``polyhead/configs``.
        best_metric / greater_is_better: what selects the best checkpoint by default.
        data_options: keys a config's ``data`` section may set (``source`` is what
            ``polyhead evaluate --data`` replaces).
    """

    name: ClassVar[str]
    pipeline_task: ClassVar[str]
    domain: ClassVar[str] = ""
    models: ClassVar[tuple[type[PolyheadModel], ...]]
    processor_class: ClassVar[type]
    default_config: ClassVar[str]
    best_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    data_options: ClassVar[tuple[str, ...]] = ("source",)

    # -- models ------------------------------------------------------------------------
    @classmethod
    def model_types(cls) -> list[str]:
        """The ``config.json`` ``model_type`` of each of the task's models."""
        return [model.config_class.model_type for model in cls.models]

    @classmethod
    def model_class_for(cls, config: PolyheadConfig | str) -> type[PolyheadModel]:
        """The model class of a config (or of a ``model_type``)."""
        model_type = config if isinstance(config, str) else config.model_type
        for model in cls.models:
            if model.config_class.model_type == model_type:
                return model
        raise ConfigError(f"The {cls.name} task has no model of type {model_type!r}; it has {cls.model_types()}.")

    def build_model(self, config: PolyheadConfig, *, backbone: torch.nn.Module | None = None) -> PolyheadModel:
        """A new model for ``config`` (on ``backbone`` when given: see :class:`~polyhead.modeling.PolyheadModel`)."""
        return self.model_class_for(config)(config, backbone=backbone)

    # -- building from a config file ----------------------------------------------------
    def check_data_section(self, data_section: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` (with a did-you-mean) for a key not in :attr:`data_options`.

        The streaming keys (``data.streaming``, ...) are taken out by :func:`polyhead.workflows.fit` before the
        task sees its section; one that gets here reached a task's data through a path that cannot stream.
        """
        for key in data_section:
            if key in STREAMING_OPTIONS and key not in self.data_options:
                raise ConfigError(f"data.{key}: the {self.name} task cannot train from a stream on this path "
                                  "(data.streaming goes through the supervised trainer only); drop it.")
            if key not in self.data_options:
                raise ConfigError(
                    f"data.{key} is not a {self.name} data option.{did_you_mean(key, self.data_options)} "
                    f"Options: {', '.join(self.data_options)}."
                )

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> PolyheadConfig:
        """The model's config from the ``model`` section (the data may fill in fields)."""
        return self.models[0].config_class.from_model_section(model_section)

    def build_processor(self, config: PolyheadConfig) -> Any:
        raise NotImplementedError

    def build_data(self, data_section: Mapping[str, Any], config: PolyheadConfig) -> TaskData:
        raise NotImplementedError

    def data_section_for(self, data_section: Mapping[str, Any], source: Any, config: PolyheadConfig) -> dict[str, Any]:
        """The data section that evaluates a trained model on another ``source`` (``polyhead evaluate --data``).

        Default: the training run's section with ``source`` replaced. A task whose options describe one
        source's layout (columns, named corpora) overrides this to read the new source's own layout.
        """
        return {**data_section, "source": source}

    def build_metrics(self, config: PolyheadConfig) -> Metrics:
        raise NotImplementedError

    def export_spec(self, config: PolyheadConfig) -> ExportSpec:
        """What ``polyhead export`` feeds the network and which axes are dynamic."""
        raise NotImplementedError

    @classmethod
    def example_configs(cls) -> list[PolyheadConfig]:
        """Tiny configs of this task, one per model class (the registry-wide tests use them)."""
        return [cls.example_config()]

    @classmethod
    def example_config(cls) -> PolyheadConfig:
        """The first of :meth:`example_configs`."""
        return cls.example_configs()[0]

    # -- running a model -----------------------------------------------------------------
    #: the files ``polyhead predict`` reads for this task, for its help and its errors
    prediction_files: ClassVar[str] = "a file the pipeline reads"

    def prediction_input(self, path: str) -> Any:
        """What ``polyhead predict`` hands the pipeline for one input argument.

        The default is the path itself (image, audio and NIfTI pipelines read and check files);
        tasks whose natural files are tables or JSON read them here.
        """
        if not Path(path).exists():
            raise InputError(f"Input file {path} does not exist; this task reads {self.prediction_files}.")
        return str(path)

    def predict(self, pipe: Any, inputs: Sequence[str], **options: Any) -> Iterator[Any]:
        """What ``polyhead predict`` prints: the pipeline's result for each input argument, in order.

        ``options`` are the pipeline's own arguments (``threshold=``, ``top_k=``, ...); one it does
        not take is its usual :class:`~polyhead.errors.InputError`. RL plays episodes instead.
        """
        for item in inputs:
            yield pipe(self.prediction_input(item), **options)

    def inferer(self, config: PolyheadConfig) -> Callable[[Any, Mapping[str, Any]], Any]:
        """How evaluation and the pipeline run the network on a batch (MONAI's inferer, outside the network).

        The default runs it as it is; segmentation stitches patches with a sliding window.
        The same inferer serves a PyTorch model and an ONNX Runtime one.
        """
        return simple_inferer

    def baselines(self, data: TaskData, config: PolyheadConfig) -> dict[str, dict[str, float]]:
        """Metrics of simple reference methods on ``data.test``, by name."""
        return {}

    def test_metrics(self, model: Any, data: TaskData, config: PolyheadConfig, *, accelerator: Any, batch_size: int) -> dict[str, float]:
        """The trained model's metrics on ``data.test`` (RL adds episode returns in its environment)."""
        loader = workflows.eval_loader(data, "test", batch_size=batch_size, accelerator=accelerator)
        return evaluate(model, loader, metrics=self.build_metrics(config), accelerator=accelerator, inferer=self.inferer(config))

    def train(self, cfg: Any, *, resume: bool = False, callbacks: tuple = (), init: Any = None) -> Any:
        """Train the model ``cfg`` describes; returns a :class:`polyhead.workflows.RunResult`.

        The default is the supervised path on the generic Trainer
        (:func:`polyhead.workflows.fit`); a task with its own algorithm overrides this.
        """
        return workflows.fit(self, cfg, resume=resume, callbacks=callbacks, init=init)
