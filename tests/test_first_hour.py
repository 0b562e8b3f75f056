"""The first hour of a new user (issue 20): standard data layouts, a model that saves what it needs, quiet output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import polyhead
from polyhead import registry
from polyhead.tasks.detection.data import load_detection_source

from .conftest import TINY_FORECASTING

PIPELINE_OF = {"forecasting": "time-series-forecasting", "recommendation": "recommendation", "rl": "reinforcement-learning",
               "asr": "automatic-speech-recognition", "detection": "object-detection", "segmentation": "segmentation"}


def test_the_real_coco_2017_layout_is_read_as_coco_writes_it(tmp_path):
    """``annotations/instances_train2017.json`` + ``train2017/``, ``instances_val2017.json`` + ``val2017/``."""
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]
    for split, ids in (("train2017", range(1, 6)), ("val2017", range(6, 8))):
        (tmp_path / split).mkdir()
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in ids]
        for image in images:
            Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(tmp_path / split / image["file_name"])
        annotations = [{"id": 100 + i, "image_id": i, "category_id": 1 + 2 * (i % 2), "bbox": [4, 4, 20, 16], "area": 320, "iscrowd": 0}
                       for i in ids]
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    source = load_detection_source(str(tmp_path), test_fraction=0.2)
    assert source.class_names == ["person", "car"]
    assert len(source.splits["validation"]) == 2  # val2017, not cut from train
    assert len(source.splits["train"]) + len(source.splits["test"]) == 5


def test_a_csv_with_comment_lines_loads(tmp_path):
    """NOAA, NASA and R write a ``#`` note above the header; polyhead skips it as pandas users expect."""
    frame = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=300, freq="W-SAT").strftime("%Y-%m-%d"),
                          "co2": 350 + np.sin(np.arange(300) / 8.3)})
    path = tmp_path / "co2.csv"
    path.write_text("# Mauna Loa weekly CO2, ppm\n# source: a note a user keeps\n" + frame.to_csv(index=False))
    result = polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "data.source": str(path), "train.epochs": 1,
                                                        "train.output_dir": str(tmp_path / "run")})
    assert result.metrics["data"]["steps"] == 300


def test_a_dataframe_passed_in_python_trains_and_is_recorded_as_such(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=300, freq="W-SAT"), "co2": 350 + np.sin(np.arange(300) / 8.3)})
    result = polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "data.source": frame, "train.epochs": 1,
                                                        "train.output_dir": str(tmp_path / "run")})
    saved = json.loads((result.best_dir / "training_config.json").read_text())
    assert saved["data"]["source"] == "<DataFrame 300x2 passed in Python: not saved>"
    with pytest.raises(polyhead.errors.DataError, match="passed in Python"):
        polyhead.evaluate_model_dir(result.best_dir)
    assert polyhead.evaluate_model_dir(result.best_dir, data="co2_weekly")["metrics"]["mae"] > 0


@pytest.mark.parametrize("task_name", sorted(PIPELINE_OF))
def test_save_pretrained_writes_what_the_pipeline_needs(task_name, tmp_path):
    """A transformers user saves the model and expects ``pipeline(model=dir)`` to load it: the processor goes too."""
    task = registry.get(registry.TASKS, task_name)
    torch.manual_seed(0)
    model = task().build_model(task.example_configs()[0])
    model.save_pretrained(tmp_path / "m")
    pipe = polyhead.pipeline(PIPELINE_OF[task_name], model=str(tmp_path / "m"))
    assert type(pipe.model) is type(model)


def test_detections_are_drawn_by_the_library(tmp_path):
    from polyhead.pipelines import default_model_dir

    image = default_model_dir("object-detection").parent.parent / "assets" / "detection_paste" / "test" / "0001.jpg"
    detect = polyhead.pipeline("object-detection")
    found = detect(str(image), threshold=0.5)
    assert found, "the default finds the objects of its own test image"
    picture = polyhead.draw_detections(str(image), found, out=tmp_path / "boxes.png")
    original = np.asarray(Image.open(image).convert("RGB"))
    drawn = np.asarray(picture)
    assert drawn.shape == original.shape and (drawn != original).any()
    box = found[0]["box"]
    edge = drawn[int(box["ymin"]), int(box["xmin"]):int(box["xmax"])]
    assert (edge == drawn[int(box["ymin"]), int(box["xmin"])]).all(), "the box's top edge is one colour"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "boxes.png")), drawn)
    with pytest.raises(polyhead.errors.InputError, match="as the pipeline returns it"):
        polyhead.draw_detections(str(image), [{"label": "face"}])
    with pytest.raises(polyhead.errors.InputError, match=r"\.jpg or \.png"):
        polyhead.draw_detections(str(image), found, out=tmp_path / "boxes.gif")


