"""The segmentation pipeline: embedded default, input forms, the input's grid and header, ONNX backend, bad input."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from monai.data import MetaTensor

import polyhead
from polyhead.errors import InputError
from polyhead.export import export_onnx
from polyhead.workflows import evaluate_model_dir
from polyhead.pipelines import SegmentationPipeline, default_model_dir
from polyhead.tasks.segmentation import SegmentationProcessor

ASSETS = default_model_dir("segmentation").parent.parent / "assets" / "mni152_2mm"


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    return 2 * np.sum((a == label) & (b == label)) / (np.sum(a == label) + np.sum(b == label))


@pytest.fixture(scope="module")
def test_slab() -> tuple[nib.Nifti1Image, np.ndarray]:
    """The held-out test region of the embedded template (in the training recipe's split), as its own NIfTI."""
    image = nib.load(ASSETS / "imagesTr" / "mni152_2009a.nii.gz")
    labels = np.asanyarray(nib.load(ASSETS / "labelsTr" / "mni152_2009a.nii.gz").dataobj)
    data = json.loads((default_model_dir("segmentation") / "metrics.json").read_text())["data"]
    start, stop = (int(v) for v in data["splits"]["test"]["cases"].split("voxels ")[1].rstrip("]").split(":"))
    processed = SegmentationProcessor.from_pretrained(default_model_dir("segmentation")).preprocess(
        SegmentationProcessor().load(image)
    )["image"]
    offset = round(float(processed.affine[1, 3] - image.affine[1, 3]) / 2.0)  # the foreground crop's first y voxel
    region = slice(offset + start, offset + stop)
    return image.slicer[:, region, :], labels[:, region, :]


@pytest.fixture(scope="module")
def seg() -> SegmentationPipeline:
    return polyhead.pipeline("segmentation")


def test_default_model_is_embedded_and_trained(seg):
    assert isinstance(seg, SegmentationPipeline)
    assert seg.model.config.labels == ["background", "grey_matter", "white_matter"]
    metrics = json.loads((default_model_dir("segmentation") / "metrics.json").read_text())
    assert metrics["test"]["dice"] > 0.7  # measured by `polyhead train` on the held-out region
    assert polyhead.pipeline("medical-segmentation").model.config.model_type == "polyhead-segmentation"


def test_held_out_region_in_the_input_grid(seg, test_slab, tmp_path):
    slab, reference = test_slab
    path = tmp_path / "slab.nii.gz"
    nib.save(slab, path)
    out = seg(str(path), output=tmp_path / "pred.nii.gz")
    assert out["mask"].shape == slab.shape and out["mask"].dtype == np.uint8
    assert out["labels"] == ["background", "grey_matter", "white_matter"]
    assert _dice(out["mask"], reference, 1) > 0.6 and _dice(out["mask"], reference, 2) > 0.6
    assert out["volumes_ml"]["white_matter"] == pytest.approx(np.sum(out["mask"] == 2) * 8 / 1000)  # 2 mm voxels
    written = nib.load(out["output"])
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), out["mask"])
    np.testing.assert_allclose(written.affine, slab.affine)
    assert written.header.get_sform(coded=True)[1] == slab.header.get_sform(coded=True)[1]
    assert written.header.get_zooms() == slab.header.get_zooms()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_orientation_and_input_forms_agree(seg, test_slab):
    slab, _ = test_slab
    ras = seg(slab)["mask"]
    # the same slab stored left-right and posterior-anterior flipped: the mask comes back in ITS orientation
    flipped = np.asanyarray(slab.dataobj)[::-1, ::-1, :].copy()
    affine = slab.affine @ np.array([[-1, 0, 0, slab.shape[0] - 1], [0, -1, 0, slab.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    lps = seg(nib.Nifti1Image(flipped, affine))["mask"]
    assert np.mean(lps[::-1, ::-1, :] == ras) > 0.99
    # a batch of the other input forms: a numpy array with its affine, a MONAI MetaTensor
    array = np.asanyarray(slab.dataobj)
    meta = MetaTensor(torch.as_tensor(array[None]).float(), affine=torch.as_tensor(slab.affine))
    batch = seg([array, meta], affine=slab.affine)
    assert len(batch) == 2
    np.testing.assert_array_equal(batch[0]["mask"], ras)
    np.testing.assert_array_equal(batch[1]["mask"], ras)


def test_small_volumes_are_padded_and_arrays_default_to_1mm(seg):
    small = np.random.default_rng(0).uniform(0, 100, (10, 12, 9)).astype(np.float32)
    out = seg(small, return_probabilities=True, sw_overlap=0.5, sw_batch_size=1)
    assert out["mask"].shape == (10, 12, 9) and out["probabilities"].shape == (3, 10, 12, 9)
    np.testing.assert_allclose(out["affine"], np.eye(4))


def test_bad_input(seg, tmp_path):
    with pytest.raises(InputError, match="a 2D image cannot go through a 3D model"):
        seg(np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(InputError, match=r"takes 1 channel\(s\)"):
        seg(np.zeros((3, 16, 16, 16), dtype=np.float32))
    with pytest.raises(InputError, match="NaN"):
        seg(np.full((16, 16, 16), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="output must be a .nii or .nii.gz path"):
        seg(np.zeros((16, 16, 16), dtype=np.float32), output=tmp_path / "mask.png")
    with pytest.raises(InputError, match=r"sw_overlap must be in \[0, 1\)"):
        seg(np.zeros((16, 16, 16), dtype=np.float32), sw_overlap=1.0)
    with pytest.raises(InputError, match="sw_batch_size must be a positive integer"):
        seg(np.zeros((16, 16, 16), dtype=np.float32), sw_batch_size=0)
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        seg(np.zeros((16, 16, 16), dtype=np.float32), threshold=0.5)
    with pytest.raises(InputError, match="output= writes one file"):
        seg([np.zeros((16, 16, 16), dtype=np.float32)] * 2, output=tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match="empty list"):
        seg([])
    not_nifti = tmp_path / "scan.png"
    not_nifti.write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="not a NIfTI file"):
        seg(str(not_nifti))
    assert not (tmp_path / "mask.png").exists()


@pytest.mark.slow
def test_onnx_backend_stitches_patches_like_pytorch(seg, test_slab, tmp_path):
    model_dir = tmp_path / "default"
    shutil.copytree(default_model_dir("segmentation"), model_dir)
    report = export_onnx(model_dir)  # the Swin default: the ONNX gate on MONAI's SwinTransformer
    assert report["passed"] and {r["sizes"]["batch"] for r in report["parity"]} >= {1, 3, 4}
    graph_input = onnx.load(str(model_dir / "model.onnx")).graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 32, 32, 32]  # batch dynamic, patch fixed
    onnx_seg = polyhead.pipeline("segmentation", model=model_dir, backend="onnx")
    slab, _ = test_slab
    torch_mask = seg(slab)["mask"]
    onnx_mask = onnx_seg(slab)["mask"]
    assert onnx_mask.shape == torch_mask.shape
    assert np.mean(onnx_mask == torch_mask) > 0.999
    # `polyhead evaluate --backend onnx`: whole test volumes through the sliding window over ORT patches
    evaluated = evaluate_model_dir(model_dir, backend="onnx")
    committed = json.loads((model_dir / "metrics.json").read_text())["test"]
    assert evaluated["metrics"]["dice"] == pytest.approx(committed["dice"], abs=0.005)
