"""The task contract: what each domain gives the generic trainer, CLI and pipeline.

A task is registered in :data:`polyhead.registry.TASKS` and ties together its
config class, model class, processor, data, metrics and baselines. Everything
generic (training, evaluation, the CLI) talks to a task only through this class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch.utils.data import Dataset

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError, did_you_mean
from polyhead.export import ExportSpec
from polyhead.modeling import PolyheadPreTrainedModel

__all__ = ["Task", "TaskData", "Metrics"]


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
    """The splits a task trains and evaluates on, and how to batch them."""

    train: Dataset
    validation: Dataset
    test: Dataset
    collate_fn: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None
    description: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class of every task; subclasses are registered with ``@register_task``.

    Class attributes:
        name: registry name (``"forecasting"``).
        pipeline_task: the pipeline name users pass to ``polyhead.pipeline``.
        domain: the field the task belongs to (``"time-series"``), a tag on its model cards.
        config_class / model_class / processor_class: the task's HF classes.
        default_config: the packaged recipe under ``polyhead/configs``.
        best_metric / greater_is_better: what selects the best checkpoint by default.
    """

    name: ClassVar[str]
    pipeline_task: ClassVar[str]
    domain: ClassVar[str] = ""
    config_class: ClassVar[type[PolyheadConfig]]
    model_class: ClassVar[type[PolyheadPreTrainedModel]]
    processor_class: ClassVar[type]
    default_config: ClassVar[str]
    best_metric: ClassVar[str] = "loss"
    greater_is_better: ClassVar[bool] = False
    #: keys a config's ``data`` section may set for this task
    data_options: ClassVar[tuple[str, ...]] = ()
    #: the data option ``polyhead evaluate --data`` replaces
    data_source_option: ClassVar[str] = "source"
    #: evaluation batch size forced by the data (whole volumes of different sizes: 1), or ``None``
    eval_batch_size: ClassVar[int | None] = None

    def check_data_section(self, data_section: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` (with a did-you-mean) for a key not in :attr:`data_options`."""
        for key in data_section:
            if key not in self.data_options:
                raise ConfigError(
                    f"data.{key} is not a {self.name} data option.{did_you_mean(key, self.data_options)} "
                    f"Options: {', '.join(self.data_options)}."
                )

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> PolyheadConfig:
        """The model's config from the ``model`` section (the data may fill in fields)."""
        return self.config_class.from_model_section(model_section)

    def build_processor(self, config: PolyheadConfig) -> Any:
        raise NotImplementedError

    def build_data(self, data_section: Mapping[str, Any], config: PolyheadConfig) -> TaskData:
        raise NotImplementedError

    def build_metrics(self, config: PolyheadConfig) -> Metrics:
        raise NotImplementedError

    def export_spec(self, config: PolyheadConfig) -> "ExportSpec":
        """What ``polyhead export`` feeds the network and which axes are dynamic."""
        raise NotImplementedError

    @classmethod
    def example_config(cls) -> PolyheadConfig:
        """A tiny config of this task (tests parametrised over the task registry use it)."""
        raise NotImplementedError

    def evaluation_model(self, model: Any) -> Any:
        """The model ``polyhead evaluate`` runs: ``model`` itself, or a wrapper that runs it (sliding window)."""
        return model

    def baselines(self, data: TaskData, config: PolyheadConfig) -> dict[str, dict[str, float]]:
        """Metrics of simple reference methods on ``data.test``, by name."""
        return {}

    def rollout_metrics(self, model: PolyheadPreTrainedModel, data: TaskData, config: PolyheadConfig) -> dict[str, float]:
        """Test metrics measured by running the trained model (RL episode returns), merged into the test metrics."""
        return {}

    def is_online(self, model_section: Mapping[str, Any]) -> bool:
        """Whether this config trains online in the task's own loop (PPO) instead of the generic Trainer."""
        return False

    def train_online(self, cfg: Any, *, resume: bool = False) -> Any:
        """Train in the task's own loop; returns a :class:`polyhead.workflows.RunResult`."""
        raise NotImplementedError
