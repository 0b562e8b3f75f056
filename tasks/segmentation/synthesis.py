"""Whole-head T1 images synthesised from brain tissue maps, for training and for held-out phantoms.

A brain template alone (the MNI152 template is skull-stripped) teaches a network that everything
bright is brain: on a real whole-head scan it then labels scalp, marrow and neck as grey and white
matter. Following SynthSeg (Billot et al., "SynthSeg: Segmentation of brain MRI scans of any
contrast and resolution without retraining", Medical Image Analysis 2023), training images are
synthesised from label maps in which the non-brain tissue exists and is labelled background:

1. **Head.** Around the template's intracranial volume, layers of CSF, skull (inner table, marrow,
   outer table), muscle, fat and skin of random, spatially varying thickness; below and in front of
   it a neck (muscle, fat, vertebrae, spinal cord, airway) and a face (eyes in orbital fat,
   sinuses, glands). Each sample draws new geometry (:class:`HeadAnatomy`, :func:`head_tissues`).
2. **Contrast.** A random mean and spread per tissue: T1-like ranges (relative to white matter) for
   most samples, uniform in [0, 1] for a fraction (SynthSeg's any-contrast sampling); some samples
   take the template's own T1 inside the brain (real intensities), some have no head at all
   (skull-stripped inputs stay in scope).
3. **Scanner.** MONAI's random transforms: ``Rand3DElasticd`` / ``RandAffined`` (rotation, scaling,
   shear, elastic), ``RandFlipd`` (left-right), ``RandBiasFieldd``, ``RandGaussianSmoothd``
   (anisotropic blur: thick slices), ``RandSimulateLowResolutiond``, ``RandGaussianNoised`` /
   ``RandRicianNoised`` and ``RandAdjustContrastd`` (gamma).

Each training sample is synthesised on a crop around a random centre (brain boundary, brain, or
anywhere in the head) and deformed straight into the network's patch, so a sample costs a
fraction of a whole volume. Values are on the scale the processor's percentile scaling gives
(air 0, the brightest tissue about 1).

:func:`phantom_head` builds *evaluation* heads with a different method (a smoothed skull surface,
fixed literature T1 contrasts, the template's real T1 in the brain, superellipse neck, stacked
vertebrae, ellipsoid eyes with lenses, a smooth multiplicative bias and Rician noise in scanner
units) and other seeds: the training recipe's test split and ``benchmarks/segmentation.py``
use them, never the training generator.

Example:
    >>> anatomy = HeadAnatomy.from_folder("mni152_2mm")
    >>> patches = SynthesisPatches(anatomy, patch_size=(32, 32, 32), length=1000, seed=0)
    >>> patches[0]["pixel_values"].shape, patches[0]["labels"].shape
    (torch.Size([1, 32, 32, 32]), torch.Size([1, 32, 32, 32]))
    >>> image, labels, intracranial = phantom_head(anatomy, seed=1)   # nibabel images
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from polyhead.errors import ConfigError, DataError
from polyhead.validation import check_probability

__all__ = [
    "TISSUES",
    "T1_CONTRAST",
    "SynthesisOptions",
    "HeadAnatomy",
    "head_tissues",
    "SynthesisPatches",
    "synthetic_head",
    "phantom_head",
]

#: generation tissues (SynthSeg's "generation labels"); only grey and white matter are segmentation labels
TISSUES = ("air", "grey_matter", "white_matter", "csf", "bone", "marrow", "muscle", "fat", "skin", "eye", "cord", "gland")
AIR, GREY, WHITE, CSF, BONE, MARROW, MUSCLE, FAT, SKIN, EYE, CORD, GLAND = range(len(TISSUES))

#: T1-weighted mean intensity ranges relative to white matter (MPRAGE / SPGR at 1.5-3 T, roughly)
T1_CONTRAST: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.03),
    "grey_matter": (0.55, 0.8),
    "white_matter": (1.0, 1.0),
    "csf": (0.08, 0.4),
    "bone": (0.0, 0.15),
    "marrow": (0.35, 1.25),
    "muscle": (0.35, 0.7),
    "fat": (0.9, 1.6),
    "skin": (0.45, 0.9),
    "eye": (0.05, 0.35),
    "cord": (0.75, 1.05),
    "gland": (0.45, 0.95),
}


@dataclass(frozen=True)
class SynthesisOptions:
    """How training images are synthesised (the ``data.synthesis`` section of a segmentation config).

    Attributes:
        samples: training patches per epoch (each one a new synthetic head, seeded by its index).
        validation_heads: synthetic whole-head volumes in the validation split (training generator, other seeds).
        test_phantoms: :func:`phantom_head` volumes in the test split (another method, other seeds).
        random_contrast: fraction of samples with every tissue's mean uniform in [0, 1] (SynthSeg); the
            others draw from :data:`T1_CONTRAST`.
        real_fraction: fraction of samples that take the template's own T1 inside the brain.
        stripped_fraction: fraction of samples without a head (air around the brain: skull-stripped inputs).
        rotate_degrees: largest rotation about each axis.
        scale: largest relative scaling (0.15: 0.85-1.15 per axis).
        elastic_fraction: fraction of samples also deformed elastically (``Rand3DElasticd``).
        bias: largest bias-field coefficient (``RandBiasFieldd``, degree 3).
        blur_voxels: largest Gaussian blur sigma per axis, in voxels (drawn per axis: thick slices).
        low_resolution: probability of a down- and up-sampling by up to 2x (``RandSimulateLowResolutiond``).
        noise: largest noise standard deviation (Gaussian or Rician), on the [0, 1] scale.
        gamma: range of the gamma applied last (``RandAdjustContrastd``).
        crop_margin: the crop synthesised around a patch, as a multiple of the patch size (room for rotation).
    """

    samples: int = 20000
    validation_heads: int = 3
    test_phantoms: int = 3
    random_contrast: float = 0.15
    real_fraction: float = 0.2
    stripped_fraction: float = 0.1
    rotate_degrees: float = 20.0
    scale: float = 0.15
    elastic_fraction: float = 0.5
    bias: float = 0.25
    blur_voxels: float = 1.5
    low_resolution: float = 0.2
    noise: float = 0.06
    gamma: tuple = (0.7, 1.5)
    crop_margin: float = 1.6

    def __post_init__(self) -> None:
        for name in ("samples", "validation_heads", "test_phantoms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "samples" else 0):
                raise ConfigError(f"data.synthesis.{name} must be a {'positive' if name == 'samples' else 'non-negative'} integer, got {value!r}.")
        for name in ("random_contrast", "real_fraction", "stripped_fraction", "elastic_fraction", "low_resolution"):
            check_probability(f"data.synthesis.{name}", getattr(self, name))
        for name in ("rotate_degrees", "scale", "bias", "blur_voxels", "noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"data.synthesis.{name} must be a non-negative number, got {value!r}.")
        if len(self.gamma) != 2 or not 0 < self.gamma[0] <= self.gamma[1]:
            raise ConfigError(f"data.synthesis.gamma must be a range (low, high) of positive numbers, got {self.gamma!r}.")
        if self.crop_margin < 1.0:
            raise ConfigError(f"data.synthesis.crop_margin must be at least 1, got {self.crop_margin!r}.")
        object.__setattr__(self, "gamma", tuple(float(v) for v in self.gamma))

    @classmethod
    def from_section(cls, section: Any) -> "SynthesisOptions":
        """From ``data.synthesis``: ``True`` (the defaults) or a dict of the fields; an unknown key gets a did-you-mean."""
        from polyhead.errors import did_you_mean

        if section is True:
            return cls()
        if not isinstance(section, dict):
            raise ConfigError(f"data.synthesis must be True or a dict of synthesis options, got {section!r}.")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in section:
            if key not in names:
                raise ConfigError(f"data.synthesis.{key} is not a synthesis option.{did_you_mean(key, names)} Options: {', '.join(names)}.")
        return cls(**section)


# -- the anatomy the heads are built around ------------------------------------------------------
@dataclass
class HeadAnatomy:
    """A brain's tissue maps in RAS on an isotropic grid, padded with room for a head and a neck.

    Attributes:
        tissues: ``(3, X, Y, Z)`` float32 fractions of grey matter, white matter and CSF.
        image: ``(X, Y, Z)`` float32 real T1 inside the brain (white matter median = 1), 0 outside.
        labels: ``(X, Y, Z)`` uint8 segmentation labels (0 background, 1 grey, 2 white matter).
        intracranial: ``(X, Y, Z)`` bool, the brain mask (brain and CSF, holes filled).
        outside_mm / inside_mm: distance in mm from the intracranial surface, outside and inside it.
        affine: ``(4, 4)`` voxel to world (RAS mm).
        spacing: voxel size in mm.
    """

    tissues: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    intracranial: np.ndarray
    outside_mm: np.ndarray
    inside_mm: np.ndarray
    affine: np.ndarray
    spacing: float

    @classmethod
    def from_folder(cls, source: Any = None, *, spacing: float = 2.0, margin_mm: float = 24.0, neck_mm: float = 100.0) -> "HeadAnatomy":
        """Read the first case of a Decathlon folder whose ``dataset.json`` names ``tissues`` maps (the embedded
        ``mni152_2mm`` set has them: ``scripts/make_mni_dataset.py``)."""
        from .data import read_msd_folder

        folder = read_msd_folder(source)
        root = Path(folder.cases[0].image).parents[1]
        meta = json.loads((root / "dataset.json").read_text())
        entry = meta["training"][0]
        if "tissues" not in entry:
            raise DataError(
                f"{root}/dataset.json names no 'tissues' maps (grey matter, white matter, CSF fractions) for its first case; "
                "whole-head synthesis needs them (see scripts/make_mni_dataset.py). To train on the folder's own volumes instead, name it with data.source (or set data.synthesis=None)."
            )
        return cls.from_images(
            nib.load(root / entry["image"]), nib.load(root / entry["label"]), nib.load(root / entry["tissues"]),
            spacing=spacing, margin_mm=margin_mm, neck_mm=neck_mm,
        )

    @classmethod
    def from_images(
        cls, image: nib.Nifti1Image, labels: nib.Nifti1Image, tissues: nib.Nifti1Image, *, spacing: float = 2.0, margin_mm: float = 24.0, neck_mm: float = 100.0
    ) -> "HeadAnatomy":
        """Reorient to RAS, resample to ``spacing`` (MONAI), pad ``margin_mm`` around and ``neck_mm`` below."""
        from monai.data import MetaTensor
        from monai.transforms import Orientationd, Spacingd

        def meta(array: np.ndarray, affine: np.ndarray) -> MetaTensor:
            return MetaTensor(torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32), affine=torch.as_tensor(affine, dtype=torch.float64))

        fractions = np.moveaxis(np.asanyarray(tissues.dataobj), -1, 0).astype(np.float32) / 255.0
        data = {
            "image": meta(np.asanyarray(image.dataobj)[None].astype(np.float32), image.affine),
            "label": meta(np.asanyarray(labels.dataobj)[None].astype(np.float32), labels.affine),
            "tissues": meta(fractions, tissues.affine),
        }
        keys = ["image", "label", "tissues"]
        data = Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(data)
        data = Spacingd(keys, pixdim=[spacing] * 3, mode=["bilinear", "nearest", "bilinear"])(data)
        affine = np.asarray(data["image"].affine, dtype=np.float64)
        pad_side = int(round(margin_mm / spacing))
        pad_neck = int(round(neck_mm / spacing))
        widths = [(pad_side, pad_side), (pad_side, pad_side), (pad_side + pad_neck, pad_side)]

        def padded(array: np.ndarray) -> np.ndarray:
            return np.pad(array, widths if array.ndim == 3 else [(0, 0), *widths])

        tissue = padded(np.clip(data["tissues"].numpy(), 0.0, 1.0))
        raw = padded(data["image"].numpy()[0])
        label = padded(np.rint(data["label"].numpy()[0])).astype(np.uint8)
        inside = (tissue.sum(0) > 0.5) | (label > 0)
        inside = ndimage.binary_fill_holes(ndimage.binary_closing(inside, iterations=2))
        white = raw[label == 2]
        scale = float(np.median(white)) if white.size else float(raw.max() or 1.0)
        image_norm = np.where(inside, raw / scale, 0.0).astype(np.float32)
        affine = affine.copy()
        affine[:3, 3] -= affine[:3, :3] @ np.array([w[0] for w in widths], dtype=np.float64)
        return cls(
            tissues=tissue.astype(np.float32),
            image=image_norm,
            labels=label,
            intracranial=inside,
            outside_mm=(ndimage.distance_transform_edt(~inside) * spacing).astype(np.float32),
            inside_mm=(ndimage.distance_transform_edt(inside) * spacing).astype(np.float32),
            affine=affine,
            spacing=float(spacing),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.labels.shape)

    def world(self, region: Sequence[slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World (RAS mm) coordinates of the voxels of ``region``, broadcastable ``x, y, z``."""
        axes = []
        for axis, part in enumerate(region):
            index = np.arange(part.start, part.stop, dtype=np.float32)
            shape = [1, 1, 1]
            shape[axis] = index.size
            axes.append((float(self.affine[axis, axis]) * index + float(self.affine[axis, 3])).reshape(shape))
        return axes[0], axes[1], axes[2]

    def landmarks(self) -> dict[str, float]:
        """Where the brain is (mm): its extent, and the brainstem's centre on its lowest slice."""
        if getattr(self, "_landmarks", None) is None:
            full = tuple(slice(0, n) for n in self.shape)
            x, y, z = self.world(full)
            ix, iy, iz = np.nonzero(self.intracranial)
            low = iz.min()
            stem = iz <= low + 1
            self._landmarks = {
                "x_half": float(np.abs(x.ravel()[ix]).max()),
                "y_front": float(y.ravel()[iy].max()),
                "y_back": float(y.ravel()[iy].min()),
                "z_top": float(z.ravel()[iz].max()),
                "z_low": float(z.ravel()[low]),
                "stem_x": float(x.ravel()[ix[stem]].mean()),
                "stem_y": float(y.ravel()[iy[stem]].mean()),
            }
        return self._landmarks


