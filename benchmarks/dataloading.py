"""How fast each task's training loader delivers samples with 0 vs N DataLoader workers (issue 21).

For every registered task: its packaged recipe's training split and batch size, through
:func:`polyhead.training.make_loader` (the loader ``polyhead train`` uses, shuffled and seeded), read for
``--batches`` batches with ``num_workers=0`` and with ``--workers`` workers, alternating ``--repeats`` times so
machine noise hits both. Reported: the median samples/s after the first batch (steady state), the seconds to the
first batch (worker start-up, paid every epoch on the CPU where workers do not persist), and
``ratio = workers / 0 workers`` of the steady samples/s. No model runs: this is the data side alone, the ceiling
on what a GPU could be fed. Writes ``benchmarks/results/dataloading.json``.

    python -m benchmarks.dataloading [--workers 2] [--batches 20] [--repeats 3] [--tasks forecasting,asr]

Run it on an otherwise idle machine: with the cores busy, worker processes only measure the contention.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "dataloading.json"


def training_data(task_name: str) -> tuple[Any, int]:
    """The task recipe's data and per-process batch size."""
    from benchmarks.gpu import config_batch_size, recipe

    cfg, _, _, data = recipe(task_name)
    return data, int(config_batch_size(cfg))


def read(data: Any, *, batch_size: int, workers: int, batches: int) -> dict[str, float]:
    """Seconds to the first batch, and samples/s over the next ``batches`` (fewer if the split ends first)."""
    from benchmarks.gpu import batch_size_of
    from polyhead.training import make_loader

    loader = make_loader(data.train, batch_size=batch_size, shuffle=True, collate_fn=data.collate_fn, num_workers=workers,
                         batch_sampler=data.batch_sampler)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter()
    samples = 0
    for index, batch in enumerate(iterator):
        samples += batch_size_of(batch)
        if index + 1 >= batches:
            break
    end = time.perf_counter()
    del iterator  # stops the workers
    return {"first_batch_seconds": first - start, "samples_per_second": samples / (end - first) if samples else float("nan")}


def bench_task(task_name: str, *, workers: int, batches: int, repeats: int) -> dict[str, Any]:
    data, batch_size = training_data(task_name)
    runs: dict[int, list[dict[str, float]]] = {0: [], workers: []}
    for _ in range(repeats):
        for count in (0, workers):
            runs[count].append(read(data, batch_size=batch_size, workers=count, batches=batches))

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: round(statistics.median(row[key] for row in rows), 4) for key in rows[0]}

    zero, many = summary(runs[0]), summary(runs[workers])
    return {"batch_size": batch_size, "train_samples": len(data.train), "0_workers": zero, f"{workers}_workers": many,
            "ratio": round(many["samples_per_second"] / zero["samples_per_second"], 3)}


def main(argv: list[str] | None = None) -> int:
    from polyhead import registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: every registered task)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = args.tasks.split(",") if args.tasks else registry.names(registry.TASKS)
    results: dict[str, Any] = {}
    for name in tasks:
        try:
            results[name] = bench_task(name, workers=args.workers, batches=args.batches, repeats=args.repeats)
        except Exception as err:  # a task whose data is not here (MovieLens before `make data`) must not lose the others
            results[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        print(name, results[name], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = {
        "what": "training-loader samples/s (median of repeats, after the first batch) with 0 vs N workers; ratio = N / 0",
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": load,
        "workers": args.workers,
        "batches": args.batches,
        "repeats": args.repeats,
        "tasks": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
