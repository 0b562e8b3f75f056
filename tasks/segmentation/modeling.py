"""``PolyheadForSegmentation``: pyramid backbone -> UNETR decoder, patches in, logits out.

The network sees patches of ``config.patch_size``. Any other input size goes through
MONAI's ``sliding_window_inference`` (overlap and blending from the config), the same
stitching the pipeline runs on top of the ONNX Runtime graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference
from transformers.utils import ModelOutput

from polyhead.backbones._base import PyramidBackbone
from polyhead.errors import ConfigError, InputError
from polyhead.heads.segmentation import UnetrDecoder
from polyhead.modeling import PolyheadPreTrainedModel
from polyhead.registry import BACKBONES, HEADS, build, get

from .configuration import SegmentationConfig

__all__ = ["SegmentationOutput", "PolyheadForSegmentation", "sliding_window_logits"]


@dataclass
class SegmentationOutput(ModelOutput):
    """Output of :class:`PolyheadForSegmentation`.

    Attributes:
        loss: Dice + cross-entropy; set exactly when ``labels`` is given.
        logits: ``(B, K, D, H, W)`` class scores in the input's (preprocessed) grid.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def sliding_window_logits(
    predict_patches: Callable[[torch.Tensor], torch.Tensor],
    volume: torch.Tensor,
    config: SegmentationConfig,
    *,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
) -> torch.Tensor:
    """Logits ``(B, K, *S)`` for volumes ``(B, C, *S)`` of any size from a patch predictor.

    ``predict_patches`` maps ``(N, C, *patch_size)`` to ``(N, K, *patch_size)`` (a PyTorch
    model or an ONNX Runtime session); volumes smaller than a patch are padded.
    ``overlap`` / ``sw_batch_size`` override the config's for this call.
    """
    return sliding_window_inference(
        volume,
        roi_size=tuple(config.patch_size),
        sw_batch_size=sw_batch_size or config.sw_batch_size,
        predictor=predict_patches,
        overlap=config.sw_overlap if overlap is None else overlap,
        mode=config.sw_blend_mode,
        padding_mode="constant",
        cval=0.0,
    )


class PolyheadForSegmentation(PolyheadPreTrainedModel):
    """3D semantic segmentation (Swin-UNETR-style when the backbone is ``swin``).

    Example:
        >>> model = PolyheadForSegmentation(SegmentationConfig())
        >>> model(pixel_values=torch.randn(2, 1, 32, 32, 32)).logits.shape
        torch.Size([2, 3, 32, 32, 32])
    """

    config_class = SegmentationConfig
    main_input_name = "pixel_values"
    input_modalities = "image"

    def __init__(self, config: SegmentationConfig) -> None:
        super().__init__(config)
        if not issubclass(get(HEADS, config.head.get("type")), UnetrDecoder):
            raise ConfigError(f"The segmentation task needs a segmentation decoder such as 'unetr_decoder', got {config.head['type']!r}.")
        backbone_cls = get(BACKBONES, config.backbone.get("type"))
        if not issubclass(backbone_cls, PyramidBackbone):
            raise ConfigError(f"Segmentation needs a pyramid backbone (swin, convnext); {config.backbone['type']!r} is a {backbone_cls.kind} backbone.")
        self.backbone = build(BACKBONES, config.backbone)
        bad = [s for s in config.patch_size if s % self.backbone.size_divisor]
        if bad:
            raise ConfigError(f"patch_size {config.patch_size} must be multiples of the backbone's coarsest stride {self.backbone.size_divisor}.")
        # the input itself is the finest level of the decoder (Swin-UNETR's encoder1)
        levels = [{"num_chs": config.in_channels, "reduction": 1}, *self.backbone.feature_info]
        self.head = build(HEADS, config.head, feature_info=levels, num_labels=len(config.labels), spatial_dims=3)
        self.post_init()

    def predict_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K, *patch)`` for patches ``(N, C, *patch)`` (any multiple of the coarsest stride)."""
        features = self.backbone(pixel_values).feature_maps
        return self.head([pixel_values, *features])

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SegmentationOutput:
        """Segment a batch of volumes.

        Args:
            pixel_values: ``(B, C, D, H, W)`` preprocessed volumes; patch-sized inputs go
                straight through the network, others through the sliding window.
            labels: ``(B, 1, D, H, W)`` or ``(B, D, H, W)`` label values; when given, ``loss`` is computed.
            return_dict: accepted for transformers compatibility; the output is always a
                :class:`SegmentationOutput`.
        """
        if pixel_values.dim() != 5 or pixel_values.shape[1] != self.config.in_channels:
            raise InputError(
                f"pixel_values must be (B, {self.config.in_channels}, D, H, W), got shape {tuple(pixel_values.shape)}."
            )
        is_patch = list(pixel_values.shape[2:]) == self.config.patch_size
        if is_patch or torch.compiler.is_exporting():
            logits = self.predict_patches(pixel_values)
        else:
            logits = sliding_window_logits(self.predict_patches, pixel_values, self.config)
        loss = None
        if labels is not None:
            if labels.min() < 0 or labels.max() >= len(self.config.labels):
                raise InputError(f"labels must be in [0, {len(self.config.labels) - 1}] ({self.config.labels}), got values up to {int(labels.max())}.")
            loss = self.head.loss(logits, labels.long())["loss"]
        return SegmentationOutput(loss=loss, logits=logits)
