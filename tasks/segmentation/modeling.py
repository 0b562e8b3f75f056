"""``PolyheadForSegmentation``: a 3-D pyramid backbone + :class:`SegmentationAdapter` (UNETR decoder).

The network is the patch network: ``(N, C, *patch_size)`` voxels in, ``(N, K, *patch_size)``
logits out, in training, in evaluation and in the exported ONNX graph alike. Whole volumes are
stitched from patches outside it, by the task's inferer (:mod:`.inference`, MONAI's
``SlidingWindowInferer``), on PyTorch and ONNX Runtime models alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.errors import ConfigError, InputError
from polyhead.heads.segmentation import UnetrDecoder
from polyhead.modeling import PolyheadModel
from polyhead.registry import HEADS, get

from .configuration import SegmentationConfig

__all__ = ["SegmentationAdapter", "SegmentationOutput", "PolyheadForSegmentation"]


@dataclass
class SegmentationOutput(ModelOutput):
    """Output of :class:`PolyheadForSegmentation` (patches) and of the task's inferer (whole volumes).

    Attributes:
        loss: Dice + cross-entropy; set exactly when ``labels`` is given.
        logits: ``(B, K, D, H, W)`` class scores in the input's (preprocessed) grid.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class SegmentationAdapter(TaskAdapter):
    """Voxel labels from a 3-D pyramid backbone: the patch itself is the decoder's finest level.

    As in Swin-UNETR (Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic
    Segmentation of Brain Tumors in MRI Images", 2022), the UNETR decoder reads the input patch
    (``reduction`` 1, Swin-UNETR's ``encoder1``) and every backbone map; its loss is MONAI's
    Dice + cross-entropy.

    Needs a pyramid backbone with ``spatial_dims=3`` and ``in_channels`` equal to the config's,
    whose coarsest stride divides ``patch_size``.
    """

    accepted_kinds = frozenset({"pyramid"})
    output_class = SegmentationOutput
    label_names = ("labels",)
    head_base = UnetrDecoder

    def __init__(self, config: SegmentationConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if not issubclass(get(HEADS, config.head.get("type")), UnetrDecoder):
            raise ConfigError(f"The segmentation task needs a segmentation decoder such as 'unetr_decoder', got {config.head['type']!r}.")
        self.in_channels = int(config.in_channels)
        self.patch_size = [int(v) for v in config.patch_size]
        self.labels = [config.id2label[i] for i in range(config.num_labels)]  # follows id2label / num_labels
        levels = [{"num_chs": config.in_channels, "reduction": 1}, *backbone.feature_info]
        self.head = self.build_head(config, backbone, feature_info=levels, num_labels=config.num_labels, spatial_dims=3)

    @classmethod
    def check_backbone(cls, config: SegmentationConfig, backbone: BackboneSpec) -> None:
        super().check_backbone(config, backbone)
        name = config.backbone.get("type", "?")
        if backbone.spatial_dims != 3 or backbone.in_channels != config.in_channels:
            raise ConfigError(
                f"{cls.__name__} needs a 3-D pyramid backbone (spatial_dims=3) with in_channels={config.in_channels}; "
                f"the {name!r} backbone has spatial_dims={backbone.spatial_dims}, in_channels={backbone.in_channels}."
            )
        if any(size % backbone.size_divisor for size in config.patch_size):
            raise ConfigError(
                f"patch_size {list(config.patch_size)} must be multiples of the backbone's coarsest stride {backbone.size_divisor} "
                f"(the {name!r} backbone needs a patch it can divide)."
            )

    def embed(self, pixel_values: torch.Tensor) -> Embedded:
        if pixel_values.dim() != 5 or pixel_values.shape[1] != self.in_channels:
            raise InputError(f"pixel_values must be (B, {self.in_channels}, D, H, W), got shape {tuple(pixel_values.shape)}.")
        if list(pixel_values.shape[2:]) != self.patch_size:
            raise InputError(
                f"The network takes patches of patch_size {self.patch_size}, got spatial size {list(pixel_values.shape[2:])}; "
                "whole volumes go through the sliding window: SegmentationTask().inferer(config)(model, {'pixel_values': volume}) "
                "or polyhead.pipeline('segmentation')."
            )
        return Embedded(x=pixel_values)

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        return {"logits": self.head([embedded.x, *features])}  # (N, K, *patch)

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dice + CE of logits ``(B, K, *S)`` against ``labels`` ``(B, 1, *S)`` or ``(B, *S)`` (patches or stitched volumes)."""
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.labels)):
            raise InputError(f"labels must be in [0, {len(self.labels) - 1}] ({self.labels}), got values up to {int(labels.max())}.")
        return self.head.loss(predictions["logits"], labels.long())

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> SegmentationOutput:
        return SegmentationOutput(loss=None if losses is None else losses["loss"], logits=predictions["logits"])


class PolyheadForSegmentation(PolyheadModel):
    """3-D semantic segmentation of patches (Swin-UNETR-style when the backbone is ``swin``).

    Example:
        >>> model = PolyheadForSegmentation(SegmentationConfig())
        >>> model(pixel_values=torch.randn(2, 1, 32, 32, 32)).logits.shape
        torch.Size([2, 3, 32, 32, 32])
        >>> inferer = SegmentationTask().inferer(model.config)     # whole volumes: the sliding window
        >>> inferer(model, {"pixel_values": torch.randn(1, 1, 40, 45, 33)}).logits.shape
        torch.Size([1, 3, 40, 45, 33])
    """

    config_class = SegmentationConfig
    adapter_class = SegmentationAdapter
    main_input_name = "pixel_values"
    input_modalities = "image"

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SegmentationOutput | tuple:
        """Segment a batch of patches.

        Args:
            pixel_values: ``(N, C, *patch_size)`` preprocessed patches.
            labels: ``(N, 1, *patch_size)`` or ``(N, *patch_size)`` label values; when given, ``loss`` is computed.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"pixel_values": pixel_values}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