# -- random geometry ---------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, shape: Sequence[int], cells: int = 5) -> np.ndarray:
    """A smooth random field in about [-1, 1]: ``cells``^3 Gaussian values, trilinearly upsampled."""
    coarse = torch.as_tensor(rng.standard_normal((1, 1, cells, cells, cells)), dtype=torch.float32)
    return F.interpolate(coarse, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True)[0, 0].numpy()


def _ellipsoid(x, y, z, centre, axes) -> np.ndarray:
    """Normalised radius: < 1 inside the ellipsoid."""
    return np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2)


def head_tissues(anatomy: HeadAnatomy, region: Sequence[slice], rng: np.random.Generator, *, stripped: bool = False) -> np.ndarray:
    """A random head's generation tissues (:data:`TISSUES` indices) on ``region`` of ``anatomy``'s grid.

    The intracranial voxels are marked :data:`CSF` (their brain tissue fractions are mixed in by the
    caller); around them skull, scalp, face and neck of freshly drawn shape. ``stripped``: air outside
    the brain (and sometimes a rim of CSF), as a skull-stripped scan.
    """
    shape = tuple(part.stop - part.start for part in region)
    x, y, z = anatomy.world(region)
    d = anatomy.outside_mm[tuple(region)]
    tissue = np.full(shape, AIR, dtype=np.int8)
    if stripped:
        tissue[d <= (rng.uniform(0.0, 3.0) if rng.random() < 0.5 else 0.0)] = CSF
        return tissue
    lm = anatomy.landmarks()
    u = rng.uniform
    vary = 1.0 + u(0.2, 0.6) * np.clip(_smooth_field(rng, shape, 4), -1.5, 1.5) / 1.5  # thickness varies over the head
    lateral = np.clip((np.abs(x) - 0.45 * lm["x_half"]) / (0.4 * lm["x_half"]), 0.0, 1.0) * (z < u(10.0, 40.0))
    edges = np.cumsum([
        u(0.5, 3.0),  # CSF rim
        u(1.0, 2.5),  # inner table
        u(0.5, 6.0),  # marrow (diploe)
        u(1.0, 2.5),  # outer table
    ])
    muscle = u(0.5, 4.0) + u(0.0, 14.0) * lateral  # galea, temporalis on the sides
    fat, skin = u(1.0, 7.0), u(1.0, 2.5)
    b = [e * vary for e in edges]
    b_muscle = b[3] + muscle * vary
    b_fat = b_muscle + fat * vary
    b_skin = b_fat + skin * vary
    # scalp layers first, then what lies inside the head overrides them
    tissue[d <= b_skin] = SKIN
    tissue[d <= b_fat] = FAT
    tissue[d <= b_muscle] = MUSCLE
    # face: soft tissue below and in front of the frontal lobes; neck: below the brain
    face_centre = (u(-5, 5), lm["y_front"] - u(15.0, 35.0), lm["z_low"] + u(5.0, 30.0))
    face_axes = (u(40.0, 60.0), u(30.0, 50.0), u(35.0, 60.0))
    face = _ellipsoid(x, y, z, face_centre, face_axes)
    neck_top = lm["z_low"] + u(15.0, 45.0)
    neck_centre = (lm["stem_x"] + u(-4, 4), lm["stem_y"] + u(-5.0, 20.0))
    neck_axes = (u(42.0, 65.0), u(42.0, 65.0))
    taper = 1.0 + u(-0.002, 0.004) * np.minimum(z - neck_top, 0.0)
    neck = np.sqrt(((x - neck_centre[0]) / (neck_axes[0] * taper)) ** 2 + ((y - neck_centre[1]) / (neck_axes[1] * taper)) ** 2)
    neck = np.where(z <= neck_top, neck, np.inf)
    lower = np.minimum(face, neck)  # < 1 inside the face or the neck
    outer = u(1.0, 2.5) / 50.0
    fat_shell = u(3.0, 9.0) / 50.0
    blobs = _smooth_field(rng, shape, 6)
    soft = np.where(blobs > u(0.4, 1.0), FAT, np.where(blobs < -u(0.6, 1.2), GLAND, MUSCLE)).astype(np.int8)
    inside_lower = lower < 1.0 - outer
    tissue[lower < 1.0] = SKIN
    tissue[lower < 1.0 - outer] = FAT
    tissue[lower < 1.0 - outer - fat_shell] = soft[lower < 1.0 - outer - fat_shell]
    # airway and sinuses (air inside the head)
    airway = np.hypot(x - neck_centre[0] - u(-3, 3), y - lm["stem_y"] - u(25.0, 45.0)) < u(5.0, 10.0)
    tissue[airway & (z < lm["z_low"] - u(-10.0, 20.0)) & inside_lower] = AIR
    for side in (-1, 1):
        sinus = _ellipsoid(x, y, z, (side * u(12.0, 25.0), lm["y_front"] - u(20.0, 40.0), lm["z_low"] + u(-5.0, 20.0)), (u(7, 13), u(8, 15), u(8, 16)))
        tissue[(sinus < 1.0) & inside_lower] = AIR
    # eyes in orbital fat
    eye_y, eye_z, eye_x, eye_r = lm["y_front"] - u(0.0, 20.0), lm["z_low"] + u(30.0, 55.0), u(26.0, 36.0), u(10.0, 13.0)
    for side in (-1, 1):
        orbit = _ellipsoid(x, y, z, (side * eye_x, eye_y, eye_z), (eye_r, eye_r, eye_r))
        tissue[orbit < 1.0 + u(3.0, 8.0) / eye_r] = FAT
        tissue[orbit < 1.0] = SKIN  # sclera
        tissue[orbit < 1.0 - 1.2 / eye_r] = EYE
    # spine: cord in CSF in a bony canal, vertebral bodies in front
    radial = np.hypot(x - lm["stem_x"], y - lm["stem_y"])
    below = z < lm["z_low"] + 1.0
    cord_r = u(4.0, 6.5)
    canal = cord_r + u(1.5, 3.5)
    tissue[below & (radial < canal + u(2.0, 5.0))] = BONE
    tissue[below & (radial < canal)] = CSF
    tissue[below & (radial < cord_r)] = CORD
    body_y = lm["stem_y"] + canal + u(8.0, 14.0)
    body = np.hypot(x - lm["stem_x"], y - body_y) < u(7.0, 12.0)
    spine_top = lm["z_low"] - u(5.0, 25.0)
    tissue[body & (z < spine_top) & ~(below & (radial < canal))] = MARROW
    # the skull encloses the brain: bone layers, then the CSF rim and the intracranial volume, win over all else
    skull = d <= b[3]
    tissue[skull] = BONE
    tissue[skull & (d > b[1]) & (d <= b[2])] = MARROW
    tissue[d <= b[0]] = CSF
    tissue[below & (radial < cord_r)] = CORD  # through the foramen magnum
    tissue[anatomy.intracranial[tuple(region)]] = CSF
    return tissue


