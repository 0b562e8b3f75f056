"""Forecasting data: a table with a time column and target columns -> sliding windows.

Tables come through ``datasets`` (CSV, parquet, a saved dataset, a pandas
DataFrame or the embedded CO2 series). The series is split by time into train,
validation and test *target* ranges that never overlap; a window's context may
reach back into an earlier range (the past is known at forecast time), its
targets never reach forward into a later one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from polyhead.errors import DataError
from polyhead.validation import look_up_option

from .._tables import load_table as _load_table

__all__ = [
    "EMBEDDED_SERIES",
    "example_series",
    "infer_freq",
    "SeriesData",
    "ForecastingWindows",
    "TimeSplit",
    "load_table",
    "prepare_series",
    "split_by_time",
]

#: Series that ship inside polyhead: name -> (file in polyhead/assets, time column, targets).
EMBEDDED_SERIES: dict[str, tuple[str, str, list[str]]] = {
    "co2_weekly": ("co2_weekly.csv", "date", ["co2"]),
}

_FILL = ("interpolate", "ffill", "error")


def _embedded_path(name: str) -> Path:
    filename = EMBEDDED_SERIES[name][0]
    return Path(str(resources.files("polyhead") / "assets" / filename))


def example_series(name: str = "co2_weekly") -> pd.DataFrame:
    """An embedded series as a DataFrame indexed by time (missing steps left as NaN).

    Example:
        >>> co2 = example_series()["co2"]   # weekly Mauna Loa CO2, 1958-2001
    """
    if name not in EMBEDDED_SERIES:
        raise DataError(f"Unknown embedded series {name!r}; available: {', '.join(EMBEDDED_SERIES)}.")
    _, time_column, _ = EMBEDDED_SERIES[name]
    frame = pd.read_csv(_embedded_path(name), parse_dates=[time_column]).set_index(time_column)
    return frame.asfreq(infer_freq(frame.index))


def infer_freq(index: pd.DatetimeIndex) -> str | None:
    """The pandas frequency alias of a regular index (``"W-SAT"``), or ``None``."""
    if len(index) < 3:
        return None
    return pd.DatetimeIndex(index, freq="infer").freqstr


def load_table(source: Any) -> datasets.Dataset:
    """A table as a ``datasets.Dataset``: an embedded series name (``"co2_weekly"``), a
    ``.csv`` / ``.parquet`` / ``.json(l)`` file, a ``save_to_disk`` folder, a DataFrame or a Dataset."""
    return _load_table(source, named={name: _embedded_path(name) for name in EMBEDDED_SERIES})


@dataclass
class SeriesData:
    """A prepared multivariate series: ``values (T, C)`` and its timestamps."""

    values: np.ndarray
    timestamps: pd.DatetimeIndex | None
    target_columns: list[str]
    freq: str | None


def prepare_series(
    table: datasets.Dataset,
    *,
    time_column: str | None,
    target_columns: Sequence[str],
    fill_missing: str = "interpolate",
) -> SeriesData:
    """Sort by time, check the columns, and fill gaps.

    Args:
        table: the loaded table.
        time_column: timestamp column, or ``None`` if rows are already in time order.
        target_columns: numeric columns to forecast.
        fill_missing: ``"interpolate"`` (linear in time), ``"ffill"``, or ``"error"``.
    """
    look_up_option(fill_missing, {f: f for f in _FILL}, "fill_missing")
    frame = table.to_pandas()
    if len(frame) == 0:
        raise DataError("The data table is empty.")
    needed = list(target_columns) + ([time_column] if time_column else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"Column(s) {missing} not found; the table has {list(frame.columns)}.")
    timestamps = None
    freq = None
    if time_column:
        try:
            frame[time_column] = pd.to_datetime(frame[time_column])
        except (ValueError, TypeError) as err:
            raise DataError(f"Time column {time_column!r} does not hold timestamps: {err}") from None
        frame = frame.sort_values(time_column)
        if frame[time_column].duplicated().any():
            dup = frame.loc[frame[time_column].duplicated(), time_column].iloc[0]
            raise DataError(f"Time column {time_column!r} has duplicate timestamps, e.g. {dup}.")
        timestamps = pd.DatetimeIndex(frame[time_column])
        freq = infer_freq(timestamps)
    targets = frame[list(target_columns)]
    bad = [c for c in targets.columns if not pd.api.types.is_numeric_dtype(targets[c]) or pd.api.types.is_bool_dtype(targets[c])]
    if bad:
        raise DataError(f"Target column(s) {bad} are not numeric.")
    targets = targets.astype("float64")
    if targets.isna().any().any():
        if fill_missing == "error":
            raise DataError(f"Target columns have {int(targets.isna().sum().sum())} missing values (fill_missing='error').")
        targets = targets.interpolate(limit_direction="both") if fill_missing == "interpolate" else targets.ffill().bfill()
        if targets.isna().any().any():
            raise DataError("A target column is entirely missing.")
    return SeriesData(
        values=targets.to_numpy(dtype=np.float32),
        timestamps=timestamps,
        target_columns=[str(c) for c in target_columns],
        freq=freq,
    )


@dataclass
class TimeSplit:
    """Target ranges ``[start, end)`` of each split, in steps of the series."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]


def split_by_time(length: int, *, context_length: int, horizon: int, val_fraction: float, test_fraction: float) -> TimeSplit:
    """Cut ``length`` steps into train / validation / test target ranges by time.

    Raises:
        DataError: when a split is too short to hold one window's targets, or the
            training range cannot hold one full window.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction and test_fraction must be in (0, 1) with a sum below 1, got {val_fraction}, {test_fraction}.")
    test_start = length - int(round(length * test_fraction))
    val_start = test_start - int(round(length * val_fraction))
    split = TimeSplit(train=(0, val_start), validation=(val_start, test_start), test=(test_start, length))
    for name, (start, end) in (("validation", split.validation), ("test", split.test)):
        if end - start < horizon:
            raise DataError(
                f"The {name} split has {end - start} steps, fewer than the horizon ({horizon}); "
                f"use more data or a larger {name.split()[0][:4]} fraction."
            )
    if val_start < context_length + horizon:
        raise DataError(
            f"The training split has {val_start} steps; one window needs context_length + horizon = "
            f"{context_length + horizon}. Use a longer series or smaller fractions."
        )
    return split


class ForecastingWindows(Dataset):
    """Sliding windows whose targets lie in ``[start, end)``.

    Item ``i``: ``{"past_values": (L, C), "future_values": (H, C)}``.
    """

    def __init__(
        self,
        values: np.ndarray,
        *,
        context_length: int,
        horizon: int,
        target_range: tuple[int, int],
        stride: int = 1,
    ) -> None:
        start, end = target_range
        first = max(start, context_length)  # first target step with a full context behind it
        self.values = torch.tensor(values, dtype=torch.float32)
        self.context_length = context_length
        self.horizon = horizon
        self.target_starts = list(range(first, end - horizon + 1, stride))
        if not self.target_starts:
            raise DataError(f"No complete window fits targets in [{start}, {end}) with horizon {horizon}.")

    def __len__(self) -> int:
        return len(self.target_starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = self.target_starts[i]
        return {
            "past_values": self.values[t - self.context_length : t],
            "future_values": self.values[t : t + self.horizon],
        }
