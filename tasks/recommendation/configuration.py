"""Recommendation configs: what both objectives share (:class:`RecommendationConfig`), and one config per objective.

* :class:`NextItemConfig` (``model_type: polyhead-next-item``): item histories in, a score per
  catalogue item out (the item vocabulary and the history length);
* :class:`CTRConfig` (``model_type: polyhead-ctr``): one row of feature fields in, a click
  logit out (the field schema).

A config file's ``model.objective`` (``"next_item"`` or ``"ctr"``) picks the class
(:func:`config_class_for`); files written for polyhead 0.1 name no objective, and their
head's type says which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive, look_up_option

__all__ = [
    "CTRConfig",
    "FIELD_KINDS",
    "NextItemConfig",
    "OBJECTIVES",
    "RecommendationConfig",
    "categorical_fields",
    "config_class_for",
    "field_size",
    "objective_of_section",
]

#: how a CTR field becomes a token: its own id table, a linear map of the standardised
#: value, or a bucket id from fixed boundaries.
FIELD_KINDS = ("categorical", "numeric", "bucketized")
#: head type -> objective, for model sections that name no objective (polyhead 0.1 config files)
_HEAD_OBJECTIVES = {"next_item": "next_item", "ctr": "ctr"}


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 2, "position": "learned", "max_length": 50}


def categorical_fields(fields: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Categorical and bucketized fields (each an id per row), in schema order."""
    return [dict(f) for f in fields if f["kind"] in ("categorical", "bucketized")]


def field_size(field: Mapping[str, Any]) -> int:
    """Ids of a categorical field: its vocabulary plus the reserved unseen id 0 (a bucketized field: its buckets)."""
    if field["kind"] == "bucketized":
        return len(field["boundaries"]) + 1
    return len(field.get("vocab") or []) + 1


class RecommendationConfig(PolyheadConfig):
    """What every recommendation config holds: the shared sequence backbone and the objective's head.

    The shared base of :class:`NextItemConfig` and :class:`CTRConfig` (build one of those;
    a config file's ``model.objective`` picks it).

    Attributes:
        backbone: sequence backbone (the shared ``transformer``); whether it attends causally
            is chosen per call by the objective's adapter (causal over histories, bidirectional
            over field tokens), never here.
        head: the objective's head (see the subclasses).

    Class attributes:
        objective: the name a config file's ``model.objective`` gives this config class.
    """

    task = "recommendation"
    objective: ClassVar[str] = ""

    backbone: dict = dataclasses.field(default_factory=_default_backbone)

    def __post_init__(self, **kwargs: Any) -> None:
        if not self.objective:
            raise ConfigError("RecommendationConfig is the shared base of the recommendation configs; build a NextItemConfig or a CTRConfig.")
        super().__post_init__(**kwargs)


class NextItemConfig(RecommendationConfig):
    """Configuration of :class:`~polyhead.tasks.recommendation.PolyheadForNextItem` (SASRec-style next-item retrieval).

    Attributes (beside :class:`RecommendationConfig`'s):
        head: ``{"type": "next_item", ...}``.
        max_length: items of history the model reads (most recent kept).
        item_vocab: raw item ids (as strings) in index order; index ``len(item_vocab)`` is padding.
            Filled from the data at training time.
        item_titles: optional display names aligned with ``item_vocab``.
        item_id_type: ``"int"`` when every raw id was an integer (returned as ``int``), else ``"str"``.

    Example:
        >>> NextItemConfig(item_vocab=["1", "2", "3"], max_length=20).num_items
        3
    """

    model_type = "polyhead-next-item"
    objective: ClassVar[str] = "next_item"

    head: dict = dataclasses.field(default_factory=lambda: {"type": "next_item", "loss": "full"})
    max_length: int = 50
    item_vocab: list = dataclasses.field(default_factory=list)
    item_titles: list = dataclasses.field(default_factory=list)
    item_id_type: str = "int"

    def __post_init__(self, **kwargs: Any) -> None:
        check_positive("max_length", self.max_length)
        self.item_vocab = [str(i) for i in self.item_vocab]
        if len(set(self.item_vocab)) != len(self.item_vocab):
            raise ConfigError("item_vocab has duplicate ids.")
        if self.item_titles and len(self.item_titles) != len(self.item_vocab):
            raise ConfigError(f"item_titles has {len(self.item_titles)} entries for {len(self.item_vocab)} items.")
        if self.item_id_type not in ("int", "str"):
            raise ConfigError(f"item_id_type must be 'int' or 'str', got {self.item_id_type!r}.")
        super().__post_init__(**kwargs)

    @property
    def num_items(self) -> int:
        return len(self.item_vocab)

    @property
    def vocab_size(self) -> int:
        """Rows of the item table: ``num_items`` items and the padding row (transformers' ``vocab_size``).

        ``model.resize_token_embeddings(n)`` sets it: the catalogue becomes ``n - 1`` items. Extend
        ``item_vocab`` (and ``item_titles``) with the new raw ids first; items without one are named
        ``"<new item i>"`` until you do. Shrinking drops the last items.
        """
        return self.num_items + 1

    @vocab_size.setter
    def vocab_size(self, rows: int) -> None:
        check_positive("vocab_size", rows - 1)
        count = rows - 1
        self.item_vocab = self.item_vocab[:count] + [f"<new item {i}>" for i in range(len(self.item_vocab), count)]
        if self.item_titles:
            self.item_titles = self.item_titles[:count] + self.item_vocab[len(self.item_titles):count]


