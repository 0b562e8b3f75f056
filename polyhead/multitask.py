"""One backbone serving several tasks at once: ``PolyheadForMultiTask``, co-trained, with optional per-task LoRA.

A multi-task model is one shared backbone + a ``ModuleDict`` of task adapters (the adapters
of :mod:`polyhead.adapters`, exactly as the single-task models use them), one ``config.json``
holding the backbone and each task's config, saved, loaded and pushed like every polyhead
model. ``model(task="forecasting", past_values=...)`` runs one task; ``model.task_model(name)``
is that task's ordinary model class (``PolyheadForForecasting``...) *sharing* the backbone and
the adapter tensors, which every pipeline, ``polyhead evaluate`` and the ONNX export use.

Per-task LoRA (Hu et al., ICLR 2022; multi-task as MTLoRA, Agiza et al., CVPR 2024): with
``lora={"r": 8, ...}`` the shared backbone is frozen and each task gets its own low-rank
adapters on the backbone's linear layers, through PEFT (``inject_adapter_in_model``, one named
adapter per task, switched per call).

Training (a config with ``model.task="multitask"``): each optimizer step draws ONE task
(``data.sampling``: ``"proportional"`` to the task's training batches, ``"uniform"``, or
``{"temperature": T}``: proportional to ``n ** (1 / T)``), from a seeded generator that every
process shares, so every rank of a distributed run trains the same task at a step; the loss is
scaled by the task's ``weight``. Adapters a step does not use join the graph with a zero term,
so DistributedDataParallel needs no ``find_unused_parameters`` (the failure of pytorch #68862).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from . import registry
from .backbones._base import Backbone
from .configuration import PolyheadConfig, register_auto_config
from .errors import ConfigError, InputError, did_you_mean
from .log import quiet_library_progress
from .model_dir import write_folder
from .modeling import PolyheadModel, PolyheadPreTrainedModel
from .registry import BACKBONES, build, describe_backbone, register_task
from .streaming import split_streaming_options
from .task import Task, TaskData
from .validation import check_positive

__all__ = [
    "combine_task_data",
    "MultiTaskBatchSampler",
    "MultiTaskConfig",
    "MultiTaskDataset",
    "MultiTaskMetrics",
    "MultiTaskProcessor",
    "MultiTaskTask",
    "PolyheadForMultiTask",
    "PROCESSORS_DIR",
]

#: where a multi-task folder keeps each task's processor: ``processors/<task>/``
PROCESSORS_DIR = "processors"
_LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["qkv", "proj"], "freeze_backbone": True}


def _task_config_class(model_type: str) -> type[PolyheadConfig]:
    return registry.task_for(model_type).model_class_for(model_type).config_class


class MultiTaskConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForMultiTask`.

    Attributes:
        backbone: the shared backbone, ``{"type": ..., **kwargs}``.
        tasks: ``{name: task config dict}``: each task's own config (``model_type`` and its fields,
            as its ``config.json`` would hold them, without ``backbone``).
        lora: ``None``, or per-task LoRA on the frozen backbone: ``{"r", "alpha", "dropout",
            "target_modules", "freeze_backbone"}`` (PEFT names; defaults r=8, alpha=16, on the
            attention projections ``qkv``/``proj``).
        loss_weights: ``{name: weight}`` multiplying each task's training loss (default 1).
    """

    model_type = "polyhead-multitask"
    task = "multitask"
    config_parts: ClassVar[tuple[str, ...]] = ("backbone",)

    tasks: dict = dataclasses.field(default_factory=dict)
    lora: dict | None = None
    loss_weights: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if not isinstance(self.tasks, Mapping) or not self.tasks:
            raise ConfigError(f"MultiTaskConfig.tasks must name at least one task, got {self.tasks!r}.")
        for name, spec in self.tasks.items():
            if not isinstance(spec, Mapping) or "model_type" not in spec:
                raise ConfigError(f"tasks[{name!r}] must be a task config dict with a 'model_type', got {spec!r}.")
            _task_config_class(spec["model_type"])  # an unknown model type fails here, naming the known ones
        if self.lora is not None:
            unknown = sorted(set(self.lora) - set(_LORA_DEFAULTS))
            if unknown:
                raise ConfigError(f"lora got unknown option(s) {unknown}; options: {', '.join(_LORA_DEFAULTS)}.")
            self.lora = {**_LORA_DEFAULTS, **self.lora}
            check_positive("lora.r", self.lora["r"])
        self.tasks = {str(k): dict(v) for k, v in self.tasks.items()}
        super().__post_init__(**kwargs)

    def task_config(self, name: str) -> PolyheadConfig:
        """The config of task ``name``, on the shared backbone."""
        if name not in self.tasks:
            raise InputError(f"This multi-task model has no task {name!r}.{did_you_mean(name, self.tasks)} Tasks: {', '.join(self.tasks)}.")
        spec = {k: v for k, v in self.tasks[name].items() if k not in ("backbone", "transformers_version", "architectures")}
        config_class = _task_config_class(spec.pop("model_type"))
        return config_class(**{**spec, "backbone": dict(self.backbone)})


