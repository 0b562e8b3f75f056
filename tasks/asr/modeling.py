"""``PolyheadForCTC``: a sequence backbone + :class:`CTCAdapter` (log-mels -> SpecAugment -> 4x conv subsampling -> CTC head).

The log-mels come from :class:`~polyhead.tasks.asr.processing.ASRFeatureExtractor`
(outside the network and the ONNX graph); SpecAugment (torchaudio's
``FrequencyMasking`` / ``TimeMasking``, Park et al., Interspeech 2019) runs only in
training. Two stride-2 convolutions bring 10 ms frames to 40 ms tokens of the
backbone's width; the shared sequence backbone (``conformer`` or ``transformer``)
encodes them and the CTC head maps each token to vocabulary logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.transforms import FrequencyMasking, TimeMasking
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.errors import ConfigError, InputError
from polyhead.heads.ctc import CTCHead, ctc_loss
from polyhead.modeling import PolyheadModel
from polyhead.validation import check_probability

from .configuration import ASRConfig

__all__ = ["ASROutput", "CTCAdapter", "PolyheadForCTC", "subsampled_lengths"]


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames after the stem: ``ceil(ceil(L / 2) / 2)`` (two stride-2, padding-1, kernel-3 convolutions)."""
    return ((lengths + 1) // 2 + 1) // 2


@dataclass
class ASROutput(ModelOutput):
    """Output of :class:`PolyheadForCTC`.

    Attributes:
        loss: CTC loss; set exactly when ``labels`` is given.
        logits: ``(B, T', V)`` per-token vocabulary logits, ``T' = ceil(T / 4)``.
        output_lengths: ``(B,)`` valid tokens per row of ``logits``.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    output_lengths: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class _ASRSubsampling(nn.Module):
    """``(B, T, n_mels)`` -> ``(B, ceil(T/4), D)``: two stride-2 Conv1d + GELU, padded frames kept at 0."""

    def __init__(self, *, n_mels: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, dim, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.projection = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        half = (lengths + 1) // 2
        x = F.gelu(self.conv1(features.transpose(1, 2)))  # (B, D, T/2)
        keep = torch.arange(x.shape[-1], device=x.device)[None, :] < half[:, None]
        x = F.gelu(self.conv2(x * keep[:, None, :].to(x.dtype)))  # (B, D, T/4)
        return self.dropout(self.projection(x.transpose(1, 2)))


class CTCAdapter(TaskAdapter):
    """Speech recognition on a sequence backbone: log-mel frames in, per-token vocabulary logits out.

    SpecAugment masks the features while training; two stride-2 convolutions turn the
    ``T`` frames into ``ceil(T / 4)`` tokens of the backbone's width; the backbone reads
    them bidirectionally with the padded tokens masked; the ``ctc`` head maps each token to
    vocabulary logits. The CTC loss (Graves et al., ICML 2006) counts only each row's valid
    tokens (``output_lengths``); SpecAugment is Park et al., Interspeech 2019.

    Example:
        >>> adapter = CTCAdapter(config, describe_backbone(config.backbone))  # what PolyheadForCTC builds
        >>> adapter.embed(input_features=torch.randn(2, 101, 64)).x.shape   # (B, ceil(T / 4), D)
        torch.Size([2, 26, 96])
    """

    accepted_kinds = frozenset({"sequence"})
    output_class = ASROutput
    head_base = CTCHead

    def __init__(self, config: ASRConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if config.vocab_size <= 3:
            raise ConfigError("ASRConfig.vocab is empty: it is built from the training transcripts (polyhead train) "
                              "or must list the special tokens and the characters.")
        check_probability("stem_dropout", config.stem_dropout)
        self.config = config
        self.freq_masks = nn.ModuleList(FrequencyMasking(config.freq_mask_param, iid_masks=True) for _ in range(config.num_freq_masks))
        self.time_masks = nn.ModuleList(TimeMasking(config.time_mask_param, iid_masks=True) for _ in range(config.num_time_masks))
        self.stem = _ASRSubsampling(n_mels=config.n_mels, dim=backbone.dim, dropout=config.stem_dropout)
        self.head = self.build_head(config, backbone, vocab_size=config.vocab_size, blank_id=0)

    def spec_augment(self, features: torch.Tensor) -> torch.Tensor:
        """SpecAugment's frequency then time masks on ``features: (B, T, n_mels)``."""
        spec = features.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, T): torchaudio's (..., freq, time)
        for mask in self.freq_masks:
            spec = mask(spec)
        for mask in self.time_masks:
            spec = mask(spec)
        return spec.squeeze(1).transpose(1, 2)

    def embed(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Embedded:
        n_mels = self.config.n_mels
        if input_features.dim() != 3 or input_features.shape[-1] != n_mels:
            raise InputError(
                f"input_features must have shape (batch, frames, {n_mels}) (log-mels from the "
                f"feature extractor), got {tuple(input_features.shape)}."
            )
        if not input_features.is_floating_point():
            raise InputError(f"input_features must be a floating-point tensor, got {input_features.dtype}.")
        if attention_mask is None:
            attention_mask = torch.ones(input_features.shape[:2], dtype=torch.long, device=input_features.device)
        elif attention_mask.shape != input_features.shape[:2]:
            raise InputError(f"attention_mask must have shape {tuple(input_features.shape[:2])}, got {tuple(attention_mask.shape)}.")
        lengths = attention_mask.long().sum(dim=-1)
        features = input_features * attention_mask[..., None].to(input_features.dtype)
        if self.training and self.config.spec_augment:
            features = self.spec_augment(features)
        tokens = self.stem(features, lengths)
        output_lengths = subsampled_lengths(lengths)
        padding_mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] >= output_lengths[:, None]
        return Embedded(x=tokens, padding_mask=padding_mask, is_causal=False, context={"output_lengths": output_lengths})

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        return {"logits": self.head(features)}  # (B, T', V)

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        head = self.head
        loss = ctc_loss(
            predictions["logits"], labels, embedded.context["output_lengths"],
            blank=head.blank_id, reduction=head.reduction, zero_infinity=head.zero_infinity,
        )
        return {"loss": loss}

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> ASROutput:
        return ASROutput(
            loss=None if losses is None else losses["loss"],
            logits=predictions["logits"],
            output_lengths=embedded.context["output_lengths"],
        )


class PolyheadForCTC(PolyheadModel):
    """Speech recognition with a CTC head (a sequence backbone + :class:`CTCAdapter`), usable by transformers' ASR pipeline.

    Example:
        >>> config = ASRConfig(vocab=["<pad>", "<unk>", "|", "a", "b"])
        >>> model = PolyheadForCTC(config)
        >>> out = model(input_features=torch.randn(2, 101, 64), attention_mask=torch.ones(2, 101, dtype=torch.long))
        >>> out.logits.shape
        torch.Size([2, 26, 5])
    """

    config_class = ASRConfig
    adapter_class = CTCAdapter
    main_input_name = "input_features"
    input_modalities = "audio"

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ASROutput | tuple:
        """Transcribe log-mel features to per-token logits.

        Args:
            input_features: ``(B, T, n_mels)`` from :class:`ASRFeatureExtractor`.
            attention_mask: ``(B, T)``, 1 at real frames; ``None``: every frame is real.
            labels: ``(B, L)`` token ids padded with ``-100``; when given, ``loss`` is computed.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"input_features": input_features, "attention_mask": attention_mask}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
