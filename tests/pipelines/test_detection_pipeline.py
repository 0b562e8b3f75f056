"""The object-detection pipeline: embedded default, transformers' own pipeline, input kinds, ONNX backend, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import polyhead
from polyhead.errors import InputError
from polyhead.pipelines import PolyheadObjectDetectionPipeline, default_model_dir

TEST_IMAGES = default_model_dir("object-detection").parent.parent / "assets" / "detection_paste" / "test"


@pytest.fixture(scope="module")
def detect():
    return polyhead.pipeline("object-detection")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(TEST_IMAGES / "0001.jpg")


def _check(detections, width, height):
    assert isinstance(detections, list)
    for d in detections:
        assert set(d) == {"score", "label", "box"} and set(d["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert 0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= width and 0 <= d["box"]["ymin"] <= d["box"]["ymax"] <= height
    assert [d["score"] for d in detections] == sorted((d["score"] for d in detections), reverse=True)


def test_default_model_is_embedded_trained_and_finds_the_objects(detect, photo):
    assert isinstance(detect, PolyheadObjectDetectionPipeline)
    metrics = json.loads((default_model_dir("object-detection") / "metrics.json").read_text())
    assert metrics["test"]["map_50"] > 0.3  # measured by `polyhead train` on the held-out split
    truth = json.loads((TEST_IMAGES.parent / "test.json").read_text())
    boxes = torch.tensor([a["bbox"] for a in truth["annotations"] if a["image_id"] == 1])
    boxes[:, 2:] += boxes[:, :2]
    found = detect(photo, threshold=0.3)
    _check(found, photo.width, photo.height)
    assert {d["label"] for d in found} <= {"face", "trouser", "bag", "sneaker"}
    predicted = torch.tensor([[d["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for d in found], dtype=torch.float32)
    from torchvision.ops import box_iou

    assert len(found) and float(box_iou(boxes, predicted).max(dim=1).values.mean()) > 0.5


def test_transformers_own_pipeline_runs_the_polyhead_model(detect, photo):
    hf = transformers.pipeline("object-detection", model=str(default_model_dir("object-detection")))
    assert type(hf) is transformers.ObjectDetectionPipeline
    ours = detect(photo, threshold=0.3)
    theirs = sorted(hf(photo, threshold=0.3), key=lambda d: -d["score"])
    assert [d["box"] for d in theirs] == [d["box"] for d in ours]


def test_input_kinds_and_boxes_in_input_pixels(detect, photo):
    from_path = detect(str(TEST_IMAGES / "0001.jpg"), threshold=0.3)
    from_array = detect(np.asarray(photo), threshold=0.3)
    assert from_path == detect(photo, threshold=0.3) and [d["box"] for d in from_array] == [d["box"] for d in from_path]
    big = photo.resize((photo.width * 4, photo.height * 4))  # boxes scale with the input
    scaled = detect(big, threshold=0.3)
    _check(scaled, big.width, big.height)
    assert abs(scaled[0]["box"]["xmax"] - 4 * from_path[0]["box"]["xmax"]) <= 8
    batch = detect([photo, np.asarray(photo.convert("L"))], threshold=0.3)
    assert len(batch) == 2 and batch[0] == from_path


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (50, 40), 100),
        Image.new("RGBA", (60, 30), (0, 0, 0, 0)),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((3000, 4000, 3), np.uint8),
    ],
    ids=["grayscale", "rgba", "tiny-8x8", "huge-4000x3000"],
)
def test_odd_images_run(detect, image):
    width, height = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
    _check(detect(image, threshold=0.05), width, height)


def test_bad_input(detect, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image PIL can read"):
        detect(str(text))
    with pytest.raises(InputError, match="not found"):
        detect(str(tmp_path / "missing.jpg"))
    with pytest.raises(InputError, match="empty list of images"):
        detect([])
    with pytest.raises(InputError, match="Expected an image"):
        detect(42)
    with pytest.raises(InputError, match=r"threshold must be in \[0, 1\]"):
        detect(np.zeros((8, 8, 3), np.uint8), threshold=2)
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        detect(np.zeros((8, 8, 3), np.uint8), top_k=3)


@pytest.mark.slow
def test_onnx_backend_gives_the_same_detections(photo, tmp_path):
    from polyhead.tasks.detection import DetectionTask

    task = DetectionTask()  # a tiny model keeps the export quick; the default's export is benchmarked (benchmarks/onnx.py)
    config = task.example_config()
    torch.manual_seed(0)
    model_dir = tmp_path / "m"
    task.model_class(config).save_pretrained(model_dir)
    task.build_processor(config).save_pretrained(model_dir)
    polyhead.export_onnx(model_dir)
    torch_out = polyhead.pipeline("object-detection", model=str(model_dir))(photo, threshold=0.05)
    onnx_out = polyhead.pipeline("object-detection", model=str(model_dir), backend="onnx")(photo, threshold=0.05)
    assert len(torch_out) > 0 and [d["label"] for d in onnx_out] == [d["label"] for d in torch_out]
    for a, b in zip(onnx_out, torch_out):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert all(abs(a["box"][k] - b["box"][k]) <= 1 for k in a["box"])


def test_cli_predict_on_an_image(capsys, tmp_path):
    from polyhead.cli import main

    assert main(["predict", str(default_model_dir("object-detection")), str(TEST_IMAGES / "0001.jpg")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out and set(out[0]) == {"score", "label", "box"}
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert main(["predict", str(default_model_dir("object-detection")), str(tmp_path / "broken.png")]) == 2
    assert "not an image PIL can read" in capsys.readouterr().err
