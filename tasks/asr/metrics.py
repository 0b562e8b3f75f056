"""Speech recognition metrics: word and character error rates (torchmetrics), greedy CTC decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from polyhead.heads.ctc import ctc_collapse

from .configuration import SPECIAL_TOKENS
from .modeling import subsampled_lengths

__all__ = ["ASRMetrics", "ids_to_text"]


def ids_to_text(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """Token ids (already CTC-collapsed) -> text: ``|`` becomes a space, ``<pad>`` is dropped."""
    pieces = []
    for i in ids:
        token = vocab[int(i)] if 0 <= int(i) < len(vocab) else SPECIAL_TOKENS[1]
        if token == SPECIAL_TOKENS[0]:
            continue
        pieces.append(" " if token == SPECIAL_TOKENS[2] else token)
    return " ".join("".join(pieces).split())


class ASRMetrics:
    """WER and CER of greedy CTC transcripts against the reference labels.

    Args:
        vocab: the model's vocabulary (``ASRConfig.vocab``).
    """

    def __init__(self, *, vocab: Sequence[str]) -> None:
        self.vocab = list(vocab)
        self.reset()

    def names(self) -> list[str]:
        return ["wer", "cer"]

    def reset(self) -> None:
        from torchmetrics.text import CharErrorRate, WordErrorRate  # here, not at import: torchmetrics takes seconds

        self._wer = WordErrorRate()
        self._cer = CharErrorRate()
        self._count = 0

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        lengths = outputs.output_lengths
        if lengths is None:
            lengths = subsampled_lengths(batch["attention_mask"].long().sum(dim=-1))
        return {"predictions": outputs.logits.argmax(dim=-1), "output_lengths": lengths, "labels": batch["labels"]}

    def transcripts(self, predictions: torch.Tensor, output_lengths: torch.Tensor) -> list[str]:
        """Greedy transcripts of per-token argmax ids ``(B, T')``."""
        return [ids_to_text(ids, self.vocab) for ids in ctc_collapse(predictions, output_lengths, blank=0)]

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        hypotheses = self.transcripts(gathered["predictions"], gathered["output_lengths"])
        references = [ids_to_text([i for i in row.tolist() if i >= 0], self.vocab) for row in gathered["labels"].cpu()]
        self._wer.update(hypotheses, references)
        self._cer.update(hypotheses, references)
        self._count += len(references)

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        return {"wer": float(self._wer.compute()), "cer": float(self._cer.compute())}
