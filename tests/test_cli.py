"""The ``polyhead`` command, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from polyhead.pipelines import default_model_dir

from .conftest import cli_options

POLYHEAD = [str(Path(sys.executable).parent / "polyhead")]
DEFAULT = str(default_model_dir("time-series-forecasting"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([*POLYHEAD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _options(output_dir: Path) -> list[str]:
    return cli_options(**{"train.epochs": 1, "train.output_dir": str(output_dir)})


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["list"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert "usage: polyhead" in result.stdout
    assert "--cfg-options" in result.stdout if command == ["train"] else True


def test_list():
    result = run("list")
    assert result.returncode == 0
    assert "forecasting" in result.stdout and "time-series-forecasting" in result.stdout
    assert "transformer" in result.stdout and "sequence" in result.stdout
    listing = json.loads(run("list", "--json").stdout)
    assert listing["heads"]["forecast"] == ["conformer", "transformer"]  # every sequence backbone
    assert listing["heads"]["unetr_decoder"] == ["convnext", "swin"]  # every pyramid backbone
    assert listing["backbones"]["transformer"] == "sequence" and listing["backbones"]["swin"] == "pyramid"


@pytest.mark.slow
def test_train_evaluate_predict(tmp_path):
    trained = run("train", "configs/forecasting/patchtst_co2.py", "--cfg-options", *_options(tmp_path / "run"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "seasonal_naive" in trained.stdout and "mase" in trained.stdout
    best = tmp_path / "run" / "best"
    assert f"Saved model: {best}" in trained.stdout

    evaluated = run("evaluate", str(best), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    saved = json.loads((best / "metrics.json").read_text())
    assert report["metrics"]["mae"] == pytest.approx(saved["test"]["mae"], rel=1e-5)

    csv = tmp_path / "history.csv"
    frame = pd.read_csv(Path(DEFAULT).parents[1] / "assets" / "co2_weekly.csv")
    frame["co2"] = frame["co2"].interpolate()
    frame.tail(300).to_csv(csv, index=False)
    predicted = run("predict", str(best), str(csv))
    assert predicted.returncode == 0, predicted.stderr
    out = json.loads(predicted.stdout)
    assert len(out["forecast"]["co2"]) == 8 and out["timestamps"][0] == "2002-01-05T00:00:00"


def test_evaluate_default_model_on_other_data(tmp_path):
    frame = pd.read_csv(Path(DEFAULT).parents[1] / "assets" / "co2_weekly.csv")
    frame.to_parquet(tmp_path / "co2.parquet")
    result = run("evaluate", DEFAULT, "--data", str(tmp_path / "co2.parquet"))
    assert result.returncode == 0, result.stderr
    assert "seasonal_naive" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "segmentaton"], "neither a config file nor a task name"),
        (["train", "forecasting", "--cfg-options", "train.epohcs=1"], "Did you mean 'epochs'"),
        (["train", "forecasting", "--cfg-options", "train.epochs"], "expects key=value"),
        (["evaluate", "/nonexistent/model"], "does not exist"),
        (["predict", DEFAULT, "/nonexistent.csv"], "does not exist"),
        (["evaluate", DEFAULT, "--data", "/nonexistent.csv"], "is not an existing file or folder"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
