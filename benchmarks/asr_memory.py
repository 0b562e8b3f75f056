"""Speech recognition memory benchmark: peak memory of long audio through the pipeline.

What is measured, each case in a fresh process (so one case's allocations do not hide
another's):

* ``long_audio_peak_memory``: the growth of the process's resident memory (RSS, sampled
  every 2 ms from ``/proc/self/statm`` by a thread) above what it held just before the call,
  while ``polyhead.pipeline("automatic-speech-recognition")`` (the embedded default model,
  automatic 20 s chunking) transcribes one hour of 16 kHz noise already in memory as a
  float32 array (230 MB, not counted in the growth). The pipeline is warmed up first on a
  25 s clip. The same is measured for one minute, and for one hour at 48 kHz (resampled),
  to show the growth follows the chunk size, not the input's length.
  Target: growth <= 256 MB at 16 kHz, whatever the length.

Writes ``benchmarks/results/asr_memory.json`` and prints a summary.
Run: ``python -m benchmarks.asr_memory`` from the repository root (Linux: reads ``/proc``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "asr_memory.json"
TARGET_GROWTH_MB = 256.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def long_audio_peak_memory(seconds: float = 3600.0, sampling_rate: int = 16_000) -> dict[str, Any]:
    """Peak RSS growth (MB) while the ASR pipeline transcribes ``seconds`` of noise at ``sampling_rate``.

    Runs in the calling process: call it in a fresh one (``main`` does) for a clean figure.
    """
    import numpy as np

    import polyhead

    asr = polyhead.pipeline("automatic-speech-recognition")
    asr(np.random.default_rng(0).normal(0.0, 0.1, 16_000 * 25).astype(np.float32))  # warm-up: one chunked call
    audio = np.random.default_rng(1).normal(0.0, 0.1, int(seconds * sampling_rate)).astype(np.float32)
    before = _rss_bytes()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    text = asr(audio, sampling_rate=sampling_rate)["text"]
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {
        "seconds_of_audio": seconds,
        "sampling_rate": sampling_rate,
        "input_mb": round(audio.nbytes / 2**20, 1),
        "peak_growth_mb": round((peak[0] - before) / 2**20, 1),
        "wall_s": round(elapsed, 1),
        "characters": len(text),
    }


def _in_fresh_process(seconds: float, sampling_rate: int) -> dict[str, Any]:
    code = (
        "import json, sys; from benchmarks.asr_memory import long_audio_peak_memory; "
        f"print(json.dumps(long_audio_peak_memory({seconds!r}, {sampling_rate!r})))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600.0, help="length of the long input")
    args = parser.parse_args()
    cases = {
        "one_minute_16k": _in_fresh_process(60.0, 16_000),
        "long_16k": _in_fresh_process(args.seconds, 16_000),
        "long_48k": _in_fresh_process(args.seconds, 48_000),
    }
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "target_growth_mb": TARGET_GROWTH_MB,
        "cases": cases,
        "passed": cases["long_16k"]["peak_growth_mb"] <= TARGET_GROWTH_MB,
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n")
    for name, case in cases.items():
        print(f"{name:>15}: {case['seconds_of_audio']:.0f} s at {case['sampling_rate']} Hz, input {case['input_mb']} MB, "
              f"peak growth {case['peak_growth_mb']} MB, {case['wall_s']} s")
    print(f"target: growth <= {TARGET_GROWTH_MB:.0f} MB at 16 kHz -> {'PASS' if result['passed'] else 'FAIL'}")


if __name__ == "__main__":
    main()
