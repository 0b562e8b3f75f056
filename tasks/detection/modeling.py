"""``PolyheadForObjectDetection``: a 2-D pyramid backbone + :class:`DetectionAdapter` (FPN + FCOS head).

The network is tensors in, tensors out (``logits``, ``box_regression``, ``centerness``,
``anchors`` per location); decoding, thresholds and NMS are the image processor's
``post_process_object_detection``, shared by the pipeline, the metrics and the ONNX backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.errors import ConfigError, InputError
from polyhead.heads.detection import FCOSDetectionHead
from polyhead.modeling import PolyheadModel
from polyhead.registry import HEADS, describe_backbone, get

from .configuration import DetectionConfig

__all__ = ["DetectionAdapter", "DetectionOutput", "PolyheadForObjectDetection", "input_size_divisor", "labels_from_padded"]


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
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    box_regression: torch.Tensor | None = None
    centerness: torch.Tensor | None = None
    anchors: torch.Tensor | None = None
    loss_dict: dict | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def labels_from_padded(labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """``(B, M, 5)`` rows ``[class, x0, y0, x1, y1]`` padded with class ``-1`` -> one target dict per image."""
    return [{"class_labels": row[row[:, 0] >= 0, 0].long(), "boxes": row[row[:, 0] >= 0, 1:]} for row in labels]


def input_size_divisor(config: DetectionConfig) -> int:
    """Image sizes must be multiples of this: the coarsest stride of backbone and head, known from the config alone."""
    spec = describe_backbone(config.backbone)
    coarsest = max(f["reduction"] for f in spec.feature_info)
    return max(spec.size_divisor, coarsest * (2 if config.head.get("extra_level") else 1))


class DetectionAdapter(TaskAdapter):
    """Anchor-free detection (FCOS: Tian et al., ICCV 2019) on a 2-D pyramid backbone with RGB input.

    The head (:class:`~polyhead.heads.detection.FCOSDetectionHead`) is an FPN over the backbone
    maps with stride >= ``head.min_reduction`` and torchvision's FCOS towers; its loss is
    torchvision's (focal + GIoU + centerness, centre sampling). Needs a pyramid backbone with
    ``spatial_dims=2`` and ``in_channels=3``.
    """

    accepted_kinds = frozenset({"pyramid"})
    output_class = DetectionOutput
    label_names = ("labels",)
    head_base = FCOSDetectionHead

    def __init__(self, config: DetectionConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if not issubclass(get(HEADS, config.head.get("type")), FCOSDetectionHead):
            raise ConfigError(f"Object detection needs a detection head such as 'fcos', got {config.head['type']!r}.")
        self.num_labels = int(config.num_labels)
        self.head = self.build_head(config, backbone, num_classes=config.num_labels)

    @classmethod
    def check_backbone(cls, config: DetectionConfig, backbone: BackboneSpec) -> None:
        super().check_backbone(config, backbone)
        if backbone.spatial_dims != 2 or backbone.in_channels != 3:
            raise ConfigError(
                f"{cls.__name__} needs a 2-D pyramid backbone with 3 input channels (RGB images: spatial_dims=2, in_channels=3); "
                f"the {config.backbone.get('type', '?')!r} backbone has spatial_dims={backbone.spatial_dims}, in_channels={backbone.in_channels}."
            )

    def embed(self, pixel_values: torch.Tensor) -> Embedded:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise InputError(f"pixel_values must be (batch, 3, height, width), got {tuple(pixel_values.shape)}.")
        return Embedded(x=pixel_values)

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        return self.head(features)  # cls_logits, bbox_regression, bbox_ctrness, anchors

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
            if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= self.num_labels):
                raise InputError(f"labels[{i}] has class ids outside [0, {self.num_labels}).")
            if boxes.shape[0] != classes.numel():
                raise InputError(f"labels[{i}] has {boxes.shape[0]} boxes but {classes.numel()} class labels.")
            targets.append({"boxes": boxes, "labels": classes})
        return targets

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: Any) -> dict[str, torch.Tensor]:
        """FCOS loss: ``{"loss", "classification", "bbox_regression", "bbox_ctrness"}``."""
        return self.head.loss(predictions, self._targets(labels, embedded.x.shape[0]))

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> DetectionOutput:
        return DetectionOutput(
            loss=None if losses is None else losses["loss"],
            logits=predictions["cls_logits"],
            box_regression=predictions["bbox_regression"],
            centerness=predictions["bbox_ctrness"],
            anchors=predictions["anchors"],
            loss_dict=None if losses is None else {k: v.detach() for k, v in losses.items() if k != "loss"},
        )


class PolyheadForObjectDetection(PolyheadModel):
    """Anchor-free object detector (FCOS) on a shared pyramid backbone.

    Example:
        >>> config = DetectionConfig(id2label={0: "face", 1: "bag"})
        >>> model = PolyheadForObjectDetection(config)
        >>> out = model(pixel_values=torch.randn(2, 3, 256, 256))
        >>> out.logits.shape  # (2, 32*32 + 16*16 + 8*8, 2)
        torch.Size([2, 1344, 2])
    """

    config_class = DetectionConfig
    adapter_class = DetectionAdapter
    main_input_name = "pixel_values"
    input_modalities = "image"

    @property
    def size_divisor(self) -> int:
        """Input sizes must be multiples of this (the coarsest stride of backbone and head)."""
        return max(self.backbone.size_divisor, self.adapter.head.size_divisor)

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        labels: Any = None,
        image_sizes: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> DetectionOutput | tuple:
        """Detect objects.

        Args:
            pixel_values: ``(B, 3, H, W)`` normalised images, ``H`` and ``W`` multiples of :attr:`size_divisor`.
            pixel_mask: ``(B, H, W)`` 1 on image pixels, 0 on padding (accepted for the image-processor
                contract; padding is handled in post-processing, which clips to the image).
            labels: per image ``{"class_labels": (M,), "boxes": (M, 4) xyxy input pixels}`` (transformers'
                detection format), or a padded ``(B, M, 5)`` tensor ``[class, x0, y0, x1, y1]`` with class -1 rows.
            image_sizes: ``(B, 2)`` un-padded ``(h, w)`` of each image (given by the collator; used by the metrics).
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"pixel_values": pixel_values}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
