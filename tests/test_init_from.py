"""Fine-tuning from a trained polyhead model: ``--init-from``, ``init_modules``, the report and its errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import polyhead
from polyhead.cli import main as cli
from polyhead.errors import ConfigError
from polyhead.pipelines import default_model_dir

FORECASTER = default_model_dir("time-series-forecasting")


def _another_series(tmp_path) -> str:
    """A weekly series the default never saw: a yearly cycle on a slow trend, in other units than CO2."""
    rng = np.random.default_rng(7)
    steps = 700
    t = np.arange(steps)
    values = 20 + 0.01 * t + 6 * np.sin(2 * np.pi * t / 52.18 + 1.0) + rng.normal(0, 0.8, steps)
    frame = pd.DataFrame({"week": pd.date_range("2005-01-01", periods=steps, freq="W-SAT"), "temperature": values})
    path = tmp_path / "temperature.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _options(tmp_path, name: str, source: str) -> dict:
    return {
        "data.source": source, "data.time_column": "week", "data.target_columns": ["temperature"],
        "train.epochs": 1, "train.lr": 3e-4, "train.warmup_steps": 0,  # a fine-tuning rate, the same for both runs "train.log_with": None, "train.progress_bar": False,
        "train.output_dir": str(tmp_path / name), "train.early_stopping_patience": None,
    }


@pytest.mark.slow
def test_fine_tuning_the_default_beats_training_from_scratch_in_the_first_epoch(tmp_path):
    source = _another_series(tmp_path)
    scratch = polyhead.train("forecasting", cfg_options=_options(tmp_path, "scratch", source))
    tuned = polyhead.train("forecasting", cfg_options=_options(tmp_path, "tuned", source), init_from=str(FORECASTER))
    first = lambda run: run.metrics["history"][0]["eval_loss"]  # noqa: E731
    assert first(tuned) < first(scratch), (first(tuned), first(scratch))
    report = tuned.metrics["init"]
    assert report["source"] == str(FORECASTER) and report["modules"] == ["backbone", "adapter"]
    assert report["loaded"] == len(load_file(FORECASTER / "model.safetensors")) and report["mismatched"] == []
    # the card and the saved config say where the run started
    card = (tuned.best_dir / "README.md").read_text()
    assert f"**Started from** `{FORECASTER}`" in card
    assert json.loads((tuned.best_dir / "training_config.json").read_text())["train"]["init_from"] == str(FORECASTER)
    assert scratch.metrics["init"] is None and "Started from" not in (scratch.best_dir / "README.md").read_text()


def test_the_loaded_weights_are_the_sources_before_the_first_step(tmp_path):
    """--init-from copies the chosen modules bit for bit; the rest keeps its fresh initialisation."""
    from polyhead.loading import Initialisation, initialise_from
    from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting

    source = polyhead.AutoModel.from_pretrained(FORECASTER)
    config = ForecastingConfig.from_pretrained(FORECASTER)
    torch.manual_seed(123)
    model = PolyheadForForecasting(config)
    fresh_head = {k: v.clone() for k, v in model.adapter.head.state_dict().items()}
    report = initialise_from(model, Initialisation(source=str(FORECASTER), modules="backbone"))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    for key, value in model.adapter.head.state_dict().items():
        assert torch.equal(value, fresh_head[key]), f"{key} was not asked for"
    assert report["modules"] == ["backbone"] and all(k.startswith("adapter.") for k in report["new"])


def test_mismatched_shapes_are_listed_or_skipped(tmp_path, capsys):
    options = {**_options(tmp_path, "run", "co2_weekly"), "model.horizon": 26, "data.time_column": "date", "data.target_columns": ["co2"]}
    with pytest.raises(ConfigError, match=r"adapter\.head\.projection\.bias: \(156,\) in the source, \(78,\) here; adapter\.head\.projection\.weight: \(156, 832\) in the source, \(78, 832\) here"):
        polyhead.train("forecasting", cfg_options=options, init_from=str(FORECASTER))
    result = polyhead.train("forecasting", cfg_options=options, init_from=str(FORECASTER), init_ignore_mismatched=True)
    report = result.metrics["init"]
    # the horizon sizes the head's projection and the trend extrapolation (a (horizon, context) matrix)
    assert [m.split(":")[0] for m in report["mismatched"]] == ["adapter.head.projection.bias", "adapter.head.projection.weight", "adapter.trend.weight"]
    assert report["loaded"] == len(load_file(FORECASTER / "model.safetensors")) - 3


def test_bad_init_options_fail_before_training(tmp_path, capsys):
    base = _options(tmp_path, "run", "co2_weekly") | {"data.time_column": "date", "data.target_columns": ["co2"]}
    with pytest.raises(ConfigError, match="has no weights under decoder"):
        polyhead.train("forecasting", cfg_options=base, init_from=str(FORECASTER), init_modules="decoder")
    with pytest.raises(ConfigError, match="train.init_modules needs train.init_from"):
        polyhead.train("forecasting", cfg_options={**base, "train.init_modules": "backbone"})
    assert cli(["train", "forecasting", "--init-from", str(tmp_path / "missing"), "--cfg-options",
                f"train.output_dir={tmp_path / 'cli'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "cli" / "best").exists()
