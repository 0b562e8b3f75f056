"""Forecasting on real data (issue 18): panels, short and ragged histories, names and frequencies from the input,
covariates, statistical baselines, any horizon per call, and the forecast plot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import polyhead
from polyhead.errors import ConfigError, DataError, InputError
from polyhead.tasks.forecasting import ForecastingConfig, ForecastingTask, PolyheadForForecasting
from polyhead.tasks.forecasting.data import prepare_panel

from ..conftest import TINY_FORECASTING

TINY_MODEL = {k: v for k, v in TINY_FORECASTING.items() if k.startswith("model.")} | {"model.patch_mask": True, "model.seasonal_period": None}
FAST_TRAIN = {"train.epochs": 3, "train.batch_size": 16, "train.lr": 3e-3, "train.log_with": None, "train.progress_bar": False,
              "train.early_stopping_patience": None, "train.warmup_steps": 0}


def _panel(lengths=(20, 60, 500), seed=0) -> pd.DataFrame:
    """A long table: series of different lengths and start dates, a weekly season, a few missing values."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, length in enumerate(lengths):
        start = pd.Timestamp("2020-01-06") + pd.Timedelta(days=3 * i)
        t = np.arange(length)
        values = 10 * (i + 1) + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.3, length)
        values[length // 2] = np.nan
        parts.append(pd.DataFrame({"item_id": f"s{i}", "timestamp": pd.date_range(start, periods=length, freq="D"), "target": values}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)  # row order does not matter


def _train(tmp_path, source, name="run", **options):
    return polyhead.train("forecasting", cfg_options={
        **TINY_MODEL, "model.horizon": 4, **FAST_TRAIN, "train.output_dir": str(tmp_path / name),
        "data.source": str(source), "data.id_column": "item_id", "data.time_column": "timestamp", "data.target_columns": ["target"],
        "data.val_fraction": None, "data.test_fraction": None, "data.eval_stride": None, "data.baselines": ["seasonal_naive"],
        **options,
    })


@pytest.fixture(scope="module")
def panel_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("panel")
    _panel().to_parquet(tmp / "panel.parquet")
    return _train(tmp, tmp / "panel.parquet")


# -- 1. panels ----------------------------------------------------------------------------------------------------------
def test_a_panel_of_ragged_series_trains_and_evaluates_every_series(panel_run):
    data = panel_run.metrics["data"]
    assert data["series"] == 3 and data["missing_values"] == 3 and data["filled_values"] == 0
    splits = data["splits"]
    assert splits["train"]["series"] == 3 and splits["validation"]["series"] == 3 and splits["test"]["series"] == 3
    assert splits["test"]["windows"] == 3  # the last 4 steps of every series
    assert np.isfinite(panel_run.metrics["test"]["mase"]) and "seasonal_naive" in panel_run.metrics["baselines"]
    saved = ForecastingConfig.from_pretrained(panel_run.best_dir)
    assert saved.id_column == "item_id" and saved.freq == "D"


def test_panel_windows_are_per_series_time_splits_without_leakage():
    task = ForecastingTask()
    config = ForecastingConfig(context_length=32, horizon=4, patch_length=8, patch_stride=4, target_columns=["target"],
                               backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16})
    data = task.build_data({"source": _panel(), "id_column": "item_id", "time_column": "timestamp", "target_columns": ["target"]}, config)
    for split in (data.train, data.validation, data.test):
        for i in range(len(split)):
            item, origin, end = split.windows[i]
            window = split[i]
            assert window["past_observed_mask"].sum() >= 8
            length = len(split.items[item].values)
            assert end <= length
    ends = {int(i): int(o) for i, o, _ in data.test.windows}
    for item, origin, end in data.validation.windows:
        assert end <= ends[int(item)]  # validation targets end where the series' test targets start
    for item, origin, end in data.train.windows:
        assert end <= ends[int(item)] - 4
    window = data.test[0]
    assert set(window) == {"past_values", "past_observed_mask", "future_values", "future_observed_mask"}


def test_missing_values_stay_missing_or_are_filled_with_a_count(caplog):
    frame = _panel(lengths=(40,))
    panel = prepare_panel(frame, target_columns=["target"], time_column="timestamp", id_column="item_id")
    assert np.isnan(panel.items[0].values).sum() == 1 and panel.filled_values == 0
    frame = frame.drop(index=frame.index[5])  # a missing timestamp: a missing step on the grid
    panel = prepare_panel(frame, target_columns=["target"], time_column="timestamp", id_column="item_id")
    assert len(panel.items[0].values) == 40 and np.isnan(panel.items[0].values).sum() == 2
    with caplog.at_level("WARNING", logger="polyhead"):
        filled = prepare_panel(frame, target_columns=["target"], time_column="timestamp", id_column="item_id", fill_missing="interpolate")
    assert np.isfinite(filled.items[0].values).all() and filled.filled_values == 2
    assert "filled 2 of 40 target values" in caplog.text
    with pytest.raises(DataError, match="off its D grid"):
        prepare_panel(pd.concat([frame, frame.head(1).assign(timestamp=pd.Timestamp("2020-01-06 12:00"))]),
                      target_columns=["target"], time_column="timestamp", id_column="item_id")


# -- 2. short histories and any horizon ---------------------------------------------------------------------------------
def test_an_8_step_history_forecasts_with_a_masked_context(panel_run):
    fc = polyhead.pipeline("time-series-forecasting", model=str(panel_run.best_dir))
    history = pd.Series(np.linspace(10, 12, 8), index=pd.date_range("2024-01-01", periods=8, freq="D"), name="demand")
    inputs = fc.feature_extractor.to_series(history)
    assert inputs.observed.sum() == 8 and not inputs.observed[:-8].any() and (inputs.values[:-8] == 0).all()
    out = fc(history)
    assert len(out["forecast"]["demand"]) == 4 and all(np.isfinite(out["forecast"]["demand"]))
    with pytest.raises(InputError, match="has 7 steps; this model needs at least 8 observed steps"):
        fc(history[:7])
    gappy = np.concatenate([np.full(30, np.nan), np.arange(7.0)])
    with pytest.raises(InputError, match="have 7 observed"):
        fc(gappy)


def test_prediction_length_per_call(panel_run):
    fc = polyhead.pipeline("time-series-forecasting", model=str(panel_run.best_dir))
    history = np.sin(np.arange(40) / 3.0) + 5
    full = fc(history)
    short = fc(history, prediction_length=2)
    assert len(short["forecast"]["target"]) == 2 and short["forecast"]["target"] == full["forecast"]["target"][:2]
    with pytest.raises(InputError, match=r"prediction_length must be an integer in 1..4"):
        fc(history, prediction_length=5)


# -- 3. what comes out belongs to the input -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weekly_model(tmp_path_factory):
    """A tiny model trained on the weekly CO2 series (its frequency is W-SAT, its channel 'co2')."""
    tmp = tmp_path_factory.mktemp("weekly")
    result = polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "train.epochs": 1, "train.output_dir": str(tmp / "run"),
                                                         "data.baselines": ["seasonal_naive"]})
    return str(result.best_dir)


