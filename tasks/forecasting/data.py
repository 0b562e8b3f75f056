"""Forecasting data: a panel of series (long or wide tables) -> windows for training and evaluation.

Tables come through ``datasets`` (CSV, parquet, a saved dataset, a pandas DataFrame, the
embedded CO2 series or the generated forecasting corpus). Two layouts:

* **long** (``id_column`` set): one row per (series, time step), as GluonTS, AutoGluon,
  Chronos, statsforecast and NeuralForecast take it: ``item_id, timestamp, target``;
  series may have different lengths and start dates;
* **wide** (no ``id_column``): one series whose ``target_columns`` are its channels.

Each series is put on a regular time grid (its inferred frequency, or ``data.freq``);
missing steps and values stay missing, with an observed-values mask
(``past_observed_mask``), unless ``fill_missing`` says to fill them (the count is printed).
Splits are per series and by time: by default the last ``prediction_length`` steps of
every series are its test targets and the ones before them its validation targets
(``test_windows`` / ``val_windows`` rolling origins), so every series is evaluated; with
``val_fraction`` / ``test_fraction`` the last fractions of each series are. A window's
context may reach back into an earlier split (the past is known at forecast time), its
targets never reach forward into a later one; a context shorter than ``context_length``
is left-padded and masked (at least :data:`MIN_OBSERVED` observed steps). Training
windows are taken across all series (every window, or ``train_samples`` random ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from pandas.tseries import offsets as pd_offsets
from torch.utils.data import Dataset

from polyhead.errors import DataError
from polyhead.log import logger
from polyhead.validation import look_up_option

from .._tables import load_table as _load_table
from .configuration import TIME_FEATURES

__all__ = [
    "EMBEDDED_SERIES",
    "MIN_OBSERVED",
    "SOURCE_LAYOUTS",
    "ForecastingWindows",
    "Panel",
    "SeriesData",
    "SeriesItem",
    "TimeSplit",
    "calendar_features",
    "example_series",
    "freq_code",
    "infer_freq",
    "load_frame",
    "load_table",
    "prediction_length_for",
    "prepare_panel",
    "prepare_series",
    "seasonality_for",
    "split_by_time",
]

#: Series that ship inside polyhead: name -> (file in polyhead/assets, time column, targets).
EMBEDDED_SERIES: dict[str, tuple[str, str, list[str]]] = {
    "co2_weekly": ("co2_weekly.csv", "date", ["co2"]),
}

#: The column layout of each named source (``data.source="co2_weekly"``); a config's own
#: ``data.time_column`` etc. take precedence over it.
SOURCE_LAYOUTS: dict[str, dict[str, Any]] = {
    "co2_weekly": {"time_column": "date", "target_columns": ["co2"]},
    "forecasting_corpus": {"id_column": "item_id", "time_column": "timestamp", "target_columns": ["target"], "holdout_column": "heldout"},
}

#: The fewest observed steps a history may have (shorter ones are an error, longer ones are left-padded).
MIN_OBSERVED = 8

_FILL = ("mask", "interpolate", "ffill", "error")

#: pandas offset class -> frequency code (``W-SAT`` and ``W-SUN`` are both weekly).
_OFFSET_CODES: dict[type, str] = {
    pd_offsets.YearBegin: "Y", pd_offsets.YearEnd: "Y", pd_offsets.BYearBegin: "Y", pd_offsets.BYearEnd: "Y",
    pd_offsets.QuarterBegin: "Q", pd_offsets.QuarterEnd: "Q", pd_offsets.BQuarterBegin: "Q", pd_offsets.BQuarterEnd: "Q",
    pd_offsets.MonthBegin: "M", pd_offsets.MonthEnd: "M", pd_offsets.BusinessMonthBegin: "M", pd_offsets.BusinessMonthEnd: "M",
    pd_offsets.SemiMonthBegin: "SM", pd_offsets.SemiMonthEnd: "SM",
    pd_offsets.Week: "W", pd_offsets.Day: "D", pd_offsets.BusinessDay: "B", pd_offsets.CustomBusinessDay: "B",
    pd_offsets.Hour: "h", pd_offsets.BusinessHour: "h", pd_offsets.Minute: "min", pd_offsets.Second: "s",
}
#: Season length per frequency code (GluonTS's ``get_seasonality``, the M4 convention): MASE's scale
#: and the seasonal-naive period when ``seasonal_period`` is ``None``.
_SEASONALITY = {"Y": 1, "Q": 4, "M": 12, "SM": 24, "W": 1, "D": 1, "B": 5, "h": 24, "min": 1440, "s": 3600}
#: Steps to forecast per frequency code (the M4 competition's horizons) when ``prediction_length="auto"``.
_PREDICTION_LENGTH = {"Y": 6, "Q": 8, "M": 18, "SM": 24, "W": 13, "D": 14, "B": 14, "h": 48, "min": 60, "s": 60}


def freq_code(freq: str | None) -> tuple[str, int] | None:
    """``(code, multiple)`` of a pandas frequency alias: ``"W-SAT" -> ("W", 1)``, ``"30min" -> ("min", 30)``."""
    if freq is None:
        return None
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError):
        return None
    for cls, code in _OFFSET_CODES.items():
        if type(offset) is cls:
            return code, int(offset.n)
    return type(offset).__name__, int(offset.n)


def seasonality_for(freq: str | None) -> int:
    """The season length of a frequency (M4 / GluonTS convention), 1 when unknown."""
    code = freq_code(freq)
    if code is None:
        return 1
    season = _SEASONALITY.get(code[0], 1)
    return max(1, season // code[1]) if season % code[1] == 0 else 1


def prediction_length_for(freq: str | None, horizon: int) -> int:
    """The M4 horizon of a frequency (yearly 6, quarterly 8, monthly 18, weekly 13, daily 14, hourly 48), at most ``horizon``."""
    code = freq_code(freq)
    return min(horizon, _PREDICTION_LENGTH.get(code[0], horizon) if code else horizon)


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
    try:
        return pd.DatetimeIndex(index, freq="infer").freqstr
    except (ValueError, TypeError):
        return None


def guess_freq(index: pd.DatetimeIndex) -> str | None:
    """The frequency of a series with gaps (``infer_freq`` needs every step): its most common step,
    anchored like its timestamps (month starts -> ``MS``, a 7-day step -> ``W-<weekday>``)."""
    if len(index) < 3:
        return None
    steps = pd.Series(np.diff(index.asi8))
    step = pd.Timedelta(int(steps.mode().iloc[0]), unit=index.unit if hasattr(index, "unit") else "ns")
    days = step / pd.Timedelta(days=1)
    anchored = [
        (7 - 1e-9 <= days <= 7 + 1e-9, f"W-{index[0].day_name()[:3].upper()}"),
        (28 <= days <= 31 and index.is_month_start.all(), "MS"), (28 <= days <= 31 and index.is_month_end.all(), "ME"),
        (89 <= days <= 92 and index.is_quarter_start.all(), "QS"), (89 <= days <= 92 and index.is_quarter_end.all(), "QE"),
        (365 <= days <= 366 and index.is_year_start.all(), "YS"), (365 <= days <= 366 and index.is_year_end.all(), "YE"),
    ]
    for matches, alias in anchored:
        if matches:
            return alias
    if days >= 28:
        return None
    if days == int(days):
        return "D" if days == 1 else f"{int(days)}D"
    return pd.tseries.frequencies.to_offset(step).freqstr


def load_table(source: Any) -> datasets.Dataset:
    """A table as a ``datasets.Dataset``: an embedded series name (``"co2_weekly"``), ``"forecasting_corpus"``,
    a ``.csv`` / ``.parquet`` / ``.json(l)`` file, a ``save_to_disk`` folder, a DataFrame or a Dataset."""
    if isinstance(source, str) and source == "forecasting_corpus":
        return datasets.Dataset.from_pandas(load_frame(source), preserve_index=False)
    return _load_table(source, named={name: _embedded_path(name) for name in EMBEDDED_SERIES})


def load_frame(source: Any) -> pd.DataFrame:
    """A table as a pandas DataFrame (the generated corpus without a round trip through ``datasets``)."""
    if isinstance(source, str) and source == "forecasting_corpus":
        from .corpus import corpus_frame

        return corpus_frame()
    if isinstance(source, pd.DataFrame):
        return source.copy()
    return load_table(source).to_pandas()


def calendar_features(index: pd.DatetimeIndex, names: Sequence[str]) -> np.ndarray:
    """``(T, F)`` calendar features of ``index`` in [-0.5, 0.5] (:data:`TIME_FEATURES`)."""
    if not names:
        return np.zeros((len(index), 0), dtype=np.float32)
    columns = []
    for name in names:
        attribute, largest = TIME_FEATURES[name]
        raw = index.isocalendar().week.to_numpy() if attribute == "week" else getattr(index, attribute).to_numpy()
        offset = 0 if attribute in ("minute", "hour", "dayofweek", "month") else 1
        if attribute == "month":
            raw = raw - 1
        columns.append(np.clip((raw.astype(np.float64) - offset) / largest, 0.0, 1.0) - 0.5)
    return np.stack(columns, axis=1).astype(np.float32)


# -- one series and a panel --------------------------------------------------------------------------------------------
@dataclass
class SeriesItem:
    """One series of a panel on a regular grid.

    Attributes:
        item_id: the series' id (``"series"`` for a wide table).
        values: ``(T, C)`` float32, NaN where a value is missing.
        timestamps: its ``T`` timestamps, or ``None`` without a time column.
        freq: its pandas frequency alias, if known.
        covariates: ``(T, K)`` known-future real covariates, or ``None``.
        static: ``(S,)`` category ids of its static columns (0: unseen).
        heldout: held out of training: only its last steps are used, as test targets.
    """

    item_id: str
    values: np.ndarray
    timestamps: pd.DatetimeIndex | None
    freq: str | None
    covariates: np.ndarray | None = None
    static: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    heldout: bool = False

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.values)


@dataclass
class Panel:
    """Series prepared for windowing, with what preparing them counted."""

    items: list[SeriesItem]
    target_columns: list[str]
    freqs: list[str]
    missing_values: int
    filled_values: int
    static_categories: dict[str, list[str]]


@dataclass
class SeriesData:
    """A prepared single (wide) series: ``values (T, C)`` and its timestamps (the 0.2 API)."""

    values: np.ndarray
    timestamps: pd.DatetimeIndex | None
    target_columns: list[str]
    freq: str | None


def _numeric_targets(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        raise DataError(f"{what} column(s) {bad} are not numeric.")


def _regular(frame: pd.DataFrame, time_column: str, freq: str | None, item: str) -> tuple[pd.DataFrame, str | None]:
    """Sort by time, refuse duplicates, and reindex onto the full grid of ``freq`` (missing steps -> NaN rows)."""
    try:
        stamps = pd.to_datetime(frame[time_column])
    except (ValueError, TypeError) as err:
        raise DataError(f"Time column {time_column!r} does not hold timestamps: {err}") from None
    frame = frame.assign(**{time_column: stamps}).sort_values(time_column)
    if frame[time_column].duplicated().any():
        dup = frame.loc[frame[time_column].duplicated(), time_column].iloc[0]
        where = f" of series {item!r}" if item else ""
        raise DataError(f"Time column {time_column!r}{where} has duplicate timestamps, e.g. {dup}.")
    index = pd.DatetimeIndex(frame[time_column])
    freq = freq or infer_freq(index) or guess_freq(index)
    if freq is None:
        return frame.set_index(time_column), None
    grid = pd.date_range(index[0], index[-1], freq=freq)
    if not index.isin(grid).all():
        off = index[~index.isin(grid)][0]
        raise DataError(f"Series {item!r} has timestamp {off} off its {freq} grid; set data.freq or fix the time column.")
    return frame.set_index(time_column).reindex(grid), freq


def prepare_panel(
    frame: pd.DataFrame,
    *,
    target_columns: Sequence[str],
    time_column: str | None = None,
    id_column: str | None = None,
    covariate_columns: Sequence[str] = (),
    static_columns: Sequence[str] = (),
    static_categories: Mapping[str, Sequence[str]] | None = None,
    holdout_column: str | None = None,
    freq: str | None = None,
    fill_missing: str = "mask",
) -> Panel:
    """A table in long or wide format -> a :class:`Panel` of regular series.

    Args:
        frame: the table.
        target_columns: numeric columns to forecast (the channels of each series).
        time_column: timestamp column, or ``None`` if rows are already in time order.
        id_column: series-id column of a long table; ``None``: the table is one (wide) series.
        covariate_columns: known-future real covariates (calendar, prices, holidays).
        static_columns: categorical columns constant within a series (store, region).
        static_categories: the known categories of each static column (a trained model's);
            ``None``: taken from the table, in sorted order.
        holdout_column: a boolean column marking series held out of training.
        freq: the pandas frequency of every series; ``None``: inferred per series (a series
            whose frequency cannot be inferred takes the panel's most common one).
        fill_missing: ``"mask"`` (keep missing values missing, with a mask), ``"interpolate"``
            (linear in time), ``"ffill"`` or ``"error"``; a fill prints how many values it filled.
    """
    look_up_option(fill_missing, {f: f for f in _FILL}, "fill_missing")
    if len(frame) == 0:
        raise DataError("The data table is empty.")
    target_columns, covariate_columns, static_columns = list(target_columns), list(covariate_columns), list(static_columns)
    needed = target_columns + covariate_columns + static_columns + [c for c in (time_column, id_column, holdout_column) if c]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise DataError(f"Column(s) {missing} not found; the table has {list(frame.columns)}.")
    if not target_columns:
        raise DataError("data.target_columns must name the column(s) to forecast.")
    _numeric_targets(frame, target_columns, "Target")
    _numeric_targets(frame, covariate_columns, "Covariate")
    if static_categories is None:
        static_categories = {c: sorted(map(str, frame[c].dropna().unique())) for c in static_columns}
    lookup = {c: {v: i + 1 for i, v in enumerate(static_categories.get(c, []))} for c in static_columns}
    groups = list(frame.groupby(id_column, sort=True)) if id_column else [("series", frame)]
    inferred: dict[str, str] = {}
    regular: list[tuple[str, pd.DataFrame, str | None]] = []
    for item_id, part in groups:
        part = part.reset_index(drop=True)
        item_freq = freq
        if time_column:
            part, item_freq = _regular(part, time_column, freq, str(item_id) if id_column else "")
            if item_freq:
                inferred[str(item_id)] = item_freq
        regular.append((str(item_id), part, item_freq))
    common = pd.Series(list(inferred.values())).mode().iloc[0] if inferred else None
    items, missing_count, filled, total = [], 0, 0, 0
    for item_id, part, item_freq in regular:
        if time_column and item_freq is None:
            if common is None:
                raise DataError(f"Could not infer the frequency of series {item_id!r} (its timestamps are irregular); set data.freq.")
            part, item_freq = _regular(part.reset_index(names=time_column), time_column, common, item_id)
        targets = part[target_columns].astype("float64")
        total += targets.size
        gaps = int(targets.isna().sum().sum())
        missing_count += gaps
        if gaps and fill_missing != "mask":
            if fill_missing == "error":
                raise DataError(f"Target columns have {gaps} missing values (fill_missing='error').")
            targets = targets.interpolate(limit_direction="both") if fill_missing == "interpolate" else targets.ffill().bfill()
            filled += gaps - int(targets.isna().sum().sum())
            if targets.isna().all().any():
                raise DataError(f"A target column of series {item_id!r} is entirely missing.")
        covariates = None
        if covariate_columns:
            known = part[covariate_columns].astype("float64").interpolate(limit_direction="both")
            if known.isna().any().any():
                raise DataError(f"Covariate column(s) of series {item_id!r} are entirely missing; covariates must be known at every step.")
            covariates = known.to_numpy(dtype=np.float32)
        static = np.zeros(len(static_columns), dtype=np.int64)
        for i, column in enumerate(static_columns):
            values = part[column].dropna().unique()
            if len(values) > 1:
                raise DataError(f"Static column {column!r} takes {len(values)} values within series {item_id!r}; it must be constant per series.")
            static[i] = lookup[column].get(str(values[0]), 0) if len(values) else 0
        heldout = bool(part[holdout_column].fillna(False).astype(bool).any()) if holdout_column else False
        timestamps = pd.DatetimeIndex(part.index) if time_column else None
        items.append(SeriesItem(item_id, targets.to_numpy(dtype=np.float32), timestamps, item_freq, covariates, static, heldout))
    if filled:
        logger.warning("filled %d of %d target values that were missing (data.fill_missing=%r).", filled, total, fill_missing)
    freqs = sorted({it.freq for it in items if it.freq}, key=lambda f: (freq_code(f) or ("", 0)))
    return Panel(items, [str(c) for c in target_columns], freqs, missing_count, filled, {c: list(v) for c, v in static_categories.items()})


def prepare_series(
    table: datasets.Dataset | pd.DataFrame,
    *,
    time_column: str | None,
    target_columns: Sequence[str],
    fill_missing: str = "mask",
) -> SeriesData:
    """One wide series: sort by time, check the columns, and keep gaps as NaN (or fill them).

    Args:
        table: the loaded table.
        time_column: timestamp column, or ``None`` if rows are already in time order.
        target_columns: numeric columns to forecast.
        fill_missing: ``"mask"`` (NaN stays), ``"interpolate"`` (linear in time), ``"ffill"``, or ``"error"``.
    """
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    panel = prepare_panel(frame, target_columns=target_columns, time_column=time_column, fill_missing=fill_missing)
    item = panel.items[0]
    return SeriesData(values=item.values, timestamps=item.timestamps, target_columns=panel.target_columns, freq=item.freq)


# -- splits -------------------------------------------------------------------------------------------------------------
@dataclass
class TimeSplit:
    """Target ranges ``[start, end)`` of each split, in steps of the series."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]


def split_by_time(length: int, *, context_length: int, horizon: int, val_fraction: float, test_fraction: float) -> TimeSplit:
    """Cut ``length`` steps into train / validation / test target ranges by time (the last fractions).

    ``context_length`` is accepted for compatibility: a context may be as short as
    :data:`MIN_OBSERVED` steps (it is left-padded).

    Raises:
        DataError: when a split is too short to hold one window's targets, or the
            training range cannot hold one window (``MIN_OBSERVED`` context steps + ``horizon``).
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
                f"use more data or a larger {name[:4]} fraction."
            )
    if val_start < MIN_OBSERVED + horizon:
        raise DataError(
            f"The training split has {val_start} steps; one window needs {MIN_OBSERVED} context steps + horizon = "
            f"{MIN_OBSERVED + horizon}. Use a longer series or smaller fractions."
        )
    return split


def split_last(length: int, *, prediction_length: int, val_windows: int, test_windows: int) -> TimeSplit:
    """The per-series split: the last ``test_windows * prediction_length`` steps are test targets,
    the ``val_windows * prediction_length`` before them validation targets, everything earlier training."""
    test_start = length - test_windows * prediction_length
    val_start = test_start - val_windows * prediction_length
    return TimeSplit(train=(0, max(val_start, 0)), validation=(max(val_start, 0), max(test_start, 0)), test=(max(test_start, 0), length))


# -- windows ------------------------------------------------------------------------------------------------------------
@dataclass
class WindowSpec:
    """What every window of a dataset holds."""

    context_length: int
    horizon: int
    time_features: list[str] = field(default_factory=list)
    num_covariates: int = 0
    num_static: int = 0
    seasonal_period: int | None = 1


class ForecastingWindows(Dataset):
    """Windows ``(item, origin, target end)`` over a panel.

    Item ``i``: ``past_values (L, C)`` (left-padded with zeros), ``past_observed_mask (L, C)``,
    ``future_values (H, C)`` (zero beyond the targets), ``future_observed_mask (H, C)``, and the
    time features and static ids when the model has them: the model's forward arguments only.

    Args:
        items: the panel's series.
        windows: ``(n, 3)`` rows of ``(item index, origin, end)``: targets are steps
            ``[origin, min(origin + H, end))`` of the item.
        spec: sizes and which extras each window carries.
    """

    def __init__(self, items: Sequence[SeriesItem], windows: np.ndarray, spec: WindowSpec) -> None:
        self.items = list(items)
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
        self.spec = spec
        self._calendar: dict[int, np.ndarray] = {}
        self.baselines: list[str] = []  # statistical baselines to report on this split (test)
        self.baseline_history: int | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def period(self, item: int) -> int:
        """The season length of an item (the config's, or its frequency's)."""
        return self.spec.seasonal_period or seasonality_for(self.items[item].freq)

    def calendar(self, item: int) -> np.ndarray:
        """``(L + T + H, F)`` calendar features of an item, from ``L`` steps before its start to ``H`` after its end."""
        if item not in self._calendar:
            series = self.items[item]
            if series.timestamps is None or series.freq is None:
                raise DataError(f"Series {series.item_id!r} has no regular timestamps; the model's time features need them.")
            start = series.timestamps[0] - self.spec.context_length * pd.tseries.frequencies.to_offset(series.freq)
            index = pd.date_range(start, periods=self.spec.context_length + len(series.values) + self.spec.horizon, freq=series.freq)
            self._calendar[item] = calendar_features(index, self.spec.time_features)
        return self._calendar[item]

    def history(self, i: int) -> tuple[np.ndarray, int, int]:
        """``(values before the origin (T, C) with NaN, number of targets, season length)`` of window ``i``."""
        item, origin, end = self.windows[i]
        return self.items[item].values[:origin], int(min(origin + self.spec.horizon, end) - origin), self.period(int(item))

    def targets(self, i: int) -> np.ndarray:
        item, origin, end = self.windows[i]
        return self.items[item].values[origin : min(origin + self.spec.horizon, end)]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item, origin, end = (int(v) for v in self.windows[i])
        return self.window(item, origin, end)

    def window(self, item: int, origin: int, end: int, *, keep_last: int | None = None, drop: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """The tensors of one window (``keep_last``: mask all but the last observed steps; ``drop``: extra missing steps)."""
        spec, series = self.spec, self.items[item]
        L, H = spec.context_length, spec.horizon
        values = series.values
        channels = values.shape[1]
        past = np.full((L, channels), np.nan, dtype=np.float32)
        start = max(0, origin - L)
        past[L - (origin - start) :] = values[start:origin]
        if keep_last is not None:
            past[: L - keep_last] = np.nan
        if drop is not None:
            past[drop] = np.nan
        stop = min(origin + H, end, len(values))
        future = np.full((H, channels), np.nan, dtype=np.float32)
        future[: stop - origin] = values[origin:stop]
        past_mask, future_mask = np.isfinite(past), np.isfinite(future)
        out = {
            "past_values": torch.from_numpy(np.where(past_mask, past, 0.0).astype(np.float32)),
            "past_observed_mask": torch.from_numpy(past_mask),
            "future_values": torch.from_numpy(np.where(future_mask, future, 0.0).astype(np.float32)),
            "future_observed_mask": torch.from_numpy(future_mask),
        }
        if spec.time_features or spec.num_covariates:
            parts_past, parts_future = [], []
            if spec.time_features:
                calendar = self.calendar(item)  # row r is step r - L of the series
                parts_past.append(calendar[origin : origin + L])
                parts_future.append(calendar[origin + L : origin + L + H])
            if spec.num_covariates:
                known = series.covariates
                steps = np.clip(np.arange(origin - L, origin + H), 0, len(known) - 1)  # edge-padded outside the series
                parts_past.append(known[steps[:L]])
                parts_future.append(known[steps[L:]])
            out["past_time_features"] = torch.from_numpy(np.concatenate(parts_past, axis=1).astype(np.float32))
            out["future_time_features"] = torch.from_numpy(np.concatenate(parts_future, axis=1).astype(np.float32))
        if spec.num_static:
            out["static_categorical_features"] = torch.from_numpy(series.static.astype(np.int64))
        return out


class SampledWindows(ForecastingWindows):
    """``num_samples`` training windows drawn across series: a series uniformly, then one of its
    origins; with ``truncate`` probability only the last 8..L observed steps are kept (short
    histories), with ``missing`` probability a random tenth of the context is masked; with
    ``synthetic`` weight the window is a synthetic series (:mod:`.synthetic`) instead.

    Draws depend on ``(seed, index)`` only, so a resumed run sees the same windows.
    """

    def __init__(self, items: Sequence[SeriesItem], windows: np.ndarray, spec: WindowSpec, *, num_samples: int, seed: int = 0,
                 truncate: float = 0.0, missing: float = 0.0, synthetic: Mapping[str, Any] | None = None) -> None:
        super().__init__(items, windows, spec)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.truncate, self.missing = float(truncate), float(missing)
        self.synthetic = dict(synthetic or {})
        by_item: dict[int, list[int]] = {}
        for row, item in enumerate(self.windows[:, 0]):
            by_item.setdefault(int(item), []).append(row)
        self.by_item = [np.asarray(rows) for rows in by_item.values()]
        if not self.by_item and not self.synthetic:
            raise DataError("No training window fits any series.")

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, int(i)))
        weight = float(self.synthetic.get("weight", 0.0)) if self.synthetic else 0.0
        if self.synthetic and (not self.by_item or rng.random() < weight):
            from .synthetic import synthetic_window

            return synthetic_window(rng, self.spec, {**self.synthetic, "truncate": self.truncate})
        rows = self.by_item[rng.integers(len(self.by_item))]
        item, origin, end = (int(v) for v in self.windows[rows[rng.integers(len(rows))]])
        keep = drop = None
        if rng.random() < self.truncate:
            keep = int(rng.integers(MIN_OBSERVED, self.spec.context_length + 1))
        if rng.random() < self.missing:
            drop = rng.random(self.spec.context_length) < 0.1
            drop[-1] = False
        out = self.window(item, origin, end, keep_last=keep, drop=drop)
        if int(out["past_observed_mask"].sum()) < MIN_OBSERVED * out["past_observed_mask"].shape[1]:
            out = self.window(item, origin, end)
        return out


def origins(series: SeriesItem, start: int, end: int, *, prediction_length: int, stride: int, from_end: bool) -> list[tuple[int, int]]:
    """Forecast origins of one series whose targets lie in ``[start, end)``.

    Evaluation (``from_end``): origins ``end - prediction_length``, then every ``stride`` steps
    back, each with exactly ``prediction_length`` targets. Training: every ``stride``-th origin
    from ``start`` with at least ``prediction_length`` targets before ``end`` (the window's
    further targets, up to the horizon, are masked). Each origin's context holds at least
    :data:`MIN_OBSERVED` observed steps of every channel, and at least one target is observed.

    Returns ``(origin, target end)`` pairs, in time order.
    """
    finite = np.isfinite(series.values)
    counts = np.concatenate([np.zeros((1, finite.shape[1])), np.cumsum(finite, axis=0)]).min(axis=1)
    has_target = np.concatenate([[0], np.cumsum(finite.any(axis=1))])
    last = end - prediction_length
    if last < max(start, 1):
        return []
    candidates = range(last, start - 1, -stride) if from_end else range(start, last + 1, stride)
    found = []
    for t in candidates:
        stop = t + prediction_length if from_end else end
        if t >= 1 and counts[t] >= MIN_OBSERVED and has_target[min(stop, len(has_target) - 1)] > has_target[t]:
            found.append((t, stop))
    return sorted(found)


def describe_range(series: SeriesItem, start: int, end: int) -> dict[str, Any]:
    if series.timestamps is None:
        return {"targets_from": int(start), "targets_to": int(end - 1)}
    return {"targets_from": str(series.timestamps[start].date()), "targets_to": str(series.timestamps[end - 1].date())}


@dataclass
class DataSettings:
    """The ``data`` section of a forecasting config.

    Attributes:
        source: a table (file, folder, DataFrame) or a named source (``co2_weekly``, ``forecasting_corpus``).
        id_column: series-id column (long format); ``None``: the table is one wide series.
        time_column: timestamp column; ``None``: rows are in time order.
        target_columns: the columns to forecast.
        covariate_columns: known-future real covariates (prices, holidays), known at every step.
        static_columns: categorical columns constant within a series.
        holdout_column: boolean column marking series held out of training (test only).
        freq: frequency of every series (default: inferred per series).
        fill_missing: ``mask`` (default), ``interpolate``, ``ffill`` or ``error``.
        prediction_length: targets per evaluation window: steps, or ``"auto"`` (the M4 horizon
            of each series' frequency); default: the model's horizon.
        val_windows / test_windows: rolling origins per series in the validation / test split.
        val_fraction / test_fraction: instead, the last fractions of each series.
        train_stride: steps between training origins.
        eval_stride: steps between evaluation origins (default: ``prediction_length``).
        train_samples: draw this many training windows across series instead of taking every one.
        augment: ``{"truncate": p, "missing": p}`` for drawn windows.
        synthetic: ``{"weight": w, ...}``: a fraction ``w`` of drawn windows are synthetic series.
        seed: seed of the drawn windows.
        baselines: baselines reported beside the model on the test split.
        baseline_history: steps of history the statistical baselines fit on: ``"auto"``
            (``max(context_length, 10 seasons)``), a number, or ``None`` (all of it).
    """

    source: Any = "co2_weekly"
    id_column: str | None = None
    time_column: str | None = None
    target_columns: list | None = None
    covariate_columns: list = field(default_factory=list)
    static_columns: list = field(default_factory=list)
    holdout_column: str | None = None
    freq: str | None = None
    fill_missing: str = "mask"
    prediction_length: int | str | None = None
    val_windows: int = 1
    test_windows: int = 1
    val_fraction: float | None = None
    test_fraction: float | None = None
    train_stride: int = 1
    eval_stride: int | None = None
    train_samples: int | None = None
    augment: dict = field(default_factory=dict)
    synthetic: dict | None = None
    seed: int = 0
    baselines: list = field(default_factory=lambda: ["seasonal_naive", "ets", "theta", "auto_arima"])
    baseline_history: int | str | None = "auto"
