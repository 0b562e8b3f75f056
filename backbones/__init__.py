"""Shared backbones (``polyhead.backbones``): one file per architecture family."""

from __future__ import annotations

from ._base import Backbone, BackboneOutput, BackboneSpec, ComputedBuffers, FeatureInfo, PyramidBackbone, SequenceBackbone
from .conformer import ConformerEncoder
from .convnext import ConvNeXt
from .swin import SwinBackbone
from .transformer import TransformerEncoder

__all__ = [
    "Backbone",
    "BackboneOutput",
    "BackboneSpec",
    "ComputedBuffers",
    "FeatureInfo",
    "SequenceBackbone",
    "PyramidBackbone",
    "ConformerEncoder",
    "ConvNeXt",
    "SwinBackbone",
    "TransformerEncoder",
]
