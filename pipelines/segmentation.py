"""``segmentation`` pipeline: a 3D volume in, a label mask in the SAME grid out.

Example:
    >>> import polyhead
    >>> seg = polyhead.pipeline("segmentation")       # embedded default (MNI152 grey/white matter)
    >>> out = seg("scan.nii.gz")
    >>> out["mask"].shape, out["labels"], out["volumes_ml"]
    >>> seg("scan.nii.gz", output="pred.nii.gz")        # NIfTI with the input's affine and header
    >>> seg("scan.nii.gz", overlay="pred.png")          # three orthogonal slices, the mask over the image

The network only ever sees patches of ``config.patch_size``: the task's inferer
(:class:`~polyhead.tasks.segmentation.inference.SegmentationInferer`, MONAI's sliding window)
stitches them, on top of PyTorch or of the exported ONNX graph alike, and MONAI's
``Invertd`` maps the prediction back to the input's grid and orientation.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from transformers import Pipeline

from polyhead.errors import InputError
from polyhead.tasks.segmentation.inference import SegmentationInferer
from polyhead.tasks.segmentation.processing import NIFTI_SUFFIXES

__all__ = ["SegmentationPipeline", "save_overlay", "OVERLAY_COLOURS"]


def _is_real(value: Any) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))


def _is_one_volume(inputs: Any) -> bool:
    return isinstance(inputs, (str, os.PathLike, nib.spatialimages.SpatialImage, np.ndarray, torch.Tensor))


class SegmentationPipeline(Pipeline):
    """Segment 3D volumes.

    Inputs: a NIfTI path, a nibabel image, a numpy volume ``(D, H, W)`` / ``(C, D, H, W)``
    (RAS, 1 mm voxels unless ``affine=`` is given) or a MONAI ``MetaTensor``; or a list of them.

    Arguments: ``output`` (a ``.nii``/``.nii.gz`` path: the mask is written there with the
    input's affine and header; an existing file is replaced only if polyhead wrote it, or with
    ``overwrite=True``), ``overlay`` (a ``.png`` path: three orthogonal slices through the
    labelled tissue with the mask over the image, :func:`save_overlay`; replaced like ``output``),
    ``affine`` (4x4 voxel-to-world, for arrays: without it an array is taken as 1 mm voxels, with
    a warning), ``sw_overlap``, ``sw_batch_size``, ``return_probabilities``.

    Output per volume: ``{"mask": (D, H, W) uint8 in the input's grid, "labels": [names],
    "volumes_ml": {name: millilitres}, "affine": (4, 4), "output": path (if written),
    "overlay": path (if written), "probabilities": (K, D, H, W) (if asked)}``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError("Got an empty list of volumes.")
            for name in ("output", "overlay"):
                if kwargs.get(name) is not None:
                    raise InputError(f"{name}= writes one file: segment one volume per call to write it.")
            return super().__call__(list(inputs), **kwargs)
        return super().__call__([inputs], **kwargs)[0]

    def _sanitize_parameters(
        self,
        output: str | os.PathLike | None = None,
        affine: Any = None,
        sw_overlap: float | None = None,
        sw_batch_size: int | None = None,
        return_probabilities: bool = False,
        overwrite: bool = False,
        overlay: str | os.PathLike | None = None,
        **unknown: Any,
    ):
        if unknown:
            raise InputError(
                f"Unknown pipeline argument(s) {sorted(unknown)}; expected output, overlay, overwrite, affine, sw_overlap, sw_batch_size, "
                "return_probabilities."
            )
        if output is not None:
            _check_output(Path(output), overwrite=overwrite)  # before the inference, not after it
        if overlay is not None:
            _check_overlay(Path(overlay), overwrite=overwrite)
        if sw_overlap is not None and (not _is_real(sw_overlap) or not 0.0 <= float(sw_overlap) < 1.0):
            raise InputError(f"sw_overlap must be a number in [0, 1), got {sw_overlap!r}.")
        if sw_batch_size is not None and (
            isinstance(sw_batch_size, (bool, np.bool_)) or not isinstance(sw_batch_size, (int, np.integer)) or sw_batch_size < 1
        ):
            raise InputError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}.")
        if not isinstance(return_probabilities, (bool, np.bool_)):
            raise InputError(f"return_probabilities must be True or False, got {return_probabilities!r}.")
        forward = {"sw_overlap": None if sw_overlap is None else float(sw_overlap), "sw_batch_size": None if sw_batch_size is None else int(sw_batch_size)}
        return {"affine": affine}, forward, {"output": output, "overlay": overlay, "return_probabilities": bool(return_probabilities)}

    def preprocess(self, volume: Any, affine: Any = None) -> dict[str, Any]:
        data = self.feature_extractor(volume, affine=affine)  # loads and checks: unreadable files are InputErrors here
        header = None
        if isinstance(volume, (str, os.PathLike)):
            header = nib.load(volume).header  # read (and checked) just above
        elif isinstance(volume, nib.spatialimages.SpatialImage):
            header = volume.header
        return {"data": data, "header": header}

    def _forward(self, model_inputs: dict[str, Any], sw_overlap: float | None = None, sw_batch_size: int | None = None) -> dict[str, Any]:
        volume = model_inputs["data"]["image"].as_tensor()[None].float()
        inferer = SegmentationInferer(self.model.config, overlap=sw_overlap, sw_batch_size=sw_batch_size)  # the task's, with this call's overrides
        return {"logits": inferer(self.model, {"pixel_values": volume}).logits, **model_inputs}

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        output: str | os.PathLike | None = None,
        overlay: str | os.PathLike | None = None,
        return_probabilities: bool = False,
    ) -> dict[str, Any]:
        labels = list(self.model.config.labels)
        data = model_outputs["data"]
        probabilities = torch.softmax(model_outputs["logits"][0].float(), dim=0)
        in_grid = self.feature_extractor.invert(probabilities, data)  # (K, D, H, W) in the input's grid
        mask = in_grid.argmax(0).to(torch.uint8).numpy()
        original: MetaTensor = data["original"]
        affine = np.asarray(original.affine, dtype=np.float64)
        if mask.shape != tuple(original.shape[1:]):  # never hand back a mask in another grid
            raise RuntimeError(f"Internal error: the mask grid {mask.shape} differs from the input's {tuple(original.shape[1:])}.")
        voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
        counts = np.bincount(mask.ravel(), minlength=len(labels))
        result: dict[str, Any] = {
            "mask": mask,
            "labels": labels,
            "volumes_ml": {name: float(counts[i] * voxel_ml) for i, name in enumerate(labels) if i > 0},
            "affine": affine,
        }
        if return_probabilities:
            result["probabilities"] = in_grid.numpy()
        if output is not None:
            result["output"] = str(_write_mask(mask, affine, model_outputs["header"], Path(output)))
        if overlay is not None:
            result["overlay"] = str(save_overlay(original.as_tensor()[0].numpy(), mask, affine, overlay, labels=labels))
        return result


