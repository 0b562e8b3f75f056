"""Shared backbones (``polyhead.backbones``): one file per architecture family."""

from __future__ import annotations

from ._base import Backbone, BackboneOutput, ComputedBuffers, FeatureInfo, SequenceBackbone
from .transformer import TransformerEncoder

__all__ = [
    "Backbone",
    "BackboneOutput",
    "ComputedBuffers",
    "FeatureInfo",
    "SequenceBackbone",
    "TransformerEncoder",
]
