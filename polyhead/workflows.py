"""What the CLI runs: train from a config, evaluate a model dir, predict from a file.

These functions are task-agnostic: they reach the domain only through the
:class:`~polyhead.tasks.Task` registered for the config's ``model.task``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from torch.utils.data import DataLoader

from . import registry
from .cards import write_card
from .config import SECTIONS, load_config
from .errors import ConfigError, ModelLoadError
from .loading import AutoModel, Initialisation, initialise_from, load_model
from .pretrained import load_pretrained_backbone
from .model_dir import (
    METRICS_NAME,
    TRAINING_CONFIG_NAME,
    atomic_write_text,
    check_model_dir,
    check_writable_folder,
    mark_folder,
    read_training_config,
    remove_unused_run_folder,
    run_lock,
    task_of,
    write_folder,
)
from .streaming import NEEDS_MAX_STEPS, StreamingData, split_streaming_options
from .training import Trainer, TrainingArguments, evaluate, make_accelerator, make_loader

__all__ = ["RunResult", "train", "fit", "config_section", "model_section", "training_section", "evaluate_model_dir", "eval_loader", "finish_run", "config_sections", "initialisation_of", "training_arguments"]


@dataclass
class RunResult:
    """The outcome of :func:`train`."""

    best_dir: Path
    metrics: dict[str, Any]


def config_section(cfg: Config, name: str) -> dict[str, Any]:
    """A config section as a plain dict (``{}`` when absent)."""
    value = cfg.get(name) or {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def model_section(cfg: Config) -> dict[str, Any]:
    """The ``model`` section without its ``task`` key: what the task's config class is built from."""
    return {k: v for k, v in config_section(cfg, "model").items() if k != "task"}


def training_section(cfg: Config) -> dict[str, Any]:
    """The ``train`` section without the ``init_*`` keys (those say where weights start, see :func:`initialisation_of`)."""
    return {k: v for k, v in config_section(cfg, "train").items() if k not in _INIT_KEYS}


def _as_data(value: Any) -> Any:
    """A JSON value, or a note naming the Python object passed in its place (a DataFrame is no data file)."""
    shape = getattr(value, "shape", None)
    return f"<{type(value).__name__}{' ' + 'x'.join(map(str, shape)) if shape else ''} passed in Python: not saved>"


def config_sections(cfg: Config) -> dict[str, dict[str, Any]]:
    """The resolved config as plain JSON data, section by section (what ``training_config.json`` holds).

    An object passed in Python (``cfg_options={"data.source": dataframe}``) is recorded as a note, not as data.
    """
    return json.loads(json.dumps({name: config_section(cfg, name) for name in SECTIONS if name in cfg}, default=_as_data))


def _is_main_process() -> bool:
    """Rank 0 (or no launcher), before any Accelerator exists."""
    return os.environ.get("RANK", "0") == "0"


def finish_run(output_dir: Path, best_dir: Path, metrics: dict[str, Any], cfg: Config | None) -> None:
    """The end of every run: ``metrics.json`` in the run folder, and in ``best/`` beside the
    resolved config (``training_config.json``, data only) and the model card."""
    text = json.dumps(metrics, indent=2, default=str) + "\n"
    atomic_write_text(Path(output_dir) / METRICS_NAME, text)
    with write_folder(best_dir, kind="model", replace=False, what="model folder") as staging:
        atomic_write_text(staging / METRICS_NAME, text)
        if cfg is not None:
            atomic_write_text(staging / TRAINING_CONFIG_NAME, json.dumps(config_sections(cfg), indent=2) + "\n")
    write_card(best_dir, model_id=str(best_dir))  # README.md: the model card, ready to push


