"""``SegmentationConfig``: the architecture and the voxel grid of a 3D segmentation model."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError, UnknownNameError
from polyhead.registry import BACKBONES, get
from polyhead.validation import check_positive

__all__ = ["SegmentationConfig", "BLEND_MODES", "INTENSITY_MODES"]

BLEND_MODES = ("gaussian", "constant")
INTENSITY_MODES = ("percentiles", "range", "zscore")


def _is_pyramid(backbone_type: object) -> bool:
    """Whether ``backbone_type`` names a pyramid backbone (an unknown name fails later, with the known ones)."""
    try:
        return get(BACKBONES, backbone_type).kind == "pyramid"
    except UnknownNameError:
        return True


def _default_backbone() -> dict:
    return {"type": "swin", "spatial_dims": 3, "in_channels": 1, "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 6], "window_size": 4}


def _default_head() -> dict:
    return {"type": "unetr_decoder", "feature_size": 12, "identity_skip_levels": [5]}


def _default_intensity() -> dict:
    return {"mode": "percentiles", "lower": 0.5, "upper": 99.5}


class SegmentationConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForSegmentation`.

    Attributes:
        backbone: a pyramid backbone, ``{"type": "swin" | "convnext", "spatial_dims": 3, ...}``;
            ``spatial_dims`` (3) and ``in_channels`` are filled in when omitted.
        head: ``{"type": "unetr_decoder", "feature_size": ...}``.
        labels: label names, index = label value; ``labels[0]`` is the background.
        in_channels: image channels (modalities), ``C``.
        patch_size: ``(D, H, W)`` voxels the network sees at once (training patches and
            sliding-window tiles); multiples of the backbone's coarsest stride.
        target_spacing: voxel size in mm the images are resampled to before the network.
        intensity: intensity scaling, ``{"mode": "percentiles", "lower": 0.5, "upper": 99.5}``
            (robust min-max to [0, 1]), ``{"mode": "range", "a_min": -175, "a_max": 250}``
            (fixed window, CT) or ``{"mode": "zscore"}`` (over non-zero voxels).
        crop_foreground: crop to the non-zero bounding box (plus ``foreground_margin``
            voxels) before the network; the prediction is padded back.
        sw_overlap / sw_blend_mode / sw_batch_size: sliding-window settings of the task's inferer
            (:class:`~polyhead.tasks.segmentation.inference.SegmentationInferer`).
        keep_largest_component: post-processing of the task's inferer: voxels of any foreground label
            outside the largest connected foreground region (6-connected) become background, for
            structures that are one piece (a brain). Off by default.
    """

    model_type = "polyhead-segmentation"
    task = "segmentation"
    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    labels: list = dataclasses.field(default_factory=lambda: ["background", "grey_matter", "white_matter"])
    in_channels: int = 1
    patch_size: list = dataclasses.field(default_factory=lambda: [32, 32, 32])
    target_spacing: list = dataclasses.field(default_factory=lambda: [2.0, 2.0, 2.0])
    intensity: dict = dataclasses.field(default_factory=_default_intensity)
    crop_foreground: bool = True
    foreground_margin: int = 4
    sw_overlap: float = 0.5
    sw_blend_mode: str = "gaussian"
    sw_batch_size: int = 4
    keep_largest_component: bool = False

    def __post_init__(self, **kwargs) -> None:
        # transformers' id2label / num_labels, when given, say what the labels are (id2label wins, as in transformers)
        if self.id2label is not None:
            self.labels = [str(self.id2label[k]) for k in sorted(self.id2label, key=int)]  # int keys, or str from JSON
        elif kwargs.get("num_labels") is not None:
            self.labels = [f"LABEL_{i}" for i in range(int(kwargs["num_labels"]))]
        self.labels = [str(name) for name in self.labels]
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must name distinct classes (background first), got {self.labels}.")
        check_positive("in_channels", self.in_channels)
        check_positive("sw_batch_size", self.sw_batch_size)
        if not isinstance(self.foreground_margin, int) or self.foreground_margin < 0:
            raise ConfigError(f"foreground_margin must be a non-negative integer, got {self.foreground_margin!r}.")
        self.patch_size = [int(v) for v in self.patch_size] if isinstance(self.patch_size, (list, tuple)) else self.patch_size
        if not isinstance(self.patch_size, list) or len(self.patch_size) != 3 or min(self.patch_size) <= 0:
            raise ConfigError(f"patch_size must be three positive voxel counts (D, H, W), got {self.patch_size!r}.")
        if not isinstance(self.target_spacing, (list, tuple)) or len(self.target_spacing) != 3 or min(float(v) for v in self.target_spacing) <= 0:
            raise ConfigError(f"target_spacing must be three positive sizes in mm, got {self.target_spacing!r}.")
        self.target_spacing = [float(v) for v in self.target_spacing]
        if not 0.0 <= float(self.sw_overlap) < 1.0:
            raise ConfigError(f"sw_overlap must be in [0, 1), got {self.sw_overlap!r}.")
        if not isinstance(self.keep_largest_component, bool):
            raise ConfigError(f"keep_largest_component must be True or False, got {self.keep_largest_component!r}.")
        if self.sw_blend_mode not in BLEND_MODES:
            raise ConfigError(f"sw_blend_mode must be one of {', '.join(BLEND_MODES)}, got {self.sw_blend_mode!r}.")
        self.intensity = dict(self.intensity)
        mode = self.intensity.get("mode")
        if mode not in INTENSITY_MODES:
            raise ConfigError(f"intensity.mode must be one of {', '.join(INTENSITY_MODES)}, got {mode!r}.")
        if mode == "range" and not {"a_min", "a_max"} <= set(self.intensity):
            raise ConfigError("intensity mode 'range' needs a_min and a_max (the intensity window, e.g. HU for CT).")
        self.backbone = dict(self.backbone)
        if self.backbone.get("spatial_dims", 3) != 3:
            raise ConfigError(f"The segmentation task is 3D: backbone.spatial_dims must be 3, got {self.backbone['spatial_dims']!r}.")
        if _is_pyramid(self.backbone.get("type")):  # the volumes' layout; the adapter refuses (and names) any other kind
            self.backbone.setdefault("spatial_dims", 3)
            self.backbone.setdefault("in_channels", self.in_channels)
        if self.backbone.get("in_channels", self.in_channels) != self.in_channels:
            raise ConfigError(f"backbone.in_channels ({self.backbone['in_channels']}) differs from in_channels ({self.in_channels}).")
        kwargs.pop("num_labels", None)  # now in labels
        label2id = self.label2id
        self.id2label = dict(enumerate(self.labels))
        super().__post_init__(**kwargs)
        self.label2id = label2id if label2id and len(label2id) == len(self.labels) else {name: i for i, name in enumerate(self.labels)}
