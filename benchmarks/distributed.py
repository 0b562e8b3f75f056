"""1 process x 2 threads vs 2 processes x 1 thread (gloo DDP) on this machine, and checkpoint cost.

Both runs train the packaged forecasting recipe for the same number of optimizer steps
at the same global batch; samples/second is timed after 5 warm-up steps. The two
runs alternate twice and the better of each is kept, so machine noise hits both.
Writes ``benchmarks/results/distributed.json``.

    python -m benchmarks.distributed
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"
WORKER = Path(__file__).with_name("_throughput_worker.py")
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
GLOBAL_BATCH, STEPS = 64, 60


def run(processes: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        launcher = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(processes), "--main_process_port", "0"] if processes > 1 else [sys.executable]
        subprocess.run([*launcher, str(WORKER), str(out), str(threads), str(GLOBAL_BATCH), str(STEPS)], check=True, env=env, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    runs: dict[str, list[dict]] = {"1x2": [], "2x1": []}
    for _ in range(2):
        runs["1x2"].append(run(1, 2))
        runs["2x1"].append(run(2, 1))
    best = {k: max(v, key=lambda r: r["samples_per_second"]) for k, v in runs.items()}
    result = {
        "what": "forecasting recipe, same global batch and steps; samples/s after warm-up; best of 2 alternating runs each",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "one_process_two_threads": best["1x2"],
        "two_processes_one_thread": best["2x1"],
        "ratio_2proc_over_1proc_samples_per_second": best["2x1"]["samples_per_second"] / best["1x2"]["samples_per_second"],
        "all_runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in best.items():
        print(f"{name}: {r['samples_per_second']:.0f} samples/s; checkpoint {r['checkpoint_seconds_median_of_3'] * 1000:.0f} ms, {r['checkpoint_bytes'] / 1e6:.2f} MB")
    print(f"2 processes x 1 thread / 1 process x 2 threads = {result['ratio_2proc_over_1proc_samples_per_second']:.2f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
