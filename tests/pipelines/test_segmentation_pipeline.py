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
from polyhead.model_dir import read_training_config
from polyhead.tasks.segmentation import SegmentationConfig, SegmentationProcessor, SegmentationTask
from polyhead.tasks.segmentation.processing import AssumedGridWarning

ASSETS = default_model_dir("segmentation").parent.parent / "assets" / "mni152_2mm"


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    return 2 * np.sum((a == label) & (b == label)) / (np.sum(a == label) + np.sum(b == label))


@pytest.fixture(scope="module")
def test_slab() -> tuple[nib.Nifti1Image, np.ndarray]:
    """The held-out test region of the embedded template (the training recipe's split, rebuilt from its saved data section), as its own NIfTI."""
    folder = default_model_dir("segmentation")
    image = nib.load(ASSETS / "imagesTr" / "mni152_2009a.nii.gz")
    labels = np.asanyarray(nib.load(ASSETS / "labelsTr" / "mni152_2009a.nii.gz").dataobj)
    data = SegmentationTask().build_data(read_training_config(folder)["data"], SegmentationConfig.from_pretrained(folder))
    (case,) = data.test.cases
    axis, start, stop = case.region  # voxels start:stop along RAS axis `axis` of the preprocessed grid
    processed = SegmentationProcessor.from_pretrained(folder).preprocess(SegmentationProcessor().load(image))["image"]
    spacing = float(np.linalg.norm(image.affine[:3, axis]))
    offset = round(float(processed.affine[axis, 3] - image.affine[axis, 3]) / spacing)  # the foreground crop's first voxel on that axis
    window = [slice(None)] * 3
    window[axis] = slice(offset + start, offset + stop)
    return image.slicer[tuple(window)], labels[tuple(window)]


@pytest.fixture(scope="module")
def seg() -> SegmentationPipeline:
    return polyhead.pipeline("segmentation")


def test_default_model_is_embedded_and_trained(seg, capsys):
    assert isinstance(seg, SegmentationPipeline)
    assert seg.model.config.labels == ["background", "grey_matter", "white_matter"]
    metrics = json.loads((default_model_dir("segmentation") / "metrics.json").read_text())
    assert metrics["test"]["dice"] > 0.7  # measured by `polyhead train` on the held-out region
    capsys.readouterr()
    assert polyhead.pipeline("medical-segmentation").model.config.model_type == "polyhead-segmentation"
    line = capsys.readouterr().err  # one line names the default and its scope
    assert "embedded default model 'segmentation'" in line and "skull-stripped" in line and line.count("\n") == 1


def test_held_out_region_in_the_input_grid(seg, test_slab, tmp_path):
    slab, reference = test_slab
    path = tmp_path / "slab.nii.gz"
    nib.save(slab, path)
    out = seg(str(path), output=tmp_path / "pred.nii.gz", overlay=tmp_path / "pred.png")
    assert out["mask"].shape == slab.shape and out["mask"].dtype == np.uint8
    assert out["labels"] == ["background", "grey_matter", "white_matter"]
    assert _dice(out["mask"], reference, 1) > 0.6 and _dice(out["mask"], reference, 2) > 0.6
    assert out["volumes_ml"]["white_matter"] == pytest.approx(np.sum(out["mask"] == 2) * 8 / 1000)  # 2 mm voxels
    written = nib.load(out["output"])
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), out["mask"])
    np.testing.assert_allclose(written.affine, slab.affine)
    assert written.header.get_sform(coded=True)[1] == slab.header.get_sform(coded=True)[1]
    assert written.header.get_zooms() == slab.header.get_zooms()
    from PIL import Image

    with Image.open(out["overlay"]) as picture:
        assert picture.format == "PNG" and picture.info.get("Software") == "polyhead segmentation overlay"
        assert picture.width > 2 * picture.height  # three panels side by side
        colours = {tuple(c) for c in np.asarray(picture.convert("RGB")).reshape(-1, 3)[::7]}
    assert len(colours) > 50  # an image, not a blank canvas
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_overlay_paths_are_checked(seg, tmp_path):
    volume = np.zeros((16, 16, 16), dtype=np.float32)
    with pytest.raises(InputError, match=r"overlay must be a .png file path"):
        seg(volume, affine=np.eye(4), overlay=tmp_path / "mask.jpg")
    foreign = tmp_path / "photo.png"
    foreign.write_bytes(b"\x89PNG not ours")
    with pytest.raises(InputError, match="exists and was not written by polyhead"):
        seg(volume, affine=np.eye(4), overlay=foreign)
    with pytest.raises(InputError, match="overlay= writes one file"):
        seg([volume, volume], affine=np.eye(4), overlay=tmp_path / "a.png")
    out = seg(volume, affine=np.eye(4), overlay=tmp_path / "ours.png")
    assert seg(volume, affine=np.eye(4), overlay=out["overlay"])["overlay"] == out["overlay"]  # ours: replaced


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


