"""`make demo` is quiet: what it prints on stderr is progress bars and polyhead's own lines, not library noise.

The commands are read from the Makefile's ``demo`` recipe (``benchmarks/demo_output.py``, which measures all of
them), so the test follows the demo. The evaluation commands of two defaults run here, audio and images (the others
take minutes or need MovieLens, and print through the same evaluation code): at most ``TARGET_LINES`` stderr lines
each that are not progress bars.
"""

from __future__ import annotations

import pytest

from benchmarks.demo_output import TARGET_LINES, demo_commands, noise, run_demo_command

RUN_HERE = ("defaults/asr", "defaults/detection")


def test_the_demo_recipe_is_read():
    commands = demo_commands()
    assert len(commands) == 7 and commands[0].startswith("polyhead train")
    assert all(any(key in c for c in commands) for key in RUN_HERE)


def test_progress_bars_are_not_noise():
    stderr = "eval: 100%|██████| 8/8 [00:01<00:00]\rtrain:  50%|███ | 4/8\npolyhead: WARNING: something\n\n"
    assert noise(stderr) == ["polyhead: WARNING: something"]


@pytest.mark.slow
@pytest.mark.parametrize("key", RUN_HERE)
def test_demo_command_stderr_is_quiet(key):
    (command,) = [c for c in demo_commands() if key in c]
    result = run_demo_command(command, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = noise(result.stderr)
    assert len(lines) <= TARGET_LINES, "\n".join(lines)
