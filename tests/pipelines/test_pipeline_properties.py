"""Property-based: whatever a user feeds the pipeline, the answer is a forecast or a polyhead error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyhead
from polyhead.errors import PolyheadError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fc():
    return polyhead.pipeline("time-series-forecasting")


def _check(fc, value) -> None:
    try:
        out = fc(value)
    except PolyheadError:
        return
    results = out if isinstance(out, list) else [out]
    for result in results:
        forecast = result["forecast"]["co2"]
        assert len(forecast) == fc.model.config.horizon
        assert all(math.isfinite(v) for v in forecast)


floats = st.floats(allow_nan=False, allow_infinity=False, width=32, min_value=-1e6, max_value=1e6) | st.sampled_from([np.nan, np.inf, -np.inf])
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int16, np.int64, np.uint8, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=120),
    elements=None,
)


@SETTINGS
@given(arrays)
def test_random_arrays(fc, array):
    _check(fc, array)


@SETTINGS
@given(st.integers(100, 120), st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(allow_nan=False, allow_infinity=False))
def test_constant_and_extreme_levels(fc, length, level, spread):
    values = np.full(length, level, dtype=np.float64) + spread * np.sin(np.arange(length))
    _check(fc, values)


@SETTINGS
@given(st.lists(floats, min_size=0, max_size=130))
def test_random_lists(fc, values):
    _check(fc, values)


@SETTINGS
@given(st.integers(0, 130), st.sampled_from(["float", "int", "object", "mixed"]), st.booleans())
def test_random_frames(fc, length, kind, with_time):
    rng = np.random.default_rng(length)
    column = {
        "float": rng.normal(350, 5, length),
        "int": rng.integers(300, 400, length),
        "object": np.array(["x"] * length, dtype=object),
        "mixed": np.array([1.0, "a"] * (length // 2) + [1.0] * (length % 2), dtype=object),
    }[kind]
    frame = pd.DataFrame({"co2": column})
    if with_time:
        frame.insert(0, "date", pd.date_range("2000-01-01", periods=length, freq="W-SAT"))
    _check(fc, frame)


@SETTINGS
@given(st.lists(st.none() | st.text(max_size=3) | st.integers() | floats | st.lists(floats, max_size=3), max_size=110))
def test_random_nested_lists(fc, values):
    _check(fc, values)
