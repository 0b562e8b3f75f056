"""The backbone contract: ``BackboneOutput(feature_maps)`` and ``feature_info``.

A backbone is an ``nn.Module`` registered in :data:`polyhead.registry.BACKBONES`.
Heads read only ``feature_info``: one ``{"num_chs", "reduction"}`` entry per output
(timm's ``FeatureInfo``, HF's ``BackboneMixin``). ``reduction`` is the spatial stride
for images and volumes and the temporal stride for audio and series.

Two kinds:

* ``"sequence"``: ``forward(x: (B, T, D), padding_mask: (B, T) | None, is_causal: bool)``
  returns one feature map ``(B, T', D)``. What differs between the tasks that share it
  (causal attention, padding) is a per-call argument, never a constructor option;
* ``"pyramid"``: ``forward(x: (B, C, *spatial))`` returns maps at several strides.

Both take, per call, transformers' output switches: ``output_hidden_states`` (every block's
output, in ``BackboneOutput.hidden_states``) and, for sequence backbones, ``output_attentions``
(each block's attention weights ``(B, heads, T, T)``) and ``attn_implementation`` (``"sdpa"``,
the default and the exported graph, or ``"eager"``: the attention written out, which can return
its weights). Their repeated blocks are :class:`~transformers.modeling_layers.GradientCheckpointingLayer`
s, so ``model.gradient_checkpointing_enable()`` recomputes them in the backward pass.

:meth:`Backbone.describe` gives a backbone's :class:`BackboneSpec` (kind, ``feature_info``,
width, strides) from its config alone, without building it; a built backbone's
:attr:`Backbone.spec` is the same object, and :attr:`Backbone.config` the dict that rebuilds it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypedDict

import torch
from torch import nn
from transformers.modeling_outputs import BackboneOutput

from polyhead.errors import ConfigError, InputError

__all__ = [
    "AttentionImplementation",
    "BackboneKind",
    "BackboneOutput",
    "BackboneSpec",
    "FeatureInfo",
    "Backbone",
    "SequenceBackbone",
    "PyramidBackbone",
    "ComputedBuffers",
]

BackboneKind = Literal["sequence", "pyramid"]
#: how sequence backbones compute attention: ``F.scaled_dot_product_attention`` or written out (returns weights)
AttentionImplementation = Literal["sdpa", "eager"]


class FeatureInfo(TypedDict):
    """One backbone output: channels and stride relative to the backbone's input."""

    num_chs: int
    reduction: int


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What a task adapter needs to know of a backbone, known from its config alone.

    Attributes:
        kind: ``"sequence"`` or ``"pyramid"``.
        feature_info: one ``{"num_chs", "reduction"}`` per output, finest first.
        dim: token width ``D`` (sequence backbones).
        max_length: longest sequence accepted, ``None`` when unbounded (sequence backbones).
        supports_causal: whether ``forward(..., is_causal=True)`` is possible (sequence backbones).
        spatial_dims / in_channels / size_divisor: input layout of pyramid backbones.
    """

    kind: BackboneKind
    feature_info: tuple[FeatureInfo, ...]
    dim: int | None = None
    max_length: int | None = None
    supports_causal: bool = False
    spatial_dims: int | None = None
    in_channels: int | None = None
    size_divisor: int = 1


class ComputedBuffers:
    """Mixin for modules holding buffers computed in ``__init__`` (tables, offsets, statistics from the config).

    transformers 5 builds models on the meta device in ``from_pretrained`` and
    leaves buffers that are not in the checkpoint uninitialised; polyhead's
    ``_init_weights`` calls :meth:`reset_computed_buffers` to rebuild them (writes go through
    ``transformers.initialization``, so a buffer loaded from the checkpoint is kept).
    """

    def reset_computed_buffers(self) -> None:
        """Recompute every computed buffer of this module in place."""
        raise NotImplementedError


class Backbone(nn.Module):
    """Base class of every backbone.

    Subclasses set :attr:`kind`, fill :attr:`feature_info` in ``__init__``, give
    :meth:`describe` (their :class:`BackboneSpec` from keyword arguments, without building)
    and :meth:`example_config`, the smallest useful configuration (used by the
    registry-wide tests and ``polyhead list``).

    The keyword arguments a backbone was built with are recorded: :attr:`config` is
    ``{"type": <registered name>, **kwargs}``, so a task model given a built backbone
    (``PolyheadForForecasting(config, backbone=encoder)``) can save a ``config.json`` that
    rebuilds it.
    """

    kind: ClassVar[BackboneKind]
    #: the name it is registered under (set by ``register_backbone``)
    registry_name: ClassVar[str] = ""
    feature_info: list[FeatureInfo]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self: "Backbone", *args: Any, **init_kwargs: Any) -> None:
            if type(self).__init__ is recording_init and not args:  # the outermost constructor records
                object.__setattr__(self, "_init_kwargs", dict(init_kwargs))
            init(self, *args, **init_kwargs)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    @property
    def config(self) -> dict[str, Any]:
        """``{"type": name, **kwargs}``: what ``polyhead.registry.build(BACKBONES, ...)`` rebuilds this backbone from."""
        return {"type": type(self).registry_name, **getattr(self, "_init_kwargs", {})}

    @classmethod
    def arguments(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """``kwargs`` completed with the constructor's defaults."""
        bound = inspect.signature(cls.__init__).bind_partial(None, **kwargs)
        bound.apply_defaults()
        return {k: v for k, v in bound.arguments.items() if k != "self"}

    @classmethod
    def describe(cls, **kwargs: Any) -> BackboneSpec:
        """The :class:`BackboneSpec` of ``cls(**kwargs)``, without building it."""
        raise NotImplementedError

    @property
    def spec(self) -> BackboneSpec:
        """The :class:`BackboneSpec` of this backbone (equal to ``describe`` of its config)."""
        raise NotImplementedError

    @classmethod
    def example_config(cls) -> dict:
        """Keyword arguments for a tiny instance."""
        raise NotImplementedError

    def example_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random inputs accepted by :meth:`forward`."""
        raise NotImplementedError

    def parameter_depths(self) -> dict[str, int]:
        """``{parameter name: depth}``: 0 for the input end (embedding), one more per block, the output norms last.

        Layer-wise learning-rate decay (``train.layer_decay``) scales each parameter's learning
        rate by ``layer_decay ** (max_depth - depth)``. Each backbone says its own depths.
        """
        raise NotImplementedError

    def _depths_by_prefix(self, prefixes: Mapping[str, int], default: int) -> dict[str, int]:
        """Depths from ``{name prefix: depth}`` (the longest matching prefix wins), ``default`` elsewhere."""
        ordered = sorted(prefixes.items(), key=lambda item: -len(item[0]))
        return {name: next((depth for prefix, depth in ordered if name.startswith(prefix)), default)
                for name, _ in self.named_parameters()}


class SequenceBackbone(Backbone):
    """A backbone over token sequences ``(B, T, D)`` with an optional padding mask.

    ``forward(x, padding_mask=None, is_causal=False)``: ``padding_mask (B, T)`` is ``True``
    at padded tokens; ``is_causal`` lets each token attend only to itself and earlier
    tokens (the caller decides, per call: a next-item model is causal, a CTR model over
    the same backbone is not).

    Attributes:
        dim: the token width ``D`` the backbone takes and returns.
        max_length: the longest sequence accepted, or ``None`` when unbounded.
        supports_causal: whether ``is_causal=True`` is possible.
    """

    kind: ClassVar[BackboneKind] = "sequence"
    supports_causal: ClassVar[bool] = True
    dim: int
    max_length: int | None

    @property
    def spec(self) -> BackboneSpec:
        return BackboneSpec(kind="sequence", feature_info=tuple(self.feature_info), dim=self.dim, max_length=self.max_length,
                            supports_causal=self.supports_causal)

    def check_call(self, x: torch.Tensor, padding_mask: torch.Tensor | None, is_causal: bool) -> None:
        """Raise :class:`InputError` for tokens of the wrong shape, a mismatched mask or an impossible ``is_causal``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise InputError(f"{type(self).__name__} takes tokens of shape (batch, time, {self.dim}), got {tuple(x.shape)}.")
        if padding_mask is not None and padding_mask.shape != x.shape[:2]:
            raise InputError(f"padding_mask must have shape {tuple(x.shape[:2])}, got {tuple(padding_mask.shape)}.")
        if is_causal and not self.supports_causal:
            raise InputError(f"{type(self).__name__} cannot attend causally (is_causal=True).")
        if self.max_length is not None and x.shape[1] > self.max_length:
            raise InputError(f"Sequence of {x.shape[1]} tokens is longer than this backbone's max_length={self.max_length}.")

    def example_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        length = 8 if self.max_length is None else min(8, self.max_length)
        padding_mask = torch.zeros(batch_size, length, dtype=torch.bool)
        padding_mask[-1, -2:] = True  # the last sequence is padded by two tokens
        return {"x": torch.randn(batch_size, length, self.dim), "padding_mask": padding_mask}


