"""Conformer encoder: torchaudio's ``Conformer`` as a polyhead sequence backbone.

The layers are torchaudio's own (``torchaudio.models.Conformer``); this module only
adapts the interface: ``(B, T, D)`` tokens plus a boolean padding mask in, a
``BackboneOutput`` out. torchaudio's ``forward`` takes lengths and turns them into a
mask with ``lengths.max().item()``, a data-dependent step that breaks ``torch.export``;
the layers are therefore called directly with the caller's mask.

Reference: Gulati et al., "Conformer: Convolution-augmented Transformer for Speech
Recognition" (Interspeech 2020).
"""

from __future__ import annotations

import torch
from torchaudio.models import Conformer

from polyhead.errors import ConfigError
from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability

from ._base import BackboneOutput, BackboneSpec, FeatureInfo, SequenceBackbone

__all__ = ["ConformerEncoder"]


@register_backbone("conformer")
class ConformerEncoder(SequenceBackbone):
    """Conformer encoder over ``(B, T, D)`` tokens (torchaudio's implementation).

    Args:
        dim: token width ``D`` (torchaudio's ``input_dim``).
        depth: number of Conformer layers.
        num_heads: attention heads; must divide ``dim``.
        ffn_dim: hidden width of the two macaron feed-forward modules.
        kernel_size: depthwise convolution kernel; odd.
        dropout: dropout in every module.
        use_group_norm: ``GroupNorm`` instead of ``BatchNorm1d`` in the convolution module.
        convolution_first: convolution module before self-attention.

    Shapes:
        ``x: (B, T, D)``, ``padding_mask: (B, T)`` bool, ``True`` at padded tokens;
        ``is_causal`` must be ``False`` (the depthwise convolutions see both sides);
        returns ``BackboneOutput(feature_maps=((B, T, D),))``. There is no positional
        table (the convolutions carry position), so any length is accepted.

    Example:
        >>> enc = ConformerEncoder(dim=32, depth=2, num_heads=4, ffn_dim=64, kernel_size=7)
        >>> enc(torch.randn(2, 10, 32)).feature_maps[0].shape
        torch.Size([2, 10, 32])
    """

    supports_causal = False

    def __init__(
        self,
        *,
        dim: int = 144,
        depth: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 576,
        kernel_size: int = 31,
        dropout: float = 0.1,
        use_group_norm: bool = False,
        convolution_first: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("depth", depth), ("num_heads", num_heads), ("ffn_dim", ffn_dim), ("kernel_size", kernel_size)):
            check_positive(name, value)
        check_probability("dropout", dropout)
        if dim % num_heads:
            raise ConfigError(f"num_heads ({num_heads}) must divide dim ({dim}).")
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same-length depthwise convolution), got {kernel_size}.")
        self.dim = dim
        self.max_length = None
        self.feature_info: list[FeatureInfo] = [{"num_chs": dim, "reduction": 1}]
        self.conformer = Conformer(
            input_dim=dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=depth,
            depthwise_conv_kernel_size=kernel_size,
            dropout=dropout,
            use_group_norm=use_group_norm,
            convolution_first=convolution_first,
        )

    @classmethod
    def describe(cls, **kwargs) -> BackboneSpec:
        dim = cls.arguments(kwargs)["dim"]
        return BackboneSpec(kind="sequence", feature_info=({"num_chs": dim, "reduction": 1},), dim=dim, max_length=None,
                            supports_causal=False)

    @classmethod
    def example_config(cls) -> dict:
        return {"dim": 16, "depth": 2, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3}

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, is_causal: bool = False) -> BackboneOutput:
        """Encode ``x: (B, T, D)``; ``padding_mask: (B, T)`` with ``True`` at padding."""
        self.check_call(x, padding_mask, is_causal)
        hidden = x.transpose(0, 1)  # torchaudio's layers work on (T, B, D)
        for layer in self.conformer.conformer_layers:
            hidden = layer(hidden, padding_mask)
        return BackboneOutput(feature_maps=(hidden.transpose(0, 1),))
