"""``SegmentationProcessor``: volumes in any grid -> the network's grid, and predictions back.

Loads what users hold (a NIfTI path, a nibabel image, a numpy volume, a MONAI
``MetaTensor``), checks it, and applies MONAI transforms: orientation to RAS,
resampling to ``target_spacing``, intensity scaling, foreground crop. The same
chain (saved with the model as ``preprocessor_config.json``) runs in training,
evaluation and the pipeline, and MONAI's ``Invertd`` maps predictions back to
the input's own grid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureTyped,
    Invertd,
    NormalizeIntensityd,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)
from transformers import FeatureExtractionMixin

from polyhead.errors import InputError
from polyhead.processing import SavesSettingsOnly

from .configuration import SegmentationConfig

__all__ = ["SegmentationProcessor", "NIFTI_SUFFIXES", "load_volume"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VolumeInput = str | os.PathLike | nib.Nifti1Image | np.ndarray | torch.Tensor


def _from_nibabel(image: nib.spatialimages.SpatialImage, source: str) -> MetaTensor:
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4:  # NIfTI stores channels (modalities) last
        data = np.moveaxis(data, -1, 0)
    elif data.ndim == 3:
        data = data[None]
    else:
        raise InputError(f"{source} holds a {data.ndim}-D image; a 3D volume (or 4D with channels last) was expected.")
    return MetaTensor(torch.as_tensor(np.asarray(data, dtype=np.float32)), affine=torch.as_tensor(image.affine, dtype=torch.float64), meta={"filename_or_obj": source})


def load_volume(volume: VolumeInput, *, affine: np.ndarray | None = None) -> MetaTensor:
    """Any accepted volume -> ``MetaTensor (C, D, H, W)`` float32 with its voxel-to-world affine.

    A numpy array or tensor has no grid of its own: it is taken as RAS with 1 mm voxels
    unless ``affine`` (4x4) is given; a 3D array is one channel, a 4D one is channels first.
    """
    if isinstance(volume, (str, os.PathLike)):
        path = Path(volume)
        if not path.name.endswith(NIFTI_SUFFIXES):
            raise InputError(f"{path} is not a NIfTI file: expected a name ending in .nii or .nii.gz.")
        if not path.is_file():
            raise InputError(f"{path} does not exist.")
        try:
            image = nib.load(path)
            return _from_nibabel(image, str(path))
        except InputError:
            raise
        except Exception as exc:  # nibabel raises many types for truncated or foreign files
            raise InputError(f"{path} could not be read as NIfTI: {exc}") from exc
    if isinstance(volume, nib.spatialimages.SpatialImage):
        return _from_nibabel(volume, "nibabel image")
    if isinstance(volume, MetaTensor):
        tensor = volume if volume.dim() == 4 else volume[None] if volume.dim() == 3 else None
        if tensor is None:
            raise InputError(f"A MetaTensor volume must be (D, H, W) or (C, D, H, W), got shape {tuple(volume.shape)}.")
        return MetaTensor(tensor.as_tensor().float(), affine=tensor.affine.clone(), meta={"filename_or_obj": "MetaTensor"})
    if isinstance(volume, (np.ndarray, torch.Tensor)):
        array = torch.as_tensor(np.asarray(volume) if isinstance(volume, np.ndarray) else volume.detach().cpu())
        if array.dim() == 3:
            array = array[None]
        if array.dim() != 4:
            raise InputError(
                f"A volume must be 3D (D, H, W) or 4D channels-first (C, D, H, W); got shape {tuple(array.shape)} "
                "(a 2D image cannot go through a 3D model)."
            )
        if not (array.is_floating_point() or array.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
            raise InputError(f"A volume must hold numbers, got dtype {array.dtype}.")
        matrix = torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(np.asarray(affine), dtype=torch.float64)
        if matrix.shape != (4, 4):
            raise InputError(f"affine must be a 4x4 matrix, got shape {tuple(matrix.shape)}.")
        return MetaTensor(array.float(), affine=matrix, meta={"filename_or_obj": "array"})
    raise InputError(
        f"Cannot segment a {type(volume).__name__}: pass a NIfTI path, a nibabel image, a numpy volume or a MONAI MetaTensor."
    )


class SegmentationProcessor(SavesSettingsOnly, FeatureExtractionMixin):
    """The preprocessing of one segmentation model (saved as ``preprocessor_config.json``).

    Args:
        in_channels: image channels the model takes.
        target_spacing: voxel size in mm (after orientation to RAS).
        intensity: see :class:`SegmentationConfig`.
        crop_foreground / foreground_margin: crop to the non-zero box before the network.
        patch_size: training patch and sliding-window tile, ``(D, H, W)``.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        *,
        in_channels: int = 1,
        target_spacing: Sequence[float] = (2.0, 2.0, 2.0),
        intensity: dict | None = None,
        crop_foreground: bool = True,
        foreground_margin: int = 4,
        patch_size: Sequence[int] = (32, 32, 32),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.target_spacing = [float(v) for v in target_spacing]
        self.intensity = dict(intensity or {"mode": "percentiles", "lower": 0.5, "upper": 99.5})
        self.crop_foreground = bool(crop_foreground)
        self.foreground_margin = int(foreground_margin)
        self.patch_size = [int(v) for v in patch_size]

    @classmethod
    def from_config(cls, config: SegmentationConfig) -> "SegmentationProcessor":
        return cls(
            in_channels=config.in_channels,
            target_spacing=config.target_spacing,
            intensity=config.intensity,
            crop_foreground=config.crop_foreground,
            foreground_margin=config.foreground_margin,
            patch_size=config.patch_size,
        )

    # -- inputs ---------------------------------------------------------------------------
    def load(self, volume: VolumeInput, *, affine: np.ndarray | None = None) -> MetaTensor:
        """Load and check one volume: ``(in_channels, D, H, W)``, finite values, at least one voxel."""
        image = load_volume(volume, affine=affine)
        if image.shape[0] != self.in_channels:
            raise InputError(
                f"The model takes {self.in_channels} channel(s) (modalities), got a volume with {image.shape[0]} "
                f"(shape {tuple(image.shape)}; channels first for arrays, last for NIfTI)."
            )
        if min(image.shape[1:]) < 1:
            raise InputError(f"The volume is empty: shape {tuple(image.shape)}.")
        if not torch.isfinite(image.as_tensor()).all():
            raise InputError("The volume contains NaN or infinite values; fill or mask them before segmenting.")
        return image

    # -- MONAI transform chains -------------------------------------------------------------
    def _intensity(self, keys: list[str]):
        mode = self.intensity["mode"]
        if mode == "percentiles":
            return ScaleIntensityRangePercentilesd(
                keys, lower=self.intensity.get("lower", 0.5), upper=self.intensity.get("upper", 99.5), b_min=0.0, b_max=1.0, clip=True, channel_wise=True
            )
        if mode == "range":
            return ScaleIntensityRanged(keys, a_min=self.intensity["a_min"], a_max=self.intensity["a_max"], b_min=0.0, b_max=1.0, clip=True)
        return NormalizeIntensityd(keys, nonzero=True, channel_wise=True)

    def deterministic_transforms(self, *, with_label: bool) -> Compose:
        """Orientation -> spacing -> intensity -> foreground crop, on ``{"image"[, "label"]}`` (invertible)."""
        keys = ["image", "label"] if with_label else ["image"]
        modes = ["bilinear", "nearest"] if with_label else ["bilinear"]
        chain = [
            Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacingd(keys, pixdim=self.target_spacing, mode=modes),
            self._intensity(["image"]),
        ]
        if self.crop_foreground:
            chain.append(CropForegroundd(keys, source_key="image", margin=self.foreground_margin, allow_smaller=True))
        chain.append(EnsureTyped(keys, dtype=torch.float32, track_meta=True))
        return Compose(chain)

    def training_transforms(self, *, positive_fraction: float = 0.67) -> Compose:
        """Random patch (pad first if the volume is smaller) and augmentation, on a preprocessed pair."""
        keys = ["image", "label"]
        pos = positive_fraction
        return Compose(
            [
                SpatialPadd(keys, spatial_size=self.patch_size),
                RandCropByPosNegLabeld(keys, label_key="label", spatial_size=self.patch_size, pos=pos, neg=1.0 - pos, num_samples=1, image_key="image"),
                RandFlipd(keys, prob=0.5, spatial_axis=0),
                RandScaleIntensityd("image", factors=0.1, prob=0.5),
                RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            ]
        )

    @property
    def _inference_chain(self) -> Compose:
        # MONAI inverts with the very transform objects that ran forward: build them once
        if getattr(self, "_chain", None) is None:
            self._chain = self.deterministic_transforms(with_label=False)
        return self._chain

    def preprocess(self, image: MetaTensor) -> dict[str, MetaTensor]:
        """A loaded volume -> ``{"image": (C, D', H', W')}`` in the network's grid, with its inverse recorded."""
        return self._inference_chain({"image": image})

    def invert(self, probabilities: torch.Tensor, data: dict[str, MetaTensor]) -> torch.Tensor:
        """Class probabilities ``(K, D', H', W')`` in the network's grid -> ``(K, D, H, W)`` in the input's grid."""
        pred = MetaTensor(probabilities, affine=data["image"].affine.clone())
        inverted = Invertd(keys="pred", transform=self._inference_chain, orig_keys="image", nearest_interp=False)(
            {**data, "pred": pred}
        )
        return torch.as_tensor(inverted["pred"])

    def __call__(self, volume: VolumeInput, *, affine: np.ndarray | None = None) -> dict[str, Any]:
        """Load, check and preprocess one volume; the result carries what :meth:`invert` needs."""
        image = self.load(volume, affine=affine)
        return {"original": image, **self.preprocess(image)}
