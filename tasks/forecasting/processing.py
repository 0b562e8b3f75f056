"""``ForecastingFeatureExtractor``: user histories -> the model's input tensors.

Accepts what users hold: a pandas ``Series``/``DataFrame`` (with a time index or a time
column), a 1-D or 2-D numpy array or nested list (rows are time steps), a ``torch.Tensor``,
or a list of those for a batch. A history shorter than the context is left-padded and
masked (at least :data:`MIN_OBSERVED` observed steps); missing values (NaN) are masked.
What comes out belongs to the input: the target names are the Series' name or the
DataFrame's columns, the frequency and the future timestamps come from its time index.
Every bad input raises an :class:`~polyhead.errors.InputError` that says what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import BatchFeature, FeatureExtractionMixin

from polyhead.errors import InputError

from .data import MIN_OBSERVED, calendar_features, freq_code, guess_freq, infer_freq

__all__ = ["ForecastingFeatureExtractor", "SeriesInput", "is_single_series", "MAX_ABS_VALUE", "MIN_ABS_VALUE", "TIME_COLUMN_NAMES", "ID_COLUMN_NAMES"]

#: Largest magnitude accepted. The model normalises each window scale-free (its statistics are
#: computed on the window divided by its largest value), so any float32 value would do; this
#: leaves room for a forecast some orders of magnitude beyond the history to stay finite.
MAX_ABS_VALUE = 1e30
#: Smallest largest-magnitude of a (not all-zero) window accepted: below it float32 holds the
#: values, and the window's standard deviation, only as denormals, with few significant digits.
MIN_ABS_VALUE = 1e-30
#: DataFrame columns taken as the time column when the model's own is absent (AutoGluon, Nixtla, GluonTS names).
TIME_COLUMN_NAMES = ("timestamp", "date", "ds", "datetime", "time")
#: DataFrame columns that make a long table a panel of series.
ID_COLUMN_NAMES = ("item_id", "unique_id", "series_id")


@dataclass
class SeriesInput:
    """One validated history, cut or left-padded to the context.

    Attributes:
        values: ``(L, C)`` float32, 0 where not observed.
        observed: ``(L, C)`` bool.
        index: the time index of the history's steps (all of them), if any.
        names: the target names (the input's own).
        freq: the history's frequency alias, inferred from its index.
        past_covariates / future_covariates: ``(L, K)`` / ``(H, K)`` known covariates, if the model takes them.
        static: ``(S,)`` static category ids, if the model takes them.
        item_id: the series' id in a panel.
        history: the observed history as given, ``(T, C)`` with NaN (for plots).
    """

    values: np.ndarray
    observed: np.ndarray
    index: pd.DatetimeIndex | None
    names: list[str]
    freq: str | None = None
    past_covariates: np.ndarray | None = None
    future_covariates: np.ndarray | None = None
    static: np.ndarray | None = None
    item_id: str | None = None
    history: np.ndarray | None = field(default=None, repr=False)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def is_single_series(inputs: Any) -> bool:
    """``True`` when ``inputs`` is ONE history (not a batch of histories).

    A flat list of numbers is one univariate series and a list of equal-length
    number rows is one multivariate series; a list of Series/DataFrames/arrays is a batch.
    """
    if isinstance(inputs, (pd.Series, pd.DataFrame)):
        return True
    if isinstance(inputs, (np.ndarray, torch.Tensor)):
        return inputs.ndim <= 2
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            return True
        first = inputs[0]
        if _is_number(first) or first is None:
            return True
        if isinstance(first, (list, tuple)) and all(_is_number(v) or v is None for v in first):
            return True
    return False


class ForecastingFeatureExtractor(FeatureExtractionMixin):
    """Turn histories into ``past_values, past_observed_mask: (B, context_length, num_channels)`` (+ covariates).

    The last ``context_length`` steps of each history are used; shorter histories are
    left-padded and masked down to :data:`MIN_OBSERVED` observed steps.

    Args:
        context_length: steps the model reads.
        num_channels: number of target series.
        target_columns: the model's channel names: selected from a DataFrame when present, and
            the names of an unnamed input (a numpy array, a list, an unnamed Series).
        time_column: the training data's time column (recognised in a DataFrame, as are
            :data:`TIME_COLUMN_NAMES`).
        freq: the training data's frequency (or frequencies): a history of another one gets a warning.
        horizon: the most steps the model forecasts.
        id_column: the training data's series-id column (a DataFrame with it is a panel).
        time_features: calendar features the model computes from the timestamps.
        covariate_columns: known covariates the model takes, as DataFrame columns.
        static_categories: static columns and their known categories (ids from 1; 0: unseen).
    """

    model_input_names = ["past_values", "past_observed_mask"]

    def __init__(
        self,
        context_length: int = 104,
        num_channels: int = 1,
        target_columns: Sequence[str] = ("value",),
        time_column: str | None = None,
        freq: str | list | None = None,
        horizon: int | None = None,
        id_column: str | None = None,
        time_features: Sequence[str] = (),
        covariate_columns: Sequence[str] = (),
        static_categories: Mapping[str, Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context_length = int(context_length)
        self.num_channels = int(num_channels)
        self.target_columns = [str(c) for c in target_columns]
        self.time_column = time_column
        self.freq = freq
        self.horizon = int(horizon) if horizon is not None else None
        self.id_column = id_column
        self.time_features = [str(f) for f in time_features]
        self.covariate_columns = [str(c) for c in covariate_columns]
        self.static_categories = {str(k): [str(v) for v in vs] for k, vs in (static_categories or {}).items()}

    @classmethod
    def from_config(cls, config: Any) -> "ForecastingFeatureExtractor":
        """Build from a :class:`ForecastingConfig`, so the two always agree."""
        return cls(
            context_length=config.context_length,
            num_channels=config.num_channels,
            target_columns=config.target_columns,
            time_column=config.time_column,
            freq=config.freq,
            horizon=config.horizon,
            id_column=config.id_column,
            time_features=config.time_features,
            covariate_columns=config.covariate_columns,
            static_categories=config.static_categories,
        )

    # -- DataFrames -------------------------------------------------------------------
    def find_time_column(self, frame: pd.DataFrame, time_column: str | None = None) -> str | None:
        """The time column of ``frame``: the one asked for, the model's, a datetime column, or a usual name."""
        if time_column is not None:
            if time_column not in frame.columns:
                raise InputError(f"time_column {time_column!r} is not a column of the history; it has {list(map(str, frame.columns))}.")
            return time_column
        if self.time_column and self.time_column in frame.columns:
            return self.time_column
        dated = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
        if len(dated) == 1:
            return dated[0]
        return next((c for c in TIME_COLUMN_NAMES if c in frame.columns), None)

    def find_id_column(self, frame: pd.DataFrame, id_column: str | None = None) -> str | None:
        """The series-id column of a long table, if it has one."""
        if id_column is not None:
            if id_column not in frame.columns:
                raise InputError(f"id_column {id_column!r} is not a column of the table; it has {list(map(str, frame.columns))}.")
            return id_column
        for name in ([self.id_column] if self.id_column else []) + list(ID_COLUMN_NAMES):
            if name in frame.columns:
                return name
        return None

    def _from_frame(self, frame: pd.DataFrame, time_column: str | None, target_columns: Sequence[str] | None
                    ) -> tuple[pd.DataFrame, pd.DatetimeIndex | None, pd.DataFrame]:
        """``(targets, time index, the other columns)`` of a DataFrame history."""
        column = self.find_time_column(frame, time_column)
        if column is not None:
            try:
                stamps = pd.DatetimeIndex(pd.to_datetime(frame[column]))
            except (ValueError, TypeError) as err:
                raise InputError(f"Column {column!r} must hold timestamps: {err}") from None
            frame = frame.drop(columns=[column]).set_index(stamps)
        if isinstance(frame.index, pd.DatetimeIndex):
            frame = self._regular(frame)
        reserved = set(self.covariate_columns) | set(self.static_categories) | ({self.id_column} if self.id_column else set())
        if target_columns is not None:
            missing = [c for c in target_columns if c not in frame.columns]
            if missing:
                raise InputError(f"target_columns {missing} are not columns of the history; it has {list(map(str, frame.columns))}.")
            chosen = list(target_columns)
        elif all(c in frame.columns for c in self.target_columns):
            chosen = list(self.target_columns)
        else:
            chosen = [c for c in frame.columns if str(c) not in reserved]
            if len(chosen) != self.num_channels:
                raise InputError(
                    f"Expected the target columns {self.target_columns} (or exactly {self.num_channels} column(s) besides the time "
                    f"column and covariates), got columns {list(map(str, frame.columns))}; name them with target_columns=[...]."
                )
        if len(chosen) != self.num_channels:
            raise InputError(f"This model forecasts {self.num_channels} channel(s); target_columns names {len(chosen)}.")
        bad = [str(c) for c in chosen if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
        if bad:
            raise InputError(f"Target columns must be numeric; non-numeric column(s): {bad}.")
        index = frame.index if isinstance(frame.index, pd.DatetimeIndex) else None
        return frame[chosen], index, frame

    @staticmethod
    def _regular(frame: pd.DataFrame) -> pd.DataFrame:
        """Rows in time order; missing time steps (a gap in a regular grid) become missing rows."""
        if frame.index.has_duplicates:
            raise InputError(f"The history's time index has duplicate timestamps, e.g. {frame.index[frame.index.duplicated()][0]}.")
        frame = frame.sort_index()
        if len(frame) >= 3 and infer_freq(frame.index) is None:
            freq = guess_freq(frame.index)
            if freq is not None:
                grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq)
                if frame.index.isin(grid).all() and len(grid) <= 2 * len(frame):
                    frame = frame.reindex(grid)
        return frame

    # -- one series -------------------------------------------------------------------
    def to_series(
        self,
        history: Any,
        *,
        time_column: str | None = None,
        target_columns: Sequence[str] | None = None,
        future_covariates: Any = None,
        prediction_length: int | None = None,
        item_id: str | None = None,
    ) -> SeriesInput:
        """Validate one history and return it as the context the model reads, with its names and frequency."""
        index, names, others = None, None, None
        if isinstance(history, pd.Series):
            names = [str(history.name)] if history.name is not None and self.num_channels == 1 else None
            history = history.to_frame(name=names[0] if names else (self.target_columns[0] if self.num_channels == 1 else 0))
        if isinstance(history, pd.DataFrame):
            targets, index, others = self._from_frame(history, time_column, target_columns)
            names = names or [str(c) for c in targets.columns]
            values = targets.to_numpy(dtype=np.float64)
        elif isinstance(history, torch.Tensor):
            values = history.detach().cpu().numpy()
        elif isinstance(history, (np.ndarray, list, tuple)):
            try:
                values = np.asarray(history, dtype=None if isinstance(history, np.ndarray) else float)
            except (ValueError, TypeError, OverflowError):  # OverflowError: an int beyond float range
                raise InputError(
                    "A history given as a list must hold numbers (one row per time step); "
                    "got a ragged or non-numeric list."
                ) from None
        else:
            raise InputError(
                "Expected a history as a pandas Series/DataFrame, numpy array, torch tensor or list of "
                f"numbers, got {type(history).__name__}."
            )
        if values.dtype.kind not in "iuf":
            raise InputError(f"History values must be numeric, got dtype {values.dtype}.")
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise InputError(
                f"A history must be 1-D (steps,) or 2-D (steps, channels), got {values.ndim}-D shape {values.shape}."
            )
        if values.shape[1] != self.num_channels:
            raise InputError(
                f"This model forecasts {self.num_channels} channel(s) {self.target_columns}; "
                f"the history has {values.shape[1]} (a 2-D history is (steps, channels); pass a batch as a list "
                "or a 3-D array (batch, steps, channels))."
            )
        names = names or list(self.target_columns)
        L = self.context_length
        window = values[-L:].astype(np.float64)
        finite = np.isfinite(window)
        if np.isinf(window).any():
            steps = np.unique(np.nonzero(np.isinf(window))[0])
            raise InputError(
                f"The last {L} steps of the history contain infinite values (at step(s) {steps[:5].tolist()} of that window); "
                "mark missing values as NaN."
            )
        seen = int(finite.sum(axis=0).min()) if window.size else 0
        if seen < MIN_OBSERVED:
            if len(values) < MIN_OBSERVED:
                detail = f"The history has {len(values)} steps"
            else:
                detail = f"The last {L} steps of the history have {seen} observed (non-NaN) values"
            raise InputError(f"{detail}; this model needs at least {MIN_OBSERVED} observed steps (it reads up to {L}, left-padding shorter histories).")
        largest = float(np.abs(window[finite]).max())
        if largest > MAX_ABS_VALUE:
            raise InputError(
                f"History values reach {largest:.3g}; values beyond {MAX_ABS_VALUE:.0e} overflow float32 "
                "normalisation. Rescale the series (e.g. to thousands or millions)."
            )
        if 0 < largest < MIN_ABS_VALUE:
            raise InputError(
                f"The last {L} steps of the history are at most {largest:.3g} in magnitude; float32, "
                f"which the model computes in, holds values below {MIN_ABS_VALUE:.0e} only with few significant digits. "
                "Rescale the series (forecasts scale with it)."
            )
        padded = np.zeros((L, self.num_channels), dtype=np.float32)
        observed = np.zeros((L, self.num_channels), dtype=bool)
        padded[L - len(window) :] = np.where(finite, window, 0.0)
        observed[L - len(window) :] = finite
        freq = None
        if index is not None:
            freq = index.freq.freqstr if index.freq is not None else infer_freq(index)
            if freq is None:
                warnings.warn(
                    "Could not infer the frequency of the history's time index (irregular or fewer than 3 steps); "
                    "the forecast carries no timestamps.", UserWarning, stacklevel=4)
            else:
                self.check_frequency(freq)
        series = SeriesInput(values=padded, observed=observed, index=index, names=names, freq=freq, item_id=item_id, history=values)
        self._covariates(series, others, future_covariates, prediction_length, time_column)
        return series

    def check_frequency(self, freq: str) -> None:
        """Warn when the model was not trained on ``freq`` (compared by kind: ``W-SAT`` and ``W-SUN`` are both weekly)."""
        trained = [self.freq] if isinstance(self.freq, str) else list(self.freq or [])
        if not trained:
            return
        kind = freq_code(freq)
        kinds = {freq_code(f) for f in trained}
        similar = {("B", 1): ("D", 1), ("D", 1): ("B", 1)}
        if kind not in kinds and similar.get(kind) not in kinds:
            warnings.warn(
                f"This history's frequency is {freq!r}; the model was trained on {', '.join(map(repr, trained))}. "
                "Its forecast may be poor; the timestamps follow the history's own frequency.", UserWarning, stacklevel=5)

    def _covariates(self, series: SeriesInput, others: pd.DataFrame | None, future: Any, prediction_length: int | None,
                    time_column: str | None) -> None:
        """Fill the past and future covariates and static ids the model takes."""
        L, H = self.context_length, self.horizon or (prediction_length or 0)
        if self.time_features:
            if series.index is None or series.freq is None:
                raise InputError(f"This model computes the calendar features {self.time_features} from timestamps; "
                                 "give the history a regular DatetimeIndex (or a time column).")
            offset = pd.tseries.frequencies.to_offset(series.freq)
            stamps = pd.date_range(end=series.index[-1], periods=L, freq=offset)
            futures = pd.date_range(series.index[-1], periods=H + 1, freq=offset)[1:]
            past_calendar, future_calendar = calendar_features(stamps, self.time_features), calendar_features(futures, self.time_features)
        else:
            past_calendar, future_calendar = np.zeros((L, 0), np.float32), np.zeros((H, 0), np.float32)
        past_known, future_known = np.zeros((L, 0), np.float32), np.zeros((H, 0), np.float32)
        if self.covariate_columns:
            if others is None or any(c not in others.columns for c in self.covariate_columns):
                raise InputError(f"This model takes the known covariates {self.covariate_columns} as columns of a DataFrame history.")
            known = others[self.covariate_columns].apply(pd.to_numeric, errors="coerce").interpolate(limit_direction="both").to_numpy(np.float64)
            if not np.isfinite(known).all():
                raise InputError(f"The covariate columns {self.covariate_columns} must hold numbers at every step.")
            steps = np.clip(np.arange(len(known) - L, len(known)), 0, len(known) - 1)
            past_known = known[steps].astype(np.float32)
            future_known = self._future(future, prediction_length, H, series)
        series.past_covariates = np.concatenate([past_calendar, past_known], axis=1)
        series.future_covariates = np.concatenate([future_calendar, future_known], axis=1)
        if self.static_categories:
            if others is None or any(c not in others.columns for c in self.static_categories):
                raise InputError(f"This model takes the static columns {list(self.static_categories)} as columns of a DataFrame history.")
            ids = []
            for column, categories in self.static_categories.items():
                values = others[column].dropna().unique()
                if len(values) != 1:
                    raise InputError(f"Static column {column!r} must hold one value per series, got {len(values)}.")
                lookup = {c: i + 1 for i, c in enumerate(categories)}
                ids.append(lookup.get(str(values[0]), 0))
            series.static = np.asarray(ids, dtype=np.int64)

    def _future(self, future: Any, prediction_length: int | None, horizon: int, series: SeriesInput) -> np.ndarray:
        need = prediction_length or horizon
        if future is None:
            raise InputError(f"This model takes the known covariates {self.covariate_columns} for the steps it forecasts; "
                             f"pass future_covariates=<a DataFrame with those columns for the next {need} steps>.")
        frame = future if isinstance(future, pd.DataFrame) else pd.DataFrame(future)
        missing = [c for c in self.covariate_columns if c not in frame.columns]
        if missing:
            raise InputError(f"future_covariates lacks the column(s) {missing}.")
        if series.item_id is not None:
            column = self.find_id_column(frame)
            if column is not None:
                frame = frame[frame[column].astype(str) == series.item_id]
        known = frame[self.covariate_columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if len(known) < need or not np.isfinite(known[:need]).all():
            which = f" for series {series.item_id!r}" if series.item_id is not None else ""
            raise InputError(f"future_covariates{which} has {len(known)} row(s); it needs numbers for the next {need} steps.")
        known = known[:horizon]
        if len(known) < horizon:  # beyond what was asked for: repeat the last step (those steps are not returned)
            known = np.concatenate([known, np.repeat(known[-1:], horizon - len(known), axis=0)])
        return known.astype(np.float32)

    def future_index(self, index: pd.DatetimeIndex | None, horizon: int, freq: str | None = None) -> pd.DatetimeIndex | None:
        """Timestamps of the ``horizon`` steps after ``index`` at the history's own frequency, or ``None`` if unknown."""
        if index is None or len(index) == 0:
            return None
        freq = freq or (index.freq.freqstr if index.freq is not None else infer_freq(index))
        if freq is None:
            return None
        return pd.date_range(start=index[-1], periods=horizon + 1, freq=freq)[1:]

    # -- batches ----------------------------------------------------------------------
    def tensors(self, series: Sequence[SeriesInput]) -> dict[str, torch.Tensor]:
        """The model's inputs for a batch of validated histories."""
        out = {
            "past_values": torch.from_numpy(np.stack([s.values for s in series])),
            "past_observed_mask": torch.from_numpy(np.stack([s.observed for s in series])),
        }
        if self.time_features or self.covariate_columns:
            out["past_time_features"] = torch.from_numpy(np.stack([s.past_covariates for s in series]).astype(np.float32))
            out["future_time_features"] = torch.from_numpy(np.stack([s.future_covariates for s in series]).astype(np.float32))
        if self.static_categories:
            out["static_categorical_features"] = torch.from_numpy(np.stack([s.static for s in series]))
        return out

    def __call__(self, histories: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """``histories``: one history or a list of them -> ``{"past_values": (B, L, C), "past_observed_mask": (B, L, C), ...}``."""
        if isinstance(histories, (np.ndarray, torch.Tensor)) and histories.ndim == 3:
            histories = list(histories)
        elif is_single_series(histories):
            histories = [histories]
        if not len(histories):
            raise InputError("Got an empty batch of histories.")
        return BatchFeature(self.tensors([self.to_series(h, **kwargs) for h in histories]), tensor_type=return_tensors)