class PyramidBackbone(Backbone):
    """A backbone over images ``(B, C, H, W)`` or volumes ``(B, C, D, H, W)`` (MONAI's ``spatial_dims``).

    ``forward(x)`` returns one feature map per :attr:`feature_info` entry, finest first:
    ``(B, num_chs, *spatial / reduction)``.

    Attributes:
        spatial_dims: 2 for images, 3 for volumes.
        in_channels: channels ``C`` of the input.
        size_divisor: every spatial size of the input must be a multiple of it
            (the coarsest stride); :meth:`check_inputs` says so otherwise.
    """

    kind: ClassVar[BackboneKind] = "pyramid"
    spatial_dims: int
    in_channels: int
    size_divisor: int

    @property
    def spec(self) -> BackboneSpec:
        return BackboneSpec(kind="pyramid", feature_info=tuple(self.feature_info), spatial_dims=self.spatial_dims,
                            in_channels=self.in_channels, size_divisor=self.size_divisor)

    @staticmethod
    def check_spatial_dims(spatial_dims: int) -> None:
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}.")

    def check_inputs(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` is ``(B, in_channels, *spatial)`` with divisible sizes."""
        expected = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
        if x.dim() != self.spatial_dims + 2:
            raise InputError(
                f"{type(self).__name__} (spatial_dims={self.spatial_dims}) takes {expected} inputs, "
                f"got shape {tuple(x.shape)}."
            )
        if x.shape[1] != self.in_channels:
            raise InputError(f"{type(self).__name__} expects {self.in_channels} input channel(s), got {x.shape[1]} (shape {tuple(x.shape)}).")
        if not x.is_floating_point():
            raise InputError(f"{type(self).__name__} takes floating-point inputs, got {x.dtype}.")
        if not (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()):
            sizes = tuple(int(v) for v in x.shape[2:])
            if any(v % self.size_divisor for v in sizes):
                raise InputError(
                    f"{type(self).__name__} needs spatial sizes that are multiples of {self.size_divisor}, got {sizes}; "
                    "pad the input (the segmentation and detection processors do)."
                )

    def example_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        size = 2 * self.size_divisor  # the coarsest map is 2 wide: instance norm needs more than one value
        return {"x": torch.randn(batch_size, self.in_channels, *(size,) * self.spatial_dims)}