def test_small_volumes_are_padded_and_arrays_default_to_1mm_with_a_warning(seg):
    small = np.random.default_rng(0).uniform(0, 100, (10, 12, 9)).astype(np.float32)
    with pytest.warns(AssumedGridWarning, match=r"1 mm x 1 mm x 1 mm voxels.*pass affine="):
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
    with pytest.raises(InputError, match=r"sw_overlap must be a number in \[0, 1\)"):
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


# -- bad files, affines, dtypes and arguments: every one a polyhead InputError that says what was wrong ----------

VOLUME = np.random.default_rng(1).uniform(0, 100, (12, 12, 12)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.nii", b""), ("empty.nii.gz", b""), ("garbage.nii.gz", b"garbage" * 100), ("garbage.nii", b"\x00\x01garbage" * 100)],
)
def test_unreadable_nifti_files_are_input_errors(seg, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"could not be read as NIfTI: .+"):
        seg(str(path))


def _singular() -> np.ndarray:
    affine = np.eye(4)
    affine[2, 2] = 0.0
    return affine


def _nan_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[0, 3] = np.nan
    return affine


@pytest.mark.parametrize(
    ("affine", "message"),
    [
        (_singular(), r"affine .*singular"),
        (_nan_affine(), r"affine .*NaN or infinite"),
        (np.eye(3), r"affine must be a 4x4 matrix, got shape \(3, 3\)"),
        ("abc", r"affine must be a 4x4 matrix of numbers"),
        ([[1, 0], [0, 1, 2]], r"affine must be a 4x4 matrix of numbers"),
    ],
    ids=["singular", "nan", "3x3", "string", "ragged"],
)
def test_bad_affines_are_input_errors(seg, affine, message):
    with pytest.raises(InputError, match=message):
        seg(VOLUME, affine=affine)


def test_metatensor_with_a_singular_affine_is_an_input_error(seg):
    with pytest.raises(InputError, match=r"affine .*singular"):
        seg(MetaTensor(torch.as_tensor(VOLUME), affine=torch.as_tensor(_singular())))


@pytest.mark.parametrize(
    "volume",
    [np.full((12, 12, 12), "a"), np.full((12, 12, 12), None, dtype=object), VOLUME > 50, VOLUME.astype(np.complex64)],
    ids=["str", "object", "bool", "complex"],
)
def test_non_numeric_arrays_are_input_errors(seg, volume):
    with pytest.raises(InputError, match=rf"must hold real numbers \(integers or floats\), got dtype {volume.dtype}"):
        seg(volume)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64, np.int32, np.int64])
def test_integer_volumes_are_read_exactly(seg, dtype):
    from polyhead.tasks.segmentation.processing import load_volume

    integers = np.round(VOLUME * 100).astype(dtype)
    loaded = load_volume(integers)
    assert loaded.dtype == torch.float32
    np.testing.assert_array_equal(loaded.as_tensor()[0].numpy(), integers.astype(np.float64))  # exact
    np.testing.assert_array_equal(seg(integers)["mask"], seg(integers.astype(np.float32))["mask"])
    np.testing.assert_array_equal(seg(torch.as_tensor(integers))["mask"], seg(integers.astype(np.float32))["mask"])


def test_integers_beyond_float32_precision_are_refused(seg):
    big = np.full((12, 12, 12), 2**24 + 1, dtype=np.uint32)
    with pytest.raises(InputError, match=r"2\*\*24.*float32"):
        seg(big)


def test_huge_header_is_an_input_error_naming_the_size(seg, tmp_path):
    """A header promising far more voxels than memory holds (the data is never there): a clear error, not an empty one."""
    header = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)).header.copy()
    header.set_data_shape((20000, 20000, 20000))
    path = tmp_path / "huge.nii"
    with open(path, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\x00" * 1024)
    with pytest.raises(InputError, match=r"20000x20000x20000 .*GB.*too large"):
        seg(str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sw_overlap": "abc"}, r"sw_overlap must be a number in \[0, 1\), got 'abc'"),
        ({"sw_overlap": float("nan")}, r"sw_overlap must be a number in \[0, 1\)"),
        ({"sw_overlap": True}, r"sw_overlap must be a number in \[0, 1\)"),
        ({"sw_batch_size": True}, "sw_batch_size must be a positive integer"),
        ({"sw_batch_size": 2.0}, "sw_batch_size must be a positive integer"),
        ({"return_probabilities": "no"}, "return_probabilities must be True or False"),
    ],
)
def test_bad_arguments_are_input_errors(seg, kwargs, message):
    with pytest.raises(InputError, match=message):
        seg(VOLUME, **kwargs)
