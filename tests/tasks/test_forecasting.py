"""Forecasting task: config, model, save/load, data splits, metrics, training and resume."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from safetensors.torch import load_file

import polyhead
from polyhead.errors import ConfigError, DataError, InputError, ModelLoadError, UnknownNameError
from polyhead.tasks.forecasting import (
    ForecastingConfig,
    ForecastingMetrics,
    ForecastingTask,
    PolyheadForForecasting,
    seasonal_naive,
)
from polyhead.tasks.forecasting.data import ForecastingWindows, load_table, prepare_series, split_by_time
from polyhead.training import Trainer


# -- config ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"patch_length": 200}, "must not exceed context_length"),
        ({"num_channels": 2}, "has 1 names, but num_channels is 2"),
        ({"backbone": {"dim": 3}}, "must be a dict with a 'type' key"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ForecastingConfig(**kwargs)


def test_model_section_unknown_key_has_did_you_mean():
    with pytest.raises(ConfigError, match=r"model.horizn is not an option.*Did you mean 'horizon'"):
        ForecastingConfig.from_model_section({"horizn": 3})


def test_model_rejects_wrong_parts(tiny_config):
    bad = tiny_config.to_dict()
    bad["backbone"] = {**bad["backbone"], "type": "nope"}
    with pytest.raises(UnknownNameError, match="Unknown backbone 'nope'"):
        PolyheadForForecasting(ForecastingConfig(**{k: v for k, v in bad.items() if k in ForecastingConfig.field_names()}))
    too_many = ForecastingConfig(**{**{k: v for k, v in tiny_config.to_dict().items() if k in ForecastingConfig.field_names()}, "patch_stride": 1})
    with pytest.raises(ConfigError, match="more than the backbone's max_length"):
        PolyheadForForecasting(too_many)


# -- model ----------------------------------------------------------------------------
def test_forward_shapes_and_loss_only_with_labels(tiny_config):
    model = PolyheadForForecasting(tiny_config)
    past = torch.randn(4, 32, 3) * 10 + 50
    out = model(past_values=past)
    assert out.loss is None
    assert out.prediction.shape == (4, 8, 3)
    assert out.quantile_predictions.shape == (4, 8, 3, 3)
    torch.testing.assert_close(out.prediction, out.quantile_predictions[..., 1])
    out = model(past_values=past, future_values=torch.randn(4, 8, 3))
    assert out.loss is not None and out.loss.ndim == 0
    model.eval()
    assert type(model(past_values=past)) is type(out)


def test_forecast_follows_the_data_scale(tiny_config):
    """RevIN: shifting and scaling the history shifts and scales the forecast."""
    model = PolyheadForForecasting(tiny_config).eval()
    past = torch.randn(2, 32, 3)
    a = model(past_values=past).prediction
    b = model(past_values=past * 100 + 7).prediction
    torch.testing.assert_close(b, a * 100 + 7, atol=1e-3, rtol=1e-4)


def test_channel_independence(tiny_config):
    model = PolyheadForForecasting(tiny_config).eval()
    past = torch.randn(1, 32, 3)
    changed = past.clone()
    changed[..., 2] = torch.randn(32)
    a, b = model(past_values=past).prediction, model(past_values=changed).prediction
    torch.testing.assert_close(a[..., :2], b[..., :2])


def test_bad_model_inputs(tiny_config):
    model = PolyheadForForecasting(tiny_config)
    with pytest.raises(InputError, match=r"past_values must have shape \(batch, 32, 3\)"):
        model(past_values=torch.randn(2, 31, 3))
    with pytest.raises(InputError, match="floating-point"):
        model(past_values=torch.ones(2, 32, 3, dtype=torch.long))
    with pytest.raises(InputError, match=r"future_values must have shape \(batch, 8, 3\)"):
        model(past_values=torch.randn(2, 32, 3), future_values=torch.randn(2, 7, 3))


@pytest.mark.parametrize("position", ["sinusoidal", "rotary", "learned"])
def test_save_and_load_give_identical_outputs(tmp_path, tiny_config, position):
    tiny_config.backbone["position"] = position
    model = PolyheadForForecasting(tiny_config).eval()
    past = torch.randn(3, 32, 3)
    expected = model(past_values=past).quantile_predictions
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    # computed buffers are not in the checkpoint: transformers would leave them uninitialised
    assert not any("sinusoidal_table" in k or "rotary_inv_freq" in k for k in load_file(tmp_path / "model.safetensors"))
    for loader in (polyhead.AutoModel, transformers.AutoModel, PolyheadForForecasting):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, PolyheadForForecasting)
        torch.testing.assert_close(loaded(past_values=past).quantile_predictions, expected, rtol=0, atol=0)
        for name, buffer in model.named_buffers():
            torch.testing.assert_close(dict(loaded.named_buffers())[name], buffer, rtol=0, atol=0)


def test_save_leaves_no_temporary_files(tmp_path, tiny_config):
    PolyheadForForecasting(tiny_config).save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".polyhead.json", "config.json", "model.safetensors", "preprocessor_config.json"]


# -- loading errors -------------------------------------------------------------------
def test_loading_errors(tmp_path, tiny_config):
    with pytest.raises(ModelLoadError, match="does not exist; expected a polyhead model dir"):
        polyhead.AutoModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="is not a directory"):
        polyhead.AutoModel.from_pretrained(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        polyhead.AutoModel.from_pretrained(tmp_path / "empty")
    other = tmp_path / "bert"
    transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(other)
    with pytest.raises(ModelLoadError, match="holds a bert model, not a polyhead model"):
        polyhead.AutoModel.from_pretrained(other)

    good = tmp_path / "good"
    PolyheadForForecasting(tiny_config).save_pretrained(good)
    weights = (good / "model.safetensors").read_bytes()
    (good / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        polyhead.AutoModel.from_pretrained(good)
    (good / "model.safetensors").unlink()
    torch.save({}, good / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="does not unpickle"):
        polyhead.AutoModel.from_pretrained(good)

    mismatched = tmp_path / "mismatched"
    PolyheadForForecasting(tiny_config).save_pretrained(mismatched)
    cfg = json.loads((mismatched / "config.json").read_text())
    cfg["horizon"] = 9
    (mismatched / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not match its config"):
        polyhead.AutoModel.from_pretrained(mismatched)


# -- data -----------------------------------------------------------------------------
def test_embedded_series_is_real_co2():
    series = prepare_series(load_table("co2_weekly"), time_column="date", target_columns=["co2"])
    assert series.values.shape == (2284, 1)
    assert series.freq == "W-SAT"
    assert int(np.isnan(series.values).sum()) == 59  # missing weeks stay missing (masked), never silently filled
    assert 310 < np.nanmin(series.values) < 320 and 365 < np.nanmax(series.values) < 375  # ppm, 1958-2001
    filled = prepare_series(load_table("co2_weekly"), time_column="date", target_columns=["co2"], fill_missing="interpolate")
    assert np.isfinite(filled.values).all()


def test_split_by_time_has_no_leakage():
    from polyhead.tasks.forecasting.data import SeriesItem, WindowSpec, origins

    split = split_by_time(1000, context_length=50, horizon=10, val_fraction=0.1, test_fraction=0.2)
    item = SeriesItem("s", np.arange(1, 1001, dtype=np.float32)[:, None], None, None)  # value = step + 1
    targets = {}
    for name in ("train", "validation", "test"):
        pairs = origins(item, *getattr(split, name), prediction_length=10, stride=1, from_end=name != "train")
        windows = ForecastingWindows([item], np.array([(0, t, end) for t, end in pairs]), WindowSpec(context_length=50, horizon=10))
        targets[name] = set()
        for i in range(len(windows)):
            window = windows[i]
            future = window["future_values"][window["future_observed_mask"]]
            past = window["past_values"][window["past_observed_mask"]]
            targets[name] |= {int(v) - 1 for v in future}
            assert past.max() < future.min()  # the context is always strictly before the targets
            assert len(past) >= 8  # short contexts are left-padded and masked, down to 8 observed steps
    assert max(targets["train"]) < min(targets["validation"]) and max(targets["validation"]) < min(targets["test"])
    assert max(targets["test"]) == 999 and min(targets["train"]) == 8


@pytest.mark.parametrize("form", ["csv", "parquet", "pandas", "datasets", "saved"])
def test_data_sources(tmp_path, multivariate_frame, form):
    source = {
        "csv": lambda: (multivariate_frame.to_csv(tmp_path / "s.csv", index=False), str(tmp_path / "s.csv"))[1],
        "parquet": lambda: (multivariate_frame.to_parquet(tmp_path / "s.parquet"), str(tmp_path / "s.parquet"))[1],
        "pandas": lambda: multivariate_frame,
        "datasets": lambda: datasets.Dataset.from_pandas(multivariate_frame),
        "saved": lambda: (datasets.Dataset.from_pandas(multivariate_frame).save_to_disk(tmp_path / "ds"), str(tmp_path / "ds"))[1],
    }[form]()
    series = prepare_series(load_table(source), time_column="when", target_columns=["a", "b", "c"])
    assert series.values.shape == (300, 3)
    np.testing.assert_allclose(series.values[:, 1], multivariate_frame["b"].to_numpy(), rtol=1e-6)


def test_data_errors(tmp_path, multivariate_frame):
    with pytest.raises(DataError, match="is not an existing file or folder"):
        load_table(str(tmp_path / "nope.csv"))
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(UnknownNameError, match="Unknown data file type '.txt'"):
        load_table(str(tmp_path / "x.txt"))
    table = load_table(multivariate_frame)
    with pytest.raises(DataError, match=r"Column\(s\) \['z'\] not found"):
        prepare_series(table, time_column="when", target_columns=["z"])
    with pytest.raises(DataError, match="not numeric"):
        prepare_series(load_table(multivariate_frame.assign(a="x")), time_column="when", target_columns=["a"])
    with pytest.raises(DataError, match="duplicate timestamps"):
        prepare_series(load_table(pd.concat([multivariate_frame, multivariate_frame.tail(1)])), time_column="when", target_columns=["a"])
    gappy = multivariate_frame.copy()
    gappy.loc[5:9, "a"] = np.nan
    with pytest.raises(DataError, match="5 missing values"):
        prepare_series(load_table(gappy), time_column="when", target_columns=["a"], fill_missing="error")
    masked = prepare_series(load_table(gappy), time_column="when", target_columns=["a"])
    assert int(np.isnan(masked.values).sum()) == 5  # kept missing: the windows mask them
    filled = prepare_series(load_table(gappy), time_column="when", target_columns=["a"], fill_missing="interpolate")
    assert np.isfinite(filled.values).all()
    with pytest.raises(DataError, match="fewer than the horizon"):
        split_by_time(100, context_length=10, horizon=30, val_fraction=0.1, test_fraction=0.2)
    with pytest.raises(DataError, match="one window needs 8 context steps"):
        split_by_time(24, context_length=65, horizon=6, val_fraction=0.25, test_fraction=0.25)


def test_rows_are_sorted_by_time(multivariate_frame):
    shuffled = multivariate_frame.sample(frac=1.0, random_state=0)
    a = prepare_series(load_table(shuffled), time_column="when", target_columns=["a"]).values
    b = prepare_series(load_table(multivariate_frame), time_column="when", target_columns=["a"]).values
    np.testing.assert_array_equal(a, b)


# -- metrics --------------------------------------------------------------------------
def test_seasonal_naive_repeats_the_last_season():
    past = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1)
    np.testing.assert_array_equal(seasonal_naive(past, horizon=5, period=3).ravel().numpy(), [7, 8, 9, 7, 8])


def test_metrics_match_hand_computation():
    history = torch.tensor([[[1.0], [2.0], [4.0], [3.0]]])  # seasonal diffs (m=1): 1, 2, 1 -> scale 4/3
    target = torch.tensor([[[2.0], [4.0]]])
    prediction = torch.tensor([[[3.0], [3.0]]])
    metrics = ForecastingMetrics(seasonal_period=1, quantiles=[0.5])
    metrics.update({"prediction": prediction, "target": target, "history": history, "quantile_predictions": prediction[..., None]})
    result = metrics.compute()
    assert result["mae"] == pytest.approx(1.0)
    assert result["mse"] == pytest.approx(1.0)
    assert result["mase"] == pytest.approx(1.0 / (4 / 3))
    assert result["smape"] == pytest.approx((2 * 1 / 5 + 2 * 1 / 7) / 2)
    assert result["quantile_loss"] == pytest.approx(0.5)


# -- training -------------------------------------------------------------------------
@pytest.mark.slow
def test_training_lowers_validation_loss_and_beats_seasonal_naive(tiny_forecasting):
    result = polyhead.train("forecasting", cfg_options={**tiny_forecasting, "train.epochs": 4, "train.log_with": "tensorboard"})
    history = result.metrics["history"]
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]
    test, naive = result.metrics["test"], result.metrics["baselines"]["seasonal_naive"]
    assert test["mae"] < naive["mae"] and test["mse"] < naive["mse"] and test["mase"] < naive["mase"]
    best = Path(result.best_dir)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "metrics.json", "training_config.json"} <= {
        p.name for p in best.iterdir()
    }
    saved = json.loads((best / "metrics.json").read_text())
    assert saved["test"] == pytest.approx(test)
    assert (Path(tiny_forecasting["train.output_dir"]) / "logs").is_dir()  # tracker output


def _train_with(options: dict, callbacks=()):
    return polyhead.train("forecasting", cfg_options=options, callbacks=callbacks)


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_forecasting):
    options = {**tiny_forecasting, "train.epochs": 2, "train.eval_every": 5, "train.checkpoint_every": 5, "train.grad_accum": 2}
    full = _train_with({**options, "train.output_dir": str(tmp_path / "full")})

    class Crash(RuntimeError):
        pass

    def crash_at_step_12(trainer: Trainer) -> None:
        if trainer.state.global_step == 12:
            raise Crash("simulated crash")

    interrupted = {**options, "train.output_dir": str(tmp_path / "resumed")}
    with pytest.raises(Crash):
        _train_with(interrupted, callbacks=[crash_at_step_12])
    assert (tmp_path / "resumed" / "checkpoints" / "step-00000010").is_dir()
    resumed = polyhead.train("forecasting", cfg_options=interrupted, resume=True)

    a = load_file(tmp_path / "full" / "checkpoints" / f"step-{full.metrics['global_step']:08d}" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / f"step-{resumed.metrics['global_step']:08d}" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed.metrics["test"] == pytest.approx(full.metrics["test"])
    assert resumed.metrics["best_step"] == full.metrics["best_step"]


@pytest.mark.slow
def test_bf16_and_gradient_accumulation_train(tmp_path, tiny_forecasting):
    import subprocess
    import sys

    from ..conftest import cli_options

    runs = {}
    for precision in ("no", "bf16"):  # Accelerate fixes the precision per process: one process each
        out = tmp_path / precision
        options = cli_options(**{"train.epochs": 1, "train.grad_accum": 4, "train.precision": precision, "train.output_dir": str(out)})
        done = subprocess.run([sys.executable, "-m", "polyhead", "train", "forecasting", "--cfg-options", *options], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[precision] = json.loads((out / "metrics.json").read_text())
    fp32, bf16 = runs["no"], runs["bf16"]
    batches = -(-fp32["data"]["splits"]["train"]["windows"] // 64)
    assert bf16["global_step"] == fp32["global_step"] == -(-batches // 4)  # one optimizer step per 4 batches
    # autocast really ran in bf16: close to fp32, but not bit-identical
    assert bf16["test"]["mae"] == pytest.approx(fp32["test"]["mae"], rel=0.05)
    assert bf16["test"]["mae"] != fp32["test"]["mae"]


def test_precision_is_fixed_per_process(tiny_forecasting):
    polyhead.train("forecasting", cfg_options={**tiny_forecasting, "train.epochs": 1})  # fp32 in this process
    with pytest.raises(ConfigError, match="fixes the precision once per process"):
        polyhead.train("forecasting", cfg_options={**tiny_forecasting, "train.epochs": 1, "train.precision": "bf16"})


def test_resume_without_checkpoint_is_an_error(tiny_forecasting):
    with pytest.raises(DataError, match="no checkpoint found"):
        polyhead.train("forecasting", cfg_options=tiny_forecasting, resume=True)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ({"train.epohcs": 3}, ConfigError, "Did you mean 'epochs'"),
        ({"train.batch_size": 0}, ConfigError, "train.batch_size must be a positive integer"),
        ({"train.batch_size": 100000}, ConfigError, "larger than the training set"),
        ({"train.precision": "fp8"}, UnknownNameError, "Unknown train.precision 'fp8'"),
        ({"train.precision": "fp16"}, ConfigError, "needs a GPU; on the CPU use 'bf16'"),
        ({"data.sorce": "x"}, ConfigError, "Did you mean 'source'"),
        ({"data.source": "/nonexistent.csv"}, DataError, "is not an existing file or folder"),
        ({"model.horizon": -1}, ConfigError, "horizon must be a positive integer"),
        ({"model.backbone.type": "nope"}, UnknownNameError, "Unknown backbone 'nope'"),
        ({"train.best_metric": "accuracy"}, ConfigError, "best_metric 'accuracy' is not computed"),
        ({"trian.epochs": 1}, ConfigError, "Did you mean 'train'"),
    ],
)
def test_bad_configs_fail_with_clear_errors(tiny_forecasting, override, error, message):
    with pytest.raises(error, match=message):
        polyhead.train("forecasting", cfg_options={**tiny_forecasting, "train.epochs": 1, **override})


def test_task_is_registered_with_the_auto_classes():
    assert transformers.AutoConfig.for_model("polyhead-forecasting").__class__ is ForecastingConfig
    assert transformers.AutoModel._model_mapping[ForecastingConfig] is PolyheadForForecasting
    assert polyhead.registry.get(polyhead.registry.TASKS, "forecasting") is ForecastingTask
