"""The README's Python usage block, and every block marked ``<!-- readme-test: runs -->``, run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_python_usage_block_runs(tmp_path):
    text = README.read_text()
    section = text[text.index("## Python"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "usage.py"
    script.write_text("import torch\ntorch.set_num_threads(2)\n" + block.replace('"train.epochs": 3', '"train.epochs": 1, "train.log_with": None, "train.progress_bar": False'))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "forecast" / "best" / "model.safetensors").is_file()


MARK = "<!-- readme-test: runs -->"


def marked_blocks() -> list[tuple[int, str, str]]:
    """``(line, language, code)`` of every README code block right after the mark: each runs as written, in a fresh folder."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(re.escape(MARK) + r"\n```(python|bash)\n(.*?)```", text, re.S):
        blocks.append((text[: match.start()].count("\n") + 2, match.group(1), match.group(2)))
    return blocks


def test_the_readme_marks_blocks_to_run():
    assert len(marked_blocks()) >= 1


@pytest.mark.slow
@pytest.mark.parametrize(("line", "language", "code"), marked_blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else None)
def test_marked_blocks_run_as_written(tmp_path, line, language, code):
    script = tmp_path / ("block.py" if language == "python" else "block.sh")
    script.write_text(code if language == "python" else "set -euo pipefail\n" + code)
    command = [sys.executable, str(script)] if language == "python" else ["bash", str(script)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"README block at line {line} failed:\n{result.stderr[-3000:]}"
