"""Property-based: the forecasting pipeline forecasts every valid history and names what is wrong with every other.

Each strategy draws a *case*: an input and what it must give. Valid inputs (numeric, one
channel, whose last ``context_length`` steps hold at least 8 observed (non-NaN) values, no
infinite one, within the processor's magnitude bounds; shorter histories are left-padded)
must give a finite forecast of ``horizon`` steps keyed by the input's own name (with timestamps
when the input had a time index); every invalid one must raise :class:`InputError` whose
message names the defect the strategy put in. Nothing may pass by being rejected.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import polyhead
from polyhead.errors import InputError
from polyhead.tasks.forecasting import processing

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

#: the embedded default model's contract (checked against the loaded model in the fixture): it reads up to CONTEXT steps,
#: needs MIN_OBSERVED of them, forecasts HORIZON; an unnamed input is keyed by its channel name UNNAMED
CONTEXT, HORIZON, UNNAMED, MIN_OBSERVED = 104, 52, "target", 8
#: a user's own names: a Series or DataFrame column, and a time column the processor recognises
COLUMN, TIME_COLUMN = "sales", "date"
MAX_ABS = processing.MAX_ABS_VALUE
MIN_ABS = getattr(processing, "MIN_ABS_VALUE", 0.0)


@dataclass
class Case:
    """One input and what it must give: ``error is None`` -> a forecast; else an ``InputError`` matching ``error``."""

    value: object
    error: str | None = None
    timestamps: bool = False  # valid inputs with a time index also return future timestamps
    batch: int | None = None  # a batch of this many histories (the output is a list)
    name: str = UNNAMED  # the key of the forecast: the input's own name


@pytest.fixture(scope="module")
def fc():
    pipe = polyhead.pipeline("time-series-forecasting")
    config = pipe.model.config
    assert (config.context_length, config.horizon, list(config.target_columns)) == (CONTEXT, HORIZON, [UNNAMED])
    assert processing.MIN_OBSERVED == MIN_OBSERVED and TIME_COLUMN in processing.TIME_COLUMN_NAMES
    return pipe


def _check(fc, case: Case) -> None:
    if case.error is not None:
        with pytest.raises(InputError, match=case.error):
            fc(case.value)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an irregular index: no timestamps, with a warning
        out = fc(case.value)
    results = out if case.batch is not None else [out]
    assert isinstance(results, list) and len(results) == (case.batch or 1)
    names = case.name if isinstance(case.name, list) else [case.name] * len(results)
    for result, name in zip(results, names):
        forecast = result["forecast"][name]
        assert result["target_columns"] == [name]
        assert len(forecast) == HORIZON and all(math.isfinite(v) for v in forecast), forecast[:5]
        for level in result["quantiles"][name].values():
            assert len(level) == HORIZON and all(math.isfinite(v) for v in level)
        assert ("timestamps" in result) == case.timestamps
        if case.timestamps:
            assert len(result["timestamps"]) == HORIZON


# -- the oracle: what the documented contract says of one numeric window -------------------------------------------


def _window_error(values: np.ndarray) -> str | None:
    """The error a (steps, channels) numeric history must give, or None when it is valid."""
    if values.shape[1] != 1:
        return r"This model forecasts 1 channel\(s\)"
    window = values[-CONTEXT:].astype(np.float64)
    if np.isinf(window).any():
        return "contain infinite values"
    if values.shape[0] < MIN_OBSERVED:
        return rf"The history has {values.shape[0]} steps; this model needs at least {MIN_OBSERVED} observed steps"
    if np.isfinite(window).sum() < MIN_OBSERVED:
        return rf"have {int(np.isfinite(window).sum())} observed \(non-NaN\) values; this model needs at least {MIN_OBSERVED}"
    largest = float(np.abs(window[np.isfinite(window)]).max())
    if largest > MAX_ABS or 0 < largest < MIN_ABS:
        return "Rescale the series"
    return None


def _array_error(array: np.ndarray) -> str | None:
    """The error one history given as an array must give (``to_series``'s order of checks), or None."""
    if array.dtype.kind not in "iuf":
        return "History values must be numeric"
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        return r"A history must be 1-D \(steps,\) or 2-D \(steps, channels\)"
    return _window_error(array)


def _array_case(array: np.ndarray) -> Case:
    """Any numpy array handed to the pipeline: one history (<= 2-D), a batch (3-D), or an error (> 3-D)."""
    if array.ndim > 3:
        return Case(array, rf"Expected one history .* got a {array.ndim}-D array")
    if array.ndim == 3:
        if len(array) == 0:
            return Case(array, "Got an empty batch of histories")
        errors = [_array_error(item) for item in array]
        first = next((e for e in errors if e is not None), None)
        return Case(array, first, batch=len(array))
    return Case(array, _array_error(array))


# -- strategies ----------------------------------------------------------------------------------------------------

#: magnitudes a valid series may have: tiny to huge, inside the processor's bounds
levels = st.sampled_from([0.0, 1e-20, 1e-3, 1.0, 350.0, 1e6, 1e15, 1e25]) | st.integers(-10**6, 10**6).map(lambda i: i / 7)
DEFECTS = ["none", "none", "none", "nan_before_window", "short", "too_short", "nan_in_window", "mostly_nan", "inf_in_window",
           "too_large", "too_small", "channels"]
FORMS = ["list", "float64", "float32", "tensor", "column", "series", "series_with_time", "frame", "frame_with_time"]


@st.composite
def series_cases(draw) -> Case:
    """A valid history in one of the accepted forms, with at most one defect put in on purpose."""
    length = draw(st.integers(MIN_OBSERVED, CONTEXT + 30))
    level = draw(levels)
    noise = draw(hnp.arrays(np.float64, length, elements=st.integers(-1000, 1000).map(lambda i: i / 1000)))
    values = level + noise * (abs(level) * 0.1 if level else 1.0)
    form = draw(st.sampled_from(FORMS))
    if form == "float32" and abs(level) > 1e25:
        form = "float64"
    defect = draw(st.sampled_from(DEFECTS))
    if defect == "too_small" and MIN_ABS == 0.0:
        defect = "none"
    if defect == "channels" and form in ("list", "series", "series_with_time"):
        defect = "too_short"
    timestamps = form.endswith("_with_time")
    if defect == "short":  # shorter than the context: left-padded and masked, valid
        values = values[: draw(st.integers(MIN_OBSERVED, CONTEXT - 1))]
    elif defect == "too_short":
        values = values[: draw(st.integers(0, MIN_OBSERVED - 1))]
    elif defect == "nan_before_window":
        values = np.concatenate([np.full(CONTEXT, -np.inf), [np.nan], values[-CONTEXT:]])  # only the last CONTEXT steps are read
    elif defect == "nan_in_window":  # missing values are masked: still valid
        values[-draw(st.integers(1, min(CONTEXT, len(values))))] = np.nan
    elif defect == "mostly_nan":
        window = min(CONTEXT, len(values))
        values[len(values) - window : len(values) - draw(st.integers(0, MIN_OBSERVED - 1))] = np.nan
    elif defect == "inf_in_window":
        values[-draw(st.integers(1, min(CONTEXT, len(values))))] = -np.inf
    elif defect == "too_large":
        values[-draw(st.integers(1, min(CONTEXT, len(values))))] = draw(st.sampled_from([MAX_ABS * 10, -MAX_ABS * 10 if form == "float32" else -1e300]))
    elif defect == "too_small":
        values = np.full(len(values), MIN_ABS / 10) * np.sign(np.arange(len(values)) % 2 - 0.5)
    error = _window_error(values[:, None]) if defect != "channels" else r"This model forecasts 1 channel\(s\)"
    channels = 2 if defect == "channels" else 1
    matrix = np.repeat(values[:, None], channels, axis=1)
    if form == "list":
        return Case([float(v) for v in values], error if len(values) else "Got an empty history")
    named = form.startswith("series") or form.startswith("frame")
    if form in ("float64", "float32"):
        dtype = np.float64 if form == "float64" else np.float32
        return Case(matrix[:, 0].astype(dtype) if channels == 1 else matrix.astype(dtype), error)
    if form == "tensor":
        return Case(torch.from_numpy(matrix if channels > 1 else matrix[:, 0]), error)
    if form == "column":
        return Case(matrix, error)  # (steps, channels)
    index = pd.date_range("2000-01-01", periods=len(values), freq="W-SAT")
    regular = timestamps and len(values) >= 3
    if form.startswith("series"):
        return Case(pd.Series(values, index=index if timestamps else None, name=COLUMN), error, timestamps=regular and error is None, name=COLUMN)
    frame = pd.DataFrame({COLUMN: values} if channels == 1 else {COLUMN: values, "other": values})
    if channels > 1:
        frame = pd.DataFrame({"a": values, "b": values})  # neither the model's target column nor one column
        error = rf"Expected the target columns \['{UNNAMED}'\] \(or exactly 1 column\(s\)"
    if timestamps:
        frame.insert(0, TIME_COLUMN, index)
    return Case(frame, error, timestamps=regular and error is None, name=COLUMN if named else UNNAMED)


@st.composite
def wrong_kind_cases(draw) -> Case:
    """Histories that are not numeric series at all: each names its own defect."""
    length = draw(st.integers(0, CONTEXT + 10))
    kind = draw(st.sampled_from(["bool", "complex", "object_column", "bool_column", "bad_time_column", "strings_list", "ragged_rows", "scalar", "dict", "zero_d"]))
    if kind in ("bool", "complex"):
        array = np.zeros(length, dtype=np.bool_ if kind == "bool" else np.complex64)
        return Case(array, "History values must be numeric")
    if kind in ("object_column", "bool_column"):
        column = np.array(["x"] * length, dtype=object) if kind == "object_column" else np.zeros(length, dtype=bool)
        return Case(pd.DataFrame({COLUMN: column}), rf"Target columns must be numeric; non-numeric column\(s\): \['{COLUMN}'\]")
    if kind == "bad_time_column":
        return Case(pd.DataFrame({TIME_COLUMN: ["not a date"] * max(length, 1), COLUMN: np.ones(max(length, 1))}), "Column 'date' must hold timestamps")
    if kind == "strings_list":
        return Case([1.0] + [draw(st.text(min_size=1, max_size=3).filter(lambda t: not _is_float(t)))] * max(length, 1), "must hold numbers")
    if kind == "ragged_rows":
        return Case([[1.0]] * max(length, 1) + [[1.0, 2.0]], "must hold numbers")
    if kind == "zero_d":
        return Case(np.array(draw(st.floats(-10, 10))), r"A history must be 1-D \(steps,\) or 2-D")
    return Case(draw(st.sampled_from([42, "sales", b"bytes", {"sales": [1.0]}] if kind == "scalar" else [{}, {"history": [1.0]}])), "Expected a history as a pandas Series/DataFrame")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


random_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int16, np.int64, np.uint8, np.bool_, np.complex64]),
    shape=st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=8),
        st.tuples(st.integers(MIN_OBSERVED - 2, CONTEXT + 16)),
        st.tuples(st.integers(MIN_OBSERVED - 2, CONTEXT + 16), st.integers(1, 2)),
        st.tuples(st.integers(0, 3), st.integers(MIN_OBSERVED - 2, CONTEXT + 8), st.integers(1, 2)),
    ),
    elements=None,
)