def train(
    config_or_task: str | Path | Config,
    *,
    cfg_options: Sequence[str] | Mapping[str, Any] = (),
    resume: bool = False,
    callbacks: Sequence[Callable[[Trainer], None]] = (),
    init_from: str | Path | None = None,
    init_modules: str | Sequence[str] | None = None,
    init_ignore_mismatched: bool | None = None,
) -> RunResult:
    """Train the model a config describes, evaluate it on the test split beside the baselines.

    Writes ``<output_dir>/best`` (model, processor, ``metrics.json``,
    ``training_config.json``, the model card ``README.md``) and ``<output_dir>/metrics.json``.
    ``output_dir`` must be new, empty or a polyhead run folder; a second run into the same
    folder while one is running fails with an :class:`~polyhead.errors.OutputError`.

    Args:
        config_or_task: a config file, a ``training_config.json`` a run wrote, a packaged
            recipe or a task name.
        cfg_options: overrides (``{"train.epochs": 3}`` or ``["train.epochs=3"]``).
        resume: continue from the latest checkpoint in ``<output_dir>/checkpoints``.
        callbacks: called as ``callback(trainer)`` after every optimizer step.
        init_from: start from the weights of this polyhead model (folder or Hub repo id)
            instead of random ones (same as ``train.init_from``).
        init_modules: which parts to copy: ``"backbone"``, ``"adapter"``, ``"head"``,
            ``"stem"`` (comma-separated or a list; default: all).
        init_ignore_mismatched: skip tensors of another shape instead of failing.
    """
    cfg = config_or_task if isinstance(config_or_task, Config) else load_config(config_or_task, cfg_options)
    overrides = {"init_from": init_from, "init_modules": init_modules, "init_ignore_mismatched": init_ignore_mismatched}
    for key, value in overrides.items():
        if value is not None:
            cfg.merge_from_dict({f"train.{key}": str(value) if isinstance(value, Path) else value})
    init = initialisation_of(cfg)
    output_dir = check_writable_folder(config_section(cfg, "train").get("output_dir", TrainingArguments.output_dir), kind="run", what="train.output_dir")
    task = registry.get(registry.TASKS, cfg.model.task)()
    if not _is_main_process():
        return task.train(cfg, resume=resume, callbacks=tuple(callbacks), init=init)
    created = not output_dir.exists()
    mark_folder(output_dir, "run")
    try:
        with run_lock(output_dir):
            return task.train(cfg, resume=resume, callbacks=tuple(callbacks), init=init)
    except BaseException:
        if created:  # a bad option or bad data, found before anything was written: leave no empty run folder behind
            remove_unused_run_folder(output_dir)
        raise


_INIT_KEYS = ("init_from", "init_modules", "init_ignore_mismatched")


def initialisation_of(cfg: Config) -> Initialisation | None:
    """The config's ``train.init_from`` / ``init_modules`` / ``init_ignore_mismatched``, checked."""
    section = config_section(cfg, "train")
    if section.get("init_from") is None:
        for key in _INIT_KEYS[1:]:
            if section.get(key) is not None:
                raise ConfigError(f"train.{key} needs train.init_from (the model to start from).")
        return None
    return Initialisation(
        source=section["init_from"],
        modules=section.get("init_modules") or ("backbone", "adapter"),
        ignore_mismatched=bool(section.get("init_ignore_mismatched") or False),
    )


def training_arguments(task: Any, cfg: Config, data: Any = None) -> TrainingArguments:
    """The ``train`` section as :class:`TrainingArguments`, with the task's defaults (before any data is read)."""
    section = training_section(cfg)
    section.setdefault("best_metric", task.best_metric)
    section.setdefault("greater_is_better", task.greater_is_better)
    return TrainingArguments.from_section(section)


def eval_loader(data: Any, split: str, *, batch_size: int, accelerator: Any) -> DataLoader:
    """A prepared loader over ``data.<split>`` (the data's own evaluation batch size wins: whole volumes go one by one)."""
    loader = make_loader(getattr(data, split), batch_size=data.eval_batch_size or batch_size, shuffle=False, collate_fn=data.collate_fn,
                         batch_sampler=data.batch_sampler, num_processes=accelerator.num_processes)
    return accelerator.prepare(loader)


