"""``RecommendationConfig``: the architecture of a next-item or CTR model."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive, look_up_option

__all__ = ["RecommendationConfig", "FIELD_KINDS", "HEAD_OBJECTIVES"]

#: head type -> objective; the head decides which of the two models this config describes.
HEAD_OBJECTIVES = {"next_item": "next_item", "ctr": "ctr"}
#: how a CTR field becomes a token: its own id table, a linear map of the standardised
#: value, or a bucket id from fixed boundaries.
FIELD_KINDS = ("categorical", "numeric", "bucketized")


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 2, "causal": True, "position": "learned", "max_length": 50}


def _default_head() -> dict:
    return {"type": "next_item", "loss": "full"}


class RecommendationConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForRecommendation`.

    One config covers the two objectives; the head's type says which:
    ``"next_item"`` (histories of item ids in, a score per catalogue item out) or
    ``"ctr"`` (one row of feature fields in, a click logit out).

    Attributes:
        backbone: sequence backbone; causal for next-item, bidirectional for CTR.
        head: ``{"type": "next_item", ...}`` or ``{"type": "ctr", ...}``.
        max_length: items of history the next-item model reads (most recent kept).
        item_vocab: raw item ids (as strings) in index order; index ``len(item_vocab)`` is padding.
        item_titles: optional display names aligned with ``item_vocab``.
        item_id_type: ``"int"`` when every raw id was an integer (returned as ``int``), else ``"str"``.
        fields: CTR field schema, in token order: ``{"name", "kind"}`` plus ``"vocab"``
            (categorical; index 0 is reserved for unseen values), ``"mean"``/``"std"``
            (numeric) or ``"boundaries"`` (bucketized). Filled from the data at training time.
        rating_threshold: CTR label of the embedded data: rating >= threshold is a click.
    """

    model_type = "polyhead-recommendation"
    task = "recommendation"

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    max_length: int = 50
    item_vocab: list = dataclasses.field(default_factory=list)
    item_titles: list = dataclasses.field(default_factory=list)
    item_id_type: str = "int"
    fields: list = dataclasses.field(default_factory=list)
    rating_threshold: float = 4.0

    def __post_init__(self, **kwargs) -> None:
        check_positive("max_length", self.max_length)
        self.item_vocab = [str(i) for i in self.item_vocab]
        if len(set(self.item_vocab)) != len(self.item_vocab):
            raise ConfigError("item_vocab has duplicate ids.")
        if self.item_titles and len(self.item_titles) != len(self.item_vocab):
            raise ConfigError(f"item_titles has {len(self.item_titles)} entries for {len(self.item_vocab)} items.")
        if self.item_id_type not in ("int", "str"):
            raise ConfigError(f"item_id_type must be 'int' or 'str', got {self.item_id_type!r}.")
        fields = []
        for field in self.fields:
            if not isinstance(field, dict) or "name" not in field:
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
    def objective(self) -> str:
        """``"next_item"`` or ``"ctr"``, from the head type."""
        return look_up_option(str(self.head.get("type")), HEAD_OBJECTIVES, "recommendation head")

    @property
    def num_items(self) -> int:
        return len(self.item_vocab)

    @property
    def categorical_fields(self) -> list[dict]:
        """Categorical and bucketized fields (each an id per row), in schema order."""
        return [f for f in self.fields if f["kind"] in ("categorical", "bucketized")]

    @property
    def numeric_fields(self) -> list[dict]:
        return [f for f in self.fields if f["kind"] == "numeric"]

    @staticmethod
    def field_size(field: dict) -> int:
        """Ids of a categorical field: its vocabulary plus the reserved unseen id 0."""
        if field["kind"] == "bucketized":
            return len(field["boundaries"]) + 1
        return len(field.get("vocab") or []) + 1
