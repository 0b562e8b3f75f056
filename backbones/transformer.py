"""The shared pre-norm Transformer encoder: THE sequence backbone of polyhead.

Forecasting, speech, recommendation and RL plug their stems into this one module.
It knows nothing about modalities: tokens ``(B, T, D)`` in, tokens ``(B, T, D)`` out.

Reference: Vaswani et al., "Attention Is All You Need" (2017); pre-norm placement
from Xiong et al., "On Layer Normalization in the Transformer Architecture" (2020);
rotary positions from Su et al., "RoFormer" (2021); the optional GRU-gated residuals
(``residual="gru"``) from Parisotto et al., "Stabilizing Transformers for Reinforcement
Learning" (GTrXL, ICML 2020).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer

from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability, look_up_option
from polyhead.errors import ConfigError

from ._base import AttentionImplementation, BackboneOutput, BackboneSpec, ComputedBuffers, FeatureInfo, SequenceBackbone

__all__ = ["TransformerEncoder"]

_NORMS = {"layernorm": nn.LayerNorm, "rmsnorm": nn.RMSNorm}
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
_POSITIONS = ("learned", "sinusoidal", "rotary", "none")
_RESIDUALS = ("add", "gru")


def _sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sine/cosine position table of Vaswani et al."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


def _rotary_inv_freq(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x: (B, H, T, hd)`` by angles given as ``cos, sin: (T, hd)``."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


class _TransformerAttention(nn.Module):
    """Multi-head self-attention: ``F.scaled_dot_product_attention`` (``"sdpa"``) or written out (``"eager"``).

    Both compute ``softmax(q k^T / sqrt(hd) + mask) v``; only the eager path can return the weights.
    """

    def __init__(self, *, dim: int, num_heads: int, attention_dropout: float, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.attention_dropout = attention_dropout

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        eager: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x: (B, T, D)``; ``attn_mask: (B, 1, T, T)`` bool, ``True`` where allowed -> ``(B, T, D)`` and the
        weights ``(B, H, T, T)`` (``eager`` only, else ``None``)."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if rotary is not None:
            q, k = _apply_rotary(q, *rotary), _apply_rotary(k, *rotary)
        dropout = self.attention_dropout if self.training else 0.0
        weights = None
        if eager:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            if is_causal:
                scores = scores.masked_fill(~torch.ones(length, length, dtype=torch.bool, device=x.device).tril(), float("-inf"))
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = F.dropout(scores.softmax(dim=-1), p=dropout, training=self.training)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim)), weights


class _TransformerGRUGate(nn.Module):
    """GTrXL's GRU-type gating layer ``g(x, y)`` replacing the residual ``x + y``.

    ``r = σ(W_r y + U_r x)``, ``z = σ(W_z y + U_z x - b_g)``, ``h = tanh(W_g y + U_g (r ⊙ x))``,
    ``g = (1 - z) ⊙ x + z ⊙ h``. The bias ``b_g > 0`` starts every gate close to the
    identity (Parisotto et al., 2020, eq. 6-9), so an untrained block passes ``x`` through.
    """

    def __init__(self, *, dim: int, gate_bias: float) -> None:
        super().__init__()
        self.w = nn.Linear(dim, 3 * dim, bias=False)  # W_r, W_z, W_g applied to y
        self.u = nn.Linear(dim, 2 * dim, bias=False)  # U_r, U_z applied to x
        self.u_g = nn.Linear(dim, dim, bias=False)  # U_g applied to r ⊙ x
        self.gate_bias = gate_bias

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.gate_bias)
        h = torch.tanh(wg + self.u_g(r * x))
        return (1 - z) * x + z * h


class _TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    A ``GradientCheckpointingLayer``: with gradient checkpointing on, its activations are
    recomputed in the backward pass (tensors are passed positionally for that).

    With ``residual="gru"`` (GTrXL) each residual sum becomes a gate on the ReLU of the
    sub-layer's output, ``g(x, relu(attn(norm(x))))``: the identity-map reordering
    (layer norm on the sub-layer input only) with gating.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm: type[nn.Module],
        activation: type[nn.Module],
        bias: bool,
        residual: str = "add",
        gate_bias: float = 2.0,
    ) -> None:
        super().__init__()
        self.norm1 = norm(dim)
        self.attn = _TransformerAttention(dim=dim, num_heads=num_heads, attention_dropout=attention_dropout, bias=bias)
        self.norm2 = norm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim, bias=bias),
            activation(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim, bias=bias),
        )
        self.dropout = nn.Dropout(dropout)
        self.gated = residual == "gru"
        if self.gated:
            self.gate1 = _TransformerGRUGate(dim=dim, gate_bias=gate_bias)
            self.gate2 = _TransformerGRUGate(dim=dim, gate_bias=gate_bias)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        eager: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x: (B, T, D)`` -> ``(B, T, D)`` and the attention weights ``(B, H, T, T)`` when ``eager``."""
        attended, weights = self.attn(self.norm1(x), attn_mask, is_causal, rotary, eager)
        if self.gated:
            x = self.gate1(x, F.relu(self.dropout(attended)))
            return self.gate2(x, F.relu(self.dropout(self.mlp(self.norm2(x))))), weights
        x = x + self.dropout(attended)
        return x + self.dropout(self.mlp(self.norm2(x))), weights


