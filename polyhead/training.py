"""The task-agnostic training loop, on Accelerate.

It calls ``model(**batch).loss`` and knows nothing else about the task: metrics
come through a :class:`~polyhead.tasks.Metrics` object, the best model is written
with ``save_pretrained`` (plus its processor) into ``<output_dir>/best``.

Features: gradient accumulation (``accelerator.accumulate``), mixed precision (bf16, or fp16 with a
gradient scaler on CUDA), ``torch.compile`` of the backbone, DataLoader workers seeded per worker and rank,
evaluation with ``gather_for_metrics``, best-checkpoint selection, early stopping,
``save_state``/``load_state`` checkpoints for ``resume``, a TensorBoard tracker and a
tqdm progress bar on the main process only. The training data is a map-style dataset, or a stream
(``data.streaming=True``: :mod:`polyhead.streaming` shards, shuffles and evens it out across processes).

On a machine without GPUs the Accelerator is created with ``cpu=True``: otherwise
``accelerate launch --num_processes N`` would start N processes that each train alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import (
    DistributedType,
    FullyShardedDataParallelPlugin,
    ProjectConfiguration,
    set_seed,
)
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_scheduler

from .errors import ConfigError, DataError
from .log import logger
from .model_dir import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    EVAL_RESULTS_NAME,
    TRAINER_STATE_NAME,
    check_writable_folder,
    mark_folder,
    run_lock,
    save_model_dir,
)
from .streaming import NEEDS_MAX_STEPS, StreamingData, StreamingLoader, TrainStream
from .validation import dataclass_from_section, look_up_option

__all__ = ["TrainResult", "Trainer", "TrainerState", "TrainingArguments", "check_precision", "default_num_workers", "evaluate", "fsdp_plugin", "make_accelerator", "make_loader", "parameter_groups", "simple_inferer", "to_channels_last"]


_PRECISIONS = {"no": "no", "fp32": "no", "fp16": "fp16", "bf16": "bf16"}
_SCHEDULERS = {"constant": "constant", "cosine": "cosine", "linear": "linear", "constant_with_warmup": "constant_with_warmup"}


@dataclass
class TrainingArguments:
    """The ``train`` section of a config.

    Attributes:
        output_dir: run folder: ``best/``, ``checkpoints/``, ``logs/``, ``metrics.json``.
        epochs: passes over the training set.
        max_steps: stop after this many optimizer steps (overrides ``epochs`` when set).
        batch_size: samples per process per micro-batch.
        eval_batch_size: samples per process in evaluation (default: ``batch_size``).
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        scheduler: ``"cosine"``, ``"linear"``, ``"constant"`` or ``"constant_with_warmup"``.
        warmup_steps: linear warm-up, in optimizer steps.
        grad_accum: micro-batches per optimizer step.
        precision: ``"no"``/``"fp32"``, ``"fp16"`` or ``"bf16"`` (Accelerate's autocast; ``"fp16"`` adds a gradient
            scaler and needs a GPU, ``"bf16"`` needs a CPU or a GPU that supports it).
        max_grad_norm: gradient clipping norm; ``None`` disables clipping.
        eval_every: evaluate every N optimizer steps; ``None``: at the end of each epoch.
        best_metric: validation metric that selects the best model (``"loss"`` or a task metric).
        greater_is_better: whether a larger ``best_metric`` is better.
        early_stopping_patience: stop after this many evaluations without improvement.
        checkpoint_every: save a resumable checkpoint every N optimizer steps; ``None``: at each evaluation.
        keep_checkpoints: how many resumable checkpoints to keep.
        seed: seed for weights, data order and dropout.
        num_workers: DataLoader worker processes per training process; ``None``: :func:`default_num_workers`
            (``min(4, cores // (2 × processes on the node))`` with CUDA, 0 on the CPU). On CUDA, loaders with
            workers pin memory and keep their workers between epochs.
        multiprocessing_context: how workers start (the DataLoader's own option): ``None`` (PyTorch's default,
            ``fork`` on Linux), ``"fork"``, ``"forkserver"`` or ``"spawn"``. ``forkserver``/``spawn`` start workers
            from a process without threads instead of forking one that runs NCCL/gloo, pyarrow or tqdm threads
            (a fork can copy a lock such a thread holds, and the worker then waits on it for ever), at the cost of
            pickling the dataset to each worker and importing its modules there.
        log_with: ``"tensorboard"`` or ``None``.
        progress_bar: show a tqdm bar on the main process.
        freeze_backbone: train only the task's parts (stem, head): the backbone's weights stay as they
            were loaded (``backbone.pretrained``, ``--init-from``). Its dropout and norms still run in
            training mode.
        freeze_backbone_steps: with ``freeze_backbone``, unfreeze the backbone after this many optimizer
            steps and train the whole model from then on; ``None``: frozen for the whole run.
        backbone_lr: the backbone's learning rate (default: ``lr``); e.g. ``lr / 10`` for a pretrained
            backbone under a new head. The scheduler scales it like ``lr``.
        layer_decay: layer-wise learning-rate decay (BEiT, ConvNeXt fine-tuning): the backbone's last
            block trains at ``backbone_lr`` (or ``lr``), each block below at ``layer_decay`` times the
            one above, down to its embedding; ``None`` disables it. In (0, 1].
        compile: ``torch.compile`` the backbone (only the backbone: the task's stem, head and loss stay eager;
            tensor names in checkpoints do not change). The first steps are slower while it compiles.
        compile_backend: the ``torch.compile`` backend: ``"inductor"`` (the default; needs a C compiler on the
            CPU), or ``"aot_eager"`` / ``"eager"`` to check graph capture without generated code.
        channels_last: keep the model's image (volume) weights in channels-last memory (``torch.channels_last``,
            ``channels_last_3d`` for 3-D): faster convolutions on tensor-core GPUs under bf16/fp16; pyramid
            backbones only (ConvNeXt, Swin). Same results as the default layout (tested); no gain expected on CPU.
        fsdp: shard the model with FSDP through Accelerate's ``FullyShardedDataParallelPlugin``: its keyword
            arguments (``dict(reshard_after_forward=True, cpu_offload=False, ...)``; ``fsdp_version`` defaults
            to 2, PyTorch's ``fully_shard``). GPUs only: see :func:`fsdp_plugin`. ``None``: DDP, or whatever ``accelerate launch``
            / ``accelerate config`` chose (``--use_fsdp``, ``--use_deepspeed``).
    """

    output_dir: str = "runs/default"
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup_steps: int = 0
    grad_accum: int = 1
    precision: str = "no"
    max_grad_norm: float | None = 1.0
    eval_every: int | None = None
    best_metric: str = "loss"
    greater_is_better: bool = False
    early_stopping_patience: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 2
    seed: int = 0
    num_workers: int | None = None
    multiprocessing_context: str | None = None
    log_with: str | None = "tensorboard"
    progress_bar: bool = True
    freeze_backbone: bool = False
    freeze_backbone_steps: int | None = None
    backbone_lr: float | None = None
    layer_decay: float | None = None
    compile: bool = False
    compile_backend: str = "inductor"
    channels_last: bool = False
    fsdp: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}.")
        for name in ("max_steps", "eval_batch_size", "eval_every", "early_stopping_patience", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"train.{name} must be a positive integer or None, got {value!r}.")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ConfigError(f"train.lr must be a positive number, got {self.lr!r}.")
        check_precision(self.precision)
        workers = self.num_workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
            raise ConfigError(f"train.num_workers must be a non-negative integer or None (a default for this machine), got {workers!r}.")
        if self.multiprocessing_context is not None:
            methods = {method: method for method in multiprocessing.get_all_start_methods()}  # fork, forkserver, spawn on Linux
            look_up_option(str(self.multiprocessing_context), methods, "train.multiprocessing_context (how DataLoader workers start)")
        if not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile must be true or false, got {self.compile!r}.")
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"train.channels_last must be true or false, got {self.channels_last!r}.")
        if self.compile:
            import torch._dynamo  # here, not at import: it costs a second of `import polyhead`

            backends = [*torch._dynamo.list_backends(), "aot_eager", "eager"]
            look_up_option(self.compile_backend, dict(zip(backends, backends)), "train.compile_backend")
        look_up_option(self.scheduler, _SCHEDULERS, "train.scheduler")
        if self.log_with not in (None, "tensorboard"):
            raise ConfigError(f"train.log_with must be 'tensorboard' or None, got {self.log_with!r}.")
        if self.fsdp is not None:
            if not isinstance(self.fsdp, dict):
                raise ConfigError(f"train.fsdp must be a dict of FullyShardedDataParallelPlugin options or None, got {self.fsdp!r}.")
            fields = {f.name: f.name for f in dataclasses.fields(FullyShardedDataParallelPlugin) if f.init}
            for key in self.fsdp:
                look_up_option(key, fields, "train.fsdp option (accelerate's FullyShardedDataParallelPlugin)")
        self._check_fine_tuning_options()

    def _check_fine_tuning_options(self) -> None:
        if not isinstance(self.freeze_backbone, bool):
            raise ConfigError(f"train.freeze_backbone must be true or false, got {self.freeze_backbone!r}.")
        steps = self.freeze_backbone_steps
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ConfigError(f"train.freeze_backbone_steps must be a positive integer or None, got {steps!r}.")
            if not self.freeze_backbone:
                raise ConfigError("train.freeze_backbone_steps needs train.freeze_backbone=True (it says when the frozen backbone starts training).")
        lr = self.backbone_lr
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0):
            raise ConfigError(f"train.backbone_lr must be a positive number or None (default: train.lr), got {lr!r}.")
        decay = self.layer_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1):
            raise ConfigError(f"train.layer_decay must be a number in (0, 1] or None, got {decay!r}.")

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> "TrainingArguments":
        """Build from a config's ``train`` section; unknown keys get a did-you-mean."""
        return dataclass_from_section(cls, section, "a training option")


@dataclass
class TrainerState:
    """Progress that a checkpoint restores (written as ``trainer_state.json``: no pickle)."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns."""

    best_dir: Path
    best_metric: float | None
    best_step: int | None
    global_step: int
    history: list[dict[str, Any]]
    stopped_early: bool


def check_precision(precision: str) -> str:
    """Accelerate's name for ``precision`` (``"no"``, ``"fp16"`` or ``"bf16"``), after checking this machine can train in it.

    Raises:
        ConfigError: fp16 without a GPU (Accelerate would silently train in fp32 on the CPU), or bf16 on a GPU
            without bf16 support (pre-Ampere); the message names the precision to use instead.
    """
    name = _PRECISIONS[look_up_option(precision, _PRECISIONS, "train.precision")]
    if name == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.precision='fp16' needs a GPU; on the CPU use 'bf16' or 'no'.")
    if name == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.precision='bf16' is not supported by {torch.cuda.get_device_name()}; use 'fp16' (with a gradient scaler) or 'no'.")
    return name


def default_num_workers() -> int:
    """DataLoader workers per training process when ``train.num_workers`` is ``None``.

    With CUDA: ``min(4, cores // (2 × processes on this node))``, at least 1: half the cores this process may use
    decode and augment for the GPU, the other half stay with the training processes (``LOCAL_WORLD_SIZE``, set by
    ``accelerate launch``/``torchrun``, counts the processes sharing the node). On the CPU: 0, because the model's
    own kernels already use every core (intra-op threads), so worker processes only compete with them, and
    polyhead's datasets are in-memory tensors whose ``__getitem__`` is a slice; ``benchmarks/dataloading.py``
    measures the ratio per task.
    """
    if not torch.cuda.is_available():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(4, cores // (2 * local_processes)))


class _SeedWorker:
    """``worker_init_fn``: reseeds ``random``, NumPy and torch in each DataLoader worker from torch's per-worker
    seed (``base_seed + worker_id``, ``base_seed`` drawn from the loader's seeded generator) and the process index.

    PyTorch already seeds the three per worker, from ``base_seed``; but Accelerate hands every rank the same
    generator, so worker ``k`` of every rank would draw the same augmentations. With the rank mixed in they differ
    across workers and ranks, and repeat across runs with the same ``train.seed``.
    """

    def __init__(self, process_index: int) -> None:
        self.process_index = process_index

    def __call__(self, worker_id: int) -> None:
        seed = (torch.initial_seed() + 1_000_003 * self.process_index) % 2**63
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)


def fsdp_plugin(options: dict[str, Any]) -> FullyShardedDataParallelPlugin:
    """Accelerate's FSDP plugin from ``train.fsdp`` (``fsdp_version`` 2 unless given).

    Raises:
        ConfigError: without CUDA. PyTorch's ``fully_shard`` itself runs on CPU processes (gloo), but polyhead
            trains through Accelerate, whose ``Accelerator(cpu=True)`` ignores the plugin: with two gloo processes
            (accelerate 1.15, torch 2.9) ``distributed_type`` stays ``MULTI_CPU`` and ``prepare`` returns a
            ``DistributedDataParallel`` model, i.e. a run that would claim to shard and would not.
    """
    if not torch.cuda.is_available():
        raise ConfigError("train.fsdp needs GPUs: on the CPU, Accelerate ignores the FSDP plugin and would train with DDP "
                          "(every process holding the whole model); drop train.fsdp to train with DDP on CPU processes.")
    return FullyShardedDataParallelPlugin(**{"fsdp_version": 2, **options})


def make_accelerator(
    *,
    grad_accum: int = 1,
    precision: str = "no",
    log_with: str | None = None,
    project_dir: Path | None = None,
    fsdp: dict[str, Any] | None = None,
) -> Accelerator:
    """The Accelerator every polyhead entry point uses.

    ``cpu=True`` when no GPU is present, so ``accelerate launch --num_processes N``
    gives one gloo process group instead of N processes that each train alone.
    ``fsdp``: ``train.fsdp`` (:func:`fsdp_plugin`).
    """
    precision = check_precision(precision)
    plugin = None if fsdp is None else fsdp_plugin(fsdp)
    project = ProjectConfiguration(
        project_dir=str(project_dir or "."), logging_dir=str(Path(project_dir or ".") / "logs")
    )
    try:
        return Accelerator(
            cpu=not torch.cuda.is_available(),
            gradient_accumulation_steps=grad_accum,
            mixed_precision=precision,
            fsdp_plugin=plugin,
            log_with=log_with,
            project_config=project,
            # non_blocking: host-to-GPU copies of pinned batches overlap the previous step
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=torch.cuda.is_available()),
        )
    except ValueError as err:
        if "already been initialized" not in str(err):
            raise
        raise ConfigError(
            f"Accelerate fixes the precision once per process, and this process already used another one; "
            f"run train.precision={precision!r} in a new process (e.g. the `polyhead train` command)."
        ) from None


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    collate_fn: Callable | None,
    num_workers: int | None = 0,
    seed: int = 0,
    batch_sampler: Callable[..., Any] | None = None,
    num_processes: int = 1,
    process_index: int = 0,
    multiprocessing_context: str | None = None,
) -> DataLoader:
    """The DataLoader every polyhead loop uses: seeded shuffling, or the data's own batch sampler.

    Workers (``num_workers``; ``None``: :func:`default_num_workers`) run ``__getitem__`` (decoding, augmentation)
    and ``collate_fn``; each is seeded from ``seed``, its worker id and ``process_index`` (:class:`_SeedWorker`),
    and started by ``multiprocessing_context`` (``train.multiprocessing_context``). With CUDA, batches are pinned
    and workers persist between epochs.
    """
    workers = default_num_workers() if num_workers is None else num_workers
    cuda = torch.cuda.is_available()
    options: dict[str, Any] = {
        "collate_fn": collate_fn,
        "num_workers": workers,
        "generator": torch.Generator().manual_seed(seed),  # the shuffle order and the workers' base seed
        "pin_memory": cuda,
    }
    if workers:
        options.update(worker_init_fn=_SeedWorker(process_index), persistent_workers=cuda, multiprocessing_context=multiprocessing_context)
    if batch_sampler is not None:
        sampler = batch_sampler(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, num_processes=num_processes)
        return DataLoader(dataset, batch_sampler=sampler, **options)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **options)


