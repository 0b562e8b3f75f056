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
real number, a categorical one a string or an integer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformers import BatchFeature, FeatureExtractionMixin

from polyhead.errors import InputError
from polyhead.processing import SavesSettingsOnly

__all__ = ["RecommendationProcessor"]

_UNKNOWN = ("error", "skip")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class RecommendationProcessor(SavesSettingsOnly, FeatureExtractionMixin):
    """Map raw item ids / feature rows to indices and back.

    Args:
        objective: ``"next_item"`` or ``"ctr"``.
        max_length: history items the next-item model reads.
        item_vocab: raw item ids (strings) in index order; the padding index is ``len(item_vocab)``.
        item_titles: display names aligned with ``item_vocab`` (optional).
        item_id_type: ``"int"`` or ``"str"``: the type item ids are returned as.
        fields: the CTR field schema of :class:`RecommendationConfig`.
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
    def from_config(cls, config: Any) -> "RecommendationProcessor":
        """Build from a :class:`RecommendationConfig`, so the two always agree."""
        return cls(
            objective=config.objective,
            max_length=config.max_length,
            item_vocab=config.item_vocab,
            item_titles=config.item_titles,
            item_id_type=config.item_id_type,
            fields=config.fields,
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
        return [f for f in self.fields if f["kind"] in ("categorical", "bucketized")]

    @property
    def numeric_fields(self) -> list[dict]:
        return [f for f in self.fields if f["kind"] == "numeric"]

    def _vocab(self, name: str) -> dict[str, int]:
        if self._field_index is None:
            self._field_index = {
                f["name"]: {str(v): i + 1 for i, v in enumerate(f.get("vocab") or [])} for f in self.fields if f["kind"] == "categorical"
            }
        return self._field_index[name]

    def encode_row(self, row: Any, *, on_unknown: str = "error") -> list[float]:
        """Validate one CTR row and return one value per field in schema order.

        Categorical fields give their id (0 = unseen), bucketized fields their bucket,
        numeric fields their standardised value.
        """
        if on_unknown not in _UNKNOWN:
            raise InputError(f"on_unknown must be one of {_UNKNOWN}, got {on_unknown!r}.")
        if not isinstance(row, Mapping):
            raise InputError(f"A CTR input is a dict {{field: value}}, got {type(row).__name__}.")
        names = [f["name"] for f in self.fields]
        missing = [n for n in names if n not in row]
        if missing:
            raise InputError(f"The row lacks field(s) {missing}; this model reads {names}.")
        values: list[float] = []
        for field in self.fields:
            name, value = field["name"], row[field["name"]]
            if field["kind"] in ("numeric", "bucketized"):
                if not _is_real(value) or not math.isfinite(float(value)):
                    raise InputError(f"Field {name!r} is {field['kind']}: expected a finite number, got {value!r} ({type(value).__name__}).")
                if field["kind"] == "numeric":
                    values.append((float(value) - float(field.get("mean", 0.0))) / float(field.get("std", 1.0) or 1.0))
                else:
                    values.append(float(np.searchsorted(field["boundaries"], float(value), side="right")))
                continue
            if not (_is_int(value) or isinstance(value, str)):
                raise InputError(f"Field {name!r} is categorical: expected a string or an integer, got {value!r} ({type(value).__name__}).")
            index = self._vocab(name).get(str(value))
            if index is None:
                if on_unknown == "error":
                    known = list(self._vocab(name))[:8]
                    raise InputError(
                        f"Field {name!r} has the value {value!r}, never seen in training (e.g. {known}). "
                        "Pass on_unknown='skip' to use the unseen-value embedding."
                    )
                index = 0
            values.append(float(index))
        return values

    # -- batches -----------------------------------------------------------------------
    def __call__(self, inputs: Any, *, on_unknown: str = "error", return_tensors: str | None = "pt") -> BatchFeature:
        """One input or a list of them -> model tensors."""
        batch = [inputs] if isinstance(inputs, Mapping) else list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not batch:
            raise InputError("Got an empty batch.")
        if self.objective == "next_item":
            ids = [self.pad(self.encode_history(x, on_unknown=on_unknown)) for x in batch]
            return BatchFeature({"input_ids": np.asarray(ids, dtype=np.int64)}, tensor_type=return_tensors)
        rows = [self.encode_row(x, on_unknown=on_unknown) for x in batch]
        return BatchFeature({"features": np.asarray(rows, dtype=np.float32)}, tensor_type=return_tensors)