@register_backbone("transformer")
class TransformerEncoder(SequenceBackbone, ComputedBuffers):
    """Pre-norm Transformer encoder over ``(B, T, D)`` tokens.

    Args:
        dim: token width ``D``.
        depth: number of blocks.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: hidden width of the feed-forward layer, as a multiple of ``dim``.
        dropout: dropout after attention, inside and after the feed-forward layer.
        attention_dropout: dropout on attention weights.
        position: ``"learned"``, ``"sinusoidal"`` (added to the tokens), ``"rotary"``
            (applied to queries and keys) or ``"none"``.
        max_length: longest sequence for learned/sinusoidal positions.
        norm: ``"layernorm"`` or ``"rmsnorm"``.
        activation: ``"gelu"``, ``"relu"`` or ``"silu"``.
        final_norm: normalise the output of the last block.
        bias: biases in the linear layers.
        residual: ``"add"`` (the usual residual sum) or ``"gru"``: GTrXL's gated residuals
            with the identity-map reordering (Parisotto et al., "Stabilizing Transformers
            for Reinforcement Learning", ICML 2020), for RL agents.
        gate_bias: ``b_g`` of the GRU gates (``residual="gru"``); larger starts the blocks
            closer to the identity map (the paper uses 2).

    Shapes:
        ``x: (B, T, D)``, ``padding_mask: (B, T)`` bool, ``True`` at padded tokens
        (the convention of ``nn.MultiheadAttention``'s ``key_padding_mask``);
        ``is_causal``: each token attends only to itself and earlier tokens (chosen per
        call by the task, so one encoder serves causal and bidirectional tasks);
        returns ``BackboneOutput(feature_maps=((B, T, D),))``.

    Example:
        >>> enc = TransformerEncoder(dim=32, depth=2, num_heads=4, position="rotary")
        >>> enc(torch.randn(2, 10, 32), is_causal=True).feature_maps[0].shape
        torch.Size([2, 10, 32])
    """

    def __init__(
        self,
        *,
        dim: int = 256,
        depth: int = 4,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        position: str = "learned",
        max_length: int = 512,
        norm: str = "layernorm",
        activation: str = "gelu",
        final_norm: bool = True,
        bias: bool = True,
        residual: str = "add",
        gate_bias: float = 2.0,
    ) -> None:
        super().__init__()
        check_positive("dim", dim)
        check_positive("depth", depth)
        check_positive("num_heads", num_heads)
        check_positive("mlp_ratio", mlp_ratio, integer=False)
        check_positive("max_length", max_length)
        check_probability("dropout", dropout)
        check_probability("attention_dropout", attention_dropout)
        if dim % num_heads:
            raise ConfigError(f"num_heads ({num_heads}) must divide dim ({dim}).")
        look_up_option(position, {p: p for p in _POSITIONS}, "position encoding")
        if position == "rotary" and (dim // num_heads) % 2:
            raise ConfigError(f"Rotary positions need an even head width, got dim/num_heads = {dim // num_heads}.")
        look_up_option(residual, {r: r for r in _RESIDUALS}, "residual")
        if isinstance(gate_bias, bool) or not isinstance(gate_bias, (int, float)):
            raise ConfigError(f"gate_bias must be a number, got {gate_bias!r}.")
        norm_cls = look_up_option(norm, _NORMS, "norm")
        activation_cls = look_up_option(activation, _ACTIVATIONS, "activation")

        self.dim = dim
        self.num_heads = num_heads
        self.position = position
        self.max_length = max_length if position in ("learned", "sinusoidal") else None
        self._table_length = max_length
        self.feature_info: list[FeatureInfo] = [{"num_chs": dim, "reduction": 1}]

        if position == "learned":
            self.position_embedding = nn.Parameter(torch.zeros(max_length, dim))
            self.reset_parameters()
        # Computed tables are non-persistent buffers, rebuilt by reset_computed_buffers().
        self.register_buffer("sinusoidal_table", torch.empty(0), persistent=False)
        self.register_buffer("rotary_inv_freq", torch.empty(0), persistent=False)
        if position == "sinusoidal":
            self.sinusoidal_table = torch.empty(max_length, dim)
        if position == "rotary":
            self.rotary_inv_freq = torch.empty((dim // num_heads) // 2)
        self.reset_computed_buffers()

        self.blocks = nn.ModuleList(
            _TransformerBlock(
                dim=dim,
                num_heads=num_heads,
                mlp_dim=int(dim * mlp_ratio),
                dropout=dropout,
                attention_dropout=attention_dropout,
                norm=norm_cls,
                activation=activation_cls,
                bias=bias,
                residual=residual,
                gate_bias=float(gate_bias),
            )
            for _ in range(depth)
        )
        self.norm = norm_cls(dim) if final_norm else nn.Identity()

    @classmethod
    def describe(cls, **kwargs) -> BackboneSpec:
        args = cls.arguments(kwargs)
        bounded = args["position"] in ("learned", "sinusoidal")
        return BackboneSpec(kind="sequence", feature_info=({"num_chs": args["dim"], "reduction": 1},), dim=args["dim"],
                            max_length=args["max_length"] if bounded else None, supports_causal=True)

    def parameter_depths(self) -> dict[str, int]:
        """Position table 0, block ``i`` ``i + 1``, the final norm with the last block."""
        prefixes = {f"blocks.{i}.": i + 1 for i in range(len(self.blocks))}
        prefixes["norm."] = len(self.blocks)
        return self._depths_by_prefix(prefixes, default=0)

    @classmethod
    def example_config(cls) -> dict:
        return {"dim": 16, "depth": 2, "num_heads": 2, "max_length": 32}

    def reset_parameters(self) -> None:
        """The learned position table: truncated normal, std 0.02 (the blocks' layers keep torch's init)."""
        if self.position == "learned":
            nn.init.trunc_normal_(self.position_embedding, std=0.02)

    def reset_computed_buffers(self) -> None:
        if self.sinusoidal_table.numel():
            init.copy_(self.sinusoidal_table, _sinusoidal_table(self._table_length, self.dim))
        if self.rotary_inv_freq.numel():
            init.copy_(self.rotary_inv_freq, _rotary_inv_freq(self.dim // self.num_heads))

    def _attention_mask(self, padding_mask: torch.Tensor | None, length: int, is_causal: bool, device: torch.device) -> torch.Tensor | None:
        """Boolean ``(B, 1, T, T)`` mask, ``True`` where attention is allowed."""
        if padding_mask is None:
            return None
        allowed = ~padding_mask[:, None, None, :]
        if is_causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=device).tril()
        # A token always sees itself, so fully padded rows never produce NaN.
        return allowed | torch.eye(length, dtype=torch.bool, device=device)

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
        """Encode ``x: (B, T, D)``; ``padding_mask: (B, T)`` with ``True`` at padding; ``is_causal`` per call.

        ``output_hidden_states``: ``hidden_states`` = the input with positions, then each block's output
        (``depth + 1`` maps ``(B, T, D)``). ``output_attentions`` (computed eagerly, whatever
        ``attn_implementation`` says): ``attentions`` = each block's weights ``(B, H, T, T)``.
        """
        self.check_call(x, padding_mask, is_causal)
        length = x.shape[1]
        if self.position == "learned":
            x = x + self.position_embedding[:length]
        elif self.position == "sinusoidal":
            x = x + self.sinusoidal_table[:length].to(x.dtype)
        rotary = None
        if self.position == "rotary":
            angles = torch.arange(length, device=x.device, dtype=torch.float32)[:, None] * self.rotary_inv_freq[None]
            angles = torch.cat((angles, angles), dim=-1)
            rotary = (angles.cos().to(x.dtype), angles.sin().to(x.dtype))
        attn_mask = self._attention_mask(padding_mask, length, is_causal, x.device)
        sdpa_causal = is_causal and attn_mask is None
        eager = output_attentions or attn_implementation == "eager"
        hidden_states, attentions = [x], []
        for block in self.blocks:
            x, weights = block(x, attn_mask, sdpa_causal, rotary, eager)
            hidden_states.append(x)
            attentions.append(weights)
        return BackboneOutput(
            feature_maps=(self.norm(x),),
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
