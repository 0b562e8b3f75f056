"""What the CLI runs: train from a config, evaluate a model dir, predict from a file.

These functions are task-agnostic: they reach the domain only through the
:class:`~polyhead.tasks.Task` registered for the config's ``model.task``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from torch.utils.data import DataLoader

from . import registry
from .config import load_config
from .errors import ConfigError, ModelLoadError
from .loading import AutoModel, check_model_dir, task_of
from .training import Trainer, TrainingArguments, evaluate, make_accelerator, rewrite_directory

__all__ = ["RunResult", "train", "evaluate_model_dir", "TRAINING_CONFIG_NAME", "METRICS_NAME"]

TRAINING_CONFIG_NAME = "training_config.py"
METRICS_NAME = "metrics.json"


@dataclass
class RunResult:
    """The outcome of :func:`train`."""

    best_dir: Path
    metrics: dict[str, Any]


def _task_for(cfg: Config):
    return registry.get(registry.TASKS, cfg.model.task)()


def _section(cfg: Config, name: str) -> dict[str, Any]:
    value = cfg.get(name) or {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def train(
    config_or_task: str | Path | Config,
    *,
    cfg_options: Sequence[str] | Mapping[str, Any] = (),
    resume: bool = False,
    callbacks: Sequence[Callable[[Trainer], None]] = (),
) -> RunResult:
    """Train the model a config describes, evaluate it on the test split beside the baselines.

    Writes ``<output_dir>/best`` (model, processor, ``metrics.json``,
    ``training_config.py``, the model card ``README.md``) and ``<output_dir>/metrics.json``.
    """
    cfg = config_or_task if isinstance(config_or_task, Config) else load_config(config_or_task, cfg_options)
    task = _task_for(cfg)
    model_section = {k: v for k, v in _section(cfg, "model").items() if k != "task"}
    data_section = _section(cfg, "data")
    train_section = _section(cfg, "train")
    if task.is_online(model_section):  # online RL: the task's own loop (same Accelerate set-up)
        return task.train_online(cfg, resume=resume)
    train_section.setdefault("best_metric", task.best_metric)
    train_section.setdefault("greater_is_better", task.greater_is_better)
    if task.eval_batch_size is not None:
        train_section["eval_batch_size"] = task.eval_batch_size
    args = TrainingArguments.from_section(train_section)  # bad options fail before any data is read

    config = task.build_config(model_section, data_section)
    data = task.build_data(data_section, config)  # may fill data-derived fields (freq)
    processor = task.build_processor(config)
    torch.manual_seed(args.seed)
    model = task.model_class(config)
    started = time.perf_counter()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        metrics=task.build_metrics(config),
        processor=processor,
        collate_fn=data.collate_fn,
        callbacks=callbacks,
    )
    result = trainer.train(resume=resume)
    train_seconds = time.perf_counter() - started

    best = AutoModel.from_pretrained(result.best_dir)
    acc = trainer.accelerator
    test_loader = acc.prepare(DataLoader(data.test, batch_size=args.eval_batch_size or args.batch_size, collate_fn=data.collate_fn))
    test_metrics = evaluate(acc.prepare(best), test_loader, metrics=task.build_metrics(config), accelerator=acc)
    test_metrics.update(task.rollout_metrics(best, data, config))  # e.g. RL episode returns
    metrics = {
        "task": task.name,
        "best_step": result.best_step,
        "global_step": result.global_step,
        "stopped_early": result.stopped_early,
        "train_seconds": round(train_seconds, 2),
        "num_processes": acc.num_processes,
        "num_parameters": sum(p.numel() for p in best.parameters()),
        "validation": {"best_" + args.best_metric: result.best_metric},
        "test": test_metrics,
        "baselines": task.baselines(data, config),
        "data": data.description,
        "history": result.history,
    }
    if acc.is_main_process:
        (Path(args.output_dir) / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        with rewrite_directory(result.best_dir) as tmp:
            (tmp / METRICS_NAME).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
            cfg.dump(str(tmp / TRAINING_CONFIG_NAME))
            from .hub import write_card  # here: polyhead.hub imports this module

            write_card(tmp, model_id=str(result.best_dir))  # README.md: the model card, ready to push
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
    saved_cfg = Path(model_dir) / TRAINING_CONFIG_NAME
    data_section: dict[str, Any] = {}
    if saved_cfg.is_file():
        data_section = _section(Config.fromfile(str(saved_cfg)), "data")
    elif data is None:
        raise ModelLoadError(f"{model_dir} has no {TRAINING_CONFIG_NAME}; pass --data to say what to evaluate on.")
    if data is not None:
        data_section[task.data_source_option] = data
    if backend not in ("torch", "onnx"):
        raise ConfigError(f"backend must be 'torch' or 'onnx', got {backend!r}.")
    if backend == "onnx":
        from .export import OnnxModel

        model = OnnxModel(model_dir, file=onnx_file)
    else:
        model = AutoModel.from_pretrained(model_dir)
    task_data = task.build_data(data_section, model.config)
    acc = make_accelerator()
    loader = acc.prepare(DataLoader(getattr(task_data, split), batch_size=task.eval_batch_size or batch_size, collate_fn=task_data.collate_fn))
    model = task.evaluation_model(model if backend == "onnx" else acc.prepare(model))
    metrics = evaluate(model, loader, metrics=task.build_metrics(model.config), accelerator=acc)
    return {"model": str(model_dir), "backend": backend, "split": split, "metrics": metrics, "baselines": task.baselines(task_data, model.config) if split == "test" else {}, "data": task_data.description}
