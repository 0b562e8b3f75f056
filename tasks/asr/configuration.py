"""``ASRConfig``: the architecture of a speech recognition (CTC) model."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive

__all__ = ["ASRConfig", "SPECIAL_TOKENS", "SUBSAMPLING"]

#: ids 0, 1, 2 of every vocabulary: the CTC blank (transformers' pad token), unknown, word delimiter
SPECIAL_TOKENS = ("<pad>", "<unk>", "|")
#: the convolutional stem's temporal subsampling (two stride-2 convolutions)
SUBSAMPLING = 4


def _default_backbone() -> dict:
    return {"type": "conformer", "dim": 96, "depth": 4, "num_heads": 4, "ffn_dim": 256, "kernel_size": 15}


def _default_head() -> dict:
    return {"type": "ctc"}


class ASRConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForCTC`.

    Attributes:
        backbone: sequence backbone, ``{"type": "conformer" | "transformer", ...}``.
        head: ``{"type": "ctc", ...}``; ``vocab_size`` and ``blank_id`` come from ``vocab``.
        vocab: the tokens in id order: ``<pad>`` (the CTC blank), ``<unk>``, ``|`` (word
            delimiter), then the characters. Empty until built from the training text.
        sampling_rate: audio sample rate the features are computed at (Hz).
        n_fft / win_length / hop_length: STFT of the log-mel features, in samples.
        n_mels: mel bands.
        lowercase: transcripts are lower-cased before tokenization.
        spec_augment: SpecAugment (Park et al., Interspeech 2019) while training.
        freq_mask_param / num_freq_masks: width bound and count of frequency masks.
        time_mask_param / num_time_masks: width bound (frames) and count of time masks.
        stem_dropout: dropout after the convolutional subsampling.
    """

    model_type = "polyhead-asr"
    task = "asr"

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    vocab: list = dataclasses.field(default_factory=list)
    sampling_rate: int = 16_000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    lowercase: bool = True
    spec_augment: bool = True
    freq_mask_param: int = 12
    num_freq_masks: int = 2
    time_mask_param: int = 20
    num_time_masks: int = 2
    stem_dropout: float = 0.1

    def __post_init__(self, **kwargs) -> None:
        for name in ("sampling_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            check_positive(name, getattr(self, name))
        for name in ("freq_mask_param", "num_freq_masks", "time_mask_param", "num_time_masks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}.")
        if self.win_length > self.n_fft:
            raise ConfigError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft}).")
        self.vocab = [str(t) for t in self.vocab]
        if self.vocab:
            if tuple(self.vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
                raise ConfigError(f"vocab must start with the special tokens {list(SPECIAL_TOKENS)}, got {self.vocab[:3]}.")
            if len(set(self.vocab)) != len(self.vocab) or any(len(t) != 1 for t in self.vocab[len(SPECIAL_TOKENS):]):
                raise ConfigError("vocab must hold distinct single characters after the special tokens.")
            if " " in self.vocab:
                raise ConfigError("vocab must not contain a space: words are separated by the delimiter '|'.")
        super().__post_init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Audio samples per output frame (hop length x subsampling), read by transformers' ASR pipeline
        to cut chunks on frame boundaries and to turn frame offsets into word timestamps."""
        return self.hop_length * SUBSAMPLING
