"""Run under ``accelerate launch`` (or plain python): train a tiny forecaster and record, per rank,
which samples each optimizer step used and a checksum of the weights after it.

    accelerate launch --num_processes 2 tests/distributed/probe.py OUT_DIR BATCH_SIZE GRAD_ACCUM
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

import polyhead  # noqa: F401  (registers the tasks)
from polyhead import registry
from polyhead.config import load_config
from polyhead.training import Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import TINY_FORECASTING  # noqa: E402


class RecordingDataset(Dataset):
    """Remembers which indices this process fetched."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner
        self.fetched: list[int] = []

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        self.fetched.append(int(i))
        return self.inner[i]


def main(out_dir: str, batch_size: int, grad_accum: int) -> None:
    torch.set_num_threads(1)
    # CO2's missing weeks filled: a masked loss is a mean over each micro-batch's observed steps, so with gaps
    # two half batches (or two accumulated ones) would not average to the whole batch's loss
    options = {**TINY_FORECASTING, "model.backbone.dropout": 0.0, "train.output_dir": out_dir, "data.fill_missing": "interpolate"}
    cfg = load_config("forecasting", options)
    task = registry.get(registry.TASKS, "forecasting")()
    model_section = {k: v for k, v in cfg.model.to_dict().items() if k != "task"}
    config = task.build_config(model_section, cfg.data.to_dict())
    data = task.build_data(cfg.data.to_dict(), config)
    train = RecordingDataset(data.train)
    torch.manual_seed(0)
    model = task.build_model(config)
    args = TrainingArguments.from_section({
        **cfg.train.to_dict(), "batch_size": batch_size, "grad_accum": grad_accum, "max_steps": 6, "eval_every": 3, "scheduler": "constant",
    })
    steps: list[dict] = []

    def record(trainer: Trainer) -> None:
        params = trainer.accelerator.unwrap_model(trainer.model).state_dict()
        steps.append({
            "step": trainer.state.global_step,
            "indices": list(train.fetched),
            "checksum": float(sum(p.double().sum() for p in params.values())),
        })
        train.fetched.clear()

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=data.validation,
                      metrics=task.build_metrics(config), processor=task.build_processor(config), callbacks=[record])
    result = trainer.train()
    final = trainer.evaluate()
    rank = trainer.accelerator.process_index
    weights = {k: v.tolist() for k, v in trainer.accelerator.unwrap_model(trainer.model).state_dict().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({
        "rank": rank,
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "steps": steps,
        "final_eval": final,
        "validation_size": len(data.validation),
        "history": result.history,
        "weights": weights,
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