#: written into the NIfTI header's ``descrip``: marks a mask polyhead wrote (and may replace)
MASK_DESCRIPTION = b"polyhead segmentation mask"


def _check_output(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`InputError` unless ``path`` is a NIfTI path polyhead may write (checked before inference)."""
    if path.is_dir():
        raise InputError(f"output {path} is a folder; expected a .nii or .nii.gz file path.")
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise InputError(f"output must be a .nii or .nii.gz path, got {str(path)!r}.")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output {path} cannot be written: {parent} is not a writable folder.")
    if path.exists():
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise InputError(f"output {path} cannot be written: {path.parent} is not writable.")
        if not overwrite and not _written_by_polyhead(path):
            raise InputError(
                f"output {path} exists and was not written by polyhead; pass overwrite=True to replace it, or choose another path."
            )


def _check_overlay(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`InputError` unless ``path`` is a PNG path polyhead may write (checked before inference)."""
    if path.is_dir() or path.suffix.lower() != ".png":
        raise InputError(f"overlay must be a .png file path, got {str(path)!r}.")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"overlay {path} cannot be written: {parent} is not a writable folder.")
    if path.exists() and not overwrite and not _overlay_by_polyhead(path):
        raise InputError(f"overlay {path} exists and was not written by polyhead; pass overwrite=True to replace it, or choose another path.")


#: the PNG text chunk that marks an overlay polyhead wrote (and may replace)
OVERLAY_MARK = ("Software", "polyhead segmentation overlay")

#: RGB colours of labels 1, 2, ... in overlays (background is not drawn)
OVERLAY_COLOURS = ((255, 140, 0), (0, 190, 255), (60, 220, 60), (230, 60, 200), (250, 230, 40), (150, 100, 255))


