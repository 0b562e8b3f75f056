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
import warnings
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

__all__ = ["SegmentationProcessor", "AssumedGridWarning", "NIFTI_SUFFIXES", "MAX_EXACT_INTEGER", "check_affine", "load_volume"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VolumeInput = str | os.PathLike | nib.Nifti1Image | np.ndarray | torch.Tensor


class AssumedGridWarning(UserWarning):
    """A volume without a voxel-to-world affine (a numpy array or tensor without ``affine=``) was given one."""


#: integers beyond this magnitude are not exactly representable as float32 (the model's input type)
MAX_EXACT_INTEGER = 2**24


def _memory_bytes() -> int | None:
    """This machine's physical memory, where the OS says (``None`` elsewhere)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _too_large(source: str, shape: Sequence[int], *, ran_out: bool = False) -> InputError:
    voxels = int(np.prod([int(v) for v in shape], dtype=np.float64))
    gigabytes = voxels * 4 / 1e9
    memory = _memory_bytes()
    where = f"this machine's {memory / 1e9:.1f} GB of memory" if memory else "memory"
    how = "ran out of memory while loading it" if ran_out else f"too large for {where}"
    return InputError(
        f"{source} holds a {'x'.join(str(int(v)) for v in shape)} volume ({voxels:,} voxels, {gigabytes:.1f} GB as float32): "
        f"{how}. Crop or downsample it first."
    )


def check_affine(affine: Any, source: str = "the volume") -> torch.Tensor:
    """A voxel-to-world matrix as a float64 ``(4, 4)`` tensor: finite, with an invertible 3x3 part.

    Raises:
        InputError: it is not a 4x4 matrix of numbers, holds NaN / infinity, or is singular.
    """
    try:
        matrix = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"affine must be a 4x4 matrix of numbers (voxel to world, mm), got {affine!r:.80}.") from None
    if matrix.shape != (4, 4):
        raise InputError(f"affine must be a 4x4 matrix, got shape {matrix.shape}.")
    if not np.isfinite(matrix).all():
        raise InputError(f"The affine of {source} holds NaN or infinite values: {matrix.tolist()}.")
    if np.linalg.matrix_rank(matrix[:3, :3]) < 3:
        raise InputError(
            f"The affine of {source} is singular (its 3x3 part {matrix[:3, :3].tolist()} has no inverse): "
            "a voxel grid needs a non-zero size along each axis."
        )
    return torch.as_tensor(matrix)


def _to_float32(array: np.ndarray, source: str) -> torch.Tensor:
    """A real-valued array -> float32 tensor, integers exactly (beyond 2**24 they are refused, never rounded)."""
    if array.dtype.kind not in "iuf":
        raise InputError(
            f"A volume must hold real numbers (integers or floats), got dtype {array.dtype} ({source})"
            + ("; pass masks as uint8." if array.dtype.kind == "b" else ".")
        )
    if array.dtype.kind in "iu" and array.size and (int(array.max()) > MAX_EXACT_INTEGER or int(array.min()) < -MAX_EXACT_INTEGER):
        raise InputError(
            f"{source} holds integers up to {int(np.abs(array).max())}; beyond 2**24 ({MAX_EXACT_INTEGER}) they are not "
            "exactly representable as float32, the model's input type. Rescale the volume (e.g. to float) first."
        )
    try:
        return torch.from_numpy(np.asarray(array, dtype=np.float32))
    except MemoryError:
        raise _too_large(source, array.shape, ran_out=True) from None


def _from_nibabel(image: nib.spatialimages.SpatialImage, source: str) -> MetaTensor:
    shape = tuple(int(v) for v in image.shape)
    memory = _memory_bytes()
    if memory and np.prod(shape, dtype=np.float64) * 4 > memory:  # the header promises more than memory holds
        raise _too_large(source, shape)
    try:
        data = np.asanyarray(image.dataobj)
    except MemoryError:
        raise _too_large(source, shape, ran_out=True) from None
    if data.ndim == 4:  # NIfTI stores channels (modalities) last
        data = np.moveaxis(data, -1, 0)
    elif data.ndim == 3:
        data = data[None]
    else:
        raise InputError(f"{source} holds a {data.ndim}-D image; a 3D volume (or 4D with channels last) was expected.")
    return MetaTensor(_to_float32(data, source), affine=check_affine(image.affine, source), meta={"filename_or_obj": source})


def load_volume(volume: VolumeInput, *, affine: np.ndarray | None = None) -> MetaTensor:
    """Any accepted volume -> ``MetaTensor (C, D, H, W)`` float32 with its voxel-to-world affine.

    A numpy array or tensor has no grid of its own: without ``affine`` (4x4) it is taken as RAS with
    1 mm voxels, with an :class:`AssumedGridWarning` saying so (volumes in millilitres and the
    resampling to the model's spacing are only right if that is true); a 3D array is one channel,
    a 4D one is channels first.
    Integer volumes (any width) are converted to float32 exactly; integers beyond ``2**24``,
    booleans, complex numbers, strings and objects are refused, as are affines that are not
    finite and invertible, and volumes larger than the machine's memory.

    Raises:
        InputError: any of the above, or a file that is not readable NIfTI.
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
            raise InputError(f"{path} could not be read as NIfTI: {type(exc).__name__}: {exc}") from exc
    if isinstance(volume, nib.spatialimages.SpatialImage):
        return _from_nibabel(volume, "nibabel image")
    if isinstance(volume, MetaTensor):
        tensor = volume if volume.dim() == 4 else volume[None] if volume.dim() == 3 else None
        if tensor is None:
            raise InputError(f"A MetaTensor volume must be (D, H, W) or (C, D, H, W), got shape {tuple(volume.shape)}.")
        values = tensor.as_tensor().detach().cpu()
        values = values.float() if values.is_floating_point() else _to_float32(values.numpy(), "the MetaTensor")
        return MetaTensor(values, affine=check_affine(tensor.affine, "the MetaTensor"), meta={"filename_or_obj": "MetaTensor"})
    if isinstance(volume, (np.ndarray, torch.Tensor)):
        if isinstance(volume, torch.Tensor):
            tensor = volume.detach().cpu()
            if tensor.dtype in (torch.bfloat16, torch.float16):  # no numpy bfloat16: widen (exactly) first
                tensor = tensor.float()
            if tensor.is_complex() or tensor.dtype == torch.bool:
                raise InputError(f"A volume must hold real numbers (integers or floats), got dtype {tensor.dtype} (tensor).")
            array = tensor.numpy()
        else:
            array = volume
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise InputError(
                f"A volume must be 3D (D, H, W) or 4D channels-first (C, D, H, W); got shape {tuple(array.shape)} "
                "(a 2D image cannot go through a 3D model)."
            )
        values = _to_float32(array, "the array")
        if affine is None:
            warnings.warn(
                f"A {type(volume).__name__} volume of shape {tuple(array.shape)} has no voxel grid: it is taken as RAS with "
                "1 mm x 1 mm x 1 mm voxels. If that is wrong, the resampling to the model's spacing and the volumes in ml are "
                "wrong too (a 2 mm volume comes out 8x too small); pass affine= (the 4x4 voxel-to-world matrix, e.g. "
                "nibabel's image.affine), or a NIfTI path or image, which carries its own.",
                AssumedGridWarning,
                stacklevel=2,
            )
        matrix = torch.eye(4, dtype=torch.float64) if affine is None else check_affine(affine, "the array")
        return MetaTensor(values, affine=matrix, meta={"filename_or_obj": "array"})
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