class CTRConfig(RecommendationConfig):
    """Configuration of :class:`~polyhead.tasks.recommendation.PolyheadForCTR` (click-through rate, AutoInt / Hiformer style).

    Attributes (beside :class:`RecommendationConfig`'s):
        head: ``{"type": "ctr", ...}``.
        fields: the field schema, in token order: ``{"name", "kind"}`` plus ``"vocab"``
            (categorical; index 0 is reserved for unseen values), ``"mean"``/``"std"``
            (numeric) or ``"boundaries"`` (bucketized). Filled from the data at training time.
        rating_threshold: the label of data without a click column: rating >= threshold is a click.

    Example:
        >>> CTRConfig(fields=[{"name": "genre", "vocab": ["Comedy", "Drama"]}, {"name": "age", "kind": "numeric"}]).num_fields
        2
    """

    model_type = "polyhead-ctr"
    objective: ClassVar[str] = "ctr"

    head: dict = dataclasses.field(default_factory=lambda: {"type": "ctr"})
    fields: list = dataclasses.field(default_factory=list)
    rating_threshold: float = 4.0

    def __post_init__(self, **kwargs: Any) -> None:
        fields = []
        for field in self.fields:
            if not isinstance(field, Mapping) or "name" not in field:
                raise ConfigError(f"Each entry of fields must be a dict with a 'name', got {field!r}.")
            field = dict(field)
            field.setdefault("kind", "categorical")
            look_up_option(field["kind"], {k: k for k in FIELD_KINDS}, f"kind of field {field['name']!r}")
            if field["kind"] == "bucketized":
                bounds = [float(b) for b in field.get("boundaries") or []]
                if not bounds or sorted(bounds) != bounds:
                    raise ConfigError(f"Bucketized field {field['name']!r} needs increasing 'boundaries', got {bounds}.")
                field["boundaries"] = bounds
            fields.append(field)
        names = [f["name"] for f in fields]
        if len(set(names)) != len(names):
            raise ConfigError(f"Field names must be unique, got {names}.")
        self.fields = fields
        super().__post_init__(**kwargs)

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @property
    def categorical_fields(self) -> list[dict]:
        """Categorical and bucketized fields (each an id per row), in schema order."""
        return categorical_fields(self.fields)

    @property
    def numeric_fields(self) -> list[dict]:
        return [f for f in self.fields if f["kind"] == "numeric"]

    field_size = staticmethod(field_size)  # the module function, as CTRConfig.field_size(field)


#: ``model.objective`` in a config file -> the config class it builds
OBJECTIVES: dict[str, type[RecommendationConfig]] = {cls.objective: cls for cls in (NextItemConfig, CTRConfig)}


def config_class_for(objective: str) -> type[RecommendationConfig]:
    """The config class a config file's ``model.objective`` names (``"next_item"``, ``"ctr"``)."""
    if not isinstance(objective, str):
        raise ConfigError(f"model.objective must be one of {sorted(OBJECTIVES)}, got {objective!r}.")
    return look_up_option(objective, OBJECTIVES, "recommendation objective")


def objective_of_section(section: Mapping[str, Any]) -> str:
    """The objective a ``model`` section asks for: its ``objective``, else its head's type (polyhead 0.1 files), else next-item.

    Raises:
        ConfigError: the section's objective and its head's type name different objectives.
        UnknownNameError: no objective, and a head type that is not a recommendation head.
    """
    head = section.get("head")
    head_type = head.get("type") if isinstance(head, Mapping) else None
    objective = section.get("objective")
    if objective is None:
        return NextItemConfig.objective if head_type is None else look_up_option(str(head_type), _HEAD_OBJECTIVES, "recommendation head")
    if isinstance(head_type, str) and _HEAD_OBJECTIVES.get(head_type, objective) != objective:
        raise ConfigError(
            f"model.objective is {objective!r} but model.head is the {head_type!r} head of the {_HEAD_OBJECTIVES[head_type]!r} "
            f"objective; set model.objective={_HEAD_OBJECTIVES[head_type]!r}, or give the {objective!r} head."
        )
    return objective