def _overlay_by_polyhead(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.info.get(OVERLAY_MARK[0]) == OVERLAY_MARK[1]
    except Exception:  # not a readable PNG: certainly not one of ours
        return False


def save_overlay(
    image: np.ndarray, mask: np.ndarray, affine: np.ndarray, path: str | os.PathLike, *, labels: list[str] | None = None, alpha: float = 0.45, height: int = 320
) -> Path:
    """Write three orthogonal slices (sagittal, coronal, axial) with ``mask`` over ``image`` as a PNG.

    The slices pass through the centre of the labelled voxels (the volume's centre when none is
    labelled), are shown in RAS (left on the left of coronal and axial views, superior up) with
    the voxel sizes of ``affine`` (mm, so anisotropic voxels are not stretched), and each label
    ``1, 2, ...`` is drawn in :data:`OVERLAY_COLOURS` with opacity ``alpha``; a legend names
    ``labels``. Written atomically, with the umask's permissions.

    Args:
        image: ``(D, H, W)`` intensities (one channel).
        mask: ``(D, H, W)`` integer labels in the same grid.
        affine: ``(4, 4)`` voxel to world.
        path: where to write (``.png``).
        labels: label names, index = label value (the legend); ``None``: the values.
        height: pixels of each panel's longest side.
    """
    from PIL import Image, ImageDraw, PngImagePlugin

    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask)
    if image.shape != mask.shape or image.ndim != 3:
        raise InputError(f"save_overlay needs a 3D image and a mask of the same shape, got {image.shape} and {mask.shape}.")
    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    image = nib.orientations.apply_orientation(image, ornt)  # RAS voxel axes
    mask = nib.orientations.apply_orientation(mask, ornt)
    zooms = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(0))[ornt[:, 0].astype(int)]
    low, high = np.percentile(image, [0.5, 99.5])
    grey = np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
    found = np.argwhere(mask > 0)
    centre = found.mean(0).round().astype(int) if len(found) else np.array(image.shape) // 2
    colours = np.array([(0, 0, 0), *OVERLAY_COLOURS], dtype=np.float32)

    def panel(axis: int) -> Image.Image:
        index = [slice(None)] * 3
        index[axis] = int(centre[axis])
        plane, labelled = grey[tuple(index)], mask[tuple(index)].astype(int)  # the two other axes, in order
        rgb = np.repeat(plane[..., None] * 255.0, 3, axis=-1)
        shown = labelled > 0
        rgb[shown] = (1 - alpha) * rgb[shown] + alpha * colours[np.minimum(labelled[shown], len(colours) - 1)]
        rgb = np.flip(np.transpose(rgb, (1, 0, 2)), axis=0)  # second axis up (A or S), first axis to the right
        mm = [float(zooms[a]) for a in range(3) if a != axis]
        extent = (plane.shape[0] * mm[0], plane.shape[1] * mm[1])
        scale = height / max(extent)
        size = (max(1, round(extent[0] * scale)), max(1, round(extent[1] * scale)))
        return Image.fromarray(rgb.astype(np.uint8)).resize(size, Image.NEAREST)

    panels = [panel(axis) for axis in (0, 1, 2)]
    legend = 18
    width = sum(p.width for p in panels) + 10 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + legend), (0, 0, 0))
    left = 0
    for item in panels:
        canvas.paste(item, (left, legend + (height - item.height) // 2))
        left += item.width + 10
    draw = ImageDraw.Draw(canvas)
    names = labels or [str(v) for v in range(int(mask.max()) + 1)]
    x = 4
    for value, name in enumerate(names[1:], start=1):
        colour = tuple(int(c) for c in colours[min(value, len(colours) - 1)])
        draw.rectangle([x, 4, x + 10, 14], fill=colour)
        draw.text((x + 14, 3), name, fill=(255, 255, 255))
        x += 24 + 7 * len(name)
    draw.text((width - 150, 3), "sagittal | coronal | axial (RAS)", fill=(200, 200, 200))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(*OVERLAY_MARK)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.png")
    try:
        canvas.save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _written_by_polyhead(path: Path) -> bool:
    try:
        return bytes(nib.load(path).header["descrip"]).rstrip(b"\0").startswith(MASK_DESCRIPTION)
    except Exception:  # not a readable NIfTI: certainly not one of ours
        return False


def _write_mask(mask: np.ndarray, affine: np.ndarray, header: Any, path: Path) -> Path:
    """Write ``mask`` as NIfTI with the input's affine (and header, when it had one), atomically.

    The file gets the umask's permissions and :data:`MASK_DESCRIPTION` in its ``descrip`` field.
    """
    if header is not None:
        header = header.copy()
        header.set_data_dtype(np.uint8)
        header.set_data_shape(mask.shape)
        header["scl_slope"], header["scl_inter"] = 1.0, 0.0  # label values, not rescaled intensities
        image = nib.Nifti1Image(mask, affine, header=header)
    else:
        image = nib.Nifti1Image(mask, affine)
        image.header.set_xyzt_units("mm")
    image.header["descrip"] = MASK_DESCRIPTION
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        nib.save(image, tmp)  # nibabel opens the file with open(): the umask's permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
