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

__all__ = [
    "BackboneKind",
    "BackboneOutput",
    "FeatureInfo",
    "Backbone",
    "SequenceBackbone",
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
