"""ONNX Runtime vs PyTorch eager for every task's default model (``make bench``).

For each registered task with an embedded default model: export it (fp32 and
dynamic int8) with :func:`polyhead.export_onnx`, which measures median latency of
eager PyTorch and ONNX Runtime at batch 1 and 32 in the same process with the same
thread count, and the int8 file's task metrics on the test split against fp32.
Writes ``benchmarks/results/onnx.json``.

    python -m benchmarks.onnx
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

import polyhead
from polyhead.pipelines import PIPELINES, default_model_dir

RESULTS = Path(__file__).resolve().parent / "results" / "onnx.json"
TARGETS = {"fp32_speedup_batch_1": 2.0, "int8_speedup_batch_1": 3.0, "int8_metric_change": 0.01}


def bench_task(pipeline_task: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        shutil.copytree(default_model_dir(pipeline_task), model_dir)
        report = polyhead.export_onnx(model_dir, quantize="int8")
    int8 = report["int8"]
    changes = int8["test_metrics"].get("relative_change")
    worst_change = max(abs(v) for v in changes.values()) if changes else None
    result = {
        "fp32": report["latency"],
        "int8": int8["latency"],
        "int8_test_metrics": int8["test_metrics"],
        "file_bytes": {"fp32": report["file_bytes"], "int8": int8["file_bytes"]},
        "max_parity_abs_diff": max(d["max_abs_diff"] for row in report["parity"] for d in row["outputs"].values()),
    }
    result["targets"] = {
        "fp32_speedup_batch_1": {"target": TARGETS["fp32_speedup_batch_1"], "measured": report["latency"]["batch_1"]["speedup"]},
        "int8_speedup_batch_1": {"target": TARGETS["int8_speedup_batch_1"], "measured": int8["latency"]["batch_1"]["speedup"]},
        "int8_max_relative_metric_change": {"target": TARGETS["int8_metric_change"], "measured": worst_change},
    }
    for name, row in result["targets"].items():
        if row["measured"] is None:
            row["met"] = None  # not measurable for this task (no test split)
        else:
            row["met"] = row["measured"] <= row["target"] if name.endswith("change") else row["measured"] >= row["target"]
    return result


def main() -> None:
    torch.set_num_threads(2)
    results = {
        "what": "median latency (ms) of eager PyTorch vs ONNX Runtime, same threads, same process; speedup = eager / onnx",
        "threads": torch.get_num_threads(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"polyhead": polyhead.__version__, "torch": torch.__version__},
        "tasks": {task: bench_task(task) for task in PIPELINES},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for task, r in results["tasks"].items():
        print(f"{task}:")
        for batch in ("batch_1", "batch_32"):
            print(f"  {batch}: eager {r['fp32'][batch]['eager_ms']} ms | ORT fp32 {r['fp32'][batch]['onnx_ms']} ms "
                  f"({r['fp32'][batch]['speedup']}x) | ORT int8 {r['int8'][batch]['onnx_ms']} ms ({r['int8'][batch]['speedup']}x)")
        for name, row in r["targets"].items():
            if row["met"] is None:
                print(f"  {name}: not measured ({r['int8_test_metrics'].get('skipped', '')[:80]})")
            else:
                print(f"  {name}: {row['measured']:.4g} (target {row['target']}) {'met' if row['met'] else 'NOT met'}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
