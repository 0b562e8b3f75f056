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
import torch.nn.functional as F
from torch import nn
from torchaudio.models import Conformer
from torchaudio.models.conformer import ConformerLayer
from transformers.modeling_layers import GradientCheckpointingLayer

from polyhead.errors import ConfigError
from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability

from ._base import AttentionImplementation, BackboneOutput, BackboneSpec, FeatureInfo, SequenceBackbone

__all__ = ["ConformerEncoder"]


class _ConformerSelfAttention(nn.MultiheadAttention):
    """torch's ``nn.MultiheadAttention`` (same parameters) whose ``need_weights=True`` path is written out, so the
    returned ``(B, H, T, T)`` weights are the tensor the output is computed from (gradients reach them, as in
    transformers' eager attention); ``need_weights=False`` is torch's fused path."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                need_weights: bool = True, average_attn_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of ``query: (T, B, D)`` (``key`` and ``value`` are the same tensor); ``key_padding_mask: (B, T)``."""
        if not need_weights:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=False)
        length, batch, dim = query.shape
        head_dim = dim // self.num_heads
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias).reshape(length, batch, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 1, 3, 0, 4)  # each (B, H, T, hd)
        scores = (q @ k.transpose(-2, -1)) * head_dim**-0.5
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        out = self.out_proj((weights @ v).permute(2, 0, 1, 3).reshape(length, batch, dim))
        return out, weights.mean(dim=1) if average_attn_weights else weights


class _ConformerLayer(GradientCheckpointingLayer, ConformerLayer):
    """torchaudio's ``ConformerLayer`` (same modules, same state dict, same ``forward`` contract) that can
    attend eagerly and be gradient-checkpointed.

    ``forward(input, key_padding_mask) -> output`` is torchaudio's, so torchaudio's ``Conformer.forward``
    still runs these layers. ``need_weights=True`` runs ``nn.MultiheadAttention``'s written-out path,
    whose ``(B, H, T, T)`` weights :class:`ConformerEncoder` records with a hook on ``self_attn``
    (transformers 5 records attentions the same way); otherwise its fused (SDPA) path, as torchaudio does.
    """

    def forward(self, input: torch.Tensor, key_padding_mask: torch.Tensor | None, need_weights: bool = False) -> torch.Tensor:
        """``input: (T, B, D)``, ``key_padding_mask: (B, T)`` ``True`` at padding -> ``(T, B, D)``."""
        x = self.ffn1(input) * 0.5 + input
        if self.convolution_first:
            x = self._apply_convolution(x)
        residual = x
        x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(query=x, key=x, value=x, key_padding_mask=key_padding_mask, need_weights=need_weights,
                              average_attn_weights=False)
        x = self.self_attn_dropout(x) + residual
        if not self.convolution_first:
            x = self._apply_convolution(x)
        x = self.ffn2(x) * 0.5 + x
        return self.final_layer_norm(x)


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
        for layer in self.conformer.conformer_layers:  # torchaudio builds them; the subclasses add no state
            layer.__class__ = _ConformerLayer
            layer.self_attn.__class__ = _ConformerSelfAttention

    @classmethod
    def describe(cls, **kwargs) -> BackboneSpec:
        dim = cls.arguments(kwargs)["dim"]
        return BackboneSpec(kind="sequence", feature_info=({"num_chs": dim, "reduction": 1},), dim=dim, max_length=None,
                            supports_causal=False)

    def parameter_depths(self) -> dict[str, int]:
        """Conformer layer ``i`` has depth ``i + 1``."""
        layers = self.conformer.conformer_layers
        return self._depths_by_prefix({f"conformer.conformer_layers.{i}.": i + 1 for i in range(len(layers))}, default=0)

    @classmethod
    def example_config(cls) -> dict:
        return {"dim": 16, "depth": 2, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3}

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        *,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        attn_implementation: AttentionImplementation = "sdpa",
    ) -> BackboneOutput:
        """Encode ``x: (B, T, D)``; ``padding_mask: (B, T)`` with ``True`` at padding.

        ``hidden_states``: the input, then each layer's output (``depth + 1`` maps ``(B, T, D)``);
        ``attentions``: each layer's weights ``(B, H, T, T)`` (computed eagerly when asked for).
        """
        self.check_call(x, padding_mask, is_causal)
        eager = output_attentions or attn_implementation == "eager"
        layers = self.conformer.conformer_layers
        attentions: list[torch.Tensor] = []
        # the weights are self_attn's second output; hooks removed before any backward recompute
        hooks = [layer.self_attn.register_forward_hook(lambda _module, _args, out: attentions.append(out[1]))
                 for layer in layers] if output_attentions else []
        hidden = x.transpose(0, 1)  # torchaudio's layers work on (T, B, D)
        hidden_states = [x]
        try:
            for layer in layers:
                hidden = layer(hidden, padding_mask, need_weights=eager)
                hidden_states.append(hidden.transpose(0, 1))
        finally:
            for hook in hooks:
                hook.remove()
        return BackboneOutput(
            feature_maps=(hidden.transpose(0, 1),),
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
