"""CTC beam search with torchaudio's flashlight-text decoder (lexicon-free, no language model).

Greedy decoding (best path) is the default everywhere: it is what transformers' own ASR
pipeline does with the tokenizer, and what the metrics use. :class:`CTCBeamSearch` is the
optional beam search of polyhead's pipeline (``decoder="beam"``): torchaudio's
``ctc_decoder`` over the model's characters, ``|`` as the silence/word token. It needs the
``flashlight-text`` wheel from PyPI (a polyhead dependency), nothing downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from polyhead.errors import ConfigError

from .configuration import SPECIAL_TOKENS
from .metrics import ids_to_text

__all__ = ["CTCBeamSearch"]


class CTCBeamSearch:
    """Beam search over per-frame logits, with word offsets in frames.

    Args:
        vocab: the model's tokens (``ASRConfig.vocab``): blank ``<pad>``, ``<unk>``, ``|``, characters.
        beam_size: hypotheses kept per frame.
        beam_threshold: prune hypotheses scoring this much below the best.

    ``decode_beams(logits)`` returns ``[(text, None, [(word, (start_frame, end_frame)), ...])]``, the
    shape transformers' ASR pipeline reads from a CTC beam decoder (best beam first).
    """

    def __init__(self, vocab: Sequence[str], *, beam_size: int = 16, beam_threshold: float = 25.0) -> None:
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ConfigError(f"beam_size must be a positive integer, got {beam_size!r}.")
        try:
            from torchaudio.models.decoder import ctc_decoder
        except RuntimeError as err:  # torchaudio raises this when flashlight-text is missing
            raise ConfigError(f"Beam search needs the flashlight-text package (pip install flashlight-text): {err}") from None
        self.vocab = list(vocab)
        self._decoder = ctc_decoder(
            lexicon=None, tokens=self.vocab, lm=None, nbest=1, beam_size=beam_size, beam_threshold=beam_threshold,
            blank_token=SPECIAL_TOKENS[0], sil_token=SPECIAL_TOKENS[2], unk_word=SPECIAL_TOKENS[1],
        )

    def decode(self, logits: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """``logits: (B, T, V)`` -> one transcript per row."""
        emissions = torch.log_softmax(logits.detach().float().cpu(), dim=-1).contiguous()
        results = self._decoder(emissions, None if lengths is None else lengths.cpu().to(torch.int32))
        return [ids_to_text(hyps[0].tokens.tolist(), self.vocab) if hyps else "" for hyps in results]

    def decode_beams(self, logits: np.ndarray, **kwargs) -> list[tuple[str, None, list[tuple[str, tuple[int, int]]]]]:
        """One utterance's logits ``(T, V)`` -> the best beam with word frame offsets."""
        emissions = torch.log_softmax(torch.as_tensor(np.asarray(logits, dtype=np.float32)), dim=-1)[None].contiguous()
        hyps = self._decoder(emissions)[0]
        if not hyps:
            return [("", None, [])]
        tokens = hyps[0].tokens.tolist()
        frames = [max(t - 1, 0) for t in hyps[0].timesteps.tolist()]  # flashlight counts the start-of-sentence step
        words: list[tuple[str, tuple[int, int]]] = []
        current, start, end = "", 0, 0
        for token, frame in zip(tokens, frames):
            piece = self.vocab[token]
            if piece in SPECIAL_TOKENS:
                if current and piece == SPECIAL_TOKENS[2]:
                    words.append((current, (start, end + 1)))
                    current = ""
                continue
            if not current:
                start = frame
            current, end = current + piece, frame
        if current:
            words.append((current, (start, end + 1)))
        return [(" ".join(w for w, _ in words), None, words)]
