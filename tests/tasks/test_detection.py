"""Detection task: config, model, processor, COCO / Hub data (with bad annotations), augmentation, metrics, training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import polyhead
from polyhead.errors import ConfigError, DataError, InputError
from polyhead.tasks.detection import (
    DetectionConfig,
    DetectionImageProcessor,
    DetectionMetrics,
    DetectionTask,
    PolyheadForObjectDetection,
    load_detection_source,
)
from polyhead.tasks.detection.data import DetectionCollator, DetectionDataset

TINY = {
    "model.image_size": 64,
    "model.backbone": {"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 32]},
    "model.head": {"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 8},
    "train.max_steps": 2,
    "train.batch_size": 4,
    "train.eval_batch_size": 40,
    "train.log_with": None,
    "train.progress_bar": False,
    "train.warmup_steps": 0,
}


@pytest.fixture(scope="module")
def tiny_config() -> DetectionConfig:
    return DetectionTask.example_config()


@pytest.fixture(scope="module")
def tiny_model(tiny_config) -> PolyheadForObjectDetection:
    torch.manual_seed(0)
    return PolyheadForObjectDetection(tiny_config).eval()


def _write_coco(root: Path, split: str, *, categories, images, annotations, size=(48, 64)) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    for image in images:
        Image.fromarray(np.random.default_rng(image["id"]).integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / image["file_name"])
    (root / f"{split}.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


@pytest.fixture
def coco_root(tmp_path) -> Path:
    """A COCO folder whose category ids have gaps (3, 7, 10), one box outside the image and one of zero area."""
    categories = [{"id": 10, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "bird"}]
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in range(1, 7)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [4, 4, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 10, "bbox": [50, 30, 40, 40]},  # reaches outside: clipped
        {"id": 3, "image_id": 2, "category_id": 7, "bbox": [10, 10, 0, 12]},  # zero area: dropped
        {"id": 4, "image_id": 3, "category_id": 7, "bbox": [1, 2, 30, 30]},
    ]
    _write_coco(tmp_path, "train", categories=categories, images=images, annotations=annotations)
    _write_coco(tmp_path, "val", categories=categories, images=images[:2], annotations=annotations[:1])
    return tmp_path


# -- config & model -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": {"type": "swin", "spatial_dims": 3}}, "spatial_dims must be 2"),
        ({"backbone": {"type": "convnext", "in_channels": 1}}, "in_channels must be 3"),
        ({"nms_threshold": 1.5}, r"nms_threshold must be in \[0, 1\]"),
        ({"image_size": 0}, "image_size must be a positive integer"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DetectionConfig(id2label={0: "a"}, **kwargs)


def test_model_section_sets_class_names_and_rejects_wrong_parts():
    config = DetectionConfig.from_model_section({"id2label": {0: "cat", 1: "dog"}})
    assert config.num_labels == 2 and config.label2id == {"cat": 0, "dog": 1}
    with pytest.raises(ConfigError, match="needs a detection head"):
        PolyheadForObjectDetection(DetectionConfig(id2label={0: "a"}, head={"type": "forecast"}))
    with pytest.raises(ConfigError, match="needs a pyramid backbone"):
        PolyheadForObjectDetection(DetectionConfig(id2label={0: "a"}, backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2}))


def test_swin_backbone_is_a_config_change(tmp_path):
    from polyhead.config import load_config

    cfg = load_config("configs/detection/swin_tiny_fcos.py")
    assert cfg.model.backbone.type == "swin" and cfg.model.head.type == "fcos"
    # a config that leaves the input layout out (Swin's own default is 3-D, 1 channel) gets RGB images' from the task
    section = {k: v for k, v in cfg.model.to_dict().items() if k != "task"}
    section["backbone"] = {k: v for k, v in section["backbone"].items() if k not in ("spatial_dims", "in_channels")}
    built = DetectionTask().build_config(section, cfg.data.to_dict())
    assert built.backbone["spatial_dims"] == 2 and built.backbone["in_channels"] == 3
    assert DetectionTask().build_processor(built).size_divisor == 32
    config = DetectionConfig(
        id2label={0: "a", 1: "b"},
        backbone={"type": "swin", "spatial_dims": 2, "in_channels": 3, "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 3], "window_size": 4},
        head={"type": "fcos", "fpn_channels": 32, "num_convs": 3},
    )
    model = PolyheadForObjectDetection(config)
    assert model.adapter.head.strides == [8, 16, 32] and len(model.adapter.head.head.classification_head.conv) == 9  # 3 x (conv, norm, relu)
    out = model(pixel_values=torch.randn(1, 3, 64, 96))
    assert out.logits.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 2)


def test_adapter_refuses_a_backbone_of_another_layout_when_built():
    """A Swin without spatial_dims is a 3-D, 1-channel backbone: refused at construction, saying what it got and needs."""
    config = DetectionConfig(id2label={0: "a"}, backbone={"type": "swin", "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 3], "window_size": 4})
    with pytest.raises(ConfigError, match=r"needs a 2-D pyramid backbone with 3 input channels .*the 'swin' backbone has spatial_dims=3, in_channels=1"):
        PolyheadForObjectDetection(config)
    from polyhead.registry import BACKBONES, build

    gray = build(BACKBONES, {**DetectionTask.example_config().backbone, "in_channels": 1})
    with pytest.raises(ConfigError, match=r"the 'convnext' backbone has spatial_dims=2, in_channels=1"):
        PolyheadForObjectDetection(DetectionTask.example_config(), backbone=gray)


def test_processor_and_export_sizes_come_from_the_config_alone():
    """The padding multiple is read from the backbone's spec (nothing built) and matches the network's strides."""
    for head in ({"type": "fcos", "fpn_channels": 32, "num_convs": 1}, {"type": "fcos", "fpn_channels": 32, "num_convs": 1, "extra_level": True}):
        config = DetectionConfig(id2label={0: "a"}, backbone=DetectionTask.example_config().backbone, head=head)
        model = PolyheadForObjectDetection(config)
        assert DetectionTask().build_processor(config).size_divisor == model.size_divisor == (64 if head.get("extra_level") else 32)
        assert DetectionTask().export_spec(config).multiples == {"height": model.size_divisor, "width": model.size_divisor}


def test_forward_loss_only_with_labels_in_both_label_formats(tiny_model):
    x = torch.randn(2, 3, 64, 96)
    out = tiny_model(pixel_values=x)
    assert out.loss is None and out.logits.shape == (2, 8 * 12 + 4 * 6 + 2 * 3, 3)
    as_dicts = [{"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[2.0, 3, 30, 40], [40, 10, 90, 60]])},
                {"class_labels": torch.tensor([], dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    padded = torch.full((2, 4, 5), -1.0)
    padded[0, :2] = torch.tensor([[0, 2.0, 3, 30, 40], [2, 40, 10, 90, 60]])
    a, b = tiny_model(pixel_values=x, labels=as_dicts), tiny_model(pixel_values=x, labels=padded)
    assert a.loss.ndim == 0 and torch.isfinite(a.loss)
    torch.testing.assert_close(a.loss, b.loss)
    assert set(a.loss_dict) == {"classification", "bbox_regression", "bbox_ctrness"}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([{"class_labels": torch.tensor([5]), "boxes": torch.zeros(1, 4)}] * 2, r"class ids outside \[0, 3\)"),
        ([{"class_labels": torch.tensor([0, 1]), "boxes": torch.zeros(1, 4)}] * 2, "1 boxes but 2 class labels"),
        ([{"boxes": torch.zeros(1, 4)}] * 2, "must be a dict with 'boxes'"),
        ([{"class_labels": torch.tensor([0]), "boxes": torch.zeros(1, 4)}], r"one target per image \(2\)"),
        (torch.zeros(2, 3, 4), r"\(batch=2, M, 5\)"),
    ],
)
def test_bad_labels(tiny_model, labels, message):
    with pytest.raises(InputError, match=message):
        tiny_model(pixel_values=torch.randn(2, 3, 64, 64), labels=labels)


def test_bad_pixel_values(tiny_model):
    with pytest.raises(InputError, match=r"pixel_values must be \(batch, 3, height, width\)"):
        tiny_model(pixel_values=torch.randn(3, 64, 64))
    with pytest.raises(InputError, match="multiples of 32"):
        tiny_model(pixel_values=torch.randn(1, 3, 50, 64))


def test_save_load_roundtrip_with_auto_classes(tiny_model, tiny_config, tmp_path):
    processor = DetectionTask().build_processor(tiny_config)
    tiny_model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForObjectDetection.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PolyheadForObjectDetection) and loaded.config.id2label == tiny_config.id2label
    reloaded = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded, DetectionImageProcessor) and reloaded.to_dict() == processor.to_dict()
    assert isinstance(polyhead.AutoModel.from_pretrained(tmp_path), PolyheadForObjectDetection)
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(pixel_values=x).logits, tiny_model(pixel_values=x).logits)


# -- processor ------------------------------------------------------------------------
def test_processor_resizes_keeping_aspect_pads_and_masks():
    processor = DetectionImageProcessor(image_size=64, size_divisor=32)
    batch = processor([np.zeros((30, 60, 3), np.uint8), np.zeros((100, 50, 3), np.uint8)])
    assert batch["pixel_values"].shape == (2, 3, 64, 64) and batch["pixel_mask"].shape == (2, 64, 64)
    assert batch["pixel_mask"][0].sum() == 32 * 64 and batch["pixel_mask"][1].sum() == 64 * 32
    assert processor.resized_size(30, 60) == (32, 64) and processor.resized_size(100, 50) == (64, 32)


@pytest.mark.parametrize(
    ("image", "resized"),
    [
        (Image.new("L", (40, 20), 128), (16, 32)),  # grayscale
        (Image.new("RGBA", (20, 40), (255, 0, 0, 0)), (32, 16)),  # RGBA: composited on white
        (np.zeros((8, 8), np.uint8), (32, 32)),  # tiny: upscaled
        (np.zeros((3000, 4000, 3), np.uint8), (24, 32)),  # huge: downscaled
        (np.random.rand(10, 20, 4).astype(np.float32), (16, 32)),  # float RGBA in [0, 1]
        (torch.zeros(1, 20, 20, dtype=torch.uint8), (32, 32)),  # (C, H, W) tensor
    ],
)
def test_processor_accepts_image_kinds(image, resized):
    processor = DetectionImageProcessor(image_size=32, size_divisor=32)
    batch = processor(image)
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    assert int(batch["pixel_mask"][0].sum()) == resized[0] * resized[1]


def test_rgba_transparency_becomes_white():
    processor = DetectionImageProcessor(image_size=32, image_mean=[0, 0, 0], image_std=[1, 1, 1])
    pixels = processor(Image.new("RGBA", (32, 32), (255, 0, 0, 0)))["pixel_values"]
    torch.testing.assert_close(pixels, torch.ones_like(pixels))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("photo.jpg", "Expected an image as a PIL image"),
        (np.zeros((4, 4, 2), np.uint8), r"must be \(H, W\)"),
        (np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
        (np.full((4, 4), 300, np.int32), r"values in \[0, 255\]"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        ([], "empty list of images"),
    ],
)
def test_processor_bad_images(image, message):
    with pytest.raises(InputError, match=message):
        DetectionImageProcessor()(image)


def test_post_process_undoes_the_resize(tiny_model, tiny_config):
    processor = DetectionTask().build_processor(tiny_config)
    image = np.zeros((120, 240, 3), np.uint8)
    with torch.no_grad():
        out = tiny_model(**processor(image))
    result = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(120, 240)])[0]
    assert len(result["boxes"]) > 0
    assert (result["boxes"][:, 0::2] <= 240).all() and (result["boxes"][:, 1::2] <= 120).all()
    small = processor.post_process_object_detection(out, threshold=0.0, image_sizes=[(32, 64)])[0]
    torch.testing.assert_close(result["boxes"], small["boxes"] * 240 / 64)


# -- data -----------------------------------------------------------------------------
def test_embedded_set_has_disjoint_splits_and_real_sources():
    source = load_detection_source("detection_paste")
    assert source.class_names == ["face", "trouser", "bag", "sneaker"]
    assert {k: v["images"] for k, v in source.description["splits"].items()} == {"train": 300, "validation": 60, "test": 80}
    assert source.description["source"] == "detection_paste"
    root = Path(polyhead.__file__).parent / "assets" / "detection_paste"
    backgrounds = {s: {i["background"] for i in json.loads((root / f"{s}.json").read_text())["images"]} for s in ("train", "validation", "test")}
    assert not (backgrounds["train"] & backgrounds["test"]) and not (backgrounds["train"] & backgrounds["validation"])
    assert "Fashion-MNIST" in (root / "LICENSE.md").read_text()
    row = source.splits["test"][0]
    assert set(row) >= {"image", "objects"} and len(row["objects"]["bbox"][0]) == 4


def test_coco_with_category_gaps_bad_boxes_and_missing_splits(coco_root):
    source = load_detection_source(str(coco_root), test_fraction=0.2)
    assert source.class_names == ["dog", "bird", "cat"]  # sorted by category id 3, 7, 10
    counts = source.description["splits"]["train"]
    assert counts["clipped_boxes"] == 1 and counts["dropped_zero_area_boxes"] == 1
    assert source.description["splits"]["validation"]["images"] == 2 and source.description["splits"]["test"]["images"] == 1  # cut from train
    assert counts["objects"] + source.description["splits"]["test"]["objects"] == 3
    train = {r["image_id"]: r["objects"] for r in source.splits["train"]} | {r["image_id"]: r["objects"] for r in source.splits["test"]}
    assert train[1]["category"] == [0, 2] and train[1]["bbox"][1] == [50.0, 30.0, 14.0, 18.0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(images=[]), "lists no images"),
        (lambda d: d["annotations"].append({"id": 9, "image_id": 1, "category_id": 99, "bbox": [0, 0, 2, 2]}), "category_id 99"),
        (lambda d: d["annotations"].append({"id": 9, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2]}), r"needs a bbox \[x, y, width, height\]"),
        (lambda d: d["images"].append({"id": 99, "file_name": "missing.png"}), "'missing.png' not found"),
        (lambda d: d["annotations"].append({"id": 9, "image_id": 42, "category_id": 3, "bbox": [0, 0, 2, 2]}), "image ids"),
        (lambda d: d.update(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), "must be unique"),
    ],
)
def test_bad_coco_files(coco_root, mutate, message):
    data = json.loads((coco_root / "train.json").read_text())
    mutate(data)
    (coco_root / "train.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        load_detection_source(str(coco_root))


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_detection_source(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="No COCO training annotations"):
        load_detection_source(str(tmp_path))
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable COCO json"):
        load_detection_source(str(tmp_path))


def test_non_image_file_in_the_data_is_a_data_error(coco_root):
    (coco_root / "train" / "1.png").write_text("this is not an image")
    source = load_detection_source(str(coco_root))
    dataset = DetectionDataset(source.splits["train"], DetectionImageProcessor(image_size=64), num_classes=3)
    with pytest.raises(DataError, match="Cannot read image"):
        [dataset[i] for i in range(len(dataset))]


def test_hub_schema_dataset_dict(tmp_path):
    images = [Image.fromarray(np.full((40, 60, 3), i * 40, np.uint8)) for i in range(6)]
    objects = [{"bbox": [[5.0, 5.0, 20.0, 10.0]], "category": [i % 2]} for i in range(6)]
    features = datasets.Features({"image": datasets.Image(), "objects": {"bbox": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)), "category": datasets.Sequence(datasets.ClassLabel(names=["apple", "pear"]))}})
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": images, "objects": objects}, features=features)})
    dd.save_to_disk(str(tmp_path / "hub"))
    source = load_detection_source(str(tmp_path / "hub"), val_fraction=0.2, test_fraction=0.2)
    assert source.class_names == ["apple", "pear"] and sum(s["images"] for s in source.description["splits"].values()) == 6
    sample = DetectionDataset(source.splits["train"], DetectionImageProcessor(image_size=60), num_classes=2)[0]
    torch.testing.assert_close(sample["boxes"], torch.tensor([[5.0, 5.0, 25.0, 15.0]]))
    with pytest.raises(DataError, match="lacks column"):
        load_detection_source(datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": images})}))


def test_augmentation_moves_boxes_with_pixels():
    image = np.zeros((40, 80, 3), np.uint8)
    image[10:20, 5:25] = 255  # a white box at x 5..25, y 10..20
    dd = datasets.Dataset.from_dict({"image": [Image.fromarray(image)], "objects": [{"bbox": [[5.0, 10.0, 20.0, 10.0]], "category": [0]}]},
                                    features=datasets.Features({"image": datasets.Image(), "objects": {"bbox": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)), "category": datasets.Sequence(datasets.Value("int64"))}}))
    processor = DetectionImageProcessor(image_size=80, image_mean=[0, 0, 0], image_std=[1, 1, 1])
    flipped = DetectionDataset(dd, processor, num_classes=1, train=True, flip_prob=1.0, scale_range=(1.0, 1.0))[0]
    torch.testing.assert_close(flipped["boxes"], torch.tensor([[55.0, 10.0, 75.0, 20.0]]))
    pixels = flipped["pixel_values"][0]
    assert pixels[12:18, 57:73].min() > 0.9 and pixels[12:18, 7:23].max() < 0.1
    for _ in range(5):  # scale jitter: the box still frames the white pixels
        sample = DetectionDataset(dd, processor, num_classes=1, train=True, flip_prob=0.0, scale_range=(0.5, 2.0))[0]
        if len(sample["boxes"]):
            x0, y0, x1, y1 = sample["boxes"][0].round().int().tolist()
            inner = sample["pixel_values"][0, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
            assert inner.numel() == 0 or inner.mean() > 0.8
        assert sample["pixel_values"].shape[-1] <= 80 and sample["pixel_values"].shape[-2] <= 80


def test_collator_pads_to_fixed_sizes_and_rejects_too_many_objects():
    processor = DetectionImageProcessor(image_size=64)
    samples = [{"pixel_values": torch.zeros(3, 32, 64), "boxes": torch.tensor([[1.0, 2, 3, 4]]), "class_labels": torch.tensor([1]), "size": torch.tensor([32, 64])}]
    batch = DetectionCollator(processor, max_objects=3)(samples)
    assert batch["pixel_values"].shape == (1, 3, 64, 64) and batch["labels"].shape == (1, 3, 5)
    assert batch["labels"][0, 0].tolist() == [1, 1, 2, 3, 4] and (batch["labels"][0, 1:, 0] == -1).all()
    with pytest.raises(DataError, match="more than data.max_objects=0"):
        DetectionCollator(processor, max_objects=0)(samples)
    with pytest.raises(DataError, match="empty batch"):
        DetectionCollator(processor)([])


# -- metrics & training ---------------------------------------------------------------
def test_metrics_are_coco_map_per_class():
    boxes = torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 70]])
    labels = torch.full((1, 3, 5), -1.0)
    labels[0, :2] = torch.cat([torch.tensor([[0.0], [1.0]]), boxes], dim=1)
    perfect = DetectionMetrics(class_names=["a", "b"], postprocess=lambda out, sizes: [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}])
    perfect.update({"labels": labels, "image_sizes": torch.tensor([[80, 80]])})
    result = perfect.compute()
    assert set(result) == {"map", "map_50", "map_75", "map_a", "map_b"}
    assert result["map"] == pytest.approx(1.0) and result["map_b"] == pytest.approx(1.0)
    wrong = DetectionMetrics(class_names=["a", "b"], postprocess=lambda out, sizes: [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 0])}])
    wrong.update({"labels": labels, "image_sizes": torch.tensor([[80, 80]])})
    assert wrong.compute()["map"] == pytest.approx(0.0)


def test_train_and_evaluate_tiny(tmp_path):
    result = polyhead.train("configs/detection/convnext_tiny_fcos.py", cfg_options={**TINY, "train.output_dir": str(tmp_path / "run")})
    metrics = result.metrics
    assert metrics["global_step"] == 2 and set(metrics["test"]) >= {"loss", "map", "map_50", "map_75", "map_face"}
    assert {k: v["images"] for k, v in metrics["data"]["splits"].items()} == {"train": 300, "validation": 60, "test": 80}
    best = result.best_dir
    assert (best / "preprocessor_config.json").is_file() and (best / "README.md").is_file()
    evaluated = polyhead.evaluate_model_dir(best, split="validation")
    assert set(evaluated["metrics"]) >= {"map", "map_50"}


def test_train_on_coco_folder_with_data_root(coco_root, tmp_path):
    result = polyhead.train("configs/detection/convnext_tiny_fcos.py", cfg_options={
        **TINY, "data.root": str(coco_root), "train.batch_size": 2, "train.output_dir": str(tmp_path / "run")})
    assert result.metrics["data"]["classes"] == ["dog", "bird", "cat"]
    model = polyhead.AutoModel.from_pretrained(result.best_dir)
    assert model.config.id2label == {0: "dog", 1: "bird", 2: "cat"}
    assert set(polyhead.evaluate_model_dir(result.best_dir, data=str(coco_root))["metrics"]) >= {"map", "map_dog"}
    other = tmp_path / "other"  # a COCO folder with other classes
    _write_coco(other, "train", categories=[{"id": 1, "name": "car"}], images=[{"id": i, "file_name": f"{i}.png"} for i in range(1, 4)], annotations=[])
    with pytest.raises(DataError, match="differ from the model's"):
        polyhead.evaluate_model_dir(result.best_dir, data=str(other))
    with pytest.raises(ConfigError, match="not a detection data option"):
        polyhead.train("configs/detection/convnext_tiny_fcos.py", cfg_options={**TINY, "data.rooot": "x", "train.output_dir": str(tmp_path / "r2")})




def test_default_model_fine_tunes_to_new_labels():
    """transformers' recipe for new classes (issue 22): ``from_pretrained(dir, id2label=..., ignore_mismatched_sizes=True)``.

    The new class layer starts as in a new model (finite; FCOS's focal-loss prior on the bias), every
    loaded tensor is kept, and a few optimiser steps lower the loss.
    """
    folder = Path(polyhead.__file__).parent / "defaults" / "detection"
    model = transformers.AutoModelForObjectDetection.from_pretrained(
        str(folder), id2label={i: str(i) for i in range(7)}, ignore_mismatched_sizes=True
    )
    assert isinstance(model, PolyheadForObjectDetection) and model.config.num_labels == 7
    cls_logits = model.adapter.head.head.classification_head.cls_logits
    assert cls_logits.out_channels == 7
    assert torch.isfinite(cls_logits.weight).all() and 0 < float(cls_logits.weight.std()) < 0.05
    torch.testing.assert_close(cls_logits.bias.detach(), torch.full((7,), -math.log(99.0)))
    loaded = PolyheadForObjectDetection.from_pretrained(str(folder)).state_dict()
    for name, tensor in model.state_dict().items():
        if ".cls_logits." not in name:
            torch.testing.assert_close(tensor, loaded[name], msg=f"{name} was not kept")

    torch.manual_seed(0)
    pixel_values = torch.rand(2, 3, 128, 128)
    labels = [{"class_labels": torch.tensor([5]), "boxes": torch.tensor([[10.0, 20.0, 60.0, 90.0]])},
              {"class_labels": torch.tensor([6, 1]), "boxes": torch.tensor([[30.0, 30.0, 100.0, 110.0], [0.0, 64.0, 40.0, 120.0]])}]
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(pixel_values=pixel_values, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