def test_a_daily_series_named_sales_comes_back_keyed_sales_with_daily_timestamps(weekly_model):
    fc = polyhead.pipeline("time-series-forecasting", model=weekly_model)
    sales = pd.Series(np.random.default_rng(0).normal(100, 5, 60), index=pd.date_range("2024-03-01", periods=60, freq="D"), name="sales")
    with pytest.warns(UserWarning, match=r"frequency is 'D'; the model was trained on 'W-SAT'"):
        out = fc(sales)
    assert out["target_columns"] == ["sales"] and set(out["forecast"]) == {"sales"} and set(out["quantiles"]) == {"sales"}
    assert out["timestamps"][:2] == ["2024-04-30T00:00:00", "2024-05-01T00:00:00"]
    frame = sales.rename("revenue").rename_axis("date").reset_index()
    with pytest.warns(UserWarning):
        assert fc(frame)["target_columns"] == ["revenue"]  # a DataFrame's own column, its time column found by name
    weekly = pd.Series(np.arange(60.0), index=pd.date_range("2024-01-06", periods=60, freq="W-SUN"), name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # W-SUN is weekly like W-SAT: no warning
        assert fc(weekly)["timestamps"][0] == "2025-03-02T00:00:00"
    assert fc(np.arange(60.0))["target_columns"] == ["co2"]  # an unnamed input takes the model's channel name


def test_a_panel_table_in_the_pipeline_gives_one_result_per_series(panel_run):
    fc = polyhead.pipeline("time-series-forecasting", model=str(panel_run.best_dir))
    frame = _panel(lengths=(30, 50), seed=1).rename(columns={"target": "sales"})
    outs = fc(frame)
    assert [o["item_id"] for o in outs] == ["s0", "s1"] or sorted(o["item_id"] for o in outs) == ["s0", "s1"]
    assert all(o["target_columns"] == ["sales"] and len(o["timestamps"]) == 4 for o in outs)


# -- 4. covariates ------------------------------------------------------------------------------------------------------
def _driven(seed=0, series=4, length=300) -> pd.DataFrame:
    """Sales driven by a known promotion flag (+8 on promotion days) on a flat, noisy level."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(series):
        promo = (rng.random(length) < 0.25).astype(float)
        sales = 20 + 8 * promo + rng.normal(0, 1.0, length)
        parts.append(pd.DataFrame({"item_id": f"store{i}", "timestamp": pd.date_range("2021-01-01", periods=length, freq="D"),
                                   "target": sales, "promo": promo, "region": "north" if i % 2 else "south"}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.slow
def test_covariates_that_carry_the_signal_improve_the_forecast(tmp_path):
    _driven().to_parquet(tmp_path / "promo.parquet")
    common = {"model.horizon": 8, "data.test_windows": 5, "data.val_windows": 2, "train.epochs": 6, "train.batch_size": 32}
    without = _train(tmp_path, tmp_path / "promo.parquet", "without", **common)
    with_cov = _train(tmp_path, tmp_path / "promo.parquet", "with", **common, **{"data.covariate_columns": ["promo"]})
    mae_without, mae_with = without.metrics["test"]["mae"], with_cov.metrics["test"]["mae"]
    assert mae_with < 0.75 * mae_without, (mae_with, mae_without)
    # the pipeline takes the covariates as DataFrame columns, the future ones as future_covariates
    fc = polyhead.pipeline("time-series-forecasting", model=str(with_cov.best_dir))
    history = _driven(seed=5, series=1).drop(columns=["item_id", "region"])
    promoted = fc(history, future_covariates=pd.DataFrame({"promo": [1, 0, 0, 1, 0, 0, 0, 0]}))["forecast"]["target"]
    plain = fc(history, future_covariates=pd.DataFrame({"promo": [0] * 8}))["forecast"]["target"]
    lift = np.asarray(promoted) - np.asarray(plain)
    assert lift[0] > 3 and lift[3] > 3, lift  # promotion days are forecast higher (the true lift is +8)
    assert lift[[0, 3]].mean() > lift[4:].mean() + 3, lift  # ... than days without one
    with pytest.raises(InputError, match="future_covariates"):
        fc(history)


def test_covariate_and_static_inputs_reach_the_model():
    config = ForecastingTask.example_configs()[1]
    torch.manual_seed(0)
    model = PolyheadForForecasting(config).eval()
    inputs = ForecastingTask().export_spec(config).make_inputs({"batch": 2})
    base = model(**inputs).prediction
    changed = dict(inputs, future_time_features=inputs["future_time_features"] + 0.5)
    assert not torch.allclose(model(**changed).prediction, base)
    other_store = dict(inputs, static_categorical_features=(inputs["static_categorical_features"] + 1) % 3)
    assert not torch.allclose(model(**other_store).prediction, base)
    with pytest.raises(InputError, match="past_time_features"):
        model(past_values=inputs["past_values"], past_observed_mask=inputs["past_observed_mask"])


def test_static_categories_come_from_the_training_data_and_unseen_ones_map_to_zero():
    frame = _driven(series=3, length=40)
    panel = prepare_panel(frame, target_columns=["target"], time_column="timestamp", id_column="item_id", static_columns=["region"],
                          covariate_columns=["promo"])
    assert panel.static_categories == {"region": ["north", "south"]}
    assert [int(it.static[0]) for it in panel.items] == [2, 1, 2]
    again = prepare_panel(frame.replace({"region": {"north": "east"}}), target_columns=["target"], time_column="timestamp",
                          id_column="item_id", static_columns=["region"], static_categories=panel.static_categories)
    assert [int(it.static[0]) for it in again.items] == [2, 0, 2]
    with pytest.raises(DataError, match="must be constant per series"):
        prepare_panel(frame.assign(region=np.arange(len(frame)) % 2), target_columns=["target"], time_column="timestamp",
                      id_column="item_id", static_columns=["region"])


# -- 5. baselines -------------------------------------------------------------------------------------------------------
def test_statistical_baselines_come_from_their_libraries_and_beat_naive_on_a_clean_season():
    from polyhead.tasks.forecasting.baselines import BASELINES, forecast

    t = np.arange(96)
    history = 50 + 0.2 * t + 10 * np.sin(2 * np.pi * t / 12)
    future = 50 + 0.2 * np.arange(96, 108) + 10 * np.sin(2 * np.pi * np.arange(96, 108) / 12)
    naive = np.abs(history[-1] - future).mean()
    for name in BASELINES:
        out, failed = forecast(name, history, 12, 12, [0.1, 0.5, 0.9])
        assert out.shape == (12, 3) and not failed and (out[:, 0] <= out[:, 2]).all()
        assert np.abs(out[:, 1] - future).mean() < 0.5 * naive, name
    out, failed = forecast("ets", np.array([1.0, np.nan]), 3, 1, [0.5])
    assert out.shape == (3, 1) and np.isfinite(out).all()  # too short to fit: the seasonal-naive forecast, counted


def test_task_baselines_score_every_baseline_on_the_models_test_windows(tmp_path):
    task = ForecastingTask()
    section = {"source": _panel(lengths=(60, 80)), "id_column": "item_id", "time_column": "timestamp", "target_columns": ["target"],
               "baselines": ["seasonal_naive", "ets", "theta", "auto_arima"]}
    config = task.build_config({"context_length": 32, "horizon": 4, "patch_length": 8, "patch_stride": 4, "seasonal_period": 7,
                                "backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16}}, section)
    data = task.build_data(section, config)
    results = task.baselines(data, config)
    assert set(results) == {"seasonal_naive", "ets", "theta", "auto_arima"}
    for name, metrics in results.items():
        assert {"mae", "mase", "wql"} <= set(metrics) and np.isfinite(metrics["mase"]), name
    assert 0.6 < results["seasonal_naive"]["mase"] < 1.6  # it repeats the weekly season: its errors are the noise's
    with pytest.raises(ConfigError, match="known baselines"):
        task.settings({**section, "baselines": ["prophet"]})


# -- 7. the plot --------------------------------------------------------------------------------------------------------
def test_the_forecast_plot(panel_run, tmp_path):
    import matplotlib.figure

    fc = polyhead.pipeline("time-series-forecasting", model=str(panel_run.best_dir))
    history = pd.Series(np.sin(np.arange(50) / 2) + 3, index=pd.date_range("2024-01-01", periods=50, freq="D"), name="load")
    figure = fc(history, plot=True)
    assert isinstance(figure, matplotlib.figure.Figure) and len(figure.axes) == 1
    ax = figure.axes[0]
    assert ax.get_title(loc="left") == "load" and len(ax.lines) == 2 and len(ax.collections) == 1  # history, median, band
    panel = fc(_panel(lengths=(30, 40, 50, 60, 70, 80, 90), seed=2), plot=True)
    assert len(panel.axes) == 6  # a panel's first six series
    out = fc(history, plot=tmp_path / "forecast.png")
    assert (tmp_path / "forecast.png").stat().st_size > 5000 and set(out["forecast"]) == {"load"}
