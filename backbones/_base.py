"""The backbone contract: ``BackboneOutput(feature_maps)`` and ``feature_info``.

A backbone is an ``nn.Module`` registered in :data:`polyhead.registry.BACKBONES`.
Heads read only ``feature_info``: one ``{"num_chs", "reduction"}`` entry per output
(timm's ``FeatureInfo``, HF's ``BackboneMixin``). ``reduction`` is the spatial stride
for images and volumes and the temporal stride for audio and series.

Two kinds:

* ``"sequence"``: ``forward(x: (B, T, D), padding_mask: (B, T) | None)`` returns one
  feature map ``(B, T', D)``;
* ``"pyramid"``: ``forward(x: (B, C, *spatial))`` returns maps at several strides.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypedDict

import torch
from torch import nn
from transformers.modeling_outputs import BackboneOutput

from polyhead.errors import ConfigError, InputError

__all__ = [
    "BackboneKind",
    "BackboneOutput",
    "FeatureInfo",
    "Backbone",
    "SequenceBackbone",
    "PyramidBackbone",
    "ComputedBuffers",
]

BackboneKind = Literal["sequence", "pyramid"]


class FeatureInfo(TypedDict):
    """One backbone output: channels and stride relative to the backbone's input."""

    num_chs: int
    reduction: int


class ComputedBuffers:
    """Mixin for modules holding non-persistent buffers computed in ``__init__``.

    transformers 5 builds models on the meta device in ``from_pretrained`` and
    leaves buffers that are not in the checkpoint uninitialised; polyhead's
    ``_init_weights`` calls :meth:`reset_computed_buffers` to rebuild them.
    """

    def reset_computed_buffers(self) -> None:
        """Recompute every non-persistent buffer of this module in place."""
        raise NotImplementedError


class Backbone(nn.Module):
    """Base class of every backbone.

    Subclasses set :attr:`kind`, fill :attr:`feature_info` in ``__init__``, and give
    :meth:`example_config`, the smallest useful configuration (used by the
    registry-wide tests and ``polyhead list``).
    """

    kind: ClassVar[BackboneKind]
    feature_info: list[FeatureInfo]

    @classmethod
    def example_config(cls) -> dict:
        """Keyword arguments for a tiny instance."""
        raise NotImplementedError

    def example_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random inputs accepted by :meth:`forward`."""
        raise NotImplementedError


class SequenceBackbone(Backbone):
    """A backbone over token sequences ``(B, T, D)`` with an optional padding mask.

    Attributes:
        dim: the token width ``D`` the backbone takes and returns.
        max_length: the longest sequence accepted, or ``None`` when unbounded.
    """

    kind: ClassVar[BackboneKind] = "sequence"
    dim: int
    max_length: int | None

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
