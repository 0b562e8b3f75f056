"""The non-editable wheel installs the top-level folders as polyhead subpackages, with their data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (found,) = out.glob("polyhead-*.whl")
    return found, built.stdout + built.stderr


def test_the_build_is_quiet(wheel):
    """Every data folder is declared: setuptools prints no "Package would be ignored" block on install."""
    _, log = wheel
    assert "would be ignored" not in log, log[log.find("would be ignored") - 300:][:1200]


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel[0]).namelist())
    for expected in (
        "polyhead/__init__.py",
        "polyhead/backbones/transformer.py",
        "polyhead/heads/forecasting.py",
        "polyhead/tasks/forecasting/modeling.py",
        "polyhead/pipelines/forecasting.py",
        "polyhead/configs/_base_/default_runtime.py",
        "polyhead/configs/forecasting/patchtst_co2.py",
        "polyhead/assets/co2_weekly.csv",
        "polyhead/defaults/forecasting/model.safetensors",
        "polyhead/defaults/forecasting/preprocessor_config.json",
        "polyhead/defaults/forecasting/.polyhead.json",
        "polyhead/model_cards/base.md",
        "polyhead/model_cards/forecasting.md",
    ):
        assert expected in names, expected
    top_level = {n.split("/")[0] for n in names if not n.startswith("polyhead-")}
    assert top_level == {"polyhead"}, f"only polyhead may be installed at the top level, got {top_level}"


def test_installed_wheel_runs_the_default_pipeline(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel[0])],
        check=True, capture_output=True, timeout=300,
    )
    code = (
        "import polyhead, polyhead.backbones, numpy as np\n"
        "assert polyhead.__file__.startswith(%r), polyhead.__file__\n"
        "out = polyhead.pipeline('time-series-forecasting')(np.linspace(330, 340, 200))\n"
        "print(len(out['forecast']['target']))\n" % str(target)
    )
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("52")
