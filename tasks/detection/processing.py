"""``DetectionImageProcessor``: images -> ``pixel_values`` / ``pixel_mask``, and detections back.

Resize keeping the aspect ratio (longer side = ``image_size``), normalise, pad to a
batch (bottom / right, to a multiple of the network's coarsest stride) with a
``pixel_mask``; :meth:`DetectionImageProcessor.post_process_object_detection` turns the
network's raw outputs into scores, labels and boxes in the caller's pixels, as
transformers' ``object-detection`` pipeline expects. Both backends (PyTorch and ONNX
Runtime) share this post-processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from transformers import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from polyhead.errors import InputError
from polyhead.heads.detection import fcos_postprocess

__all__ = ["DetectionImageProcessor", "to_rgb_tensor", "MAX_PIXELS"]

#: Largest image accepted (pixels), like PIL's decompression-bomb guard.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


#: PIL modes of 16-bit grayscale images (16-bit PNG / TIFF); "I" (32-bit integer) is what PIL converts them to
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb_tensor(image: Any) -> torch.Tensor:
    """One image as a ``(3, H, W)`` uint8 tensor.

    Accepts a PIL image (any mode: grayscale and palette are expanded, RGBA is composited
    on white, 16-bit grayscale (``"I;16"``, and ``"I"`` holding 16-bit values) is scaled
    from ``[0, 65535]`` to ``[0, 255]``, ``"F"`` is read like a float array), a numpy array
    ``(H, W)``, ``(H, W, 1|3|4)`` (integers in ``[0, 255]``, or floats in ``[0, 1]``), or a
    torch tensor ``(C, H, W)`` with the same value ranges.

    Raises:
        InputError: the shape, dtype or value range is none of these (values are never clipped).
    """
    if isinstance(image, Image.Image) and image.mode in _DEEP_MODES:
        deep = np.asarray(image)
        if deep.size and (deep.min() < 0 or deep.max() > 65535):
            raise InputError(
                f"A 16-bit ({image.mode!r}) image must hold values in [0, 65535], got [{deep.min()}, {deep.max()}]."
            )
        image = np.round(deep.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255, exactly
    elif isinstance(image, Image.Image) and image.mode == "F":
        image = np.asarray(image)
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
            raise InputError(f"A tensor image must be (C, H, W) with C in 1, 3, 4; got shape {tuple(image.shape)}.")
        array = image.detach().cpu().permute(1, 2, 0).numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise InputError(
            f"Expected an image as a PIL image, numpy array (H, W[, C]) or torch tensor (C, H, W), got {type(image).__name__}."
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"An image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}.")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"The image is empty (shape {array.shape}).")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise InputError(f"The image has {array.shape[0] * array.shape[1]} pixels, more than the {MAX_PIXELS} accepted.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError("The image contains NaN or infinite values.")
        if array.min() < 0.0 or array.max() > 1.0:
            raise InputError(
                f"Float images must hold values in [0, 1], got [{array.min():.4g}, {array.max():.4g}]; "
                "rescale them (e.g. divide 0..255 values by 255) or pass uint8."
            )
        array = (array.astype(np.float64) * 255).round().astype(np.uint8)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise InputError(
                f"Integer images must hold 8-bit values in [0, 255], got [{array.min()}, {array.max()}]; "
                "scale 16-bit data to 8 bits first (e.g. round(x / 257)), or pass the 16-bit PIL image."
            )
        array = array.astype(np.uint8)
    else:
        raise InputError(f"Image values must be numbers, got dtype {array.dtype}.")
    if array.shape[2] == 4:  # composite RGBA on white
        alpha = array[:, :, 3:].astype(np.float32) / 255
        array = (array[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


class DetectionImageProcessor(BaseImageProcessor):
    """Resize (aspect kept), normalise and pad images for :class:`PolyheadForObjectDetection`.

    Args:
        image_size: the longer side after resizing.
        image_mean / image_std: per-channel normalisation of ``[0, 1]`` pixels.
        size_divisor: padded sizes are multiples of it (the network's coarsest stride).
        score_threshold / nms_threshold / topk_candidates / detections_per_image: post-processing defaults.
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(
        self,
        image_size: int = 256,
        image_mean: Sequence[float] = (0.485, 0.456, 0.406),
        image_std: Sequence[float] = (0.229, 0.224, 0.225),
        size_divisor: int = 32,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.6,
        topk_candidates: int = 1000,
        detections_per_image: int = 100,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.size_divisor = int(size_divisor)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.topk_candidates = int(topk_candidates)
        self.detections_per_image = int(detections_per_image)

    @classmethod
    def from_config(cls, config: Any, size_divisor: int) -> "DetectionImageProcessor":
        """Build from a :class:`DetectionConfig` and the model's ``size_divisor``, so they always agree."""
        return cls(
            image_size=config.image_size, image_mean=config.image_mean, image_std=config.image_std, size_divisor=size_divisor,
            score_threshold=config.score_threshold, nms_threshold=config.nms_threshold,
            topk_candidates=config.topk_candidates, detections_per_image=config.detections_per_image,
        )

    # -- geometry ----------------------------------------------------------------------
    def resized_size(self, height: int, width: int, image_size: int | None = None) -> tuple[int, int]:
        """``(h, w)`` after resizing the longer side to ``image_size`` (aspect kept, each side >= 1)."""
        scale = (image_size or self.image_size) / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        d = self.size_divisor
        return -(-height // d) * d, -(-width // d) * d

    def resize(self, image: torch.Tensor, image_size: int | None = None) -> torch.Tensor:  # type: ignore[override]
        """``(3, H, W)`` uint8 -> resized uint8 (antialiased bilinear)."""
        return TF.resize(image, list(self.resized_size(*image.shape[-2:], image_size)), antialias=True)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(3, H, W)`` uint8 -> float32 normalised."""
        return TF.normalize(image.float() / 255.0, self.image_mean, self.image_std)

    def pad(self, images: Sequence[torch.Tensor], pad_size: tuple[int, int] | None = None) -> BatchFeature:  # type: ignore[override]
        """Pad normalised ``(3, h, w)`` images bottom/right to one size -> ``pixel_values``, ``pixel_mask``."""
        if pad_size is None:
            pad_size = self.padded_size(max(i.shape[1] for i in images), max(i.shape[2] for i in images))
        height, width = pad_size
        pixel_values = torch.zeros(len(images), 3, height, width)
        pixel_mask = torch.zeros(len(images), height, width, dtype=torch.long)
        for i, image in enumerate(images):
            h, w = image.shape[1:]
            if h > height or w > width:
                raise InputError(f"Image {i} ({h}x{w}) is larger than the pad size {height}x{width}.")
            pixel_values[i, :, :h, :w] = image
            pixel_mask[i, :h, :w] = 1
        return BatchFeature({"pixel_values": pixel_values, "pixel_mask": pixel_mask})

    # -- calls -------------------------------------------------------------------------
    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:  # type: ignore[override]
        """One image or a list -> ``{"pixel_values": (B, 3, H, W), "pixel_mask": (B, H, W)}``."""
        if kwargs:
            raise InputError(f"Unknown argument(s) {sorted(kwargs)} for DetectionImageProcessor.")
        if isinstance(images, (list, tuple)):
            images = list(images)
        elif isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:  # a batch
            images = list(images)
        else:
            images = [images]
        if not images:
            raise InputError("Got an empty list of images.")
        batch = self.pad([self.normalize(self.resize(to_rgb_tensor(image))) for image in images])
        return batch if return_tensors == "pt" else BatchFeature({k: v.numpy() for k, v in batch.items()})

    def __call__(self, images: Any = None, *args: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, *args, **kwargs)

    def post_process_object_detection(
        self,
        outputs: Any,
        threshold: float | None = None,
        target_sizes: torch.Tensor | Sequence[Sequence[int]] | None = None,
        image_sizes: Sequence[Sequence[int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Scores, labels and boxes per image.

        Args:
            outputs: the model's output (``logits``, ``box_regression``, ``centerness``, ``anchors``).
            threshold: keep detections scoring above it (default: the processor's ``score_threshold``).
            target_sizes: ``(B, 2)`` original ``(height, width)`` per image: boxes are returned in
                those pixels (the resize is undone and boxes are clipped to the image). ``None``:
                boxes stay in the network's input pixels, clipped to ``image_sizes`` if given.
            image_sizes: ``(h, w)`` of the un-padded resized images, when ``target_sizes`` is ``None``.

        Returns:
            one ``{"scores": (D,), "labels": (D,), "boxes": (D, 4) xyxy}`` per image.
        """
        threshold = self.score_threshold if threshold is None else float(threshold)
        logits = outputs["logits"]
        if target_sizes is not None:
            target_sizes = [tuple(int(v) for v in size) for size in (target_sizes.tolist() if isinstance(target_sizes, torch.Tensor) else target_sizes)]
            if len(target_sizes) != logits.shape[0]:
                raise InputError(f"Got {len(target_sizes)} target sizes for {logits.shape[0]} images.")
            image_sizes = [self.resized_size(h, w) for h, w in target_sizes]
        results = fcos_postprocess(
            logits, outputs["box_regression"], outputs["centerness"], outputs["anchors"],
            score_threshold=threshold, nms_threshold=self.nms_threshold, topk_candidates=self.topk_candidates,
            detections_per_image=self.detections_per_image, image_sizes=image_sizes,
        )
        if target_sizes is not None:
            for result, (height, width), (h, w) in zip(results, target_sizes, image_sizes):
                scale = torch.tensor([width / w, height / h, width / w, height / h], dtype=result["boxes"].dtype)
                result["boxes"] = result["boxes"] * scale
        return results
