"""The time-series-forecasting pipeline: default model, explicit dirs, every input form, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import transformers

import polyhead
from polyhead.errors import InputError, ModelLoadError, UnknownNameError
from polyhead.pipelines import TimeSeriesForecastingPipeline, default_model_dir


@pytest.fixture(scope="module")
def co2() -> pd.Series:
    frame = pd.read_csv(default_model_dir("time-series-forecasting").parent.parent / "assets" / "co2_weekly.csv", parse_dates=["date"])
    return frame.set_index("date")["co2"].interpolate().asfreq("W-SAT")


@pytest.fixture(scope="module")
def fc():
    return polyhead.pipeline("time-series-forecasting")


def test_default_model_is_embedded_and_trained(fc):
    assert isinstance(fc, TimeSeriesForecastingPipeline)
    assert fc.model.config.target_columns == ["target"]  # its channel's name; forecasts are keyed by the input's own names
    assert fc.model.name_or_path == str(default_model_dir("time-series-forecasting"))
    # its committed metrics come from `polyhead train` on the forecasting corpus: tested on held-out series, beside the baselines
    import json

    folder = default_model_dir("time-series-forecasting")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert json.loads((folder / "training_config.json").read_text())["data"]["source"] == "forecasting_corpus"
    assert metrics["data"]["splits"]["test"]["series"] == metrics["data"]["heldout_series"] > 30
    assert set(metrics["baselines"]) == {"seasonal_naive", "ets", "theta", "auto_arima"}
    assert metrics["test"]["mase"] < metrics["baselines"]["seasonal_naive"]["mase"]
    assert len(fc.model.config.freq) >= 6  # yearly to half-hourly


def test_series_with_time_index(fc, co2):
    out = fc(co2)
    horizon = fc.model.config.horizon
    assert out["target_columns"] == ["co2"]
    assert len(out["forecast"]["co2"]) == horizon
    assert set(out["quantiles"]["co2"]) == {"0.1", "0.5", "0.9"}
    lo, mid, hi = (np.array(out["quantiles"]["co2"][q]) for q in ("0.1", "0.5", "0.9"))
    assert (lo <= hi).all() and np.allclose(mid, out["forecast"]["co2"])
    assert out["timestamps"][0] == "2002-01-05T00:00:00" and len(out["timestamps"]) == horizon
    # a sensible CO2 forecast: next year's level is near the last year's, plus the trend
    assert abs(np.mean(out["forecast"]["co2"]) - co2[-52:].mean()) < 5


@pytest.mark.parametrize("form", ["numpy-1d", "numpy-2d", "list", "rows", "tensor", "frame", "frame-time-column"])
def test_every_input_form_gives_the_same_forecast(fc, co2, form):
    """The same numbers whatever the form; the key is the input's name (an unnamed input: the model's channel, ``target``)."""
    values = co2.to_numpy()
    converted = {
        "numpy-1d": lambda: values,
        "numpy-2d": lambda: values[:, None],
        "list": lambda: values.tolist(),
        "rows": lambda: [[v] for v in values.tolist()],
        "tensor": lambda: torch.tensor(values),
        "frame": lambda: co2.to_frame(),
        "frame-time-column": lambda: co2.rename_axis("date").reset_index(),
    }[form]()
    out = fc(converted)
    name = "co2" if form.startswith("frame") else "target"
    assert out["target_columns"] == [name]
    np.testing.assert_allclose(out["forecast"][name], fc(co2)["forecast"]["co2"], rtol=1e-5)
    assert ("timestamps" in out) == form.startswith("frame")


def test_batches(fc, co2):
    outs = fc([co2, co2[:-52], co2.to_numpy()[:-104]])
    assert isinstance(outs, list) and len(outs) == 3
    assert outs[0]["timestamps"][0] == "2002-01-05T00:00:00"
    assert outs[1]["timestamps"][0] == "2001-01-06T00:00:00"
    stacked = fc(np.stack([co2.to_numpy()[-200:], co2.to_numpy()[-300:-100]])[..., None])  # (batch, steps, channels)
    assert len(stacked) == 2
    assert stacked[0]["forecast"] == fc(co2.to_numpy()[-200:])["forecast"]


def test_explicit_model_dir_and_transformers_pipeline(co2):
    path = str(default_model_dir("time-series-forecasting"))
    ours = polyhead.pipeline("forecasting", model=path)
    theirs = transformers.pipeline("time-series-forecasting", model=path)
    assert type(theirs) is TimeSeriesForecastingPipeline
    assert ours(co2)["forecast"] == theirs(co2)["forecast"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda s: s[:7], "has 7 steps; this model needs at least 8 observed steps"),
        (lambda s: np.full(200, np.nan), "have 0 observed"),
        (lambda s: s.to_numpy().copy().__setitem__(-1, np.inf) or None, None),
        (lambda s: np.zeros((200, 2)), r"forecasts 1 channel\(s\) \['target'\]; the history has 2 "),
        (lambda s: np.zeros((2, 200)), r"the history has 200 \(a 2-D history is \(steps, channels\)"),
        (lambda s: pd.DataFrame({"x": ["a"] * 200}), "non-numeric column"),
        (lambda s: pd.DataFrame({"x": np.ones(200), "y": np.ones(200)}), r"Expected the target columns \['target'\]"),
        (lambda s: "hello", "got str"),
        (lambda s: [], "empty history"),
        (lambda s: [[1.0, 2.0], [3.0]], "ragged or non-numeric"),
        (lambda s: np.array(["a"] * 200), "must be numeric"),
        (lambda s: np.zeros((2, 3, 4, 5)), r"got a 4-D array of shape \(2, 3, 4, 5\)"),
        (lambda s: [np.zeros((2, 3, 4))], r"must be 1-D \(steps,\) or 2-D"),
        (lambda s: np.zeros((0, 104, 1)), "empty batch"),
        (lambda s: np.where(np.arange(200) % 2, 3e38, -3e38), "overflow float32 normalisation"),
    ],
)
def test_bad_inputs(fc, co2, bad, message):
    value = bad(co2)
    if message is None:  # an inf in the history
        value = co2.to_numpy().copy()
        value[-1] = np.inf
        message = "contain infinite values"
    with pytest.raises(InputError, match=message):
        fc(value)


def test_bad_pipeline_arguments(tmp_path, fc, co2):
    with pytest.raises(UnknownNameError, match="Unknown pipeline task 'segmentaton'"):
        polyhead.pipeline("segmentaton")
    with pytest.raises(ModelLoadError, match="does not exist"):
        polyhead.pipeline("forecasting", model=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        polyhead.pipeline("forecasting", model=str(tmp_path / "empty"))
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        fc(co2, horizon=3)
    with pytest.raises(InputError, match=r"prediction_length must be an integer in 1..52"):
        fc(co2, prediction_length=53)


def test_short_gappy_histories_and_any_horizon(fc, co2):
    """A few weeks of history, with a gap, forecast any number of steps up to the horizon."""
    recent = co2[-30:].copy()
    recent.iloc[10:14] = np.nan
    out = fc(recent, prediction_length=13)
    assert len(out["forecast"]["co2"]) == len(out["timestamps"]) == 13
    assert abs(out["forecast"]["co2"][0] - co2.iloc[-1]) < 5
    assert out["forecast"]["co2"] == fc(co2[-30:].where(recent.notna()), prediction_length=13)["forecast"]["co2"]
