"""``ForecastingFeatureExtractor``: user histories -> ``past_values`` tensors.

Accepts what users hold: a pandas ``Series``/``DataFrame`` (with a time index or
a time column), a 1-D or 2-D numpy array or nested list (rows are time steps),
a ``torch.Tensor``, or a list of those for a batch. Every bad input raises an
:class:`~polyhead.errors.InputError` that says what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import BatchFeature, FeatureExtractionMixin

from polyhead.errors import InputError

from .data import infer_freq

__all__ = ["ForecastingFeatureExtractor", "SeriesInput", "is_single_series", "MAX_ABS_VALUE", "MIN_ABS_VALUE"]

#: Largest magnitude accepted. The model normalises each window scale-free (its statistics are
#: computed on the window divided by its largest value), so any float32 value would do; this
#: leaves room for a forecast some orders of magnitude beyond the history to stay finite.
MAX_ABS_VALUE = 1e30
#: Smallest largest-magnitude of a (not all-zero) window accepted: below it float32 holds the
#: values, and the window's standard deviation, only as denormals, with few significant digits.
MIN_ABS_VALUE = 1e-30


@dataclass
class SeriesInput:
    """One validated history: ``values (L, C)`` float32 and its time index, if any."""

    values: np.ndarray
    index: pd.DatetimeIndex | None


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
    """Turn histories into ``past_values: (B, context_length, num_channels)``.

    The last ``context_length`` steps of each history are used; longer histories
    are fine, shorter ones are an error.

    Args:
        context_length: steps the model reads.
        num_channels: number of target series.
        target_columns: column names to select from a DataFrame, in channel order.
        time_column: name of a DataFrame column holding timestamps, if any.
        freq: pandas frequency alias used for future timestamps when the input's
            own index does not reveal it.
    """

    model_input_names = ["past_values"]

    def __init__(
        self,
        context_length: int = 104,
        num_channels: int = 1,
        target_columns: Sequence[str] = ("value",),
        time_column: str | None = None,
        freq: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context_length = int(context_length)
        self.num_channels = int(num_channels)
        self.target_columns = [str(c) for c in target_columns]
        self.time_column = time_column
        self.freq = freq

    @classmethod
    def from_config(cls, config: Any) -> "ForecastingFeatureExtractor":
        """Build from a :class:`ForecastingConfig`, so the two always agree."""
        return cls(
            context_length=config.context_length,
            num_channels=config.num_channels,
            target_columns=config.target_columns,
            time_column=config.time_column,
            freq=config.freq,
        )

    # -- one series -------------------------------------------------------------------
    def _from_frame(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DatetimeIndex | None]:
        if self.time_column and self.time_column in frame.columns:
            try:
                frame = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame[self.time_column])))
            except (ValueError, TypeError) as err:
                raise InputError(f"Column {self.time_column!r} must hold timestamps: {err}") from None
            frame = frame.drop(columns=[self.time_column])
        if all(c in frame.columns for c in self.target_columns):
            frame = frame[self.target_columns]
        elif frame.shape[1] != self.num_channels:
            raise InputError(
                f"Expected the target columns {self.target_columns} (or exactly {self.num_channels} "
                f"column(s)), got columns {list(map(str, frame.columns))}."
            )
        bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
        if bad:
            raise InputError(f"Target columns must be numeric; non-numeric column(s): {bad}.")
        index = frame.index if isinstance(frame.index, pd.DatetimeIndex) else None
        return frame, index

    def to_series(self, history: Any) -> SeriesInput:
        """Validate one history and return it as ``values (L, C)`` plus its time index."""
        index = None
        if isinstance(history, pd.Series):
            history = history.to_frame()
        if isinstance(history, pd.DataFrame):
            history, index = self._from_frame(history)
            values = history.to_numpy()
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
        if values.shape[0] < self.context_length:
            raise InputError(
                f"The history has {values.shape[0]} steps; this model needs at least "
                f"{self.context_length} (its context_length)."
            )
        values = values[-self.context_length :]
        if index is not None:
            index = index[-self.context_length :]
        if not np.isfinite(values).all():
            steps = np.unique(np.nonzero(~np.isfinite(values))[0])
            raise InputError(
                f"The last {self.context_length} steps of the history contain NaN or infinite values "
                f"(at step(s) {steps[:5].tolist()} of that window); fill or drop missing values first."
            )
        largest = float(np.abs(values).max())
        if largest > MAX_ABS_VALUE:
            raise InputError(
                f"History values reach {largest:.3g}; values beyond {MAX_ABS_VALUE:.0e} overflow float32 "
                "normalisation. Rescale the series (e.g. to thousands or millions)."
            )
        if 0 < largest < MIN_ABS_VALUE:
            raise InputError(
                f"The last {self.context_length} steps of the history are at most {largest:.3g} in magnitude; float32, "
                f"which the model computes in, holds values below {MIN_ABS_VALUE:.0e} only with few significant digits. "
                "Rescale the series (forecasts scale with it)."
            )
        values = values.astype(np.float32)
        return SeriesInput(values=values, index=index)

    def future_index(self, index: pd.DatetimeIndex | None, horizon: int) -> pd.DatetimeIndex | None:
        """Timestamps of the ``horizon`` steps after ``index``, or ``None`` if unknown."""
        if index is None or len(index) == 0:
            return None
        freq = index.freq or infer_freq(index) or self.freq
        if freq is None:
            return None
        return pd.date_range(start=index[-1], periods=horizon + 1, freq=freq)[1:]

    # -- batches ----------------------------------------------------------------------
    def __call__(self, histories: Any, return_tensors: str | None = "pt") -> BatchFeature:
        """``histories``: one history or a list of them -> ``{"past_values": (B, L, C)}``."""
        if isinstance(histories, (np.ndarray, torch.Tensor)) and histories.ndim == 3:
            histories = list(histories)
        elif is_single_series(histories):
            histories = [histories]
        if not len(histories):
            raise InputError("Got an empty batch of histories.")
        stacked = np.stack([self.to_series(h).values for h in histories])
        return BatchFeature({"past_values": stacked}, tensor_type=return_tensors)
