"""Recommendation models: one adapter per objective on the shared sequence backbone.

* :class:`PolyheadForNextItem` (SASRec, Kang & McAuley, ICDM 2018): left-padded item histories
  are looked up in the head's item table, encoded by the backbone *causally*, and every position
  predicts the next item; the last position's scores rank the catalogue (:class:`NextItemAdapter`).
* :class:`PolyheadForCTR` (AutoInt / Hiformer style): each feature field becomes one token (an id
  embedding for categorical and bucketized fields, a learned vector scaled by the standardised
  value for numeric ones), the backbone mixes them *bidirectionally*, and the CTR head pools them
  into a click logit (:class:`CTRAdapter`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.backbones._base import ComputedBuffers
from polyhead.errors import ConfigError, InputError
from polyhead.heads.recommendation import CTRHead, NextItemHead
from polyhead.modeling import PolyheadModel

from .configuration import CTRConfig, NextItemConfig

__all__ = ["CTRAdapter", "CTROutput", "NextItemAdapter", "NextItemOutput", "PolyheadForCTR", "PolyheadForNextItem"]


@dataclass
class NextItemOutput(ModelOutput):
    """Output of :class:`PolyheadForNextItem`.

    Attributes:
        loss: scalar cross-entropy of the next items; set exactly when ``labels`` are given.
        scores: ``(B, N)`` score of every catalogue item after the last history item.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CTROutput(ModelOutput):
    """Output of :class:`PolyheadForCTR`.

    Attributes:
        loss: scalar binary cross-entropy; set exactly when ``labels`` are given.
        logits: ``(B,)`` click logits.
        probabilities: ``(B,)`` click probabilities.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


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
        self.numeric_weight = nn.Parameter(torch.empty(len(self.numeric_positions), dim))
        self.numeric_bias = nn.Parameter(torch.empty(len(self.numeric_positions), dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Field vectors ``N(0, 1/D)``, zero numeric biases."""
        dim = self.numeric_bias.shape[1]
        nn.init.normal_(self.categorical.weight, std=dim**-0.5)
        nn.init.normal_(self.numeric_weight, std=dim**-0.5)
        nn.init.zeros_(self.numeric_bias)

    def reset_computed_buffers(self) -> None:
        if self.sizes:
            init.copy_(self.offsets, torch.tensor([0] + self.sizes[:-1], dtype=torch.long).cumsum(0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = []
        if self.categorical_positions:
            ids = features[:, self.categorical_positions].round().long()
            tokens.append(self.categorical(ids + self.offsets))
        if self.numeric_positions:
            tokens.append(features[:, self.numeric_positions, None] * self.numeric_weight + self.numeric_bias)
        tokens = torch.cat(tokens, dim=1)
        return tokens[:, self.schema_order] if self.schema_order != sorted(self.schema_order) else tokens


class NextItemAdapter(TaskAdapter):
    """Next-item retrieval on a causal sequence backbone (SASRec, Kang & McAuley, ICDM 2018).

    The stem looks the history's items up in the ``next_item`` head's item table (one table
    for input and output items: weight tying), scaled by ``sqrt(D)``; the backbone reads them
    causally with the left padding masked; the head scores every catalogue item against the
    last position. Training uses every position (labels ``(B, T)``) or the last one (``(B,)``),
    with the head's full or sampled softmax.
    """

    accepted_kinds = frozenset({"sequence"})
    needs_causal = True
    output_class = NextItemOutput
    head_base = NextItemHead

    def __init__(self, config: NextItemConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if config.num_items < 1:
            raise ConfigError("NextItemConfig.item_vocab is empty: the next-item model needs the item catalogue (filled from the data by polyhead train).")
        if backbone.max_length is not None and config.max_length > backbone.max_length:
            raise ConfigError(f"max_length ({config.max_length}) exceeds the backbone's max_length ({backbone.max_length}).")
        self.head = self.build_head(config, backbone, num_items=config.num_items)
        self.stem_dropout = nn.Dropout(float(config.backbone.get("dropout", 0.1)))
        self.stem_scale = math.sqrt(backbone.dim)

    @property
    def num_items(self) -> int:
        """Catalogue size ``N`` (the head's item table has ``N + 1`` rows; ``N`` is padding)."""
        return self.head.num_items

    def embed(self, input_ids: torch.Tensor | None = None) -> Embedded:
        if input_ids is None:
            raise InputError("A next-item model takes input_ids, (batch, length) item indices.")
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}.")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise InputError(f"input_ids must hold integer item indices, got {input_ids.dtype}.")
        if not torch.compiler.is_exporting() and input_ids.numel() and (input_ids.min() < 0 or input_ids.max() > self.num_items):
            raise InputError(f"input_ids must be item indices in [0, {self.num_items}] ({self.num_items} is padding).")
        tokens = self.stem_dropout(self.head.embed(input_ids) * self.stem_scale)  # (B, T, D)
        return Embedded(x=tokens, padding_mask=input_ids == self.num_items, is_causal=True, context={"input_ids": input_ids})

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        return {"hidden": features[0], "scores": self.head(features)}  # (B, T, D), (B, N): the last position

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden, input_ids = predictions["hidden"], embedded.context["input_ids"]
        per_position = labels.dim() == 2
        if labels.shape != input_ids.shape and tuple(labels.shape) != (input_ids.shape[0],):
            raise InputError(f"labels must have the shape of input_ids {tuple(input_ids.shape)} or (batch,), got {tuple(labels.shape)}.")
        states = hidden.reshape(-1, hidden.shape[-1]) if per_position else hidden[:, -1]
        targets = labels.reshape(-1)
        if self.head.loss_type == "sampled":
            return self.head.sampled_loss(states, targets)
        return self.head.loss(self.head.score(states) if per_position else predictions["scores"], targets)

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> NextItemOutput:
        return NextItemOutput(loss=None if losses is None else losses["loss"], scores=predictions["scores"])


class CTRAdapter(TaskAdapter):
    """Click-through rate on a bidirectional sequence backbone: one token per feature field, one click logit per row.

    Each field of the schema becomes a token (:class:`_RecommendationFieldEmbedding`); the
    backbone mixes them without a causal mask; the ``ctr`` head (optionally with Hiformer's
    heterogeneous attention, Gui et al., VLDB 2024) pools them into a logit, trained with
    binary cross-entropy.
    """

    accepted_kinds = frozenset({"sequence"})
    output_class = CTROutput
    head_base = CTRHead

    def __init__(self, config: CTRConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if not config.fields:
            raise ConfigError("CTRConfig.fields is empty: the CTR model needs a field schema.")
        if backbone.max_length is not None and len(config.fields) > backbone.max_length:
            raise ConfigError(f"{len(config.fields)} fields exceed the backbone's max_length ({backbone.max_length}).")
        self.field_names = [f["name"] for f in config.fields]
        self.stem = _RecommendationFieldEmbedding(
            kinds=[f["kind"] for f in config.fields], sizes=[config.field_size(f) for f in config.categorical_fields], dim=backbone.dim
        )
        self.head = self.build_head(config, backbone, num_fields=len(config.fields))

    def embed(self, features: torch.Tensor | None = None) -> Embedded:
        names = self.field_names
        if features is None:
            raise InputError(f"A CTR model takes features, (batch, {len(names)}): one column per field {names}.")
        if features.dim() != 2 or features.shape[1] != len(names):
            raise InputError(f"features must have shape (batch, {len(names)}), one column per field {names}, got {tuple(features.shape)}.")
        if not features.is_floating_point():
            raise InputError(f"features must be a float tensor (ids of categorical fields as exact integers), got {features.dtype}.")
        if not torch.compiler.is_exporting() and features.numel():
            ids = features[:, self.stem.categorical_positions]
            sizes = torch.tensor(self.stem.sizes, dtype=features.dtype, device=features.device)
            if ids.numel() and ((ids < 0) | (ids >= sizes) | (ids != ids.round())).any():
                raise InputError(f"Categorical columns of features must hold integer ids below the field sizes {self.stem.sizes}.")
        return Embedded(x=self.stem(features), is_causal=False)  # (B, F, D)

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        logits = self.head(features)  # (B,)
        return {"logits": logits, "probabilities": torch.sigmoid(logits)}

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = predictions["logits"]
        if labels.shape != logits.shape:
            raise InputError(f"labels must have shape (batch,) = {tuple(logits.shape)}, one 0/1 click per row, got {tuple(labels.shape)}.")
        return self.head.loss(logits, labels)

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> CTROutput:
        return CTROutput(loss=None if losses is None else losses["loss"], logits=predictions["logits"], probabilities=predictions["probabilities"])


class PolyheadForNextItem(PolyheadModel):
    """Next-item recommender: a causal sequence backbone + :class:`NextItemAdapter`.

    Example:
        >>> config = NextItemConfig(item_vocab=[str(i) for i in range(100)], max_length=20,
        ...     backbone={"type": "transformer", "dim": 32, "depth": 1, "num_heads": 2, "max_length": 20})
        >>> model = PolyheadForNextItem(config)
        >>> model(input_ids=torch.randint(0, 100, (4, 20))).scores.shape
        torch.Size([4, 100])
    """

    config_class = NextItemConfig
    adapter_class = NextItemAdapter
    main_input_name = "input_ids"

    def get_input_embeddings(self) -> nn.Embedding:
        """The item table ``(N + 1, D)`` (input and output items: one parameter; the last row is padding)."""
        return self.adapter.head.item_embedding

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        """Replace the item table (``resize_token_embeddings``: catalogue growth; see ``NextItemConfig.vocab_size``)."""
        self.adapter.head.set_item_embedding(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        exclude_items: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> NextItemOutput | tuple:
        """Score every catalogue item as the item after each history.

        Args:
            input_ids: ``(B, T)`` item indices, left-padded with ``num_items``.
            labels: ``(B, T)`` next item at every position (``-100`` ignored) or ``(B,)`` the
                item after the last one; when given, ``loss`` is computed.
            exclude_items: accepted so evaluation batches pass through; masking of seen items
                happens in the metrics and the pipeline, outside the network.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"input_ids": input_ids}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)


class PolyheadForCTR(PolyheadModel):
    """Click-through-rate model: a bidirectional sequence backbone over field tokens + :class:`CTRAdapter`.

    Example:
        >>> config = CTRConfig(fields=[{"name": "genre", "vocab": ["Comedy", "Drama"]}, {"name": "age", "kind": "numeric", "mean": 30.0, "std": 10.0}],
        ...     backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none"})
        >>> PolyheadForCTR(config)(features=torch.tensor([[2.0, -0.5]])).probabilities.shape
        torch.Size([1])
    """

    config_class = CTRConfig
    adapter_class = CTRAdapter
    main_input_name = "features"

    def forward(
        self,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> CTROutput | tuple:
        """The click probability of each row.

        Args:
            features: ``(B, F)`` one column per field in schema order: the id of a categorical /
                bucketized value (0 = unseen value), or a standardised number (the processor's
                :meth:`~polyhead.tasks.recommendation.RecommendationProcessor.encode_columns`). One tensor (not ids and values
                apart) keeps the exported graph to one input.
            labels: ``(B,)`` clicks in {0, 1}; when given, ``loss`` is computed.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"features": features}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
