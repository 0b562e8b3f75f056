"""Worker for benchmarks/distributed.py: trains the packaged forecasting recipe for a fixed
number of optimizer steps at a fixed GLOBAL batch and reports samples/second (after warm-up)
and the cost of one resumable checkpoint. Run directly or under ``accelerate launch``.

    python benchmarks/_throughput_worker.py OUT.json THREADS GLOBAL_BATCH STEPS
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from polyhead import registry
from polyhead.config import load_config
from polyhead.training import Trainer, TrainingArguments

WARMUP = 5


def main(out: str, threads: int, global_batch: int, steps: int) -> None:
    torch.set_num_threads(threads)
    cfg = load_config("forecasting")
    task = registry.get(registry.TASKS, "forecasting")()
    config = task.build_config({k: v for k, v in cfg.model.to_dict().items() if k != "task"}, cfg.data.to_dict())
    data = task.build_data(cfg.data.to_dict(), config)
    torch.manual_seed(0)
    model = task.build_model(config)
    marks: dict[int, float] = {}

    def mark(trainer: Trainer) -> None:
        marks[trainer.state.global_step] = time.perf_counter()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, batch_size=global_batch // world, max_steps=steps, eval_every=10_000,
            checkpoint_every=10_000, log_with=None, progress_bar=False, scheduler="constant",
        )
        trainer = Trainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation, callbacks=[mark])
        trainer.train()  # ends with one evaluation and one checkpoint, outside the timed steps
        seconds = marks[steps] - marks[WARMUP]
        save_times = []
        for _ in range(3):
            start = time.perf_counter()
            path = trainer.save_checkpoint()
            save_times.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
        if trainer.accelerator.is_main_process:
            Path(out).write_text(json.dumps({
                "processes": trainer.accelerator.num_processes,
                "threads_per_process": threads,
                "global_batch": global_batch,
                "timed_steps": steps - WARMUP,
                "samples_per_second": (steps - WARMUP) * global_batch / seconds,
                "checkpoint_seconds_median_of_3": sorted(save_times)[1],
                "checkpoint_bytes": size,
            }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
