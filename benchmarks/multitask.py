"""Does sharing one backbone across domains help? Single-task vs co-training vs frozen backbone + per-task LoRA.

Three domains on the same Transformer encoder (dim 64, 2 blocks, rotary positions): weekly CO2
forecasting (test MASE), MovieLens-100k next-item recommendation (test NDCG@10, all items
ranked) and speech recognition on the embedded espeak-ng set (test CER, unseen voices).

For each seed and each data regime (all of each task's training data, or a seeded 10 %):
  * single  - one model per task, ``steps`` optimizer steps each;
  * cotrain - ONE model (shared backbone + three adapters), uniform task sampling, 3 x ``steps``
              steps: ``steps`` per task in expectation, the same per-task budget;
  * lora    - the same, backbone frozen at its (random) initialisation, per-task LoRA (r=8) on its
              attention projections (PEFT);
  * control - co-training with the next-item task's labels shuffled across samples (a task that
              can only teach noise), to show what interference looks like on the other two.
Everything runs through polyhead's own Trainer and metrics. The table reports mean +- std over
seeds and the paired difference (co-training minus single-task) with a 95 % t-interval. Writes
``benchmarks/results/multitask.json``.

    python -m benchmarks.multitask [--seeds 5] [--steps 150] [--fractions 0.1 1.0]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

import polyhead
from polyhead import registry
from polyhead.multitask import combine_task_data
from polyhead.task import TaskData
from polyhead.training import Trainer, TrainingArguments, evaluate, make_accelerator
from polyhead.workflows import eval_loader

RESULTS = Path(__file__).resolve().parent / "results" / "multitask.json"
BACKBONE = {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0, "dropout": 0.1, "position": "rotary"}
TASKS = {
    "forecasting": ({"task": "forecasting", "context_length": 104, "horizon": 52, "patch_length": 8, "patch_stride": 8, "seasonal_period": 52,
                     "head": {"type": "forecast", "quantiles": [0.1, 0.5, 0.9], "dropout": 0.1}},
                    {"source": "co2_weekly", "time_column": "date", "target_columns": ["co2"]}, 64, ("mase", False)),
    "next_item": ({"task": "recommendation", "objective": "next_item", "max_length": 50, "head": {"type": "next_item", "loss": "full"}},
                  {"source": "ml-100k"}, 128, ("ndcg@10", True)),
    "speech": ({"task": "asr", "n_mels": 64, "head": {"type": "ctc", "dropout": 0.1}, "spec_augment": True},
               {"source": "speech_commands"}, 16, ("cer", False)),
}
LORA = {"r": 8, "alpha": 16, "target_modules": ["qkv", "proj"]}
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def _subset(dataset: Any, fraction: float, seed: int) -> Any:
    if fraction >= 1.0:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(dataset), generator=generator)[: max(1, round(len(dataset) * fraction))].sort().values.tolist()
    return Subset(dataset, keep)


class _ShuffledLabels(torch.utils.data.Dataset):
    """Next-item samples whose labels are those of another (fixed random) sample: nothing to learn."""

    def __init__(self, inner: Any, seed: int) -> None:
        self.inner = inner
        self.order = torch.randperm(len(inner), generator=torch.Generator().manual_seed(seed)).tolist()

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        sample = dict(self.inner[index])
        sample["labels"] = self.inner[self.order[index]]["labels"]
        return sample


def _build(seed: int):
    """The multi-task config and each task's data (built once per seed: splits are seeded by the data, not the run)."""
    task = registry.get(registry.TASKS, "multitask")()
    model_section = {"backbone": BACKBONE, "tasks": {n: spec for n, (spec, _, _, _) in TASKS.items()}}
    data_section = {"sampling": "uniform", "tasks": {n: data for n, (_, data, _, _) in TASKS.items()}}
    config = task.build_config(model_section, data_section)
    per_task = {}
    for name in TASKS:
        sub_config = config.task_config(name)
        per_task[name] = (sub_config, registry.task_for(sub_config.model_type)().build_data(dict(TASKS[name][1]), sub_config))
    return task, config, per_task


def _args(out: Path, steps: int, batch_size: int, seed: int) -> TrainingArguments:
    return TrainingArguments(output_dir=str(out), max_steps=steps, eval_every=steps, batch_size=batch_size, lr=2e-3, warmup_steps=20,
                             seed=seed, log_with=None, progress_bar=False, best_metric="loss")


def _test_metric(model: Any, name: str, config: Any, data: Any) -> float:
    task = registry.task_for(config.model_type)()
    accelerator = make_accelerator()
    metrics = evaluate(model.eval(), eval_loader(data, "test", batch_size=64, accelerator=accelerator), metrics=task.build_metrics(config),
                       accelerator=accelerator, inferer=task.inferer(config))
    return float(metrics[TASKS[name][3][0]])


def _single(name: str, per_task: dict, fraction: float, seed: int, steps: int, root: Path) -> float:
    config, data = per_task[name]
    task = registry.task_for(config.model_type)()
    torch.manual_seed(seed)
    model = task.build_model(copy.deepcopy(config))
    trainer = Trainer(model=model, args=_args(root / f"single-{name}", steps, TASKS[name][2], seed), train_dataset=_subset(data.train, fraction, seed),
                      eval_dataset=data.validation, metrics=task.build_metrics(config), processor=task.build_processor(config),
                      collate_fn=data.collate_fn, inferer=task.inferer(config))
    trainer.train()
    return _test_metric(trainer.accelerator.unwrap_model(trainer.model), name, config, data)


