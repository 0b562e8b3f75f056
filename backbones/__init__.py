"""Shared backbones (``polyhead.backbones``): one file per architecture family.

Each family is declared in :data:`polyhead.registry.BACKBONES` by name and module and imported on first use
(``get(BACKBONES, "swin")``, ``from polyhead.backbones import SwinBackbone``): ``import polyhead`` stays cheap.
"""

from __future__ import annotations

from polyhead.lazy import lazy_exports
from polyhead.registry import BACKBONES, declare

from ._base import Backbone, BackboneOutput, BackboneSpec, ComputedBuffers, FeatureInfo, PyramidBackbone, SequenceBackbone

#: registered name -> (module, class)
BUILTIN_BACKBONES = {
    "conformer": (".conformer", "ConformerEncoder"),
    "convnext": (".convnext", "ConvNeXt"),
    "swin": (".swin", "SwinBackbone"),
    "transformer": (".transformer", "TransformerEncoder"),
}
for _name, (_module, _) in BUILTIN_BACKBONES.items():
    declare(BACKBONES, _name, __name__ + _module)

__getattr__, __dir__ = lazy_exports(__name__, {cls: module for module, cls in BUILTIN_BACKBONES.values()})

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