def simple_inferer(model: Any, batch: Any) -> Any:
    """The default inferer: the network on the batch as it is (MONAI's ``SimpleInferer``)."""
    return model(**batch)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: DataLoader, *, metrics: Any, accelerator: Accelerator, inferer: Callable[[Any, Any], Any] = simple_inferer
) -> dict[str, float]:
    """Mean per-sample loss and the task's metrics over ``loader``.

    ``inferer(model, batch)`` runs the network (the task's: a sliding window for whole
    volumes). Samples are gathered across processes with ``gather_for_metrics``, which
    drops the duplicates a distributed sampler adds to fill the last batch.
    """
    was_training = model.training
    model.eval()
    if metrics is not None:
        metrics.reset()
    loss_sum, count = 0.0, 0
    for batch in loader:
        outputs = inferer(model, batch)
        if outputs.loss is not None:  # an ONNX-backed model returns no loss
            batch_size = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
            losses = accelerator.gather_for_metrics(outputs.loss.detach().float().reshape(1).expand(batch_size))
            loss_sum += float(losses.sum())
            count += losses.numel()
        if metrics is not None:
            metrics.update(accelerator.gather_for_metrics(metrics.select(outputs, batch)))
    model.train(was_training)
    result = {"loss": loss_sum / count} if count else {}
    if metrics is not None:
        result.update(metrics.compute())
    return result


