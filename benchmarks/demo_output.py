"""How much `make demo` prints that is not the user's business: stderr lines that are not progress bars.

The commands are read from the Makefile's ``demo`` recipe; each runs in a fresh process from the repository root
(as ``make demo`` runs them, after ``make setup data``). Writes ``benchmarks/results/demo_output.json``: per command,
its exit status, seconds, and the stderr lines that are not tqdm bars. ``tests/test_demo_output.py`` holds two of
them to the target.

    python -m benchmarks.demo_output
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "demo_output.json"
#: a tqdm bar, e.g. "eval: 100%|████| 8/8 [00:01<00:00]"
BAR = re.compile(r"^\s*[\w/ .-]*:?\s*\d+%\|")
#: the most stderr lines per command that are not progress bars
TARGET_LINES = 2


def demo_commands() -> list[str]:
    """The ``demo`` recipe's polyhead commands, with ``$(BIN)/`` removed."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", text, re.M).group(1)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.splitlines() if "polyhead" in line]


def noise(stderr: str) -> list[str]:
    """stderr lines that are not progress bars (tqdm redraws with carriage returns)."""
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [line for line in lines if line.strip() and not BAR.match(line)]


def run_demo_command(command: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run one recipe line (``VAR=value polyhead ...``) with this interpreter's ``polyhead``."""
    words = shlex.split(command)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    words[0] = str(Path(sys.executable).parent / "polyhead")
    return subprocess.run(words, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def main() -> None:
    rows = []
    for command in demo_commands():
        started = time.perf_counter()
        result = run_demo_command(command)
        lines = noise(result.stderr)
        rows.append({"command": command, "returncode": result.returncode, "seconds": round(time.perf_counter() - started, 1),
                     "noise_lines": len(lines), "noise": lines[:20]})
        print(f"{len(lines):3d} lines  rc {result.returncode}  {command}", flush=True)
    report = {"target_lines_per_command": TARGET_LINES, "total_noise_lines": sum(r["noise_lines"] for r in rows), "commands": rows}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"total {report['total_noise_lines']} lines; written to {RESULTS}")


if __name__ == "__main__":
    main()
