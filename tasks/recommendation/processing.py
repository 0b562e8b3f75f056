"""``RecommendationProcessor``: raw ids and feature rows <-> model tensors.

Next-item: ``{"history": [raw item ids, oldest first]}`` -> ``input_ids (B, L)``,
left-padded with the padding index so the most recent item is always the last
token (as in training). Histories longer than ``max_length`` keep their most recent
``max_length`` items; duplicates are kept (re-watching is a signal); an empty
history and unknown item ids are :class:`~polyhead.errors.InputError` (or, with
``on_unknown="skip"``, unknown ids are dropped).

CTR: ``{field: value}`` rows -> ``features (B, F)``, one column per field in schema
order (a categorical id, a bucket id, or a standardised number). Every schema field must be present (extra keys are ignored); a
categorical value never seen in training is an error (or, with
``on_unknown="skip"``, the reserved unseen id 0); a numeric field needs a finite
real number, a categorical one a string or an integer. One encoder,
:meth:`RecommendationProcessor.encode_columns`, turns both the training table's columns and
the pipeline's rows into features, so a row is encoded the same way in training and serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from transformers import BatchFeature, FeatureExtractionMixin

from polyhead.errors import InputError
from polyhead.processing import SavesSettingsOnly

from .configuration import CTRConfig, RecommendationConfig, categorical_fields

__all__ = ["RecommendationProcessor"]

_UNKNOWN = ("error", "skip")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _as_array(values: Any) -> np.ndarray:
    """A column as a 1-D array: a table's column as it is typed, Python values as objects (each checked)."""
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy()
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    values = list(values)
    array = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # element by element: a value that is itself a list stays one (bad) value
        array[i] = value
    return array


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for error messages)."""
    return value.item() if isinstance(value, np.generic) else value


class RecommendationProcessor(SavesSettingsOnly, FeatureExtractionMixin):
    """Map raw item ids / feature rows to indices and back.

    Args:
        objective: ``"next_item"`` or ``"ctr"``.
        max_length: history items the next-item model reads.
        item_vocab: raw item ids (strings) in index order; the padding index is ``len(item_vocab)``.
        item_titles: display names aligned with ``item_vocab`` (optional).
        item_id_type: ``"int"`` or ``"str"``: the type item ids are returned as.
        fields: the CTR field schema of :class:`~polyhead.tasks.recommendation.CTRConfig`.
    """

    model_input_names = ["input_ids", "features"]

    def __init__(
        self,
        objective: str = "next_item",
        max_length: int = 50,
        item_vocab: Sequence[str] = (),
        item_titles: Sequence[str] = (),
        item_id_type: str = "int",
        fields: Sequence[dict] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.objective = objective
        self.max_length = int(max_length)
        self.item_vocab = [str(i) for i in item_vocab]
        self.item_titles = [str(t) for t in item_titles]
        self.item_id_type = item_id_type
        self.fields = [dict(f) for f in fields]
        self._item_index: dict[str, int] | None = None
        self._field_index: dict[str, dict[str, int]] | None = None

    @classmethod
    def from_config(cls, config: RecommendationConfig) -> "RecommendationProcessor":
        """Build from a :class:`NextItemConfig` or a :class:`CTRConfig`, so the two always agree."""
        if isinstance(config, CTRConfig):
            return cls(objective=config.objective, fields=config.fields)
        return cls(
            objective=config.objective,
            max_length=config.max_length,
            item_vocab=config.item_vocab,
            item_titles=config.item_titles,
            item_id_type=config.item_id_type,
        )

    # -- items -------------------------------------------------------------------------
    @property
    def padding_index(self) -> int:
        return len(self.item_vocab)

    @property
    def item_index(self) -> dict[str, int]:
        if self._item_index is None:
            self._item_index = {item: i for i, item in enumerate(self.item_vocab)}
        return self._item_index

    def item_id(self, index: int) -> int | str:
        """The raw id of item ``index`` (an ``int`` when the training ids were integers)."""
        raw = self.item_vocab[index]
        return int(raw) if self.item_id_type == "int" else raw

    def encode_history(self, history: Any, *, on_unknown: str = "error", truncate: bool = True) -> list[int]:
        """Validate one history and return its item indices (the most recent ``max_length`` when ``truncate``)."""
        if on_unknown not in _UNKNOWN:
            raise InputError(f"on_unknown must be one of {_UNKNOWN}, got {on_unknown!r}.")
        if isinstance(history, Mapping):
            if "history" not in history:
                raise InputError(f"A next-item input is {{'history': [item ids]}}; got keys {sorted(map(str, history))}.")
            history = history["history"]
        if isinstance(history, np.ndarray):
            history = history.tolist()
        if isinstance(history, (str, bytes)) or not isinstance(history, (list, tuple)):
            raise InputError(f"'history' must be a list of item ids (oldest first), got {type(history).__name__}.")
        if not history:
            raise InputError("The history is empty; the model needs at least one item the user interacted with.")
        bad = [h for h in history if not (_is_int(h) or isinstance(h, str))]
        if bad:
            raise InputError(f"Item ids must be integers or strings, got {bad[:5]!r}.")
        indices, unknown = [], []
        for item in history:
            index = self.item_index.get(str(item))
            if index is None:
                unknown.append(item)
            else:
                indices.append(index)
        if unknown and on_unknown == "error":
            raise InputError(
                f"Unknown item id(s) {unknown[:10]!r}{' ...' if len(unknown) > 10 else ''}: not in this model's "
                f"{len(self.item_vocab)}-item catalogue. Pass on_unknown='skip' to drop them."
            )
        if not indices:
            raise InputError(f"None of the history's item ids {history[:10]!r} is in this model's catalogue.")
        return indices[-self.max_length :] if truncate else indices

    def pad(self, indices: Sequence[int]) -> list[int]:
        """Left-pad (or cut) to ``max_length`` with the padding index."""
        indices = list(indices)[-self.max_length :]
        return [self.padding_index] * (self.max_length - len(indices)) + indices

    # -- CTR rows ----------------------------------------------------------------------
    @property
    def categorical_fields(self) -> list[dict]:
        return categorical_fields(self.fields)

    @property
    def numeric_fields(self) -> list[dict]:
        return [f for f in self.fields if f["kind"] == "numeric"]

    def _vocab(self, name: str) -> dict[str, int]:
        if self._field_index is None:
            self._field_index = {
                f["name"]: {str(v): i + 1 for i, v in enumerate(f.get("vocab") or [])} for f in self.fields if f["kind"] == "categorical"
            }
        return self._field_index[name]

    def encode_columns(self, columns: Mapping[str, Any] | pd.DataFrame, *, on_unknown: str = "error") -> np.ndarray:
        """The CTR feature encoder: columns of raw values -> ``features (N, F)`` float32, one column per field in schema order.

        Training data (the table's columns) and serving (:meth:`encode_rows`, the pipeline) both
        encode through here, so a row gets the same features in both. Categorical fields give
        their id (0 = unseen, ``str(value)`` looked up in the field's vocabulary), bucketized
        fields their bucket, numeric fields their standardised value.

        Args:
            columns: a ``DataFrame`` or ``{field name: values}`` holding every schema field
                (other columns are ignored).
            on_unknown: ``"error"`` for a categorical value never seen in training, or
                ``"skip"`` to give it the unseen id 0.

        Raises:
            InputError: a missing field, a categorical value that is not a string or an integer
                (or, with ``on_unknown="error"``, never seen), a numeric or bucketized value that
                is not a finite real number.
        """
        if on_unknown not in _UNKNOWN:
            raise InputError(f"on_unknown must be one of {_UNKNOWN}, got {on_unknown!r}.")
        names = [f["name"] for f in self.fields]
        missing = [n for n in names if n not in columns]
        if missing:
            raise InputError(f"The data lacks field(s) {missing}; this model reads {names}.")
        encoded = [self._encode_field(field, _as_array(columns[field["name"]]), on_unknown) for field in self.fields]
        return np.stack(encoded, axis=1).astype(np.float32) if encoded else np.zeros((0, 0), dtype=np.float32)

    def _encode_field(self, field: dict, values: np.ndarray, on_unknown: str) -> np.ndarray:
        """One field's column -> float64 values (ids, buckets or standardised numbers)."""
        name, kind = field["name"], field["kind"]
        if kind in ("numeric", "bucketized"):
            if values.dtype.kind == "O":  # Python values: each must be a real number
                bad = next((i for i, v in enumerate(values) if not _is_real(v)), None)
            else:  # a typed column: numbers, or strings, booleans, dates (each as wrong as the first)
                bad = None if values.dtype.kind in "iuf" or not len(values) else 0
            numbers = values.astype(np.float64) if bad is None else None
            if numbers is not None and not np.isfinite(numbers).all():
                bad = int(np.argmin(np.isfinite(numbers)))
            if bad is not None:
                value = _plain(values[bad])
                raise InputError(f"Field {name!r} is {kind}: expected a finite number, got {value!r} ({type(value).__name__}).")
            if kind == "numeric":
                return (numbers - float(field.get("mean", 0.0))) / float(field.get("std", 1.0) or 1.0)
            return np.searchsorted(field["boundaries"], numbers, side="right").astype(np.float64)
        if values.dtype.kind in "iuU":  # a typed column of integers or strings
            keys = values.astype(str)
        else:
            if values.dtype.kind == "O":  # Python values: each must be a string or an integer
                bad = next((i for i, v in enumerate(values) if not (_is_int(v) or isinstance(v, str))), None)
            else:  # a typed column of floats, booleans, bytes or dates
                bad = 0 if len(values) else None
            if bad is not None:
                value = _plain(values[bad])
                raise InputError(f"Field {name!r} is categorical: expected a string or an integer, got {value!r} ({type(value).__name__}).")
            keys = np.array([str(v) for v in values], dtype=object)
        ids = pd.Series(keys, dtype=object).map(self._vocab(name))
        unknown = ids.isna().to_numpy()
        if unknown.any() and on_unknown == "error":
            value = _plain(values[int(np.argmax(unknown))])
            known = list(self._vocab(name))[:8]
            raise InputError(
                f"Field {name!r} has the value {value!r}, never seen in training (e.g. {known}). "
                "Pass on_unknown='skip' to use the unseen-value embedding."
            )
        return ids.fillna(0).to_numpy(dtype=np.float64)

    def encode_rows(self, rows: Sequence[Any], *, on_unknown: str = "error") -> np.ndarray:
        """CTR rows ``[{field: value}, ...]`` -> ``features (N, F)`` float32 (through :meth:`encode_columns`)."""
        names = [f["name"] for f in self.fields]
        for row in rows:
            if not isinstance(row, Mapping):
                raise InputError(f"A CTR input is a dict {{field: value}}, got {type(row).__name__}.")
            missing = [n for n in names if n not in row]
            if missing:
                raise InputError(f"The row lacks field(s) {missing}; this model reads {names}.")
        return self.encode_columns({name: [row[name] for row in rows] for name in names}, on_unknown=on_unknown)

    def encode_row(self, row: Any, *, on_unknown: str = "error") -> list[float]:
        """Validate one CTR row and return one value per field in schema order (see :meth:`encode_columns`)."""
        return [float(v) for v in self.encode_rows([row], on_unknown=on_unknown)[0]]

    # -- batches -----------------------------------------------------------------------
    def __call__(self, inputs: Any, *, on_unknown: str = "error", return_tensors: str | None = "pt") -> BatchFeature:
        """One input or a list of them -> model tensors."""
        batch = [inputs] if isinstance(inputs, Mapping) else list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not batch:
            raise InputError("Got an empty batch.")
        if self.objective == "next_item":
            ids = [self.pad(self.encode_history(x, on_unknown=on_unknown)) for x in batch]
            return BatchFeature({"input_ids": np.asarray(ids, dtype=np.int64)}, tensor_type=return_tensors)
        return BatchFeature({"features": self.encode_rows(batch, on_unknown=on_unknown)}, tensor_type=return_tensors)
