"""3D segmentation task: config, processor (grids, orientation, bad volumes), MSD / datasets data, model, training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from polyhead.errors import ConfigError, DataError, InputError
from polyhead.registry import BACKBONES, build
from polyhead.tasks.segmentation import (
    PolyheadForSegmentation,
    SegmentationConfig,
    SegmentationMetrics,
    SegmentationProcessor,
    SegmentationTask,
)
from polyhead.tasks.segmentation.data import Case, check_label_values, read_msd_folder, read_nifti_dataset, region_bounds, split_cases
from polyhead.tasks.segmentation.processing import AssumedGridWarning
from polyhead.tasks.segmentation.synthesis import (
    BONE,
    CSF,
    GREY,
    TISSUES,
    WHITE,
    HeadAnatomy,
    SynthesisOptions,
    SynthesisPatches,
    head_tissues,
    phantom_head,
    synthetic_head,
)
from polyhead.workflows import evaluate_model_dir, train

EMBEDDED = Path(__file__).resolve().parents[2] / "polyhead" / "assets" / "mni152_2mm"
IMAGE = EMBEDDED / "imagesTr" / "mni152_2009a.nii.gz"
LABEL = EMBEDDED / "labelsTr" / "mni152_2009a.nii.gz"

#: a fast recipe: heads synthesised around the embedded template at 4 mm, the tiny Swin, two optimizer steps
TINY = {
    "data.synthesis": {"samples": 8, "validation_heads": 1, "test_phantoms": 1},
    "model.target_spacing": [4.0, 4.0, 4.0],
    "model.sw_overlap": 0.0,
    "model.sw_batch_size": 2,
    "model.backbone": {"_delete_": True, **SegmentationTask.example_config().backbone},
    "model.head": SegmentationTask.example_config().head,
    "data.patches_per_volume": 4,
    "train.max_steps": 2,
    "train.eval_every": 2,
    "train.batch_size": 2,
    "train.log_with": None,
    "train.progress_bar": False,
    "train.warmup_steps": 0,
    "train.early_stopping_patience": None,
}


def _lps_copy(image: nib.Nifti1Image, spacing: float = 2.0) -> nib.Nifti1Image:
    """The same volume stored left-posterior-superior: first two axes flipped, affine to match."""
    data = np.asanyarray(image.dataobj)[::-1, ::-1, :].copy()
    affine = image.affine.copy()
    affine[:, 0] *= -1
    affine[:, 1] *= -1
    affine[0, 3] = image.affine[0, 3] + (data.shape[0] - 1) * spacing
    affine[1, 3] = image.affine[1, 3] + (data.shape[1] - 1) * spacing
    return nib.Nifti1Image(data, affine)


# -- config ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": []}, "labels must name distinct classes"),
        ({"labels": ["background", "brain", "brain"]}, "labels must name distinct classes"),
        ({"patch_size": [32, 32]}, "three positive voxel counts"),
        ({"target_spacing": [2, 0, 2]}, "three positive sizes in mm"),
        ({"sw_overlap": 1.0}, r"sw_overlap must be in \[0, 1\)"),
        ({"sw_blend_mode": "max"}, "sw_blend_mode must be one of gaussian, constant"),
        ({"intensity": {"mode": "range"}}, "needs a_min and a_max"),
        ({"intensity": {"mode": "minmax"}}, "intensity.mode must be one of"),
        ({"backbone": {"type": "swin", "spatial_dims": 2}}, "task is 3D: backbone.spatial_dims must be 3"),
        ({"in_channels": 2, "backbone": {"type": "swin", "in_channels": 1}}, r"backbone.in_channels \(1\) differs"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SegmentationConfig(**kwargs)


def test_model_checks_parts_and_patch_size():
    with pytest.raises(ConfigError, match="multiples of the backbone's coarsest stride 32"):
        PolyheadForSegmentation(SegmentationConfig(patch_size=[32, 32, 48], backbone=SegmentationTask.example_config().backbone))
    with pytest.raises(ConfigError, match="needs a pyramid backbone; 'transformer' is a sequence backbone"):
        PolyheadForSegmentation(SegmentationConfig(backbone={"type": "transformer", "dim": 8, "depth": 1, "num_heads": 2}))
    with pytest.raises(ConfigError, match="needs a segmentation decoder such as 'unetr_decoder', got 'fcos'"):
        PolyheadForSegmentation(SegmentationConfig(head={"type": "fcos"}))


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"spatial_dims": 2, "in_channels": 1}, r"needs a 3-D pyramid backbone \(spatial_dims=3\) with in_channels=1; the 'convnext' backbone has spatial_dims=2"),
        ({"spatial_dims": 3, "in_channels": 2}, r"with in_channels=1; the 'convnext' backbone has spatial_dims=3, in_channels=2"),
    ],
)
def test_adapter_refuses_an_injected_backbone_of_another_layout(layout, message):
    """The config cannot say it (it fills in the layout), but a backbone passed in can: refused before anything is built."""
    backbone = build(BACKBONES, {**SegmentationTask.example_config().backbone, **layout})
    with pytest.raises(ConfigError, match=message):
        PolyheadForSegmentation(SegmentationTask.example_config(), backbone=backbone)


# -- model ----------------------------------------------------------------------------
def test_model_patches_sliding_window_and_reload(tmp_path):
    torch.manual_seed(0)
    config = SegmentationTask.example_config()
    model = PolyheadForSegmentation(config).eval()
    assert model.config.id2label == {0: "background", 1: "grey_matter", 2: "white_matter"}
    assert {".".join(k.split(".")[:2]) for k in model.state_dict() if not k.startswith("backbone.")} == {"adapter.head"}  # 0.1's head.* upgraded
    patches = torch.rand(2, 1, 32, 32, 32)
    out = model(pixel_values=patches, labels=torch.randint(0, 3, (2, 1, 32, 32, 32)))
    assert out.logits.shape == (2, 3, 32, 32, 32) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert model(pixel_values=patches).loss is None
    # the network is the patch network; any other size goes through the task's inferer (the sliding window)
    with pytest.raises(InputError, match=r"takes patches of patch_size \[32, 32, 32\], got spatial size \[40, 45, 33\].*sliding window"):
        model(pixel_values=torch.rand(1, 1, 40, 45, 33))
    inferer = SegmentationTask().inferer(config)
    with torch.no_grad():
        assert inferer(model, {"pixel_values": torch.rand(1, 1, 40, 45, 33)}).logits.shape == (1, 3, 40, 45, 33)
        # smaller than a patch is padded, not an error
        assert inferer(model, {"pixel_values": torch.rand(1, 1, 7, 9, 11)}).logits.shape == (1, 3, 7, 9, 11)
        # a volume of exactly one patch (no overlap in the example config): the window is the network itself
        torch.testing.assert_close(inferer(model, {"pixel_values": patches}).logits, model(pixel_values=patches).logits)
    model.save_pretrained(tmp_path)
    reloaded = PolyheadForSegmentation.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=patches).logits, model(pixel_values=patches).logits)
    with pytest.raises(InputError, match=r"pixel_values must be \(B, 1, D, H, W\)"):
        model(pixel_values=torch.rand(1, 32, 32, 32))
    with pytest.raises(InputError, match=r"pixel_values must be volumes \(B, 1, D, H, W\)"):
        inferer(model, {"pixel_values": torch.rand(1, 40, 40, 40)})
    with pytest.raises(InputError, match=r"labels must be in \[0, 2\]"):
        model(pixel_values=patches, labels=torch.full((2, 1, 32, 32, 32), 7))


def test_inferer_loss_is_the_heads_dice_ce_on_the_stitched_logits():
    torch.manual_seed(0)
    config = SegmentationTask.example_config()
    config.sw_overlap, config.sw_batch_size = 0.5, 3
    model = PolyheadForSegmentation(config).eval()
    volume, labels = torch.rand(1, 1, 40, 45, 33), torch.randint(0, 3, (1, 1, 40, 45, 33))
    inferer = SegmentationTask().inferer(config)
    with torch.no_grad():
        out = inferer(model, {"pixel_values": volume, "labels": labels})
        assert out.logits.shape == (1, 3, 40, 45, 33)
        torch.testing.assert_close(out.loss, model.adapter.head.loss(out.logits, labels)["loss"])
        assert inferer(model, {"pixel_values": volume}).loss is None
        with pytest.raises(InputError, match=r"labels must be in \[0, 2\]"):
            inferer(model, {"pixel_values": volume, "labels": torch.full_like(labels, 5)})

        class PatchesOnly(torch.nn.Module):
            """A patch network that is not a PyTorch polyhead model (as an ONNX Runtime one): logits, no loss."""

            def forward(self, pixel_values):
                return model(pixel_values=pixel_values)

        other = inferer(PatchesOnly(), {"pixel_values": volume, "labels": labels})
        assert other.loss is None
        torch.testing.assert_close(other.logits, out.logits)


def test_keep_largest_component_turns_stray_foreground_into_background():
    from polyhead.tasks.segmentation.inference import keep_largest_component

    logits = torch.zeros(1, 3, 12, 12, 12)
    logits[0, 0] = 1.0
    logits[0, 1, 1:6, 1:6, 1:6] = 3.0  # the big region: grey, with white matter inside it
    logits[0, 2, 2:4, 2:4, 2:4] = 4.0
    logits[0, 1, 9:11, 9:11, 9:11] = 3.0  # a stray blob
    kept = keep_largest_component(logits)
    labels = kept.argmax(1)[0]
    assert (labels[9:11, 9:11, 9:11] == 0).all() and (labels[1:6, 1:6, 1:6] > 0).all()
    unchanged = torch.ones(12, 12, 12, dtype=torch.bool)
    unchanged[9:11, 9:11, 9:11] = False
    torch.testing.assert_close(kept[0][:, unchanged], logits[0][:, unchanged])
    # the inferer applies it when the config asks
    config = SegmentationTask.example_config()
    config.keep_largest_component = True
    model = PolyheadForSegmentation(config).eval()
    with torch.no_grad():
        out = SegmentationTask().inferer(config)(model, {"pixel_values": torch.rand(1, 1, 40, 45, 33)}).logits
    regions = __import__("scipy").ndimage.label((out.argmax(1)[0] > 0).numpy())[1]
    assert regions <= 1
    with pytest.raises(ConfigError, match="keep_largest_component must be True or False"):
        SegmentationConfig(keep_largest_component="yes")


def test_swin_and_convnext_are_a_config_change():
    config = SegmentationConfig(
        backbone={"type": "swin", "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 3], "window_size": 4},
        head={"type": "unetr_decoder", "feature_size": 8, "identity_skip_levels": [5]},
    )
    model = PolyheadForSegmentation(config)
    assert model.backbone.feature_info[-1] == {"num_chs": 192, "reduction": 32}
    out = model(pixel_values=torch.rand(2, 1, 32, 32, 32), labels=torch.randint(0, 3, (2, 32, 32, 32)))
    out.loss.backward()
    assert out.logits.shape == (2, 3, 32, 32, 32)
    assert type(model.backbone).__name__ != type(PolyheadForSegmentation(SegmentationTask.example_config()).backbone).__name__


def test_identity_skip_levels_count_from_the_coarsest_level_when_negative():
    from polyhead.heads.segmentation import UnetrDecoder

    levels = [{"num_chs": 1, "reduction": 1}, *({"num_chs": 8 * 2**i, "reduction": 2 ** (i + 1)} for i in range(5))]
    for skip in ([-1], [5]):  # Swin-UNETR: the stride-32 map of a 32^3 patch (one voxel) is fed raw
        decoder = UnetrDecoder(feature_info=levels, num_labels=3, feature_size=8, identity_skip_levels=skip)
        assert [isinstance(e, torch.nn.Identity) for e in decoder.encoders] == [False] * 5 + [True]
    with pytest.raises(ConfigError, match="identity_skip_levels: level -7 must exist"):
        UnetrDecoder(feature_info=levels, num_labels=3, feature_size=8, identity_skip_levels=[-7])


# -- processor ------------------------------------------------------------------------
def test_processor_round_trip_restores_the_input_grid_and_orientation():
    processor = SegmentationProcessor()
    lps = _lps_copy(nib.load(IMAGE))
    lps_labels = _lps_copy(nib.load(LABEL))
    data = processor(lps)
    assert data["original"].shape == (1, *lps.shape) and data["image"].shape[0] == 1
    # the reference labels taken through the same chain, inverted: exactly the input-grid labels back
    pair = processor.deterministic_transforms(with_label=True)(
        {"image": processor.load(lps), "label": MetaTensor(torch.as_tensor(np.asanyarray(lps_labels.dataobj)[None]).float(), affine=torch.as_tensor(lps.affine))}
    )
    assert pair["label"].shape == data["image"].shape
    one_hot = torch.nn.functional.one_hot(pair["label"][0].long(), 3).permute(3, 0, 1, 2).float()
    mask = processor.invert(one_hot, data).argmax(0).numpy()
    np.testing.assert_array_equal(mask, np.asanyarray(lps_labels.dataobj))


def test_processor_saves_its_settings_after_use(tmp_path):
    processor = SegmentationProcessor(target_spacing=(3.0, 3.0, 3.0), intensity={"mode": "zscore"})
    processor(np.random.default_rng(0).random((20, 20, 20), dtype=np.float32))
    processor.save_pretrained(tmp_path)
    again = SegmentationProcessor.from_pretrained(tmp_path)
    assert again.target_spacing == [3.0, 3.0, 3.0] and again.intensity == {"mode": "zscore"}


def test_processor_accepts_paths_images_arrays_and_meta_tensors():
    processor = SegmentationProcessor()
    image = nib.load(IMAGE)
    from_path = processor(IMAGE)["image"]
    from_nib = processor(image)["image"]
    from_array = processor(np.asanyarray(image.dataobj), affine=image.affine)["image"]
    from_meta = processor(MetaTensor(torch.as_tensor(np.asanyarray(image.dataobj)[None]).float(), affine=torch.as_tensor(image.affine)))["image"]
    for other in (from_nib, from_array, from_meta):
        torch.testing.assert_close(other.as_tensor(), from_path.as_tensor())


def test_arrays_without_an_affine_warn_that_1mm_voxels_are_assumed():
    processor = SegmentationProcessor()
    volume = np.random.default_rng(0).random((20, 20, 20), dtype=np.float32)
    with pytest.warns(AssumedGridWarning, match=r"taken as RAS with 1 mm x 1 mm x 1 mm voxels.*affine="):
        processor(volume)
    with pytest.warns(AssumedGridWarning, match="1 mm"):
        processor(torch.as_tensor(volume))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedGridWarning)  # with an affine, or from a NIfTI: no warning
        processor(volume, affine=np.diag([2.0, 2.0, 2.0, 1.0]))
        processor(IMAGE)


def test_processor_bad_volumes(tmp_path):
    processor = SegmentationProcessor()
    with pytest.raises(InputError, match="a 2D image cannot go through a 3D model"):
        processor(np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(InputError, match=r"takes 1 channel\(s\).*got a volume with 2"):
        processor(np.zeros((2, 16, 16, 16), dtype=np.float32))
    with pytest.raises(InputError, match="NaN or infinite"):
        processor(np.full((16, 16, 16), np.nan, dtype=np.float32))
    text = tmp_path / "scan.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a NIfTI file"):
        processor(text)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(InputError, match="could not be read as NIfTI"):
        processor(broken)
    with pytest.raises(InputError, match="does not exist"):
        processor(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="Cannot segment a dict"):
        processor({"image": 1})


# -- data -----------------------------------------------------------------------------
def _msd_copy(tmp_path: Path) -> Path:
    root = tmp_path / "Task_Brain"
    shutil.copytree(EMBEDDED, root)
    return root


def test_msd_folder_errors(tmp_path):
    root = _msd_copy(tmp_path)
    assert read_msd_folder(root).labels == ["background", "grey_matter", "white_matter"]
    (root / "labelsTr" / "mni152_2009a.nii.gz").unlink()
    with pytest.raises(DataError, match="lists label './labelsTr/mni152_2009a.nii.gz', but .* does not exist"):
        read_msd_folder(root)
    (root / "dataset.json").unlink()
    with pytest.raises(DataError, match="has no dataset.json"):
        read_msd_folder(root)
    with pytest.raises(DataError, match="is not a folder"):
        read_msd_folder(tmp_path / "nowhere")


def test_label_values_the_config_does_not_know(tmp_path):
    labels = nib.load(LABEL)
    bad = tmp_path / "bad.nii.gz"
    data = np.asanyarray(labels.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, labels.affine), bad)
    with pytest.raises(DataError, match=r"holds values \[7.0\] that the config's 3 labels"):
        check_label_values(Case(image=str(IMAGE), label=str(bad), name="bad"), 3)


def test_splits_are_disjoint():
    bounds = region_bounds(100, val_fraction=0.15, test_fraction=0.3, margin=4)
    assert bounds == {"test": (0, 30), "validation": (34, 49), "train": (53, 100)}
    train_ids, val_ids, test_ids = split_cases(10, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert sorted(train_ids + val_ids + test_ids) == list(range(10)) and len(test_ids) == 2
    with pytest.raises(DataError, match="at least 3 labelled volumes"):
        split_cases(2, val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(DataError, match="leaves an empty split"):
        region_bounds(10, val_fraction=0.1, test_fraction=0.1, margin=8)


def test_datasets_nifti_dataset(tmp_path):
    ds = datasets.Dataset.from_dict({"image": [str(IMAGE)], "label": [str(LABEL)]}).cast_column("image", datasets.Nifti()).cast_column("label", datasets.Nifti())
    ds.save_to_disk(tmp_path / "brain")
    cases = read_nifti_dataset(tmp_path / "brain")
    assert len(cases) == 1 and isinstance(cases[0].image, nib.Nifti1Image)
    with pytest.raises(DataError, match="needs 'image' and 'label' columns"):
        read_nifti_dataset(datasets.Dataset.from_dict({"image": [str(IMAGE)]}))


def test_metrics_dice_and_hd95():
    metrics = SegmentationMetrics(labels=["background", "a", "b"], spacing=[2.0, 2.0, 2.0])
    labels = torch.zeros(1, 10, 10, 10, dtype=torch.uint8)
    labels[0, 2:5, 2:5, 2:5] = 1
    labels[0, 6:9, 6:9, 6:9] = 2
    metrics.update({"prediction": labels.clone(), "labels": labels})
    result = metrics.compute()
    assert result["dice"] == pytest.approx(1.0) and result["hd95"] == pytest.approx(0.0)
    shifted = torch.roll(labels, shifts=1, dims=1)
    metrics.reset()
    metrics.update({"prediction": shifted, "labels": labels})
    result = metrics.compute()
    assert result["dice_a"] == pytest.approx(2 * 18 / 54) and result["hd95_a"] == pytest.approx(2.0)  # one voxel = 2 mm


# -- whole-head synthesis ----------------------------------------------------------------
@pytest.fixture(scope="module")
def anatomy() -> HeadAnatomy:
    return HeadAnatomy.from_folder("mni152_2mm")


def test_anatomy_is_the_template_padded_in_ras(anatomy):
    image = nib.load(IMAGE)
    labels = np.asanyarray(nib.load(LABEL).dataobj)
    assert anatomy.tissues.shape == (3, *anatomy.shape) and anatomy.spacing == 2.0
    assert all(n > m for n, m in zip(anatomy.shape, image.shape))  # room for a head and a neck
    # the template's voxel (0, 0, 0) keeps its world position, and its labels are the padded anatomy's
    corner = np.linalg.solve(anatomy.affine, image.affine @ np.array([0, 0, 0, 1.0]))[:3].round().astype(int)
    x, y, z = corner
    np.testing.assert_array_equal(anatomy.labels[x : x + labels.shape[0], y : y + labels.shape[1], z : z + labels.shape[2]], labels)
    assert anatomy.intracranial[anatomy.labels > 0].all()
    assert anatomy.landmarks()["z_low"] < anatomy.landmarks()["z_top"]


def test_synthetic_heads_put_every_brain_voxel_inside_the_skull(anatomy):
    region = [slice(0, n) for n in anatomy.shape]
    for seed in range(3):
        tissue = head_tissues(anatomy, region, np.random.default_rng(seed))
        assert not np.isin(tissue, (GREY, WHITE)).any()  # brain tissue comes from the template's fractions only
        assert (tissue[anatomy.intracranial] == CSF).all()
        assert (tissue == BONE).sum() > 1000 and len(np.unique(tissue)) >= 9  # a skull and most of the head's tissues
        # the skull encloses the intracranial volume: no air touches it
        shell = ndimage_dilate(anatomy.intracranial) & ~anatomy.intracranial
        assert not (tissue[shell] == TISSUES.index("air")).any()


def ndimage_dilate(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=1)


def test_synthesis_patches_are_seeded_by_index_and_labelled(anatomy):
    patches = SynthesisPatches(anatomy, patch_size=(32, 32, 32), length=10, seed=3)
    first, again, other = patches[4], patches[4], patches[5]
    assert first["pixel_values"].shape == (1, 32, 32, 32) and first["labels"].shape == (1, 32, 32, 32)
    assert first["labels"].dtype == torch.uint8 and set(first["labels"].unique().tolist()) <= {0, 1, 2}
    assert 0.0 <= float(first["pixel_values"].min()) and float(first["pixel_values"].max()) <= 1.0
    torch.testing.assert_close(first["pixel_values"], again["pixel_values"])  # order-independent: the index is the seed
    assert not torch.equal(first["pixel_values"], other["pixel_values"])
    assert len(patches) == 10


def test_synthesis_options_are_checked():
    assert SynthesisOptions.from_section(True) == SynthesisOptions()
    with pytest.raises(ConfigError, match=r"data.synthesis.nois is not a synthesis option.*Did you mean 'noise'"):
        SynthesisOptions.from_section({"nois": 0.1})
    with pytest.raises(ConfigError, match=r"data.synthesis.real_fraction must be a number in \[0, 1\)"):
        SynthesisOptions(real_fraction=1.5)
    with pytest.raises(ConfigError, match="data.synthesis.samples must be a positive integer"):
        SynthesisOptions(samples=0)


def test_validation_heads_and_phantoms_are_whole_heads(anatomy):
    image, labels = synthetic_head(anatomy, 1)  # the training generator, rotated and scaled a little
    assert image.shape == labels.shape == anatomy.shape
    values = np.asanyarray(image.dataobj)
    assert values.min() >= 0.0 and values.max() <= 1.0
    brain = np.sum(np.asanyarray(labels.dataobj) > 0)
    assert set(np.unique(np.asanyarray(labels.dataobj)).tolist()) == {0, 1, 2}
    assert brain == pytest.approx(np.sum(anatomy.labels > 0), rel=0.25)
    phantom, reference, inside = phantom_head(anatomy, 2)
    scan = np.asanyarray(phantom.dataobj)
    assert scan.dtype == np.int16 and scan.shape == anatomy.shape
    inside = np.asanyarray(inside.dataobj) > 0
    reference = np.asanyarray(reference.dataobj)
    assert (reference[~inside] == 0).all()
    # a head: bright tissue outside the intracranial volume (scalp fat, marrow), and a neck below the brain
    outside = scan[~inside & (anatomy.outside_mm < 30)]
    white = np.median(scan[reference == 2])
    assert np.mean(outside > 0.9 * white) > 0.05
    np.testing.assert_allclose(phantom.affine, anatomy.affine)


def test_msd_folder_without_tissue_maps_cannot_synthesise(tmp_path):
    root = _msd_copy(tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    del meta["training"][0]["tissues"]
    (root / "dataset.json").write_text(json.dumps(meta))
    task = SegmentationTask()
    config = task.build_config({"patch_size": [32, 32, 32], "backbone": SegmentationTask.example_config().backbone}, {"root": str(root)})
    with pytest.raises(DataError, match="names no 'tissues' maps"):
        task.build_data({"root": str(root), "synthesis": True}, config)


# -- training end to end ----------------------------------------------------------------
@pytest.mark.slow
def test_train_evaluate_on_the_embedded_template_and_an_msd_folder(tmp_path):
    result = train("segmentation", cfg_options={**TINY, "train.output_dir": str(tmp_path / "run")})
    best = Path(result.best_dir)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json", "README.md"):
        assert (best / name).is_file(), name
    metrics = json.loads((best / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"dice", "hd95", "dice_grey_matter", "dice_white_matter", "hd95_white_matter"}
    assert metrics["data"]["split"] == "synthesis"
    splits = metrics["data"]["splits"]
    assert "synthetic whole-head patches" in splits["train"]["cases"] and "phantom_head_20000" in splits["test"]["cases"]
    card = (best / "README.md").read_text()
    assert "dice_grey_matter" in card and "hd95" in card
    # the test phantoms are rebuilt from the saved data section: `polyhead evaluate` measures the same
    assert json.loads((best / "training_config.json").read_text())["data"]["root"] == "mni152_2mm"
    assert evaluate_model_dir(best)["metrics"]["dice"] == pytest.approx(metrics["test"]["dice"], abs=1e-6)
    # `polyhead evaluate --data <MSD folder>` sets data.source: that folder's own volumes, no synthesis
    again = evaluate_model_dir(best, data=str(_msd_copy(tmp_path)))
    assert again["data"]["source"] == str(tmp_path / "Task_Brain") and again["data"]["split"] == "regions"


def test_msd_folder_with_several_volumes_splits_by_case(tmp_path):
    """Labels and channels come from dataset.json; three volumes or more are split by whole volumes."""
    root = tmp_path / "Task_Crops"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    image, labels = nib.load(IMAGE), nib.load(LABEL)
    entries = []
    for i, start in enumerate((0, 20, 40)):  # three different slabs of the real template, each its own case
        name = f"brain_{i}.nii.gz"
        nib.save(image.slicer[:, start : start + 60, :], root / "imagesTr" / name)
        nib.save(labels.slicer[:, start : start + 60, :], root / "labelsTr" / name)
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "gm", "2": "wm"}, "modality": {"0": "MRI"}, "training": entries}))
    task = SegmentationTask()
    config = task.build_config({"patch_size": [32, 32, 32], "backbone": SegmentationTask.example_config().backbone}, {"source": str(root)})
    assert config.labels == ["background", "gm", "wm"] and config.in_channels == 1 and config.backbone["in_channels"] == 1
    data = task.build_data({"source": str(root), "patches_per_volume": 2}, config)
    assert data.description["split"] == "cases" and data.description["source"] == str(root)
    assert data.eval_batch_size == 1  # whole volumes of different sizes
    assert [case.region for case in data.test.cases] == [None]  # whole volumes
    # data.root: the older name of data.source, still read (old configs and saved training configs); source wins
    assert task.build_data({"root": str(root), "patches_per_volume": 2}, config).description["source"] == str(root)
    assert task.build_data({"root": "mni152_2mm", "source": str(root)}, config).description["source"] == str(root)
    assert [data.description["splits"][s]["volumes"] for s in ("train", "validation", "test")] == [1, 1, 1]
    patch = data.train[0]
    assert patch["pixel_values"].shape == (1, 32, 32, 32) and patch["labels"].shape == (1, 32, 32, 32)
    volume = data.test[0]
    assert volume["pixel_values"].shape[1:] == volume["labels"].shape[1:]
    with pytest.raises(ConfigError, match="data.region_axs is not a segmentation data option.*Did you mean 'region_axis'"):
        task.build_data({"root": str(root), "region_axs": 1}, config)


