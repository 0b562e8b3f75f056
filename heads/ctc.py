"""CTC head: a linear map from encoder tokens to per-frame vocabulary logits.

Trained with ``torch.nn.functional.ctc_loss`` (Graves et al., "Connectionist
Temporal Classification", ICML 2006). The blank is the tokenizer's pad token, as in
transformers' ``Wav2Vec2ForCTC``; label padding is ``-100``. Greedy decoding
(:func:`ctc_greedy_decode`) and the optional beam search live outside the network,
in the task's post-processing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.backbones._base import FeatureInfo
from polyhead.errors import ConfigError, InputError
from polyhead.registry import register_head
from polyhead.validation import check_positive, check_probability, look_up_option

from ._base import Head

__all__ = ["CTCHead", "ctc_collapse", "ctc_greedy_decode", "ctc_loss"]

_REDUCTIONS = ("mean", "sum")


def ctc_collapse(best: torch.Tensor, lengths: torch.Tensor | None = None, *, blank: int = 0) -> list[list[int]]:
    """Collapse per-frame ids ``(B, T)``: merge repeats, drop blanks, stop at each row's length."""
    best = best.cpu()
    lengths = torch.full((best.shape[0],), best.shape[1]) if lengths is None else lengths.cpu()
    decoded = []
    for row, length in zip(best, lengths.tolist()):
        ids = torch.unique_consecutive(row[: int(length)])
        decoded.append([int(i) for i in ids if int(i) != blank])
    return decoded


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None = None, *, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Args:
        logits: ``(B, T, V)`` (or log-probabilities).
        lengths: ``(B,)`` valid frames per row; ``None``: all ``T``.
        blank: the blank token id.

    Returns:
        One list of token ids per row.
    """
    return ctc_collapse(logits.argmax(dim=-1), lengths, blank=blank)


def ctc_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    output_lengths: torch.Tensor | None = None,
    *,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """CTC loss of ``logits: (B, T, V)`` against ``labels: (B, L)`` padded with negative ids.

    Computed in float32 whatever the logits' precision; padding never reaches ``F.ctc_loss``
    (labels are passed concatenated, with their lengths).

    Args:
        logits: per-frame vocabulary logits (or log-probabilities).
        labels: token ids, padded with ``-100`` (or any negative id).
        output_lengths: ``(B,)`` valid frames per row; ``None``: all ``T``. What lies in
            later frames does not change the loss.
        blank: the blank token id (never a label).
        reduction: ``"mean"`` (each sequence's loss divided by its label length, then
            averaged: ``F.ctc_loss``'s ``"mean"``) or ``"sum"`` averaged over the batch.
        zero_infinity: zero infinite losses (labels longer than the frames can hold).

    Raises:
        InputError: labels of another shape, or ids outside ``[0, V)`` or equal to the blank.
    """
    batch, frames, vocab_size = logits.shape
    if labels.dim() != 2 or labels.shape[0] != batch:
        raise InputError(f"CTC labels must have shape (batch={batch}, max_label_length), got {tuple(labels.shape)}.")
    if output_lengths is None:
        output_lengths = torch.full((batch,), frames, dtype=torch.long, device=logits.device)
    valid = labels >= 0
    if bool((labels[valid] >= vocab_size).any()) or bool((labels[valid] == blank).any()):
        raise InputError(f"CTC labels must be token ids in [0, {vocab_size}) other than the blank ({blank}).")
    target_lengths = valid.sum(dim=1)
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    per_sequence = F.ctc_loss(
        log_probs, labels[valid], output_lengths.long(), target_lengths, blank=blank, reduction="none", zero_infinity=zero_infinity,
    )
    if look_up_option(reduction, {r: r for r in _REDUCTIONS}, "CTC loss reduction") == "mean":
        return (per_sequence / target_lengths.clamp_min(1).to(per_sequence.dtype)).mean()
    return per_sequence.mean()


@register_head("ctc")
class CTCHead(Head):
    """Per-frame vocabulary logits with a CTC loss.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output of width ``D``).
        vocab_size: number of tokens ``V``, the blank included.
        blank_id: index of the blank token (transformers' CTC tokenizers use the pad token).
        dropout: dropout before the projection.
        reduction: ``"mean"`` (each sequence's loss divided by its label length, then
            averaged: ``F.ctc_loss``'s ``"mean"``) or ``"sum"`` averaged over the batch.
        zero_infinity: zero infinite losses (labels longer than the frames can hold)
            instead of returning ``inf``.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (B, T, D)`` returns logits
        ``(B, T, V)``. ``loss(logits, labels)`` takes ``labels: (B, L)`` padded with
        ``-100`` (or any negative id); :func:`ctc_loss` takes ``output_lengths: (B,)`` too.
    """

    accepted_kinds = frozenset({"sequence"})

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        vocab_size: int,
        blank_id: int = 0,
        dropout: float = 0.1,
        reduction: str = "mean",
        zero_infinity: bool = True,
    ) -> None:
        super().__init__(feature_info=feature_info)
        if len(self.feature_info) != 1:
            raise ConfigError(f"CTCHead reads one sequence feature map, but the backbone has {len(self.feature_info)} outputs.")
        check_positive("vocab_size", vocab_size)
        check_probability("dropout", dropout)
        if vocab_size < 2:
            raise ConfigError(f"vocab_size must be at least 2 (the blank and one token), got {vocab_size}.")
        if isinstance(blank_id, bool) or not isinstance(blank_id, int) or not 0 <= blank_id < vocab_size:
            raise ConfigError(f"blank_id must be a token id in [0, {vocab_size}), got {blank_id!r}.")
        self.reduction = look_up_option(reduction, {r: r for r in _REDUCTIONS}, "CTC loss reduction")
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.zero_infinity = bool(zero_infinity)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(self.feature_info[0]["num_chs"], vocab_size)

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"vocab_size": 6}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.projection(self.dropout(feature_maps[0]))

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = outputs.shape
        length = max(1, frames // 3)
        labels = torch.randint(1, self.vocab_size, (batch, length))
        labels[labels == self.blank_id] = (self.blank_id + 1) % self.vocab_size
        labels[-1, length // 2 :] = -100  # the last row is shorter
        return labels

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """CTC loss of ``outputs: (B, T, V)`` against ``targets: (B, L)`` (negative ids = padding), every frame valid.

        A model whose rows have fewer valid frames (padded audio) computes the loss with
        :func:`ctc_loss` and its output lengths (the ASR task adapter does).
        """
        return {"loss": ctc_loss(outputs, targets, blank=self.blank_id, reduction=self.reduction, zero_infinity=self.zero_infinity)}