class Trainer:
    """Train any polyhead model whose ``forward(**batch)`` returns an output with ``.loss``.

    Args:
        model: the model (a ``PreTrainedModel``).
        args: :class:`TrainingArguments`.
        train_dataset: map-style dataset of samples, or :class:`~polyhead.streaming.StreamingData` to train from a
            stream (``data.streaming=True``; needs ``train.max_steps``: a stream has no length to count epochs by).
        eval_dataset: validation samples.
        metrics: the task's metrics, or ``None`` for loss only.
        processor: saved next to the best model.
        collate_fn: batches samples (default: torch's ``default_collate``).
        callbacks: called as ``callback(trainer)`` after every optimizer step.
        extra_files: JSON-serialisable content written into the best model dir by name.
        inferer: how evaluation runs the model on a batch (the task's; default ``model(**batch)``).
        batch_sampler: a factory of batch samplers (``TaskData.batch_sampler``: multi-task batches of
            one task each), or ``None`` for shuffled / sequential batches of ``batch_size``.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        args: TrainingArguments,
        train_dataset: Dataset | StreamingData,
        eval_dataset: Dataset,
        metrics: Any = None,
        processor: Any = None,
        collate_fn: Callable | None = None,
        callbacks: Sequence[Callable[["Trainer"], None]] = (),
        extra_files: dict[str, Any] | None = None,
        inferer: Callable[[Any, Any], Any] = simple_inferer,
        batch_sampler: Callable[..., Any] | None = None,
    ) -> None:
        self.args = args
        self.output_dir = check_writable_folder(args.output_dir, kind="run", what="train.output_dir")
        self.streaming = isinstance(train_dataset, StreamingData)
        if self.streaming:
            if args.max_steps is None:
                raise ConfigError(NEEDS_MAX_STEPS)
            if batch_sampler is not None:
                raise ConfigError("data.streaming=True cannot batch with the data's own batch sampler (multi-task batches); "
                                  "drop data.streaming.")
            if len(eval_dataset) == 0:
                raise DataError("Empty dataset: 0 validation samples.")
        elif len(train_dataset) == 0 or len(eval_dataset) == 0:
            raise DataError(f"Empty dataset: {len(train_dataset)} training and {len(eval_dataset)} validation samples.")
        elif args.batch_size > len(train_dataset):
            raise ConfigError(
                f"train.batch_size ({args.batch_size}) is larger than the training set ({len(train_dataset)} samples)."
            )
        self.accelerator = make_accelerator(
            grad_accum=args.grad_accum, precision=args.precision, log_with=args.log_with, project_dir=self.output_dir, fsdp=args.fsdp
        )
        if self.accelerator.is_main_process:
            mark_folder(self.output_dir, "run")
        self.accelerator.wait_for_everyone()
        set_seed(args.seed)
        available = ["loss"] + (metrics.names() if metrics is not None else [])
        if args.best_metric not in available:
            raise ConfigError(f"train.best_metric {args.best_metric!r} is not computed; available: {sorted(available)}.")
        self.metrics = metrics
        self.processor = processor
        self.callbacks = list(callbacks)
        self.extra_files = dict(extra_files or {})
        self.inferer = inferer
        self.state = TrainerState()
        self.should_stop = False

        ranks = {"num_processes": self.accelerator.num_processes, "process_index": self.accelerator.process_index}
        self.stream_layout = None
        if not self.streaming:
            train_loader = make_loader(train_dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate_fn,
                                       num_workers=args.num_workers, seed=args.seed, batch_sampler=batch_sampler,
                                       multiprocessing_context=args.multiprocessing_context, **ranks)
        eval_loader = make_loader(eval_dataset, batch_size=args.eval_batch_size or args.batch_size, shuffle=False, collate_fn=collate_fn,
                                  num_workers=args.num_workers, seed=args.seed, batch_sampler=batch_sampler,
                                  multiprocessing_context=args.multiprocessing_context, **ranks)
        self.backbone_frozen = args.freeze_backbone
        if args.freeze_backbone and args.freeze_backbone_steps is None:  # frozen for good: no gradients at all
            _backbone_of(model, "train.freeze_backbone").requires_grad_(False)
        self._backbone_parameters = list(_backbone_of(model, "train.freeze_backbone").parameters()) if args.freeze_backbone else []
        if args.channels_last:
            to_channels_last(model)
        if args.compile:  # in place (nn.Module.compile): the state dict keeps its names, save_pretrained is unchanged
            _backbone_of(model, "train.compile").compile(backend=args.compile_backend)
        optimizer = torch.optim.AdamW(parameter_groups(model, args), lr=args.lr, weight_decay=args.weight_decay)
        if self.streaming:  # sharded by the stream itself (polyhead.streaming), not by accelerator.prepare
            self.model, self.optimizer, self.eval_loader = self.accelerator.prepare(model, optimizer, eval_loader)
            workers = default_num_workers() if args.num_workers is None else args.num_workers
            stream = TrainStream(train_dataset.source, train_dataset.options, seed=args.seed, num_workers=workers, **ranks)
            self.stream_layout = stream.layout
            self.train_loader = StreamingLoader(stream, self.accelerator, batch_size=args.batch_size, collate_fn=collate_fn,
                                                num_workers=workers, worker_init_fn=_SeedWorker(ranks["process_index"]),
                                                multiprocessing_context=args.multiprocessing_context)
            self.steps_per_epoch = None
        else:
            self.model, self.optimizer, self.train_loader, self.eval_loader = self.accelerator.prepare(
                model, optimizer, train_loader, eval_loader
            )
            self.steps_per_epoch = math.ceil(len(self.train_loader) / args.grad_accum)
        self.total_steps = args.max_steps or self.steps_per_epoch * args.epochs
        # Stepped by hand on optimizer steps (not prepared: accelerate would step it once per process).
        self.scheduler = get_scheduler(
            _SCHEDULERS[args.scheduler], self.optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=self.total_steps
        )
        self._stop_signal: int | None = None

    # -- checkpoints ---------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.output_dir / CHECKPOINTS_DIR

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith("step-")]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def save_checkpoint(self) -> Path:
        """Save a resumable checkpoint as ``checkpoints/step-N`` and prune old ones.

        Every rank writes into ``checkpoints/.tmp-step-N``; the main process records a
        SHA-256 of every file in ``trainer_state.json`` and renames the folder once all are
        done, so a crash mid-save leaves the previous checkpoint intact and a damaged file is
        found on resume. Model weights are safetensors; trainer and scheduler state are JSON.
        """
        acc = self.accelerator
        name = f"step-{self.state.global_step:08d}"
        target, tmp = self.checkpoints_dir / name, self.checkpoints_dir / f".tmp-{name}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "trainer": self.state.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "num_processes": acc.num_processes,
                "stream": self.stream_layout,
                "checksums": {str(f.relative_to(tmp)): _sha256(f) for f in sorted(tmp.rglob("*")) if f.is_file()},
            }
            (tmp / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2, default=float))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            for old in self.checkpoints()[: -self.args.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return target

    def _verify(self, path: Path) -> dict[str, Any]:
        """The checkpoint's trainer state, after checking every file it lists is present and unchanged."""
        state = json.loads((path / TRAINER_STATE_NAME).read_text())
        ranks = int(state.get("num_processes", self.accelerator.num_processes))
        if ranks != self.accelerator.num_processes:
            raise DataError(f"it was written by {ranks} process(es), this run has {self.accelerator.num_processes}")
        if state.get("stream") != self.stream_layout:  # the stream's order depends on its workers and shards
            raise DataError(f"train.num_workers / data.num_shards differ: its stream had {state.get('stream') or 'none (map-style data)'}, "
                            f"this run's has {self.stream_layout or 'none (map-style data)'}; resuming would train some rows twice")
        required = [f"random_states_{rank}.pkl" for rank in range(ranks)]
        missing = [name for name in required if not (path / name).is_file()]
        if missing:
            raise DataError(f"{', '.join(missing)} missing (the random states: without them the run would diverge)")
        for name, digest in state.get("checksums", {}).items():
            file = path / name
            if not file.is_file():
                raise DataError(f"{name} is missing")
            if _sha256(file) != digest:
                raise DataError(f"{name} does not match the checksum recorded when it was saved")
        return state

    def _load_one(self, path: Path) -> None:
        state = self._verify(path)
        self.accelerator.load_state(str(path))
        self.scheduler.load_state_dict(state["scheduler"])
        self.state.load_state_dict(state["trainer"])

    def load_checkpoint(self, path: Path | None = None) -> Path:
        """Restore from ``path``, or from the newest checkpoint that loads.

        A checkpoint with a missing, truncated or altered file (weights, optimizer, random
        states: each is checked against the SHA-256 recorded at save time) is skipped with a
        logged warning and the previous one is used; if none loads this is an error, never a
        silent fresh start.
        """
        if path is not None:
            self._load_one(Path(path))
            return Path(path)
        found = self.checkpoints()
        if not found:
            raise DataError(f"--resume: no checkpoint found in {self.checkpoints_dir}.")
        errors = []
        for candidate in reversed(found):
            try:
                self._load_one(candidate)
                return candidate
            except Exception as err:  # a truncated file surfaces as many exception types
                errors.append(f"{candidate.name}: {type(err).__name__}: {str(err)[:200]}")
                logger.warning("checkpoint %s cannot be used (%s); trying an older one.", candidate, str(err)[:300])
        raise DataError(f"--resume: no checkpoint in {self.checkpoints_dir} could be loaded: " + "; ".join(errors))

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, loader: DataLoader | None = None) -> dict[str, float]:
        """Mean loss and task metrics over ``loader`` (default: the validation set), gathered across ranks."""
        loader = self.eval_loader if loader is None else self.accelerator.prepare(loader)
        return evaluate(self.model, loader, metrics=self.metrics, accelerator=self.accelerator, inferer=self.inferer)

    def _is_improvement(self, value: float) -> bool:
        best = self.state.best_metric
        if best is None:
            return True
        return value > best if self.args.greater_is_better else value < best

    def _postfix(self, loss_value: float) -> dict[str, str]:
        """The progress bar's postfix: the training loss and the latest validation ``best_metric``."""
        postfix = {"loss": f"{loss_value:.4f}"}
        if self.state.history:
            name = self.args.best_metric
            postfix[f"val_{name}"] = f"{self.state.history[-1].get('eval_' + name, float('nan')):.4f}"
        return postfix

    def _evaluate_and_select(self) -> dict[str, float]:
        results = self.evaluate()
        if self.args.best_metric not in results:
            raise ConfigError(
                f"train.best_metric {self.args.best_metric!r} is not computed; available: {sorted(results)}."
            )
        value = results[self.args.best_metric]
        record = {"step": self.state.global_step, "epoch": self.state.epoch, **{f"eval_{k}": v for k, v in results.items()}}
        self.state.history.append(record)
        self.accelerator.log({f"eval/{k}": v for k, v in results.items()}, step=self.state.global_step)
        if self._is_improvement(value):
            self.state.best_metric = value
            self.state.best_step = self.state.global_step
            self.state.evals_without_improvement = 0
            self._save_best(results)
        else:
            self.state.evals_without_improvement += 1
            patience = self.args.early_stopping_patience
            if patience is not None and self.state.evals_without_improvement >= patience:
                self.should_stop = True
        return results

    def _save_best(self, results: dict[str, float]) -> None:
        self.accelerator.wait_for_everyone()
        state_dict = None
        if self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            # the shards gathered into whole tensors: a collective, so every rank calls it
            state_dict = self.accelerator.get_state_dict(self.model)
        if self.accelerator.is_main_process:
            model = self.accelerator.unwrap_model(self.model)
            files = {EVAL_RESULTS_NAME: {"step": self.state.global_step, "validation": results}, **self.extra_files}
            save_model_dir(self.output_dir / BEST_DIR, model, self.processor, files, state_dict=state_dict)
        self.accelerator.wait_for_everyone()

    # -- training ---------------------------------------------------------------------
    def train(self, resume: bool | str | Path = False) -> TrainResult:
        """Run the loop; ``resume=True`` continues from the latest checkpoint (or a given path)."""
        acc = self.accelerator
        with run_lock(self.output_dir) if acc.is_main_process else contextlib.nullcontext():
            return self._train(resume)

    def _train(self, resume: bool | str | Path) -> TrainResult:
        args, acc = self.args, self.accelerator
        if resume:
            self.load_checkpoint(None if resume is True else Path(resume))
            if self.state.global_step >= self.total_steps:
                logger.warning(
                    "the checkpoint is at step %d, at or beyond this run's last step (%d): nothing is left to train; "
                    "raise train.max_steps or train.epochs to continue.", self.state.global_step, self.total_steps,
                )
        if args.freeze_backbone_steps is not None:  # a resumed run past the unfreezing step trains the whole model
            self.backbone_frozen = self.state.global_step < args.freeze_backbone_steps
        if args.log_with:
            acc.init_trackers("polyhead", config={k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))})
        bar = tqdm(
            total=self.total_steps, initial=self.state.global_step, desc="train",
            disable=not (args.progress_bar and acc.is_local_main_process), dynamic_ncols=True,
        )
        self.model.train()
        last_checkpoint_step = self.state.global_step
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            last_checkpoint_step = self._loop(bar, last_checkpoint_step)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
        if self._stop_signal is not None:
            if last_checkpoint_step != self.state.global_step:
                self.save_checkpoint()
            bar.close()
            self._finish_trackers()
            raise SystemExit(128 + self._stop_signal)
        if not self.state.history or self.state.history[-1]["step"] != self.state.global_step:
            self._evaluate_and_select()
        if last_checkpoint_step != self.state.global_step:
            self.save_checkpoint()
        bar.close()
        self._finish_trackers()
        return TrainResult(
            best_dir=self.output_dir / BEST_DIR,
            best_metric=self.state.best_metric,
            best_step=self.state.best_step,
            global_step=self.state.global_step,
            history=list(self.state.history),
            stopped_early=self.should_stop,
        )

    def _finish_trackers(self) -> None:
        # Not accelerator.end_training(): it also destroys the process group, and the
        # caller still evaluates the best model on the test split across ranks.
        for tracker in self.accelerator.trackers:
            tracker.finish()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """Finish the current step, save a checkpoint, then exit (preemption)."""
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        """Whether any rank got SIGTERM; all ranks agree, so they checkpoint the same step."""
        if self.accelerator.num_processes == 1:
            return self._stop_signal is not None
        flag = torch.tensor([0 if self._stop_signal is None else self._stop_signal], device=self.accelerator.device)
        agreed = int(self.accelerator.reduce(flag, reduction="sum").item())
        if agreed and self._stop_signal is None:
            self._stop_signal = signal.SIGTERM
        return agreed > 0

    def _loop(self, bar: Any, last_checkpoint_step: int) -> int:
        args, acc = self.args, self.accelerator
        while self.state.global_step < self.total_steps and not self.should_stop and self._stop_signal is None:
            self.train_loader.set_epoch(self.state.epoch)
            for batch, real in self._epoch_batches():
                with acc.accumulate(self.model):
                    loss = self.model(**batch).loss
                    if not real:  # a stream's repeated batch on a process whose share ended: it counts zero
                        loss = loss * 0.0
                    acc.backward(loss)
                    if self.backbone_frozen:  # frozen until freeze_backbone_steps: its gradients are dropped
                        for parameter in self._backbone_parameters:
                            parameter.grad = None
                    if acc.sync_gradients and args.max_grad_norm is not None:
                        acc.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                self.state.batches_in_epoch += 1
                if not acc.sync_gradients:
                    continue
                self.scheduler.step()
                self.state.global_step += 1
                if self.backbone_frozen and args.freeze_backbone_steps is not None and self.state.global_step >= args.freeze_backbone_steps:
                    self.backbone_frozen = False
                    logger.info("step %d: the backbone is unfrozen (train.freeze_backbone_steps).", self.state.global_step)
                # the mean over processes of the real batches' losses (a stream's repeated batch, counted zero, is left out)
                summed = acc.reduce(torch.stack([loss.detach().float(), torch.tensor(float(real), device=loss.device)]), reduction="sum")
                loss_value = float(summed[0] / summed[1].clamp(min=1.0))
                logged = {"train/loss": loss_value, "train/lr": self.scheduler.get_last_lr()[0]}
                if isinstance(batch.get("task"), str):  # a multi-task step trains one task: log it under its name too
                    logged[f"train/{batch['task']}/loss"] = loss_value
                acc.log(logged, step=self.state.global_step)
                bar.update(1)
                bar.set_postfix(self._postfix(loss_value))
                evaluated = False
                if args.eval_every and self.state.global_step % args.eval_every == 0:
                    self._evaluate_and_select()
                    evaluated = True
                if args.checkpoint_every and self.state.global_step % args.checkpoint_every == 0 or (evaluated and not args.checkpoint_every):
                    self.save_checkpoint()
                    last_checkpoint_step = self.state.global_step
                for callback in self.callbacks:
                    callback(self)
                if self.should_stop or self._stop_requested() or self.state.global_step >= self.total_steps:
                    break
            else:  # the epoch ran to its end
                if not self.state.batches_in_epoch:
                    raise DataError(f"The training data gave no batch in epoch {self.state.epoch}.")
                self.state.epoch += 1
                self.state.batches_in_epoch = 0
                if not args.eval_every:
                    self._evaluate_and_select()
                    if not args.checkpoint_every:
                        self.save_checkpoint()
                        last_checkpoint_step = self.state.global_step
                continue
            break
        return last_checkpoint_step

    def _epoch_batches(self) -> Any:
        """``(batch, real)`` pairs of the current epoch after the ``batches_in_epoch`` already trained on (resume)."""
        skip = self.state.batches_in_epoch
        if self.streaming:  # the same seed and epoch give the same stream: read it again, drop what was trained
            return self.train_loader.batches(skip=skip)
        loader = self.accelerator.skip_first_batches(self.train_loader, skip) if skip else self.train_loader
        return ((batch, True) for batch in loader)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Put a pyramid-backbone model's 4-D (5-D for volumes) weights in channels-last memory, in place (``train.channels_last``).

    Convolutions then run in NHWC (NDHWC), which tensor-core GPUs prefer under bf16/fp16; inputs need no change (a
    convolution with channels-last weights gives channels-last outputs). Values and tensor names are unchanged.
    """
    from polyhead.backbones import PyramidBackbone

    backbone = _backbone_of(model, "train.channels_last")
    if not isinstance(backbone, PyramidBackbone):
        raise ConfigError(f"train.channels_last applies to image and volume (pyramid) backbones such as convnext and swin; "
                          f"{type(backbone).__name__} is a {backbone.kind} backbone. Remove train.channels_last.")
    return model.to(memory_format=torch.channels_last if backbone.spatial_dims == 2 else torch.channels_last_3d)


def _backbone_of(model: torch.nn.Module, option: str) -> torch.nn.Module:
    """The polyhead backbone of a task model; a :class:`ConfigError` naming ``option`` for a model without one."""
    from polyhead.backbones import Backbone

    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, Backbone):
        raise ConfigError(f"{option} needs a polyhead task model (a backbone and a task adapter); {type(model).__name__} has no polyhead backbone.")
    return backbone


def parameter_groups(model: torch.nn.Module, args: TrainingArguments) -> list[Any]:
    """AdamW's parameters: all in one group, or, with ``backbone_lr`` / ``layer_decay``, the task's parts at
    ``lr`` first, then the backbone's by learning rate (``backbone_lr or lr`` times ``layer_decay ** (top - depth)``,
    depths from :meth:`~polyhead.backbones.Backbone.parameter_depths`)."""
    if args.backbone_lr is None and args.layer_decay is None:
        return list(model.parameters())
    backbone = _backbone_of(model, "train.backbone_lr" if args.layer_decay is None else "train.layer_decay")
    base = args.lr if args.backbone_lr is None else float(args.backbone_lr)
    scales = dict.fromkeys((name for name, _ in backbone.named_parameters()), 1.0)
    if args.layer_decay is not None:
        try:
            depths = backbone.parameter_depths()
        except NotImplementedError:
            raise ConfigError(f"train.layer_decay needs the backbone's layer depths; the {type(backbone).__name__} backbone "
                              "does not give them (Backbone.parameter_depths).") from None
        top = max(depths.values(), default=0)
        scales = {name: float(args.layer_decay) ** (top - depth) for name, depth in depths.items()}
    own = {id(p) for p in backbone.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in own], "lr": args.lr}]
    by_lr: dict[float, list] = {}
    for name, parameter in backbone.named_parameters():
        by_lr.setdefault(base * scales[name], []).append(parameter)
    groups += [{"params": by_lr[lr], "lr": lr} for lr in sorted(by_lr, reverse=True)]
    return [group for group in groups if group["params"]]


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
