"""Recommendation heads: next-item scoring tied to the item table, and CTR ranking.

* :class:`NextItemHead` (``"next_item"``) scores every item of the catalogue for the
  last token of each sequence with the dot product against the item embedding table
  the next-item adapter's stem looks items up in (weight tying, SASRec: Kang & McAuley,
  "Self-Attentive Sequential Recommendation", ICDM 2018). Training uses the full
  softmax, or a sampled softmax for large catalogues (Jean et al., "On Using Very
  Large Target Vocabulary for Neural Machine Translation", ACL 2015).
* :class:`CTRHead` (``"ctr"``) pools the encoded field tokens into one click logit.
  With ``interaction="hiformer"`` it first applies a heterogeneous attention layer
  whose query/key/value/output projections are specific to each field (Gui et al.,
  "Hiformer: Heterogeneous Feature Interactions Learning with Transformers for
  Recommender Systems", VLDB 2024).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.backbones._base import FeatureInfo
from polyhead.errors import ConfigError
from polyhead.registry import register_head
from polyhead.validation import check_positive, check_probability, look_up_option

from ._base import Head

__all__ = ["NextItemHead", "CTRHead"]

_LOSSES = ("full", "sampled")
_POOLINGS = ("mean", "flatten")
_INTERACTIONS = ("none", "hiformer")


def _one_sequence_output(head: Head) -> int:
    if len(head.feature_info) != 1:
        raise ConfigError(
            f"{type(head).__name__} reads one sequence feature map, but the backbone has {len(head.feature_info)} outputs."
        )
    return head.feature_info[0]["num_chs"]


@register_head("next_item")
class NextItemHead(Head):
    """Score every item for the last token of each sequence, tied to the item table.

    The head owns the item embedding table ``(num_items + 1, D)`` (the last row is
    the padding item); the next-item adapter's stem looks input items up in the same table
    (:meth:`embed`), so input and output item vectors are one parameter and
    ``save_pretrained`` needs no tied-weight bookkeeping.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output of width ``D``).
        num_items: catalogue size ``N``; item indices are ``0 .. N-1``, ``N`` is padding.
        loss: ``"full"`` softmax over all items, or ``"sampled"`` softmax over the
            target and ``num_negatives`` uniformly drawn items (shared by the batch,
            accidental hits masked).
        num_negatives: negatives of the sampled softmax.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (B, T, D)`` returns scores
        ``(B, N)`` of the last token; ``loss(scores (B, N), targets (B,))`` with
        ``-100`` for ignored targets.

    Example:
        >>> head = NextItemHead(feature_info=[{"num_chs": 32, "reduction": 1}], num_items=100)
        >>> head([torch.randn(4, 10, 32)]).shape
        torch.Size([4, 100])
    """

    accepted_kinds = frozenset({"sequence"})
    ignore_index = -100

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        num_items: int,
        loss: str = "full",
        num_negatives: int = 256,
    ) -> None:
        super().__init__(feature_info=feature_info)
        dim = _one_sequence_output(self)
        check_positive("num_items", num_items)
        check_positive("num_negatives", num_negatives)
        self.loss_type = look_up_option(loss, {name: name for name in _LOSSES}, "next-item loss")
        self.num_items = num_items
        self.num_negatives = num_negatives
        self.padding_index = num_items
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=num_items)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Item vectors ``N(0, 1/D)``; the padding row zero."""
        weight = self.item_embedding.weight
        nn.init.normal_(weight, std=weight.shape[1] ** -0.5)
        with torch.no_grad():
            weight[self.padding_index].zero_()

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"num_items": 50}

    def set_item_embedding(self, table: nn.Embedding) -> None:
        """Use ``table`` ``(N' + 1, D)`` as the item table: items ``0 .. N'-1``, its last row the padding.

        What ``resize_token_embeddings`` calls (catalogue growth): transformers appends the new rows,
        so the old padding row (zeros) becomes item ``N`` and the last new row the padding; a padding
        row's vector is never read by a real position (padding is masked in the backbone).
        """
        check_positive("num_items", table.num_embeddings - 1)
        table.padding_idx = table.num_embeddings - 1
        self.item_embedding = table
        self.num_items = self.padding_index = table.num_embeddings - 1

    def embed(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Item vectors ``(..., D)`` of ``item_ids`` (the padding row: zeros in a new model; masked anyway)."""
        return self.item_embedding(item_ids)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden: (..., D)`` -> scores ``(..., N)`` of every item (padding excluded)."""
        return hidden @ self.item_embedding.weight[: self.num_items].T

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.score(feature_maps[0][:, -1])

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, self.num_items, outputs.shape[:1])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full-softmax cross-entropy of ``outputs: (B, N)`` against ``targets: (B,)``."""
        return {"loss": F.cross_entropy(outputs, targets, ignore_index=self.ignore_index)}

    def sampled_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Sampled-softmax cross-entropy from ``hidden: (M, D)`` and ``targets: (M,)``.

        The logits are the target's score and those of ``num_negatives`` uniformly
        drawn items (uniform sampling needs no log-Q correction); a negative that
        equals the row's target is masked out.
        """
        keep = targets != self.ignore_index
        hidden, targets = hidden[keep], targets[keep]
        if targets.numel() == 0:
            return {"loss": hidden.sum() * 0.0}
        negatives = torch.randint(0, self.num_items, (self.num_negatives,), device=hidden.device)
        table = self.item_embedding.weight
        positive = (hidden * table[targets]).sum(-1, keepdim=True)  # (M, 1)
        negative = hidden @ table[negatives].T  # (M, K)
        negative = negative.masked_fill(negatives[None] == targets[:, None], float("-inf"))
        logits = torch.cat((positive, negative), dim=1)
        return {"loss": F.cross_entropy(logits, torch.zeros_like(targets))}