# ----------------------------------------------------------------------------- polyhead predict, every task


def _predict(capsys, *args) -> list:
    from polyhead.cli import main

    code = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines()]


def test_predict_names_the_embedded_defaults_and_reads_each_tasks_files(capsys, tmp_path):
    from polyhead.pipelines import default_model_dir

    assets = default_model_dir("object-detection").parent.parent / "assets"
    frame = pd.read_csv(assets / "co2_weekly.csv").tail(300)
    frame["co2"] = frame["co2"].interpolate()
    frame.to_csv(tmp_path / "history.csv", index=False)
    (forecast,) = _predict(capsys, "forecasting", tmp_path / "history.csv")
    assert len(next(iter(forecast["forecast"].values()))) > 0

    (tmp_path / "histories.jsonl").write_text('{"history": [50, 172, 133]}\n{"history": [1, 2]}\n')
    (top,) = _predict(capsys, "recommendation", tmp_path / "histories.jsonl", "--top-k", 3)
    assert [len(items) for items in top] == [3, 3]

    clip = sorted((assets / "speech_commands" / "test").glob("*.opus"))[0]
    (speech,) = _predict(capsys, "asr", clip)
    assert isinstance(speech["text"], str) and speech["text"]

    images = sorted((assets / "detection_paste" / "test").glob("*.jpg"))[:2]
    boxes = _predict(capsys, "object-detection", *images, "--threshold", 0.5)
    assert len(boxes) == 2 and all(d["score"] >= 0.5 for d in boxes[0])

    volume = sorted((assets / "mni152_2mm" / "imagesTr").glob("*.nii.gz"))[0]
    (mask,) = _predict(capsys, "segmentation", volume, "--output", tmp_path / "mask.nii.gz")
    assert mask["output"] == str(tmp_path / "mask.nii.gz") and mask["mask"]["dtype"] == "uint8" and mask["volumes_ml"]

    (episode,) = _predict(capsys, "rl", "CartPole-v1", "--episodes", 2)
    assert episode["env_id"] == "CartPole-v1" and len(episode["returns"]) == 2


def test_predict_refuses_bad_input_with_a_message(capsys, tmp_path):
    from polyhead.cli import main

    for args, message in (
        (["forecasting", str(tmp_path / "missing.csv")], "does not exist"),
        (["forecasting", str(tmp_path / "x.csv"), "--threshold", "0.5"], "Unknown pipeline argument"),
        (["recommendation", str(tmp_path / "bad.json")], "neither JSON nor JSON lines"),
        (["segmentation", "a.nii.gz", "b.nii.gz", "--output", str(tmp_path / "m.nii.gz")], "--output names one file"),
    ):
        (tmp_path / "x.csv").write_text("date,co2\n2000-01-01,1\n")
        (tmp_path / "bad.json").write_text("{not json")
        assert main(["predict", *args]) == 2, args
        assert message in capsys.readouterr().err, args


def test_every_example_file_ships_and_bad_names_are_refused():
    from polyhead.examples import EXAMPLE_FILES, example_file
    from polyhead.pipelines import PIPELINES

    for task in EXAMPLE_FILES:
        assert task in PIPELINES and example_file(task).is_file() and example_file(task).stat().st_size > 0
    assert example_file("asr") == example_file("automatic-speech-recognition")
    assert example_file("medical-segmentation") == example_file("segmentation")  # every pipeline alias
    with pytest.raises(polyhead.errors.UnknownNameError, match="Did you mean 'segmentation'"):
        polyhead.example_file("segmentaton")