@dataclasses.dataclass
class _TaskParts:
    name: str
    model_class: type[PolyheadModel]
    config: PolyheadConfig


class PolyheadForMultiTask(PolyheadPreTrainedModel):
    """One backbone + one adapter per task (see the module docstring).

    Example:
        >>> model = PolyheadForMultiTask(MultiTaskConfig(backbone=..., tasks={"forecasting": {...}, "next_item": {...}}))
        >>> model(task="forecasting", past_values=torch.randn(2, 32, 1)).prediction.shape
        >>> model.task_model("next_item")  # a PolyheadForNextItem on the same tensors
    """

    config_class = MultiTaskConfig
    main_input_name = "task"

    def __init__(self, config: MultiTaskConfig, *, backbone: Backbone | None = None) -> None:
        if backbone is not None:
            config.backbone = backbone.config
        super().__init__(config)
        spec = describe_backbone(config.backbone)
        self.parts: dict[str, _TaskParts] = {}
        for name in config.tasks:
            task_config = config.task_config(name)
            model_class = registry.task_for(task_config.model_type).model_class_for(task_config)
            model_class.adapter_class.check_backbone(task_config, spec)
            self.parts[name] = _TaskParts(name, model_class, task_config)
        self.backbone = backbone if backbone is not None else build(BACKBONES, config.backbone)
        self.adapters = nn.ModuleDict({name: part.model_class.adapter_class(part.config, spec) for name, part in self.parts.items()})
        self._lora_modules: list[nn.Module] = []
        if config.lora is not None:
            self._add_lora(config.lora)
        self.post_init()

    # -- LoRA ---------------------------------------------------------------------------
    def _add_lora(self, lora: Mapping[str, Any]) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        if lora["freeze_backbone"]:
            self.backbone.requires_grad_(False)
        peft_config = LoraConfig(r=int(lora["r"]), lora_alpha=int(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                                 target_modules=list(lora["target_modules"]))
        try:
            for name in self.parts:
                inject_adapter_in_model(peft_config, self.backbone, adapter_name=name)
                self.backbone.__dict__.pop("peft_config", None)  # PEFT's bookkeeping is not part of the model
        except ValueError as err:  # PEFT: no module matched target_modules
            raise ConfigError(f"lora.target_modules {lora['target_modules']} match no layer of the {self.config.backbone['type']!r} backbone: {err}") from None
        self._lora_modules = [m for m in self.backbone.modules() if isinstance(m, BaseTunerLayer)]

    def _lora_parameters(self, task: str) -> list[nn.Parameter]:
        """The LoRA tensors of ``task`` (``...lora_A.<task>.weight``)."""
        return [p for n, p in self.backbone.named_parameters() if any(a.startswith("lora_") and b == task for a, b in zip(n.split("."), n.split(".")[1:]))]

    def _activate(self, name: str) -> None:
        """Route the backbone's LoRA layers through task ``name``'s adapters for the next forward."""
        for module in self._lora_modules:
            module.set_adapter(name)
        for task in self.parts:  # set_adapter freezes the other tasks' adapters: keep every task's trainable (a fixed set for DDP)
            for param in self._lora_parameters(task):
                param.requires_grad_(True)

    # -- running one task -------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return list(self.parts)

    def forward(self, task: str, **inputs: Any) -> ModelOutput:
        """Run task ``task``: its model's ``forward`` arguments (labels included) -> its ``ModelOutput``."""
        output = self.task_model(task)(**inputs)
        if output.loss is not None and self.training:
            output.loss = output.loss * float((self.config.loss_weights or {}).get(task, 1.0))
            # every adapter joins the graph (with a zero), so distributed training needs no find_unused_parameters
            idle = [p for name, other in self.adapters.items() if name != task for p in other.parameters() if p.requires_grad]
            idle += [p for name in self.parts if name != task for p in self._lora_parameters(name)]
            if idle:
                output.loss = output.loss + 0.0 * sum(p.sum() for p in idle)
        return output

    def named_parts(self) -> list[tuple[str, nn.Module]]:
        """The shared backbone and each task's adapter, by name: what a model card lists."""
        return [("backbone", self.backbone), *((f"adapter {name}", adapter) for name, adapter in self.adapters.items())]

    def task_model(self, name: str) -> PolyheadModel:
        """Task ``name`` as its own model class (``PolyheadForForecasting``...) on the SAME backbone and adapter tensors.

        Built once and kept (not as a submodule: its tensors are this model's), so every
        pipeline, ``polyhead evaluate`` and the ONNX export run a task through its usual class.
        """
        if name not in self.parts:
            raise InputError(f"Unknown task {name!r}.{did_you_mean(str(name), self.parts)} This model has: {', '.join(self.parts)}.")
        views = self.__dict__.setdefault("_views", {})
        if name not in views:
            part = self.parts[name]
            with torch.device("meta"):  # the view's own adapter is replaced at once: build it without memory
                view = part.model_class(part.config, backbone=self.backbone)
            view.adapter = self.adapters[name]
            if self._lora_modules:
                view.register_forward_pre_hook(lambda module, args, kwargs: self._activate(name), with_kwargs=True)
            views[name] = view
        view = views[name]
        view.training = self.training
        return view

    def save_pretrained(self, save_directory: Any, *args: Any, processor: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """The model, and each task's processor under ``processors/<task>/``."""
        processor = processor or MultiTaskProcessor.from_config(self.config)
        with write_folder(save_directory, kind="model", what="model folder") as staging, quiet_library_progress():
            PreTrainedModel.save_pretrained(self, staging, *args, **kwargs)
            processor.save_pretrained(staging)


class MultiTaskProcessor:
    """Each task's processor, saved under ``processors/<task>/`` of the model folder."""

    def __init__(self, processors: Mapping[str, Any]) -> None:
        self.processors = dict(processors)

    @classmethod
    def from_config(cls, config: MultiTaskConfig) -> "MultiTaskProcessor":
        return cls({name: registry.task_for(spec["model_type"])().build_processor(config.task_config(name)) for name, spec in config.tasks.items()})

    def save_pretrained(self, save_directory: Any, **kwargs: Any) -> None:
        from pathlib import Path

        for name, processor in self.processors.items():
            processor.save_pretrained(str(Path(save_directory) / PROCESSORS_DIR / name))

    def __getitem__(self, name: str) -> Any:
        return self.processors[name]


# --------------------------------------------------------------------------- data


class MultiTaskDataset(Dataset):
    """The samples of several tasks' datasets, one index space: ``(task, sample)`` pairs."""

    def __init__(self, datasets: Mapping[str, Dataset]) -> None:
        self.datasets = dict(datasets)
        self.names = list(self.datasets)
        self.offsets = {}
        offset = 0
        for name in self.names:
            self.offsets[name] = offset
            offset += len(self.datasets[name])
        self.total = offset

    def __len__(self) -> int:
        return self.total

    def indices(self, name: str) -> range:
        return range(self.offsets[name], self.offsets[name] + len(self.datasets[name]))

    def __getitem__(self, index: int) -> tuple[str, Any]:
        for name in reversed(self.names):
            if index >= self.offsets[name]:
                return name, self.datasets[name][index - self.offsets[name]]
        raise IndexError(index)


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Batches of ONE task each, the task drawn per step by a seeded rule shared by every process.

    Training (``shuffle=True``): a step takes one *global* batch (``batch_size`` per process
    times ``num_processes``) of one task, drawn by ``sampling`` from a generator seeded by
    ``seed`` and the epoch, and yields it as ``num_processes`` consecutive batches: accelerate's
    sharding (batch ``i`` to process ``i % num_processes``) gives every rank a part of the same
    task's global batch, and a run on one process with the global batch size sees the same
    samples in the same steps. An epoch has as many steps as the tasks have full global batches
    together; a task's samples are reshuffled each time they run out.
    Evaluation (``shuffle=False``): every batch of every task in order, each repeated
    ``num_processes`` times: every rank evaluates everything, so the gathered metrics are the
    1-process values (each sample counted ``num_processes`` times).
    """

    def __init__(
        self,
        dataset: MultiTaskDataset,
        *,
        batch_size: int,
        sampling: str | Mapping[str, float] = "proportional",
        shuffle: bool = True,
        seed: int = 0,
        num_processes: int = 1,
        batch_sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.dataset = dataset
        # No `batch_size` attribute: accelerate's BatchSamplerShard then takes each batch as a list of any length and
        # deals them out round-robin (with one, it drops every batch of another size: a task's own batch size, or
        # a task's last evaluation batch).
        self.batch_sizes = {name: int((batch_sizes or {}).get(name) or batch_size) for name in dataset.names}
        self.shuffle, self.seed, self.num_processes = shuffle, seed, num_processes
        self.drop_last = True
        self.epoch = 0
        counts = {name: len(dataset.datasets[name]) // (self.batch_sizes[name] * num_processes) for name in dataset.names}
        empty = [name for name, n in counts.items() if n == 0]
        if empty and shuffle:
            raise ConfigError(
                f"Task(s) {empty} have fewer training samples than one global batch "
                f"({ {n: self.batch_sizes[n] * num_processes for n in empty} })."
            )
        self.global_batches = counts
        self.probabilities = _task_probabilities(counts, sampling)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if not self.shuffle:
            return sum(math.ceil(len(self.dataset.datasets[n]) / self.batch_sizes[n]) for n in self.dataset.names) * self.num_processes
        return sum(self.global_batches.values()) * self.num_processes

    def _global_batches(self, name: str, generator: torch.Generator) -> Iterator[list[int]]:
        indices, size = list(self.dataset.indices(name)), self.batch_sizes[name] * self.num_processes
        while True:
            order = torch.randperm(len(indices), generator=generator).tolist()
            for start in range(0, len(order) - size + 1, size):
                yield [indices[i] for i in order[start : start + size]]

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            for name in self.dataset.names:
                indices, size = list(self.dataset.indices(name)), self.batch_sizes[name]
                for start in range(0, len(indices), size):
                    for _ in range(self.num_processes):
                        yield indices[start : start + size]
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        streams = {name: self._global_batches(name, generator) for name in self.dataset.names}
        names = list(self.probabilities)
        weights = torch.tensor([self.probabilities[n] for n in names], dtype=torch.float64)
        for _ in range(sum(self.global_batches.values())):
            name = names[int(torch.multinomial(weights, 1, generator=generator))]
            batch, size = next(streams[name]), self.batch_sizes[name]
            for rank in range(self.num_processes):
                yield batch[rank * size : (rank + 1) * size]


def _task_probabilities(counts: Mapping[str, int], sampling: str | Mapping[str, float]) -> dict[str, float]:
    """``"proportional"`` (to the batches a task has), ``"uniform"``, or ``{"temperature": T}`` (``n ** (1/T)``)."""
    if sampling == "proportional":
        raw = {n: float(c) for n, c in counts.items()}
    elif sampling == "uniform":
        raw = {n: 1.0 for n in counts}
    elif isinstance(sampling, Mapping) and set(sampling) == {"temperature"}:
        temperature = float(sampling["temperature"])
        if not temperature > 0:
            raise ConfigError(f"data.sampling temperature must be positive, got {temperature}.")
        raw = {n: float(c) ** (1.0 / temperature) for n, c in counts.items()}
    else:
        raise ConfigError(f"data.sampling must be 'proportional', 'uniform' or {{'temperature': T}}, got {sampling!r}.")
    total = sum(raw.values()) or 1.0
    return {n: v / total for n, v in raw.items()}


class _MultiTaskCollate:
    """One task's samples -> that task's batch (its own collate) plus ``task``."""

    def __init__(self, collates: Mapping[str, Any]) -> None:
        self.collates = dict(collates)

    def __call__(self, samples: Sequence[tuple[str, Any]]) -> dict[str, Any]:
        names = {name for name, _ in samples}
        if len(names) != 1:
            raise InputError(f"A multi-task batch must hold one task's samples, got {sorted(names)}.")
        (name,) = names
        collate = self.collates[name] or torch.utils.data.default_collate
        return {**collate([sample for _, sample in samples]), "task": name}


def combine_task_data(
    per_task: Mapping[str, TaskData],
    *,
    sampling: str | Mapping[str, float] = "proportional",
    batch_sizes: Mapping[str, int | None] | None = None,
    description: Mapping[str, Any] | None = None,
) -> TaskData:
    """Several tasks' :class:`TaskData` as one: :class:`MultiTaskDataset` splits, batches of one task each
    (:class:`MultiTaskBatchSampler` with ``sampling``), each task's own collate, and ``task`` in every batch."""
    _task_probabilities({n: 1 for n in per_task}, sampling)  # a bad rule fails before training
    splits = {split: MultiTaskDataset({n: getattr(d, split) for n, d in per_task.items()}) for split in ("train", "validation", "test")}
    sizes = {n: b for n, b in (batch_sizes or {}).items() if b}

    def batch_sampler(dataset: MultiTaskDataset, *, batch_size: int, shuffle: bool, seed: int, num_processes: int) -> MultiTaskBatchSampler:
        return MultiTaskBatchSampler(dataset, batch_size=batch_size, sampling=sampling, shuffle=shuffle, seed=seed,
                                     num_processes=num_processes, batch_sizes=sizes)

    return TaskData(
        **splits,
        collate_fn=_MultiTaskCollate({n: d.collate_fn for n, d in per_task.items()}),
        description={**(description or {}), "tasks": {n: d.description for n, d in per_task.items()}},
        batch_sampler=batch_sampler,
    )


# --------------------------------------------------------------------------- metrics


class MultiTaskMetrics:
    """Each task's metrics, prefixed ``<task>/``, each task's mean loss, and ``task_mean_loss`` (their mean)."""

    def __init__(self, metrics: Mapping[str, Any]) -> None:
        self.metrics = dict(metrics)
        self.reset()

    def names(self) -> list[str]:
        return ["task_mean_loss"] + [f"{t}/{n}" for t, m in self.metrics.items() for n in [*m.names(), "loss"]]

    def reset(self) -> None:
        for metrics in self.metrics.values():
            metrics.reset()
        self._loss = {name: [0.0, 0] for name in self.metrics}

    def select(self, outputs: Any, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        task = batch["task"]
        selected = {f"{task}::{k}": v for k, v in self.metrics[task].select(outputs, {k: v for k, v in batch.items() if k != "task"}).items()}
        if outputs.loss is not None:
            size = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
            selected[f"{task}::__loss"] = outputs.loss.detach().float().reshape(1).expand(size)
        return selected

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        task = next(iter(gathered)).split("::", 1)[0]
        own = {k.split("::", 1)[1]: v for k, v in gathered.items()}
        loss = own.pop("__loss", None)
        if loss is not None:
            self._loss[task][0] += float(loss.sum())
            self._loss[task][1] += loss.numel()
        self.metrics[task].update(own)

    def compute(self) -> dict[str, float]:
        result: dict[str, float] = {}
        losses = []
        for task, metrics in self.metrics.items():
            result.update({f"{task}/{k}": v for k, v in metrics.compute().items()})
            total, count = self._loss[task]
            if count:
                result[f"{task}/loss"] = total / count
                losses.append(total / count)
        if losses:
            result["task_mean_loss"] = sum(losses) / len(losses)
        return result


# --------------------------------------------------------------------------- the task


@register_task("multitask")
class MultiTaskTask(Task):
    """Several tasks on one shared backbone, co-trained (``model.task="multitask"``).

    Config::

        model = dict(task="multitask", backbone=dict(type="transformer", ...),
                     tasks=dict(forecasting=dict(task="forecasting", context_length=..., ...),
                                next_item=dict(task="recommendation", objective="next_item", ...)),
                     lora=None)                      # or dict(r=8, ...): frozen backbone + per-task LoRA
        data = dict(sampling="proportional",         # or "uniform", or dict(temperature=2.0)
                    tasks=dict(forecasting=dict(source="co2_weekly", weight=1.0, batch_size=64), next_item=dict(...)))
    """

    name = "multitask"
    pipeline_task = ""  # no pipeline of its own: each of its tasks is served by that task's pipeline
    domain = "multi-task"
    models = (PolyheadForMultiTask,)
    processor_class = MultiTaskProcessor
    default_config = "multitask/sequence_trio.py"
    best_metric = "task_mean_loss"
    greater_is_better = False
    data_options = ("sampling", "tasks")
    _TASK_DATA_KEYS = ("weight", "batch_size")

    def train(self, cfg: Any, *, resume: bool = False, callbacks: tuple = (), init: Any = None) -> Any:
        """The supervised path (:func:`polyhead.workflows.fit`); ``data.streaming=True`` is refused before any data is read."""
        from . import workflows

        if split_streaming_options(workflows.config_section(cfg, "data"))[0] is not None:
            raise ConfigError("The multitask task cannot train from a stream (data.streaming=True): its training batches come from a "
                              "multi-task batch sampler (one task per batch, drawn by data.sampling), which a stream's shards and "
                              "shuffle buffer cannot drive. Drop data.streaming: it trains from its tasks' map-style data.")
        return super().train(cfg, resume=resume, callbacks=callbacks, init=init)

    @staticmethod
    def _task_of(spec: Mapping[str, Any], name: str) -> Task:
        if "task" not in spec:
            raise ConfigError(f"model.tasks.{name} needs a 'task' key (forecasting, recommendation, asr, rl, ...).")
        return registry.get(registry.TASKS, spec["task"])()

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> MultiTaskConfig:
        self.check_data_section(data_section)
        unknown = sorted(set(model_section) - {"backbone", "tasks", "lora"})
        if unknown:
            raise ConfigError(f"model.{unknown[0]} is not a multi-task option; options: backbone, tasks, lora.")
        backbone, specs = dict(model_section.get("backbone") or {}), dict(model_section.get("tasks") or {})
        data_tasks = dict(data_section.get("tasks") or {})
        if set(data_tasks) != set(specs):
            raise ConfigError(f"data.tasks {sorted(data_tasks)} must name the same tasks as model.tasks {sorted(specs)}.")
        tasks = {}
        for name, spec in specs.items():
            task = self._task_of(spec, name)
            section = {**{k: v for k, v in spec.items() if k != "task"}, "backbone": backbone}
            data = {k: v for k, v in dict(data_tasks[name]).items() if k not in self._TASK_DATA_KEYS}
            config = task.build_config(section, data)
            tasks[name] = {k: v for k, v in config.to_dict().items() if k not in ("backbone", "transformers_version", "architectures")}
        weights = {name: float(dict(spec).get("weight", 1.0)) for name, spec in data_tasks.items()}
        return MultiTaskConfig(backbone=backbone, tasks=tasks, lora=model_section.get("lora"), loss_weights=weights)

    def build_processor(self, config: MultiTaskConfig) -> MultiTaskProcessor:
        return MultiTaskProcessor.from_config(config)

    def build_data(self, data_section: Mapping[str, Any], config: MultiTaskConfig) -> TaskData:
        self.check_data_section(data_section)
        per_task, batch_sizes = {}, {}
        for name in config.tasks:
            spec = dict((data_section.get("tasks") or {}).get(name) or {})
            spec.pop("weight", None)  # a training-loss weight: it lives in the config (loss_weights)
            batch_sizes[name] = spec.pop("batch_size", None)
            sub_config = config.task_config(name)
            per_task[name] = registry.task_for(sub_config.model_type)().build_data(spec, sub_config)
        sampling = data_section.get("sampling", "proportional")
        description = {"sampling": sampling, "loss_weights": config.loss_weights}
        return combine_task_data(per_task, sampling=sampling, batch_sizes=batch_sizes, description=description)

    def build_metrics(self, config: MultiTaskConfig) -> MultiTaskMetrics:
        return MultiTaskMetrics({name: registry.task_for(spec["model_type"])().build_metrics(config.task_config(name))
                                 for name, spec in config.tasks.items()})

    def baselines(self, data: TaskData, config: MultiTaskConfig) -> dict[str, dict[str, float]]:
        result: dict[str, dict[str, float]] = {}
        for name in config.tasks:
            sub_config = config.task_config(name)
            sub = TaskData(data.train.datasets[name], data.validation.datasets[name], data.test.datasets[name],
                           description=data.description["tasks"][name])
            for baseline, values in registry.task_for(sub_config.model_type)().baselines(sub, sub_config).items():
                result.setdefault(baseline, {}).update({f"{name}/{k}": v for k, v in values.items()})
        return result

    def export_spec(self, config: MultiTaskConfig):
        raise ConfigError("A multi-task model is exported one task at a time: `polyhead export DIR --task NAME`.")

    @classmethod
    def example_configs(cls) -> list[MultiTaskConfig]:
        specs = {}
        for name, task_name in (("forecasting", "forecasting"), ("next_item", "recommendation")):
            example = registry.get(registry.TASKS, task_name).example_configs()[0]
            specs[name] = {k: v for k, v in example.to_dict().items() if k not in ("backbone", "transformers_version", "architectures")}
        backbone = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 32}
        return [MultiTaskConfig(backbone=backbone, tasks=specs)]


register_auto_config(MultiTaskConfig)
AutoModel.register(MultiTaskConfig, PolyheadForMultiTask)
