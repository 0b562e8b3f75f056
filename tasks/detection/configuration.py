"""``DetectionConfig``: the architecture of an object detector."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive

__all__ = ["DetectionConfig"]


def _default_backbone() -> dict:
    return {"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 2, 1], "dims": [32, 64, 128, 192]}


def _default_head() -> dict:
    return {"type": "fcos", "fpn_channels": 64, "num_convs": 2, "min_reduction": 8}


class DetectionConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForObjectDetection`.

    Attributes:
        backbone: pyramid backbone with ``spatial_dims=2`` and ``in_channels=3`` (``{"type": "convnext", ...}`` or
            ``"swin"``); a config file that omits them gets them from the task, and the model refuses any other layout.
        head: detection head (``{"type": "fcos", "num_convs": 2, ...}``); ``num_classes`` comes from ``id2label``.
        id2label / label2id: class names (transformers' own fields); ``num_labels`` classes, no background class.
        image_size: the image processor resizes the longer side to this many pixels.
        image_mean / image_std: per-channel normalisation of ``[0, 1]`` pixels.
        score_threshold: default score cut of the post-processing (the pipeline's ``threshold`` overrides it).
        nms_threshold: IoU above which class-wise NMS drops the lower-scored box.
        topk_candidates: locations kept per image before NMS.
        detections_per_image: detections kept per image after NMS.
    """

    model_type = "polyhead-detection"
    task = "detection"

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    image_size: int = 256
    image_mean: list = dataclasses.field(default_factory=lambda: [0.485, 0.456, 0.406])
    image_std: list = dataclasses.field(default_factory=lambda: [0.229, 0.224, 0.225])
    score_threshold: float = 0.05
    nms_threshold: float = 0.6
    topk_candidates: int = 1000
    detections_per_image: int = 100

    @classmethod
    def field_names(cls) -> list[str]:
        """The ``model`` section may also set transformers' ``id2label`` (the class names)."""
        return sorted(super().field_names() + ["id2label"])

    def __post_init__(self, **kwargs) -> None:
        for name in ("image_size", "topk_candidates", "detections_per_image"):
            check_positive(name, getattr(self, name))
        for name in ("score_threshold", "nms_threshold"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or any(s <= 0 for s in self.image_std):
            raise ConfigError(f"image_mean and image_std need 3 values (RGB), std > 0; got {self.image_mean}, {self.image_std}.")
        if self.backbone.get("spatial_dims", 2) != 2:
            raise ConfigError(f"Object detection works on 2-D images: backbone.spatial_dims must be 2, got {self.backbone['spatial_dims']}.")
        if self.backbone.get("in_channels", 3) != 3:
            raise ConfigError(f"The detection processor gives RGB images: backbone.in_channels must be 3, got {self.backbone['in_channels']}.")
        super().__post_init__(**kwargs)
        if not self.label2id or len(self.label2id) != len(self.id2label):
            self.label2id = {name: int(i) for i, name in self.id2label.items()}
