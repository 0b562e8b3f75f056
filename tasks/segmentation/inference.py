"""Whole volumes through the patch network: the one home of segmentation's sliding window.

The network (and its ONNX graph) only ever sees patches of ``config.patch_size``. Validation
during training, the test split, ``polyhead evaluate`` (PyTorch or ONNX Runtime) and the
segmentation pipeline all run a model on whole volumes through :class:`SegmentationInferer`:
MONAI's ``SlidingWindowInferer`` with the config's overlap, blending and window batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel
from monai.inferers import SlidingWindowInferer

from polyhead.adapters import Embedded
from polyhead.errors import InputError

from .configuration import SegmentationConfig
from .modeling import PolyheadForSegmentation, SegmentationOutput

__all__ = ["SegmentationInferer", "keep_largest_component"]


def keep_largest_component(logits: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, K, *S)`` whose argmax foreground outside the largest 6-connected foreground region is background.

    Those voxels get a background logit just above their largest logit, so argmax and softmax agree;
    every other voxel keeps its logits. Background is label 0.
    """
    from scipy import ndimage

    out = logits.clone()
    for b in range(logits.shape[0]):
        foreground = (logits[b].argmax(0) > 0).cpu().numpy()
        regions, count = ndimage.label(foreground)
        if count <= 1:
            continue
        sizes = np.bincount(regions.ravel())
        sizes[0] = 0
        stray = torch.from_numpy((regions != int(sizes.argmax())) & foreground).to(logits.device)
        top = logits[b].max(0).values
        out[b, 0] = torch.where(stray, top + 1.0, logits[b, 0])
    return out


class SegmentationInferer:
    """Logits of whole volumes stitched from a patch network's (MONAI ``SlidingWindowInferer``).

    Volumes smaller than a patch are padded with zeros; windows overlap by ``overlap`` and are
    blended with ``config.sw_blend_mode`` weights. With ``config.keep_largest_component``, foreground
    voxels outside the largest connected foreground region get background logits (:func:`keep_largest_component`).

    Args:
        config: the model's config: ``patch_size`` is the window; ``sw_overlap``, ``sw_blend_mode``
            and ``sw_batch_size`` (windows per network call) the settings.
        overlap: overrides ``config.sw_overlap``.
        sw_batch_size: overrides ``config.sw_batch_size``.

    ``inferer(model, batch)`` runs ``model`` (a :class:`PolyheadForSegmentation`, or an ONNX
    Runtime model with its call signature) on ``batch["pixel_values"]: (B, C, D, H, W)`` and returns a
    :class:`SegmentationOutput` with logits ``(B, K, D, H, W)``; when ``batch`` holds ``labels``
    and the model is a PyTorch one, ``loss`` is the model's own Dice + CE on the stitched logits
    (an ONNX Runtime model gives none).

    Example:
        >>> inferer = SegmentationInferer(model.config)
        >>> inferer(model, {"pixel_values": torch.rand(1, 1, 40, 45, 33)}).logits.shape
        torch.Size([1, 3, 40, 45, 33])
    """

    def __init__(self, config: SegmentationConfig, *, overlap: float | None = None, sw_batch_size: int | None = None) -> None:
        self.in_channels = int(config.in_channels)
        self.largest_component = bool(config.keep_largest_component)
        self.window = SlidingWindowInferer(
            roi_size=tuple(config.patch_size),
            sw_batch_size=sw_batch_size or config.sw_batch_size,
            overlap=config.sw_overlap if overlap is None else overlap,
            mode=config.sw_blend_mode,
            padding_mode="constant",
            cval=0.0,
        )

    def logits(self, model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, K, *S)`` logits of volumes ``(B, C, *S)`` of any size."""
        if pixel_values.dim() != 5 or pixel_values.shape[1] != self.in_channels:
            raise InputError(f"pixel_values must be volumes (B, {self.in_channels}, D, H, W), got shape {tuple(pixel_values.shape)}.")
        logits = self.window(pixel_values, lambda patches: model(pixel_values=patches).logits)
        return keep_largest_component(logits) if self.largest_component else logits

    def __call__(self, model: Any, batch: Mapping[str, Any]) -> SegmentationOutput:
        pixel_values = batch["pixel_values"]
        logits = self.logits(model, pixel_values)
        labels = batch.get("labels")
        network = extract_model_from_parallel(model, keep_torch_compile=False)
        loss = None
        if labels is not None and isinstance(network, PolyheadForSegmentation):
            loss = network.adapter.loss({"logits": logits}, Embedded(x=pixel_values), labels=labels)["loss"]
        return SegmentationOutput(loss=loss, logits=logits)