def _multi(task: Any, config: Any, per_task: dict, fraction: float, seed: int, steps: int, root: Path, *, lora: bool, control: bool) -> dict[str, float]:
    config = copy.deepcopy(config)
    config.lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": LORA["target_modules"], "freeze_backbone": True} if lora else None
    subsets = {}
    for name, (_, data) in per_task.items():
        train = _subset(data.train, fraction, seed)
        if control and name == "next_item":
            train = _ShuffledLabels(train, seed)
        subsets[name] = TaskData(train, data.validation, data.test, collate_fn=data.collate_fn)
    data = combine_task_data(subsets, sampling="uniform", batch_sizes={n: TASKS[n][2] for n in TASKS})
    torch.manual_seed(seed)
    model = task.build_model(config)
    trainer = Trainer(model=model, args=_args(root / f"multi-{lora}-{control}", steps * len(TASKS), 16, seed), train_dataset=data.train,
                      eval_dataset=data.validation, metrics=task.build_metrics(config), processor=task.build_processor(config),
                      collate_fn=data.collate_fn, batch_sampler=data.batch_sampler)
    trainer.train()
    trained = trainer.accelerator.unwrap_model(trainer.model)
    return {name: _test_metric(trained.task_model(name), name, per_task[name][0], per_task[name][1]) for name in TASKS}


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def _paired(a: list[float], b: list[float]) -> dict[str, float]:
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = T_975.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"mean": mean, "ci95": [mean - half, mean + half]}


def _parameters(task: Any, config: Any, per_task: dict[str, Any]) -> dict[str, Any]:
    singles = {name: sum(p.numel() for p in registry.task_for(c.model_type)().build_model(c).parameters()) for name, (c, _) in per_task.items()}
    shared = sum(p.numel() for p in task.build_model(config).parameters())
    lora_config = copy.deepcopy(config)
    lora_config.lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": LORA["target_modules"], "freeze_backbone": True}
    lora_model = task.build_model(lora_config)
    return {"single_task_models": singles, "sum_of_single_task_models": sum(singles.values()), "one_multitask_model": shared,
            "ratio": round(sum(singles.values()) / shared, 2),
            "lora_trainable": sum(p.numel() for p in lora_model.parameters() if p.requires_grad)}


def _write(raw: dict[str, Any], *, args: argparse.Namespace, parameters: dict[str, Any], seconds: float, complete: bool) -> dict[str, Any]:
    """Summarise the runs so far and write ``RESULTS`` (after every seed: a study cut short keeps what it measured,
    marked ``complete: false`` with the seeds each regime has)."""
    result = {
        "setup": {"backbone": BACKBONE, "steps_per_task": args.steps, "seeds": args.seeds, "fractions": args.fractions, "sampling": "uniform",
                  "metrics": {n: {"name": TASKS[n][3][0], "greater_is_better": TASKS[n][3][1]} for n in TASKS},
                  "torch_threads": torch.get_num_threads(), "seconds": round(seconds),
                  "complete": complete, "seeds_done": {regime: len(runs["single"][next(iter(TASKS))]) for regime, runs in raw.items()}},
        "parameters": parameters,
        "results": {
            regime: {
                name: {
                    **{c: _summary(runs[c][name]) for c in runs},
                    "cotrain_minus_single": _paired(runs["cotrain"][name], runs["single"][name]),
                    "lora_minus_single": _paired(runs["lora"][name], runs["single"][name]),
                    "control_minus_cotrain": _paired(runs["control"][name], runs["cotrain"][name]),
                }
                for name in TASKS
            }
            for regime, runs in raw.items() if runs["single"][next(iter(TASKS))]
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per task (co-training runs 3x as many, one task each)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    task, config, per_task = _build(0)
    parameters = _parameters(task, config, per_task)
    raw: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fraction in args.fractions:
            regime = f"{fraction:.0%} of training data"
            runs = raw.setdefault(regime, {c: {n: [] for n in TASKS} for c in ("single", "cotrain", "lora", "control")})
            for seed in range(args.seeds):
                root = Path(tmp) / f"{fraction}-{seed}"
                for name in TASKS:
                    runs["single"][name].append(_single(name, per_task, fraction, seed, args.steps, root))
                for condition, lora, control in (("cotrain", False, False), ("lora", True, False), ("control", False, True)):
                    for name, value in _multi(task, config, per_task, fraction, seed, args.steps, root, lora=lora, control=control).items():
                        runs[condition][name].append(value)
                print(f"{regime}, seed {seed}: " + json.dumps({c: {n: v[-1] for n, v in r.items()} for c, r in runs.items()}), flush=True)
                _write(raw, args=args, parameters=parameters, seconds=time.perf_counter() - started, complete=False)
    result = _write(raw, args=args, parameters=parameters, seconds=time.perf_counter() - started, complete=True)
    print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=2))
    for regime, tasks in result["results"].items():
        print(f"\n{regime}")
        for name, row in tasks.items():
            print(f"  {name} ({TASKS[name][3][0]}): " + ", ".join(f"{c} {row[c]['mean']:.4f}±{row[c]['std']:.4f}" for c in ("single", "cotrain", "lora", "control"))
                  + f"; cotrain-single {row['cotrain_minus_single']['mean']:+.4f} [{row['cotrain_minus_single']['ci95'][0]:+.4f}, {row['cotrain_minus_single']['ci95'][1]:+.4f}]")


if __name__ == "__main__":
    polyhead  # noqa: B018  (registers the tasks)
    main()