#: the MNI152 2009a template's CSF relative to its white matter (median T1 of its non-brain intracranial voxels: 69 / 222)
_TEMPLATE_CSF = 0.31


def _tissue_means(rng: np.random.Generator, options: SynthesisOptions, *, real: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and spread per generation tissue, and the white-matter level (all on the [0, 1] scale)."""
    level = rng.uniform(0.5, 0.95)
    if not real and rng.random() < options.random_contrast:
        means = rng.uniform(0.0, 1.0, len(TISSUES))
        means[AIR] = rng.uniform(0.0, 0.3)
        level = 1.0
    else:
        means = np.array([rng.uniform(*T1_CONTRAST[name]) for name in TISSUES]) * level
    spreads = rng.uniform(0.0, 0.05, len(TISSUES))
    spreads[AIR] = 0.0
    return means.astype(np.float32), spreads.astype(np.float32), float(level)


def _render(anatomy: HeadAnatomy, region: Sequence[slice], rng: np.random.Generator, options: SynthesisOptions) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image (float32, [0, 1] scale) and its segmentation labels on ``region``, before scanner effects."""
    real = rng.random() < options.real_fraction
    stripped = rng.random() < options.stripped_fraction
    tissue = head_tissues(anatomy, region, rng, stripped=stripped)
    means, spreads, level = _tissue_means(rng, options, real=real)
    shape = tissue.shape
    image = means[tissue] + spreads[tissue] * rng.standard_normal(shape, dtype=np.float32)
    fractions = anatomy.tissues[(slice(None), *region)]
    inside = anatomy.intracranial[tuple(region)]
    if real:
        brain = anatomy.image[tuple(region)] * level
        means[CSF] = _TEMPLATE_CSF * level  # the CSF rim outside the template's mask matches its CSF
        image = np.where(inside, brain, means[tissue] + spreads[tissue] * rng.standard_normal(shape, dtype=np.float32))
    else:
        grey, white, csf = fractions[0], fractions[1], fractions[2]
        rest = np.clip(1.0 - grey - white - csf, 0.0, 1.0)
        noise = rng.standard_normal(shape, dtype=np.float32)
        mixed = (
            grey * (means[GREY] + spreads[GREY] * noise)
            + white * (means[WHITE] + spreads[WHITE] * noise)
            + (csf + rest) * (means[CSF] + spreads[CSF] * noise)
        )
        image = np.where(inside, mixed, image)
    texture = 1.0 + rng.uniform(0.0, 0.1) * _smooth_field(rng, shape, 8)
    image = (image * texture).astype(np.float32)
    return image, anatomy.labels[tuple(region)].copy()


class _Scanner:
    """MONAI's random spatial and intensity transforms, built once and re-seeded per sample."""

    def __init__(self, options: SynthesisOptions, spatial_size: Sequence[int] | None) -> None:
        from monai.transforms import (
            Rand3DElasticd,
            RandAdjustContrastd,
            RandAffined,
            RandBiasFieldd,
            RandFlipd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandRicianNoised,
            RandSimulateLowResolutiond,
        )

        angle = math.radians(options.rotate_degrees)
        size = None if spatial_size is None else tuple(int(v) for v in spatial_size)
        spatial = dict(rotate_range=(angle,) * 3, scale_range=(options.scale,) * 3, shear_range=(0.05,) * 3, mode=("bilinear", "nearest"), padding_mode="border")
        keys = ["image", "label"]
        self.elastic = Rand3DElasticd(keys, sigma_range=(6.0, 9.0), magnitude_range=(0.0, 60.0), prob=1.0, spatial_size=size, **spatial)
        self.affine = RandAffined(keys, prob=1.0, spatial_size=size, **spatial)
        self.flip = RandFlipd(keys, prob=0.5, spatial_axis=0)
        sigma = (0.0, options.blur_voxels)
        self.intensity = [
            RandBiasFieldd("image", degree=3, coeff_range=(0.0, options.bias), prob=0.8),
            RandGaussianSmoothd("image", sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=0.7),
            RandSimulateLowResolutiond("image", zoom_range=(0.5, 1.0), prob=options.low_resolution),
            RandGaussianNoised("image", std=options.noise, prob=0.5),
            RandRicianNoised("image", std=options.noise, prob=0.3, relative=False, sample_std=True),
            RandAdjustContrastd("image", gamma=options.gamma, prob=0.5),
        ]
        self.elastic_fraction = options.elastic_fraction

    def __call__(self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(rng.integers(2**31 - 1))
        data = {"image": torch.as_tensor(image[None]), "label": torch.as_tensor(labels[None].astype(np.float32))}
        spatial = self.elastic if rng.random() < self.elastic_fraction else self.affine
        for step, transform in enumerate([spatial, self.flip, *self.intensity]):
            transform.set_random_state(seed=seed + step)
            data = transform(data)
        image = torch.as_tensor(data["image"]).float().clamp_(0.0, 1.0)
        return image, torch.as_tensor(data["label"]).round().to(torch.uint8)


class SynthesisPatches(Dataset):
    """Training patches of synthetic whole-head images: ``{"pixel_values": (1, *patch), "labels": (1, *patch)}``.

    Sample ``i`` is a fresh head (geometry, contrast, scanner), seeded by ``(seed, i)`` alone, so the
    data does not depend on the order it is read in. Patch centres: 45 % within 20 mm of the
    intracranial surface (the hard part: brain against CSF, skull and scalp), 20 % in the brain, 25 %
    in the face and neck (soft tissue with brain-like textures and no brain), 10 % anywhere in the
    padded volume (air included).

    Args:
        anatomy: the brain to build heads around.
        patch_size: ``(D, H, W)``: the network's patch.
        length: samples per epoch.
        seed: base seed.
        options: the synthesis settings.
    """

    def __init__(self, anatomy: HeadAnatomy, *, patch_size: Sequence[int], length: int, seed: int, options: SynthesisOptions | None = None) -> None:
        self.anatomy = anatomy
        self.patch_size = [int(v) for v in patch_size]
        self.length = int(length)
        self.seed = int(seed)
        self.options = options or SynthesisOptions()
        self.crop = [int(math.ceil(p * self.options.crop_margin / 2.0) * 2) for p in self.patch_size]
        self.scanner = _Scanner(self.options, self.patch_size)
        self.boundary = np.flatnonzero(((anatomy.outside_mm > 0) & (anatomy.outside_mm <= 20.0)) | ((anatomy.inside_mm > 0) & (anatomy.inside_mm <= 10.0)))
        self.brain = np.flatnonzero(anatomy.labels > 0)
        lm = anatomy.landmarks()
        x, y, z = anatomy.world([slice(0, n) for n in anatomy.shape])
        lower = (np.abs(x) < 65.0) & (y > lm["stem_y"] - 70.0) & (y < lm["y_front"] + 15.0) & (z < lm["z_low"] + 45.0)
        self.lower_head = np.flatnonzero(lower & ~anatomy.intracranial)  # face and neck: brain-like textures, no brain

    def __len__(self) -> int:
        return self.length

    def _region(self, rng: np.random.Generator) -> list[slice]:
        pick = rng.random()
        if pick < 0.45:
            centre = np.unravel_index(self.boundary[rng.integers(self.boundary.size)], self.anatomy.shape)
        elif pick < 0.65:
            centre = np.unravel_index(self.brain[rng.integers(self.brain.size)], self.anatomy.shape)
        elif pick < 0.9:
            centre = np.unravel_index(self.lower_head[rng.integers(self.lower_head.size)], self.anatomy.shape)
        else:
            centre = [rng.integers(0, n) for n in self.anatomy.shape]
        region = []
        for c, size, n in zip(centre, self.crop, self.anatomy.shape):
            start = int(np.clip(int(c) - size // 2, 0, max(n - size, 0)))
            region.append(slice(start, min(start + size, n)))
        return region

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        image, labels = _render(self.anatomy, self._region(rng), rng, self.options)
        image, labels = self.scanner(image, labels, rng)
        return {"pixel_values": image, "labels": labels}


def synthetic_head(anatomy: HeadAnatomy, seed: int, options: SynthesisOptions | None = None) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """A whole synthetic head from the *training* generator (validation volumes): image and labels as NIfTI."""
    options = options or SynthesisOptions()
    rng = np.random.default_rng([seed, 7919])
    region = [slice(0, n) for n in anatomy.shape]
    image, labels = _render(anatomy, region, rng, dataclasses.replace(options, stripped_fraction=0.0))
    image, labels = _Scanner(dataclasses.replace(options, elastic_fraction=0.0, scale=0.05, rotate_degrees=10.0), None)(image, labels, rng)
    return _nifti(image[0].numpy(), anatomy.affine), _nifti(labels[0].numpy(), anatomy.affine)


def _nifti(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    image.header.set_xyzt_units("mm")
    return image


# -- held-out phantoms: another construction, for evaluation only -------------------------------
#: fixed T1 contrasts of the phantoms, relative to white matter (inside the brain: the template's real T1)
_PHANTOM_T1 = {"csf": 0.25, "bone": 0.06, "marrow": 0.85, "muscle": 0.52, "fat": 1.3, "skin": 0.72, "eye": 0.18, "lens": 0.7, "cord": 0.9, "gland": 0.68}


def phantom_head(anatomy: HeadAnatomy, seed: int) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
    """A whole-head evaluation phantom, built differently from the training heads; not for training.

    The skull follows a smoothed brain surface (Gaussian, 4 mm) with thicknesses modulated by sinusoids
    of the direction from the head's centre; tissues take fixed T1 contrasts (:data:`_PHANTOM_T1`) and
    the brain the template's own T1; a superellipse neck tapers down with stacked vertebral bodies,
    a cord and an airway; ellipsoid eyes with lenses sit in orbital fat; then a smooth multiplicative
    bias field and Rician noise (SNR about 25 in white matter), in int16 scanner units.

    Returns:
        ``(image, labels, intracranial)`` NIfTI images on ``anatomy``'s grid: the scan, its reference
        labels (0 background, 1 grey, 2 white matter) and the intracranial mask (brain and CSF).
    """
    rng = np.random.default_rng([seed, 104729])
    u = rng.uniform
    lm = anatomy.landmarks()
    full = tuple(slice(0, n) for n in anatomy.shape)
    x, y, z = anatomy.world(full)
    x, y, z = np.broadcast_arrays(x, y, z)
    spacing = anatomy.spacing
    smooth = ndimage.gaussian_filter(anatomy.intracranial.astype(np.float32), sigma=4.0 / spacing) > u(0.2, 0.35)
    smooth |= anatomy.intracranial
    d = (ndimage.distance_transform_edt(~smooth) * spacing).astype(np.float32)
    centre = np.array([0.0, (lm["y_front"] + lm["y_back"]) / 2, lm["z_low"] + 0.45 * (lm["z_top"] - lm["z_low"])])
    theta = np.arctan2(y - centre[1], x - centre[0])
    phi = np.arctan2(z - centre[2], np.hypot(x - centre[0], y - centre[1]))
    wave = 1.0 + 0.3 * np.sin(3 * theta + u(0, 6.3)) * np.cos(2 * phi + u(0, 6.3)) + 0.15 * np.sin(5 * phi + u(0, 6.3))
    t = {"bone_in": u(1.2, 2.0), "marrow": u(2.0, 4.5), "bone_out": u(1.2, 2.0), "muscle": u(1.0, 2.5), "fat": u(2.5, 5.5), "skin": u(1.5, 2.5)}
    edges = np.cumsum([t[k] for k in ("bone_in", "marrow", "bone_out", "muscle", "fat", "skin")])
    temporalis = u(4.0, 9.0) * np.exp(-(((np.abs(x) - lm["x_half"]) / 15.0) ** 2) - ((z - u(-10.0, 15.0)) / 25.0) ** 2)
    values = np.zeros(anatomy.shape, dtype=np.float32)
    layer = [("bone", edges[0]), ("marrow", edges[1]), ("bone", edges[2]), ("muscle", edges[3]), ("fat", edges[4]), ("skin", edges[5])]
    for name, edge in reversed(layer):  # outermost first, inner layers overwrite
        extra = temporalis if name in ("muscle", "fat", "skin") else 0.0
        values[(d > 0) & (d <= edge * wave + extra)] = _PHANTOM_T1[name]
    # neck: superellipse cross-section, tapering downwards, fat under the skin
    z0 = lm["z_low"] + u(20.0, 35.0)
    a, b, p = u(48.0, 60.0), u(50.0, 62.0), u(2.2, 3.0)
    widen = 1.0 + 0.003 * np.clip(z0 - z, 0.0, None)
    r = (np.abs(x - lm["stem_x"]) / (a / widen)) ** p + (np.abs(y - lm["stem_y"] - u(0.0, 12.0)) / (b / widen)) ** p
    neck = (z <= z0) & (r < 1.0) & (d > edges[2] * wave)
    values[neck] = _PHANTOM_T1["skin"]
    values[neck & (r < 0.93)] = _PHANTOM_T1["fat"]
    values[neck & (r < 0.8)] = _PHANTOM_T1["muscle"]
    glands = neck & (r < 0.8) & (np.abs(np.abs(x - lm["stem_x"]) - u(30.0, 40.0)) < 9.0) & (np.abs(y - lm["stem_y"] - 25.0) < 12.0)
    values[glands] = _PHANTOM_T1["gland"]
    # face: a rounded block in front of the neck, under the frontal lobes, with a nose
    face = (
        (np.abs(x) < u(40.0, 50.0))
        & (y > lm["stem_y"] + 10.0)
        & (y < lm["y_front"] + u(5.0, 15.0) - 0.15 * np.abs(x))
        & (z < lm["z_low"] + u(45.0, 60.0))
        & (z > lm["z_low"] - u(40.0, 60.0))
        & (d > edges[2] * wave)
    )
    nose = (np.abs(x) < 12.0 - 0.3 * (y - lm["y_front"])) & (y >= lm["y_front"]) & (y < lm["y_front"] + u(18.0, 28.0)) & (np.abs(z - lm["z_low"] - 20.0) < 22.0)
    values[(face | nose) & (values == 0)] = _PHANTOM_T1["skin"]
    values[face & ndimage.binary_erosion(face, iterations=2)] = _PHANTOM_T1["fat"]
    values[face & ndimage.binary_erosion(face, iterations=5)] = _PHANTOM_T1["muscle"]
    for side in (-1, 1):  # maxillary sinuses: air
        values[_ellipsoid(x, y, z, (side * 20.0, lm["y_front"] - 25.0, lm["z_low"] + 5.0), (10.0, 14.0, 12.0)) < 1.0] = 0.0
        eye = _ellipsoid(x, y, z, (side * u(29.0, 34.0), lm["y_front"] - u(5.0, 12.0), lm["z_low"] + u(38.0, 48.0)), (11.5, 12.5, 11.5))
        values[(eye < 1.5) & (d > edges[2] * wave)] = _PHANTOM_T1["fat"]
        values[eye < 1.0] = _PHANTOM_T1["eye"]
        values[(eye < 1.0) & (y > lm["y_front"] - 3.0)] = _PHANTOM_T1["lens"]
    # spine: vertebral bodies stacked every 16 mm, a cord in a CSF canal, an airway in front
    radial = np.hypot(x - lm["stem_x"], y - lm["stem_y"])
    below = z < lm["z_low"] + 1.0
    values[below & (radial < 11.0)] = _PHANTOM_T1["bone"]
    values[below & (radial < 8.0)] = _PHANTOM_T1["csf"]
    values[below & (radial < 5.0)] = _PHANTOM_T1["cord"]
    for level in np.arange(lm["z_low"] - 12.0, z.min() - 16.0, -16.0):
        body = _ellipsoid(x, y, z, (lm["stem_x"], lm["stem_y"] + 22.0, level), (13.0, 10.0, 6.5))
        values[body < 1.0] = _PHANTOM_T1["bone"]
        values[body < 0.8] = _PHANTOM_T1["marrow"]
    values[(np.hypot(x - lm["stem_x"], y - lm["stem_y"] - 42.0) < 7.0) & (z < lm["z_low"] - 5.0)] = 0.0
    # the intracranial volume: CSF space of the smoothed surface, the template's T1 in the brain
    values[smooth] = _PHANTOM_T1["csf"]
    values[anatomy.intracranial] = np.maximum(anatomy.image[anatomy.intracranial], 0.0)
    # scanner: smooth multiplicative bias, Rician noise, int16 units
    bias = np.exp(u(-0.15, 0.15) * (x / 100.0) + u(-0.15, 0.15) * (y / 100.0) + u(-0.2, 0.1) * (z / 100.0) ** 2 + u(-0.1, 0.1) * (x * y / 1e4))
    signal = values * bias
    sigma = 1.0 / u(20.0, 30.0)
    noisy = np.hypot(signal + sigma * rng.standard_normal(signal.shape), sigma * rng.standard_normal(signal.shape))
    scanner = np.clip(np.rint(noisy * u(500.0, 1200.0)), 0, 32767).astype(np.int16)
    return _nifti(scanner, anatomy.affine), _nifti(anatomy.labels.copy(), anatomy.affine), _nifti(anatomy.intracranial.astype(np.uint8), anatomy.affine)
