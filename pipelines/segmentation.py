"""``segmentation`` pipeline: a 3D volume in, a label mask in the SAME grid out.

Example:
    >>> import polyhead
    >>> seg = polyhead.pipeline("segmentation")       # embedded default (MNI152 grey/white matter)
    >>> out = seg("scan.nii.gz")
    >>> out["mask"].shape, out["labels"], out["volumes_ml"]
    >>> seg("scan.nii.gz", output="pred.nii.gz")        # NIfTI with the input's affine and header

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

__all__ = ["SegmentationPipeline"]


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
    ``overwrite=True``), ``affine`` (4x4, for arrays), ``sw_overlap``,
    ``sw_batch_size``, ``return_probabilities``.

    Output per volume: ``{"mask": (D, H, W) uint8 in the input's grid, "labels": [names],
    "volumes_ml": {name: millilitres}, "affine": (4, 4), "output": path (if written),
    "probabilities": (K, D, H, W) (if asked)}``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError("Got an empty list of volumes.")
            if kwargs.get("output") is not None:
                raise InputError("output= writes one file: segment one volume per call to write it.")
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
        **unknown: Any,
    ):
        if unknown:
            raise InputError(
                f"Unknown pipeline argument(s) {sorted(unknown)}; expected output, overwrite, affine, sw_overlap, sw_batch_size, return_probabilities."
            )
        if output is not None:
            _check_output(Path(output), overwrite=overwrite)  # before the inference, not after it
        if sw_overlap is not None and (not _is_real(sw_overlap) or not 0.0 <= float(sw_overlap) < 1.0):
            raise InputError(f"sw_overlap must be a number in [0, 1), got {sw_overlap!r}.")
        if sw_batch_size is not None and (
            isinstance(sw_batch_size, (bool, np.bool_)) or not isinstance(sw_batch_size, (int, np.integer)) or sw_batch_size < 1
        ):
            raise InputError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}.")
        if not isinstance(return_probabilities, (bool, np.bool_)):
            raise InputError(f"return_probabilities must be True or False, got {return_probabilities!r}.")
        forward = {"sw_overlap": None if sw_overlap is None else float(sw_overlap), "sw_batch_size": None if sw_batch_size is None else int(sw_batch_size)}
        return {"affine": affine}, forward, {"output": output, "return_probabilities": bool(return_probabilities)}

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

    def postprocess(self, model_outputs: dict[str, Any], output: str | os.PathLike | None = None, return_probabilities: bool = False) -> dict[str, Any]:
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
