"""How long a new user waits before polyhead does anything: ``import polyhead`` and ``polyhead --help``.

Each is timed in a fresh Python process, as a ratio against the reference the same process
pays anyway: ``import torch, transformers``. The commands alternate (reference, polyhead,
reference, ...) so machine noise hits both; the median of ``--repeats`` runs is kept, and
``-X importtime`` names the slowest packages polyhead pulls in. Target: ``import polyhead``
<= 2x the reference. Writes ``benchmarks/results/startup.json``.

    python -m benchmarks.startup
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "startup.json"
REFERENCE = [sys.executable, "-c", "import torch, transformers"]
COMMANDS = {
    "import polyhead": [sys.executable, "-c", "import polyhead"],
    "polyhead --help": [sys.executable, "-m", "polyhead", "--help"],
    "polyhead train --help": [sys.executable, "-m", "polyhead", "train", "--help"],
}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - started


def slowest_imports(count: int = 8) -> list[dict]:
    """The packages with the largest cumulative import time under ``import polyhead`` (``-X importtime``)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import polyhead"], capture_output=True, text=True, env=ENV, check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].strip()
            if "." not in name and not name.startswith("_"):
                rows.append({"module": name, "cumulative_s": round(int(parts[1]) / 1e6, 3)})
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _seconds(REFERENCE)  # warm the file cache
    timings: dict[str, list[float]] = {"reference": [], **{name: [] for name in COMMANDS}}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            timings["reference"].append(_seconds(REFERENCE))
            timings[name].append(_seconds(command))
    reference = statistics.median(timings["reference"])
    result = {
        "reference": "import torch, transformers (fresh process)",
        "reference_seconds": round(reference, 3),
        "seconds": {name: round(statistics.median(values), 3) for name, values in timings.items() if name != "reference"},
        "ratio": {name: round(statistics.median(values) / reference, 2) for name, values in timings.items() if name != "reference"},
        "target": "import polyhead <= 2x the reference",
        "slowest_imports": slowest_imports(),
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