def fit(task: Any, cfg: Config, *, resume: bool = False, callbacks: Sequence[Callable[[Trainer], None]] = (), init: Initialisation | None = None) -> RunResult:
    """The supervised path every task takes by default: the generic Trainer, then the test split."""
    streaming, data_section = split_streaming_options(config_section(cfg, "data"))
    args = training_arguments(task, cfg)  # bad options fail before any data is read
    if streaming is not None and args.max_steps is None:
        raise ConfigError(NEEDS_MAX_STEPS)

    config = task.build_config(model_section(cfg), data_section)
    data = task.build_data(data_section, config)  # may fill data-derived fields (freq)
    train_dataset = data.train
    if streaming is not None:
        if data.train_stream is None:
            raise ConfigError(f"The {task.name} task cannot train from a stream yet (data.streaming=True); "
                              "drop data.streaming to train from its map-style data.")
        train_dataset = StreamingData(data.train_stream, streaming)
    if data.eval_batch_size is not None:
        args.eval_batch_size = data.eval_batch_size
    processor = task.build_processor(config)
    torch.manual_seed(args.seed)
    model = task.build_model(config)
    pretrained_report = load_pretrained_backbone(model, resume=resume)  # backbone.pretrained: timm, torchvision, MONAI, ... weights
    init_report = None
    if init is not None:  # a resumed run's checkpoint already holds the weights it started from
        init_report = initialise_from(model, init) if not resume else {"source": init.source, "modules": list(init.modules)}
    started = time.perf_counter()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=data.validation,
        metrics=task.build_metrics(config),
        processor=processor,
        collate_fn=data.collate_fn,
        callbacks=callbacks,
        inferer=task.inferer(config),
        batch_sampler=data.batch_sampler,
    )
    result = trainer.train(resume=resume)
    train_seconds = time.perf_counter() - started

    best = AutoModel.from_pretrained(result.best_dir)
    acc = trainer.accelerator
    test_metrics = task.test_metrics(acc.prepare(best), data, config, accelerator=acc, batch_size=args.eval_batch_size or args.batch_size)
    metrics = {
        "task": task.name,
        "best_step": result.best_step,
        "global_step": result.global_step,
        "stopped_early": result.stopped_early,
        "train_seconds": round(train_seconds, 2),
        "num_processes": acc.num_processes,
        "num_parameters": sum(p.numel() for p in best.parameters()),
        "init": init_report,
        "pretrained": pretrained_report,
        "validation": {"best_" + args.best_metric: result.best_metric},
        "test": test_metrics,
        "baselines": task.baselines(data, config),
        "data": data.description,
        "history": result.history,
    }
    if acc.is_main_process:
        finish_run(Path(args.output_dir), result.best_dir, metrics, cfg)
    acc.wait_for_everyone()
    return RunResult(best_dir=result.best_dir, metrics=metrics)


def evaluate_model_dir(
    model_dir: str | Path,
    *,
    data: str | None = None,
    split: str = "test",
    batch_size: int = 64,
    backend: str = "torch",
    onnx_file: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model on a split of its training data, or of ``data``.

    Args:
        model_dir: a polyhead model dir written by ``polyhead train``.
        data: a data source replacing the training config's ``data.source``.
        split: ``"test"`` or ``"validation"``.
        batch_size: evaluation batch size.
        backend: ``"torch"`` or ``"onnx"`` (the exported ``model.onnx``, or ``onnx_file``).
    """
    config_dict = check_model_dir(model_dir)
    if split not in ("test", "validation"):
        raise ConfigError(f"split must be 'test' or 'validation', got {split!r}.")
    task = registry.get(registry.TASKS, task_of(config_dict))()
    data_section: dict[str, Any] = {}
    try:
        saved = read_training_config(model_dir)  # data only: nothing from the folder is executed
    except ModelLoadError:
        if data is None:
            raise
        saved = None
    if saved is not None:  # how the model was trained (streamed or not) does not change what it is evaluated on
        data_section = split_streaming_options(saved.get("data") or {})[1]
    elif data is None:
        raise ModelLoadError(f"{model_dir} has no {TRAINING_CONFIG_NAME}; pass --data to say what to evaluate on.")
    model = load_model(model_dir, backend=backend, onnx_file=onnx_file)
    if data is not None:
        data_section = task.data_section_for(data_section, data, model.config)
    task_data = task.build_data(data_section, model.config)
    acc = make_accelerator()
    loader = eval_loader(task_data, split, batch_size=batch_size, accelerator=acc)
    runnable = model if backend == "onnx" else acc.prepare(model)
    metrics = evaluate(runnable, loader, metrics=task.build_metrics(model.config), accelerator=acc, inferer=task.inferer(model.config))
    return {"model": str(model_dir), "backend": backend, "split": split, "metrics": metrics, "baselines": task.baselines(task_data, model.config) if split == "test" else {}, "data": task_data.description}
