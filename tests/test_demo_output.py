"""`make demo` is quiet: what it prints on stderr is progress bars and polyhead's own lines, not library noise.

The commands are read from the Makefile's ``demo`` recipe, so the test follows the demo. The evaluation
commands of two defaults run here, audio and images (the others take minutes, or need MovieLens; they print
through the same Trainer and evaluation code; all seven measured by hand: see the closing note of issue 20). Target: at most ``MAX_LINES`` stderr lines per
command that are not progress bars (measured: 1, the line naming the default, or 0).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 2
RUN_HERE = ("defaults/asr", "defaults/detection")
BAR = re.compile(r"^\s*[\w/ .-]*:?\s*\d+%\|")  # a tqdm bar, e.g. "eval: 100%|████| 8/8 [00:01<00:00]"


def demo_commands() -> list[str]:
    """The ``demo`` recipe's polyhead commands, with ``$(BIN)/`` removed."""
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", text, re.M).group(1)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.splitlines() if "polyhead" in line]


def noise(stderr: str) -> list[str]:
    """stderr lines that are not progress bars (tqdm redraws with carriage returns)."""
    lines = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [line for line in lines if line.strip() and not BAR.match(line)]


def test_the_demo_recipe_is_read():
    commands = demo_commands()
    assert len(commands) == 7 and commands[0].startswith("polyhead train")
    assert all(any(key in c for c in commands) for key in RUN_HERE)


@pytest.mark.slow
@pytest.mark.parametrize("key", RUN_HERE)
def test_demo_command_stderr_is_quiet(key):
    (command,) = [c for c in demo_commands() if key in c]
    words = shlex.split(command)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    while "=" in words[0]:  # OMP_NUM_THREADS=1 polyhead ...
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    words[0] = str(Path(sys.executable).parent / "polyhead")
    result = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = noise(result.stderr)
    assert len(lines) <= MAX_LINES, "\n".join(lines)
