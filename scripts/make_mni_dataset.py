"""Build the embedded segmentation set: the MNI ICBM152 2009 T1 template at 2 mm with a 3-class label map.

    pip install -e '.[assets]' && python scripts/make_mni_dataset.py

nilearn's wheel ships the ICBM152 2009 (symmetric, release a) T1 template and its
grey- and white-matter probability maps at 1 mm. This script resamples them to 2 mm
(trilinear) and labels every voxel with the most probable of background (including
CSF), grey matter and white matter, then writes a Medical Segmentation Decathlon
folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) to
``polyhead/assets/mni152_2mm``. Real MRI, not synthetic; the template's copyright
notice is kept in that folder's ``LICENSE``.

It also writes ``tissuesTr/``: the partial-volume fractions of grey matter, white matter and
intracranial CSF in each 2 mm voxel (a 4D uint8 volume, 255 = the whole voxel), averaged from
the 1 mm maps with a [1/4, 1/2, 1/4] filter per axis, in steps of 1/15. CSF is what lies inside the template's
brain mask (its non-zero T1 voxels) and is neither grey nor white matter. The whole-head
synthesis (``polyhead.tasks.segmentation.synthesis``) builds its training images from them.

Files whose content would not change are left as they are (gzip stamps would otherwise
make every run a change).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "polyhead" / "assets" / "mni152_2mm"
CASE = "mni152_2009a"
LICENSE = """The MNI ICBM152 2009a template (T1 image) and the grey/white-matter label map derived
from its tissue probability maps, resampled to 2 mm by scripts/make_mni_dataset.py; tissuesTr/
holds the grey matter, white matter and CSF fractions of each 2 mm voxel, from the same maps.
Source: the files mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz shipped in
nilearn's wheel (nilearn: BSD-3-Clause); original: http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009
References: Fonov et al., NeuroImage 2011 and 2009; Collins et al., 1999.

Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre,
Montreal Neurological Institute, McGill University.
Permission to use, copy, modify, and distribute this software and its
documentation for any purpose and without fee is hereby granted, provided
that the above copyright notice appear in all copies.  The authors and
McGill University make no representations about the suitability of this
software for any purpose.  It is provided "as is" without express or
implied warranty.  The authors are not responsible for any data loss,
equipment damage, property loss, or injury to subjects or patients
resulting from the use or misuse of this software package.
"""


def _template(kind: str) -> nib.Nifti1Image:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    return nib.load(path)


def _fractions_2mm(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """1 mm fractions -> 2 mm voxels centred on every second 1 mm voxel (the grid resample_to_output gives)."""
    smoothed = volume.astype(np.float64)
    for axis in range(3):
        smoothed = ndimage.correlate1d(smoothed, [0.25, 0.5, 0.25], axis=axis, mode="constant")
    out = smoothed[::2, ::2, ::2]
    return out[: shape[0], : shape[1], : shape[2]]


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``data`` as NIfTI (MNI qform/sform), unless the file already holds exactly this data and affine."""
    if path.is_file():
        old = nib.load(path)
        if old.shape == data.shape and np.array_equal(np.asanyarray(old.dataobj), data) and np.allclose(old.affine, affine):
            return
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=4)  # MNI
    img.header.set_sform(affine, code=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)


def main() -> None:
    t1 = resample_to_output(_template("t1"), voxel_sizes=2.0, order=1)
    grey = resample_to_output(_template("gm"), voxel_sizes=2.0, order=1).get_fdata() / 255.0
    white = resample_to_output(_template("wm"), voxel_sizes=2.0, order=1).get_fdata() / 255.0
    background = np.clip(1.0 - grey - white, 0.0, 1.0)
    labels = np.argmax(np.stack([background, grey, white]), axis=0).astype(np.uint8)
    image = np.clip(np.rint(t1.get_fdata()), 0, 255).astype(np.uint8)

    # partial-volume fractions at 2 mm, from the 1 mm maps
    grey_1mm = _template("gm").get_fdata() / 255.0
    white_1mm = _template("wm").get_fdata() / 255.0
    inside_1mm = (_template("t1").get_fdata() > 0).astype(np.float64)
    csf_1mm = np.clip(inside_1mm - grey_1mm - white_1mm, 0.0, 1.0)
    fractions = np.stack([_fractions_2mm(v, labels.shape) for v in (grey_1mm, white_1mm, csf_1mm)], axis=-1)
    tissues = (np.rint(np.clip(fractions, 0.0, 1.0) * 15.0) * 17).astype(np.uint8)  # 16 levels (1/15 steps): 300 kB, not 670

    _save(image, t1.affine, OUT / "imagesTr" / f"{CASE}.nii.gz")
    _save(labels, t1.affine, OUT / "labelsTr" / f"{CASE}.nii.gz")
    _save(tissues, t1.affine, OUT / "tissuesTr" / f"{CASE}.nii.gz")
    dataset = {
        "name": "MNI152-2009a-2mm",
        "description": "ICBM152 2009a T1 template at 2 mm; labels: most probable tissue class; tissues: grey matter, "
        "white matter and CSF fractions per voxel (the whole-head synthesis reads them).",
        "reference": "Fonov et al., NeuroImage 2011; built by scripts/make_mni_dataset.py from nilearn's wheel",
        "licence": "see LICENSE",
        "tensorImageSize": "3D",
        "modality": {"0": "T1"},
        "labels": {"0": "background", "1": "grey_matter", "2": "white_matter"},
        "tissues": ["grey_matter", "white_matter", "csf"],
        "numTraining": 1,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{CASE}.nii.gz", "label": f"./labelsTr/{CASE}.nii.gz", "tissues": f"./tissuesTr/{CASE}.nii.gz"}],
        "test": [],
    }
    (OUT / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (OUT / "LICENSE").write_text(LICENSE)
    counts = np.bincount(labels.ravel(), minlength=3)
    print(f"wrote {OUT}: shape {labels.shape}, voxel counts {counts.tolist()}, tissue ml {(fractions.sum((0, 1, 2)) * 8 / 1000).round(1).tolist()}")


if __name__ == "__main__":
    main()
