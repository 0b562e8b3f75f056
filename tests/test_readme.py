"""The README's Python usage block runs as written."""

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
