"""``PolyheadForObjectDetection``: pyramid backbone -> FPN + FCOS head.

The network is tensors in, tensors out (``logits``, ``box_regression``,
``centerness``, ``anchors`` per location); decoding, thresholds and NMS are the image
processor's ``post_process_object_detection``, shared by the PyTorch and ONNX backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from polyhead.errors import ConfigError, InputError
from polyhead.heads.detection import FCOSDetectionHead
from polyhead.modeling import PolyheadPreTrainedModel
from polyhead.registry import BACKBONES, HEADS, build, get

from .configuration import DetectionConfig

__all__ = ["DetectionOutput", "PolyheadForObjectDetection", "labels_from_padded"]


@dataclass
class DetectionOutput(ModelOutput):
    """Output of :class:`PolyheadForObjectDetection` (``N`` locations over the pyramid levels).

    Attributes:
        loss: scalar FCOS loss; set exactly when ``labels`` are given.
        logits: ``(B, N, K)`` class logits (sigmoid, no background class).
        box_regression: ``(B, N, 4)`` left/top/right/bottom distances in anchor sizes.
        centerness: ``(B, N)`` centerness logits.
        anchors: ``(B, N, 4)`` the stride-sized box of each location, xyxy input pixels.
        loss_dict: the loss parts (classification, bbox_regression, bbox_ctrness) when ``labels`` are given.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    box_regression: torch.Tensor | None = None
    centerness: torch.Tensor | None = None
    anchors: torch.Tensor | None = None
    loss_dict: dict | None = None


def labels_from_padded(labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """``(B, M, 5)`` rows ``[class, x0, y0, x1, y1]`` padded with class ``-1`` -> one target dict per image."""
    return [{"class_labels": row[row[:, 0] >= 0, 0].long(), "boxes": row[row[:, 0] >= 0, 1:]} for row in labels]


class PolyheadForObjectDetection(PolyheadPreTrainedModel):
    """Anchor-free object detector (FCOS) on a shared pyramid backbone.

    Example:
        >>> config = DetectionConfig(id2label={0: "face", 1: "bag"})
        >>> model = PolyheadForObjectDetection(config)
        >>> out = model(pixel_values=torch.randn(2, 3, 256, 256))
        >>> out.logits.shape  # (2, 32*32 + 16*16 + 8*8, 2)
        torch.Size([2, 1344, 2])
    """

    config_class = DetectionConfig
    main_input_name = "pixel_values"
    input_modalities = "image"

    def __init__(self, config: DetectionConfig) -> None:
        super().__init__(config)
        head_cls = get(HEADS, config.head.get("type"))
        if not issubclass(head_cls, FCOSDetectionHead):
            raise ConfigError(f"Object detection needs a detection head such as 'fcos', got {config.head['type']!r}.")
        self.backbone = build(BACKBONES, config.backbone)
        if self.backbone.kind != "pyramid":
            raise ConfigError(f"Object detection needs a pyramid backbone; {config.backbone['type']!r} is a {self.backbone.kind} backbone.")
        self.head = build(HEADS, config.head, feature_info=self.backbone.feature_info, num_classes=config.num_labels)
        self.post_init()

    @property
    def size_divisor(self) -> int:
        """Input sizes must be multiples of this (the coarsest stride of backbone and head)."""
        return max(self.backbone.size_divisor, self.head.size_divisor)

    def _targets(self, labels: Any, batch: int) -> list[dict[str, torch.Tensor]]:
        if isinstance(labels, torch.Tensor):
            if labels.dim() != 3 or labels.shape[0] != batch or labels.shape[2] != 5:
                raise InputError(f"labels as a tensor must be (batch={batch}, M, 5) rows [class, x0, y0, x1, y1], got {tuple(labels.shape)}.")
            labels = labels_from_padded(labels)
        if not isinstance(labels, Sequence) or len(labels) != batch:
            raise InputError(f"labels must hold one target per image ({batch}), got {type(labels).__name__}.")
        targets = []
        for i, target in enumerate(labels):
            if not isinstance(target, Mapping) or "boxes" not in target or not ({"class_labels", "labels"} & set(target)):
                raise InputError(f"labels[{i}] must be a dict with 'boxes' (M, 4) xyxy and 'class_labels' (M,).")
            classes = torch.as_tensor(target.get("class_labels", target.get("labels"))).long()
            boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
            if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= self.config.num_labels):
                raise InputError(f"labels[{i}] has class ids outside [0, {self.config.num_labels}).")
            if boxes.shape[0] != classes.numel():
                raise InputError(f"labels[{i}] has {boxes.shape[0]} boxes but {classes.numel()} class labels.")
            targets.append({"boxes": boxes, "labels": classes})
        return targets

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        labels: Any = None,
        image_sizes: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> DetectionOutput:
        """Detect objects.

        Args:
            pixel_values: ``(B, 3, H, W)`` normalised images, ``H`` and ``W`` multiples of :attr:`size_divisor`.
            pixel_mask: ``(B, H, W)`` 1 on image pixels, 0 on padding (accepted for the image-processor
                contract; padding is handled in post-processing, which clips to the image).
            labels: per image ``{"class_labels": (M,), "boxes": (M, 4) xyxy input pixels}`` (transformers'
                detection format), or a padded ``(B, M, 5)`` tensor ``[class, x0, y0, x1, y1]`` with class -1 rows.
            image_sizes: ``(B, 2)`` un-padded ``(h, w)`` of each image (given by the collator; used by the metrics).
            return_dict: accepted for transformers compatibility; the output is always a :class:`DetectionOutput`.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise InputError(f"pixel_values must be (batch, 3, height, width), got {tuple(pixel_values.shape)}.")
        outputs = self.head(self.backbone(pixel_values).feature_maps)
        loss = loss_dict = None
        if labels is not None:
            parts = self.head.loss(outputs, self._targets(labels, pixel_values.shape[0]))
            loss = parts.pop("loss")
            loss_dict = {k: v.detach() for k, v in parts.items()}
        return DetectionOutput(
            loss=loss,
            logits=outputs["cls_logits"],
            box_regression=outputs["bbox_regression"],
            centerness=outputs["bbox_ctrness"],
            anchors=outputs["anchors"],
            loss_dict=loss_dict,
        )
