"""Run a tiny two-task multi-task training on this process (or one rank of `accelerate launch`) and record it.

Usage: multitask_probe.py OUT_DIR EVENTS_CSV BATCH_SIZE -> OUT_DIR/rank<r>.json with the task and sample
indices of every step, a weight checksum after every step, the final weights and validation metrics.
The data make one process and two comparable to float precision: no missing CO2 weeks (a masked loss is a mean
over each rank's observed steps) and every next-item window full (a token mean over each rank's labels).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import torch

import polyhead  # noqa: F401  (registers the tasks)
from polyhead import registry
from polyhead.multitask import MultiTaskDataset
from polyhead.training import Trainer, TrainingArguments


class RecordingDataset(MultiTaskDataset):
    """Remembers which samples (and so which task) this process fetched."""

    def __init__(self, inner: MultiTaskDataset) -> None:
        super().__init__(inner.datasets)
        self.fetched: list[int] = []

    def __getitem__(self, index: int):
        self.fetched.append(int(index))
        return super().__getitem__(index)


def full_windows(events: str, out_dir: str, max_length: int) -> str:
    """Each user's first ``max_length + 3`` events (users with fewer dropped): after the validation and test items,
    every training window holds ``max_length`` labelled positions, so a token-mean loss over two half batches
    averages to the loss over the whole batch and one process and two can be compared to float precision."""
    frame = pd.read_csv(events).sort_values(["user_id", "timestamp"], kind="stable")
    frame = frame.groupby("user_id").filter(lambda rows: len(rows) >= max_length + 3).groupby("user_id").head(max_length + 3)
    path = Path(out_dir) / f"events-rank{os.environ.get('RANK', '0')}.csv"  # each rank its own file: no write race
    frame.to_csv(path, index=False)
    return str(path)


def main(out_dir: str, events: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    events = full_windows(events, out_dir, max_length=8)
    task = registry.get(registry.TASKS, "multitask")()
    backbone = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "dropout": 0.0, "position": "rotary"}
    model_section = {"backbone": backbone, "tasks": {
        "forecasting": {"task": "forecasting", "context_length": 32, "horizon": 8, "patch_length": 8, "patch_stride": 4,
                        "seasonal_period": 4, "head": {"type": "forecast", "quantiles": [0.1, 0.5, 0.9], "dropout": 0.0}},
        "next_item": {"task": "recommendation", "objective": "next_item", "max_length": 8, "head": {"type": "next_item", "loss": "full"}},
    }}
    data_section = {"sampling": "uniform", "tasks": {
        "forecasting": {"source": "co2_weekly", "time_column": "date", "target_columns": ["co2"], "fill_missing": "interpolate",
                        "batch_size": batch_size // 2},  # a task batch size of its own: no batch may be dropped
        "next_item": {"source": events},
    }}
    config = task.build_config(model_section, data_section)
    data = task.build_data(data_section, config)
    train = RecordingDataset(data.train)
    torch.manual_seed(0)
    model = task.build_model(config)
    args = TrainingArguments.from_section({"output_dir": str(Path(out_dir) / "run"), "batch_size": batch_size, "max_steps": 8,
                                           "eval_every": 8, "scheduler": "constant", "lr": 3e-3, "log_with": None,
                                           "progress_bar": False, "best_metric": "task_mean_loss"})
    record = {"tasks": [], "indices": [], "checksums": []}

    def after_step(trainer: Trainer) -> None:
        fetched = sorted(set(train.fetched))
        train.fetched.clear()
        record["tasks"].append(sorted({train[i][0] for i in fetched}) if fetched else [])
        train.fetched.clear()  # looking the tasks up fetched them again
        record["indices"].append(fetched)
        params = trainer.accelerator.unwrap_model(trainer.model).state_dict()
        record["checksums"].append(float(sum(p.double().sum() for p in params.values())))

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=data.validation, metrics=task.build_metrics(config),
                      processor=task.build_processor(config), collate_fn=data.collate_fn, callbacks=[after_step],
                      batch_sampler=data.batch_sampler)
    trainer.train()
    final = trainer.evaluate()
    rank = trainer.accelerator.process_index
    weights = [float(v) for p in trainer.accelerator.unwrap_model(trainer.model).parameters() for v in p.detach().flatten()[:20]]
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({**record, "final_eval": final, "weights": weights}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