class _HiformerAttention(nn.Module):
    """Heterogeneous multi-head attention across ``F`` field tokens.

    Each field has its own query, key, value and output projection (Hiformer's
    heterogeneous attention layer); attention itself is shared scaled dot product.
    """

    def __init__(self, *, num_fields: int, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"CTRHead num_heads ({num_heads}) must divide the token width ({dim}).")
        self.num_heads = num_heads
        self.qkv = nn.Parameter(torch.empty(num_fields, dim, 3 * dim))
        self.qkv_bias = nn.Parameter(torch.zeros(num_fields, 3 * dim))
        self.out = nn.Parameter(torch.empty(num_fields, dim, dim))
        self.out_bias = nn.Parameter(torch.zeros(num_fields, dim))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per-field projections ``N(0, 1/D)``, zero biases."""
        dim = self.out.shape[1]
        nn.init.normal_(self.qkv, std=dim**-0.5)
        nn.init.normal_(self.out, std=dim**-0.5)
        nn.init.zeros_(self.qkv_bias)
        nn.init.zeros_(self.out_bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, fields, dim = tokens.shape
        x = self.norm(tokens)
        qkv = torch.einsum("bfd,fde->bfe", x, self.qkv) + self.qkv_bias  # (B, F, 3D)
        qkv = qkv.reshape(batch, fields, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, F, hd)
        attended = attended.transpose(1, 2).reshape(batch, fields, dim)
        return tokens + self.dropout(torch.einsum("bfd,fde->bfe", attended, self.out) + self.out_bias)


@register_head("ctr")
class CTRHead(Head):
    """Click-through-rate head: field tokens -> one click logit per row.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output of width ``D``).
        num_fields: field tokens per row, ``F``.
        interaction: ``"none"``, or ``"hiformer"`` to add a heterogeneous attention
            layer (per-field Q/K/V/output projections) before pooling.
        num_heads: attention heads of the Hiformer layer.
        pooling: ``"flatten"`` (concatenate the ``F`` tokens, keeps which field is which)
            or ``"mean"``.
        hidden_dims: widths of the MLP after pooling.
        dropout: dropout in the interaction layer and the MLP.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (B, F, D)`` returns logits
        ``(B,)``; ``loss(logits (B,), clicks (B,) in {0, 1})`` is binary cross-entropy.

    Example:
        >>> head = CTRHead(feature_info=[{"num_chs": 16, "reduction": 1}], num_fields=5, interaction="hiformer")
        >>> head([torch.randn(4, 5, 16)]).shape
        torch.Size([4])
    """

    accepted_kinds = frozenset({"sequence"})

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        num_fields: int,
        interaction: str = "none",
        num_heads: int = 2,
        pooling: str = "flatten",
        hidden_dims: Sequence[int] = (64,),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(feature_info=feature_info)
        dim = _one_sequence_output(self)
        check_positive("num_fields", num_fields)
        check_positive("num_heads", num_heads)
        check_probability("dropout", dropout)
        for width in hidden_dims:
            check_positive("hidden_dims entry", width)
        self.interaction = look_up_option(interaction, {name: name for name in _INTERACTIONS}, "CTR interaction")
        self.pooling = look_up_option(pooling, {name: name for name in _POOLINGS}, "CTR pooling")
        self.num_fields = num_fields
        self.hiformer = (
            _HiformerAttention(num_fields=num_fields, dim=dim, num_heads=num_heads, dropout=dropout)
            if self.interaction == "hiformer"
            else None
        )
        width = dim * num_fields if self.pooling == "flatten" else dim
        layers: list[nn.Module] = []
        for hidden in hidden_dims:
            layers += [nn.Linear(width, int(hidden)), nn.GELU(), nn.Dropout(dropout)]
            width = int(hidden)
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"num_fields": example_inputs["x"].shape[1], "interaction": "hiformer", "hidden_dims": (8,)}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = feature_maps[0]
        if tokens.shape[1] != self.num_fields:
            raise ConfigError(f"CTRHead was built for {self.num_fields} field tokens, got {tokens.shape[1]}.")
        if self.hiformer is not None:
            tokens = self.hiformer(tokens)
        pooled = tokens.flatten(1) if self.pooling == "flatten" else tokens.mean(dim=1)
        return self.mlp(pooled).squeeze(-1)

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, 2, outputs.shape).float()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Binary cross-entropy of logits ``(B,)`` against clicks ``(B,)``."""
        return {"loss": F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype))}