@st.composite
def batch_cases(draw) -> Case:
    """A list of 1-3 histories (arrays, Series, frames): valid only if every one is; else the first one's error."""
    items = draw(st.lists(series_cases().filter(lambda c: not isinstance(c.value, list)), min_size=1, max_size=3))
    first = next((c.error for c in items if c.error is not None), None)
    timestamps = all(c.timestamps for c in items)
    if first is None and len({c.timestamps for c in items}) > 1:
        items = [c for c in items if not c.timestamps] or items  # each result is checked with one timestamps flag
        timestamps = all(c.timestamps for c in items)
    return Case([c.value for c in items], first, timestamps=timestamps and first is None, batch=len(items), name=[c.name for c in items])


# -- the properties ------------------------------------------------------------------------------------------------


@SETTINGS
@given(series_cases())
def test_valid_histories_forecast_and_each_defect_is_named(fc, case):
    _check(fc, case)


@SETTINGS
@given(random_arrays)
def test_random_arrays_forecast_or_name_their_defect(fc, array):
    _check(fc, _array_case(array))


@pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")  # pandas, parsing "not a date"
@SETTINGS
@given(wrong_kind_cases())
def test_non_numeric_histories_are_input_errors(fc, case):
    _check(fc, case)


@SETTINGS
@given(batch_cases())
def test_batches_forecast_every_history_or_name_the_first_defect(fc, case):
    _check(fc, case)


