"""``PolyheadForRecommendation``: item or field stem -> the shared Transformer -> next-item or CTR head.

* Next-item (SASRec, Kang & McAuley, ICDM 2018): left-padded item histories are
  looked up in the head's item table, encoded by the *causal* backbone, and every
  position predicts the next item; the last position's scores rank the catalogue.
* CTR (AutoInt / Hiformer style): each feature field becomes one token (an id
  embedding for categorical and bucketized fields, a learned vector scaled by the
  standardised value for numeric ones), the *bidirectional* backbone mixes them, and
  the CTR head pools them into a click logit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from polyhead.backbones._base import ComputedBuffers
from polyhead.errors import ConfigError, InputError
from polyhead.heads.recommendation import CTRHead, NextItemHead
from polyhead.modeling import PolyheadPreTrainedModel
from polyhead.registry import BACKBONES, HEADS, build, get

from .configuration import RecommendationConfig

__all__ = ["RecommendationOutput", "PolyheadForRecommendation"]


@dataclass
class RecommendationOutput(ModelOutput):
    """Output of :class:`PolyheadForRecommendation`.

    Attributes:
        loss: scalar loss; set exactly when ``labels`` are given.
        scores: next-item: ``(B, N)`` score of every item after the last history item.
        logits: CTR: ``(B,)`` click logits.
        probabilities: CTR: ``(B,)`` click probabilities.
    """

    loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None


class _RecommendationFieldEmbedding(nn.Module, ComputedBuffers):
    """CTR rows ``features (B, F)`` -> ``(B, F, D)`` field tokens, one per field in schema order.

    Categorical and bucketized fields carry their id (an exact integer in float32) and
    get a row of one shared table (offset per field); numeric fields carry their
    standardised value, which scales a learned per-field vector (plus a bias).
    """

    def __init__(self, *, kinds: list[str], sizes: list[int], dim: int) -> None:
        super().__init__()
        self.categorical_positions = [i for i, k in enumerate(kinds) if k != "numeric"]
        self.numeric_positions = [i for i, k in enumerate(kinds) if k == "numeric"]
        # token order = schema order: where each field's token lands after [categorical..., numeric...]
        order = self.categorical_positions + self.numeric_positions
        self.schema_order = [order.index(i) for i in range(len(kinds))]
        self.sizes = sizes
        self.register_buffer("offsets", torch.zeros(len(sizes), dtype=torch.long), persistent=False)
        self.reset_computed_buffers()
        self.categorical = nn.Embedding(max(sum(sizes), 1), dim)
        nn.init.normal_(self.categorical.weight, std=dim**-0.5)
        self.numeric_weight = nn.Parameter(torch.randn(len(self.numeric_positions), dim) * dim**-0.5)
        self.numeric_bias = nn.Parameter(torch.zeros(len(self.numeric_positions), dim))

    def reset_computed_buffers(self) -> None:
        if self.sizes:
            self.offsets.copy_(torch.tensor([0] + self.sizes[:-1], dtype=torch.long).cumsum(0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = []
        if self.categorical_positions:
            ids = features[:, self.categorical_positions].round().long()
            tokens.append(self.categorical(ids + self.offsets))
        if self.numeric_positions:
            tokens.append(features[:, self.numeric_positions, None] * self.numeric_weight + self.numeric_bias)
        tokens = torch.cat(tokens, dim=1)
        return tokens[:, self.schema_order] if self.schema_order != sorted(self.schema_order) else tokens


class PolyheadForRecommendation(PolyheadPreTrainedModel):
    """Next-item recommender or CTR model on the shared sequence backbone.

    Example:
        >>> config = RecommendationConfig(item_vocab=[str(i) for i in range(100)], max_length=20,
        ...     backbone={"type": "transformer", "dim": 32, "depth": 1, "num_heads": 2, "causal": True, "max_length": 20})
        >>> model = PolyheadForRecommendation(config)
        >>> model(input_ids=torch.randint(0, 100, (4, 20))).scores.shape
        torch.Size([4, 100])
    """

    config_class = RecommendationConfig
    main_input_name = "input_ids"

    def __init__(self, config: RecommendationConfig) -> None:
        super().__init__(config)
        objective = config.objective
        head_cls = get(HEADS, config.head.get("type"))
        self.backbone = build(BACKBONES, config.backbone)
        if self.backbone.kind != "sequence":
            raise ConfigError(f"Recommendation needs a sequence backbone; {config.backbone['type']!r} is a {self.backbone.kind} backbone.")
        dim = self.backbone.dim
        if objective == "next_item":
            if not issubclass(head_cls, NextItemHead):
                raise ConfigError(f"A next-item model needs the 'next_item' head, got {config.head['type']!r}.")
            if config.num_items < 1:
                raise ConfigError("RecommendationConfig.item_vocab is empty: the next-item model needs the item catalogue.")
            if not getattr(self.backbone, "causal", False):
                raise ConfigError("The next-item model trains every position to predict the next item: set backbone.causal=True.")
            if self.backbone.max_length is not None and config.max_length > self.backbone.max_length:
                raise ConfigError(f"max_length ({config.max_length}) exceeds the backbone's max_length ({self.backbone.max_length}).")
            self.head = build(HEADS, config.head, feature_info=self.backbone.feature_info, num_items=config.num_items)
            self.stem_dropout = nn.Dropout(float(config.backbone.get("dropout", 0.1)))
            self.stem_scale = math.sqrt(dim)
        else:
            if not issubclass(head_cls, CTRHead):
                raise ConfigError(f"A CTR model needs the 'ctr' head, got {config.head['type']!r}.")
            if not config.fields:
                raise ConfigError("RecommendationConfig.fields is empty: the CTR model needs a field schema.")
            if self.backbone.max_length is not None and len(config.fields) > self.backbone.max_length:
                raise ConfigError(f"{len(config.fields)} fields exceed the backbone's max_length ({self.backbone.max_length}).")
            self.stem = _RecommendationFieldEmbedding(
                kinds=[f["kind"] for f in config.fields], sizes=[config.field_size(f) for f in config.categorical_fields], dim=dim
            )
            self.head = build(HEADS, config.head, feature_info=self.backbone.feature_info, num_fields=len(config.fields))
        self.post_init()

    # -- next item ---------------------------------------------------------------------
    def _encode_items(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}.")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise InputError(f"input_ids must hold integer item indices, got {input_ids.dtype}.")
        if not torch.compiler.is_exporting() and input_ids.numel() and (input_ids.min() < 0 or input_ids.max() > self.config.num_items):
            raise InputError(f"input_ids must be item indices in [0, {self.config.num_items}] ({self.config.num_items} is padding).")
        padding_mask = input_ids == self.config.num_items
        tokens = self.stem_dropout(self.head.embed(input_ids) * self.stem_scale)
        return self.backbone(tokens, padding_mask=padding_mask).feature_maps[0]  # (B, T, D)

    # -- CTR ---------------------------------------------------------------------------
    def _encode_fields(self, features: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if features.dim() != 2 or features.shape[1] != len(cfg.fields):
            names = [f["name"] for f in cfg.fields]
            raise InputError(f"features must have shape (batch, {len(names)}), one column per field {names}, got {tuple(features.shape)}.")
        if not features.is_floating_point():
            raise InputError(f"features must be a float tensor (ids of categorical fields as exact integers), got {features.dtype}.")
        if not torch.compiler.is_exporting() and features.numel():
            ids = features[:, self.stem.categorical_positions]
            sizes = torch.tensor(self.stem.sizes, dtype=features.dtype)
            if ids.numel() and ((ids < 0) | (ids >= sizes) | (ids != ids.round())).any():
                raise InputError(f"Categorical columns of features must hold integer ids below the field sizes {self.stem.sizes}.")
        return self.backbone(self.stem(features)).feature_maps[0]  # (B, F, D)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        exclude_items: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> RecommendationOutput:
        """Score the catalogue (next-item) or a click (CTR).

        Args:
            input_ids: next-item: ``(B, T)`` item indices, left-padded with ``num_items``.
            labels: next-item: ``(B, T)`` next item at every position (``-100`` ignored)
                or ``(B,)`` the item after the last one; CTR: ``(B,)`` clicks in {0, 1}.
            exclude_items: accepted so evaluation batches pass through; masking of seen
                items happens in the metrics and the pipeline, outside the network.
            features: CTR: ``(B, F)`` one column per field in schema order: the id of a
                categorical / bucketized value (0 = unseen value), or a standardised number.
                One tensor (not ids and values apart) keeps the exported graph to one input.
            return_dict: accepted for transformers compatibility.
        """
        if self.config.objective == "ctr":
            if features is None:
                raise InputError("A CTR model takes features, (batch, fields), not input_ids.")
            logits = self.head([self._encode_fields(features)])
            loss = self.head.loss(logits, labels)["loss"] if labels is not None else None
            return RecommendationOutput(loss=loss, logits=logits, probabilities=torch.sigmoid(logits))
        if input_ids is None:
            raise InputError("A next-item model takes input_ids, (batch, length) item indices.")
        hidden = self._encode_items(input_ids)
        scores = self.head([hidden])  # (B, N): the last position
        loss = None
        if labels is not None:
            per_position = labels.dim() == 2
            if per_position and labels.shape != input_ids.shape:
                raise InputError(f"labels must have the shape of input_ids {tuple(input_ids.shape)} or (batch,), got {tuple(labels.shape)}.")
            states = hidden.reshape(-1, hidden.shape[-1]) if per_position else hidden[:, -1]
            if self.head.loss_type == "sampled":
                loss = self.head.sampled_loss(states, labels.reshape(-1))["loss"]
            else:
                loss = self.head.loss(self.head.score(states) if per_position else scores, labels.reshape(-1))["loss"]
        return RecommendationOutput(loss=loss, scores=scores)
