"""Build the embedded segmentation set: the MNI ICBM152 2009 T1 template at 2 mm with a 3-class label map.

    pip install -e '.[assets]' && python scripts/make_mni_dataset.py

nilearn's wheel ships the ICBM152 2009 (symmetric, release a) T1 template and its
grey- and white-matter probability maps at 1 mm. This script resamples them to 2 mm
(trilinear) and labels every voxel with the most probable of background (including
CSF), grey matter and white matter, then writes a Medical Segmentation Decathlon
folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) to
``polyhead/assets/mni152_2mm``. Real MRI, not synthetic; the template's copyright
notice is kept in that folder's ``LICENSE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "polyhead" / "assets" / "mni152_2mm"
CASE = "mni152_2009a"
LICENSE = """The MNI ICBM152 2009a template (T1 image) and the grey/white-matter label map derived
from its tissue probability maps, resampled to 2 mm by scripts/make_mni_dataset.py.
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


def main() -> None:
    t1 = resample_to_output(_template("t1"), voxel_sizes=2.0, order=1)
    grey = resample_to_output(_template("gm"), voxel_sizes=2.0, order=1).get_fdata() / 255.0
    white = resample_to_output(_template("wm"), voxel_sizes=2.0, order=1).get_fdata() / 255.0
    background = np.clip(1.0 - grey - white, 0.0, 1.0)
    labels = np.argmax(np.stack([background, grey, white]), axis=0).astype(np.uint8)

    image = np.clip(np.rint(t1.get_fdata()), 0, 255).astype(np.uint8)
    (OUT / "imagesTr").mkdir(parents=True, exist_ok=True)
    (OUT / "labelsTr").mkdir(parents=True, exist_ok=True)
    for folder, data in (("imagesTr", image), ("labelsTr", labels)):
        img = nib.Nifti1Image(data, t1.affine)
        img.header.set_xyzt_units("mm")
        img.header.set_qform(t1.affine, code=4)  # MNI
        img.header.set_sform(t1.affine, code=4)
        nib.save(img, OUT / folder / f"{CASE}.nii.gz")
    dataset = {
        "name": "MNI152-2009a-2mm",
        "description": "ICBM152 2009a T1 template at 2 mm; labels: most probable tissue class.",
        "reference": "Fonov et al., NeuroImage 2011; built by scripts/make_mni_dataset.py from nilearn's wheel",
        "licence": "see LICENSE",
        "tensorImageSize": "3D",
        "modality": {"0": "T1"},
        "labels": {"0": "background", "1": "grey_matter", "2": "white_matter"},
        "numTraining": 1,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{CASE}.nii.gz", "label": f"./labelsTr/{CASE}.nii.gz"}],
        "test": [],
    }
    (OUT / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (OUT / "LICENSE").write_text(LICENSE)
    counts = np.bincount(labels.ravel(), minlength=3)
    print(f"wrote {OUT}: shape {labels.shape}, voxel counts {counts.tolist()}")


if __name__ == "__main__":
    main()