def test_the_strategies_generate_valid_and_invalid_inputs():
    """Guard against a strategy that (after a change) only ever produces errors, or never does."""
    from hypothesis import find

    find(series_cases(), lambda c: c.error is None and isinstance(c.value, pd.DataFrame) and c.timestamps, settings=settings(max_examples=2000, database=None))
    find(series_cases(), lambda c: c.error is not None, settings=settings(max_examples=2000, database=None))
    find(random_arrays, lambda a: _array_case(a).error is None, settings=settings(max_examples=2000, database=None))
    find(random_arrays, lambda a: _array_case(a).error is None and a.ndim == 3, settings=settings(max_examples=2000, database=None))


def test_list_with_an_integer_beyond_float_range_is_an_input_error(fc):
    with pytest.raises(InputError, match="must hold numbers"):
        fc([1.0] * CONTEXT + [10**400])


def test_the_oracle_covers_short_and_gappy_histories():
    """The contract the strategies check: 8 observed steps suffice, NaN is missing, infinity is an error."""
    assert _window_error(np.ones((MIN_OBSERVED, 1))) is None
    assert "needs at least 8" in _window_error(np.ones((MIN_OBSERVED - 1, 1)))
    gappy = np.ones((CONTEXT, 1))
    gappy[: CONTEXT - MIN_OBSERVED] = np.nan
    assert _window_error(gappy) is None
    gappy[-1] = np.nan
    assert "have 7 observed" in _window_error(gappy)
    gappy[-1] = np.inf
    assert "infinite" in _window_error(gappy)
