"""Forecasts do not depend on the units of a series: ``f(a * x) == a * f(x)`` for a from 1e-8 to 1e8.

RevIN normalises each window by its own mean and standard deviation; an absolute epsilon
in that standard deviation made small-scale series (CO2 in millions of ppm, anomalies in
thousandths) come out wrong. The epsilon is relative to the window's magnitude now.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polyhead
from polyhead.errors import InputError
from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting, example_series

SCALES = (1e-8, 1e-6, 1e-3, 1.0, 1e3, 1e8)


@pytest.fixture(scope="module")
def fc():
    return polyhead.pipeline("time-series-forecasting")


@pytest.fixture(scope="module")
def co2() -> pd.Series:
    return example_series()["co2"].interpolate()


@pytest.fixture(scope="module")
def anomalies(co2) -> pd.Series:
    """CO2 minus its linear trend: a series around zero (std about 2.4 ppm)."""
    t = np.arange(len(co2), dtype=np.float64)
    slope, intercept = np.polyfit(t, co2.to_numpy(), 1)
    return co2 - (slope * t + intercept)


@pytest.fixture(scope="module")
def short_gappy(anomalies) -> pd.Series:
    """Twenty weeks with two missing: the statistics are taken over the observed steps only."""
    recent = anomalies[-20:].copy()
    recent.iloc[[3, 11]] = np.nan
    return recent


def _arrays(out: dict) -> tuple[np.ndarray, np.ndarray]:
    quantiles = out["quantiles"]["co2"]
    return np.asarray(out["forecast"]["co2"]), np.stack([np.asarray(quantiles[q]) for q in sorted(quantiles)])


@pytest.mark.parametrize("series", ["co2", "anomalies", "short_gappy"])
def test_forecasts_are_scale_equivariant(fc, request, series):
    history = request.getfixturevalue(series)
    point, quantiles = _arrays(fc(history))
    for a in SCALES:
        scaled_point, scaled_quantiles = _arrays(fc(history * a))
        np.testing.assert_allclose(scaled_point, a * point, rtol=1e-4, err_msg=f"{series} x {a:g}")
        np.testing.assert_allclose(scaled_quantiles, a * quantiles, rtol=1e-4, atol=1e-4 * a * np.abs(quantiles).max(),
                                   err_msg=f"{series} quantiles x {a:g}")


def test_constant_series_stay_constant(fc):
    for c in (1e-8, 1e-3, -2.5, 400.0, 4e10):
        forecast = np.asarray(fc(np.full(200, c))["forecast"]["target"])
        np.testing.assert_allclose(forecast, c, rtol=1e-4, err_msg=f"constant {c:g}")
        short = np.asarray(fc(np.full(10, c))["forecast"]["target"])  # left-padded and masked: the padding is not data
        np.testing.assert_allclose(short, c, rtol=1e-4, err_msg=f"short constant {c:g}")
    zero = np.asarray(fc(np.zeros(200))["forecast"]["target"])
    assert np.all(np.abs(zero) < 1e-30)


def test_very_large_and_very_small_series(fc, co2):
    """Values far beyond 1e8 are forecast too (the std is computed scale-safely); what float32 cannot hold is refused."""
    point, _ = _arrays(fc(co2))
    np.testing.assert_allclose(_arrays(fc(co2 * 1e20))[0], 1e20 * point, rtol=1e-4)
    np.testing.assert_allclose(_arrays(fc(co2 * 1e-20))[0], 1e-20 * point, rtol=1e-4)
    with pytest.raises(InputError, match="overflow float32 normalisation"):
        fc(np.where(np.arange(200) % 2, 3e38, -3e38))
    with pytest.raises(InputError, match=r"at most .*e-39 in magnitude; float32"):
        fc(co2.to_numpy() * 1e-41)


def test_revin_statistics_scale_exactly():
    """loc and scale follow the input's scale (relative 1e-6); the loss, in normalised units, does not change."""
    config = ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4,
                               backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16})
    torch.manual_seed(0)
    model = PolyheadForForecasting(config).eval()
    past, future = torch.randn(3, 32, 1) + 5.0, torch.randn(3, 8, 1) + 5.0
    mask = torch.ones(3, 32, 1, dtype=torch.bool)
    mask[0, :20] = False  # a short history
    mask[1, 5:9] = False  # a gap
    base = model(past_values=past, past_observed_mask=mask, future_values=future)
    for a in SCALES:
        out = model(past_values=past * a, past_observed_mask=mask, future_values=future * a)
        torch.testing.assert_close(out.loc, base.loc * a, rtol=1e-6, atol=0)
        torch.testing.assert_close(out.scale, base.scale * a, rtol=1e-6, atol=0)
        torch.testing.assert_close(out.prediction, base.prediction * a, rtol=1e-5, atol=0)
        torch.testing.assert_close(out.loss, base.loss, rtol=1e-4, atol=0)


def test_an_all_zero_window_forecasts_zero_and_trains_with_a_finite_loss():
    config = ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4,
                               backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16})
    model = PolyheadForForecasting(config)
    out = model(past_values=torch.zeros(2, 32, 1), future_values=torch.ones(2, 8, 1) * 3.0)
    assert torch.isfinite(out.loss) and torch.isfinite(out.prediction).all()
    assert out.prediction.abs().max() < 1e-30
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
