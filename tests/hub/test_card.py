"""Model cards: rendered from the run's files only, and read back by huggingface_hub unchanged."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard

import polyhead
from polyhead.errors import ModelLoadError
from polyhead.hub import CARD_NAME, render_card, write_card
from polyhead.tasks.forecasting import ForecastingConfig, PolyheadForForecasting

from ..conftest import TINY_FORECASTING


def test_header_carries_the_run_metrics_and_round_trips(exported_dir, tmp_path):
    metrics = json.loads((exported_dir / "metrics.json").read_text())
    card = render_card(exported_dir, repo_id="my-org/co2-forecaster")
    data = card.data
    assert data.library_name == "polyhead" and data.pipeline_tag == "time-series-forecasting"
    assert data.tags == ["forecasting", "time-series", "transformer", "forecast"]  # task, domain, backbone, head
    assert data.datasets == ["forecasting_corpus"] and data.license == "apache-2.0"
    assert data.model_name == "co2-forecaster"
    # every test metric of metrics.json, and nothing else, as an EvalResult with the exact value
    assert {r.metric_type: r.metric_value for r in data.eval_results} == metrics["test"]
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in data.eval_results} == {("time-series-forecasting", "forecasting_corpus", "test")}

    path = tmp_path / CARD_NAME
    card.save(path)
    loaded = ModelCard.load(path)
    assert loaded.data.eval_results == data.eval_results
    assert loaded.data.to_dict() == data.to_dict()
    assert loaded.text == card.text


def test_body_says_what_the_files_measured(exported_dir):
    text = render_card(exported_dir, repo_id="my-org/co2-forecaster").text
    metrics = json.loads((exported_dir / "metrics.json").read_text())
    report = json.loads((exported_dir / "onnx_report.json").read_text())
    model = polyhead.AutoModel.from_pretrained(exported_dir)

    # the parts and their sizes, counted on the real model
    for part in (model.backbone, model.adapter.head, model.adapter.stem):
        assert f"{sum(p.numel() for p in part.parameters()):,} |" in text
    assert f"**{sum(p.numel() for p in model.parameters()):,}**" in text
    assert "| backbone | `transformer` |" in text and "`num_heads=4`" in text
    # the data and split, the metrics beside the baseline
    test_split = metrics["data"]["splits"]["test"]
    assert f"| test | {test_split['windows']:,} | {test_split['series']:,} | - |" in text  # held-out series: no windows drawn
    mae, baseline = metrics["test"]["mae"], metrics["baselines"]["seasonal_naive"]["mae"]
    assert f"| `mae` | {mae:.4g} | {baseline:.4g} |" in text
    assert "| `loss` | " in text and " | - |" in text  # no baseline value for the loss
    # usage with all three backends, ONNX parity from the report, and how to reproduce
    assert 'polyhead.pipeline("time-series-forecasting", model="my-org/co2-forecaster")' in text
    assert 'transformers.pipeline("time-series-forecasting", model="my-org/co2-forecaster")' in text
    assert 'model="my-org/co2-forecaster", backend="onnx")' in text
    first = report["parity"][0]["outputs"]["prediction"]
    assert f"| `prediction` | {first['max_abs_diff']:.3g} | {first['max_rel_diff']:.3g} | yes |" in text
    assert f"atol={report['tolerance']['atol']}" in text
    assert "polyhead train training_config.json" in text
    assert json.dumps(json.loads((exported_dir / "training_config.json").read_text()), indent=2) in text
    assert "## Limitations" in text


def test_card_of_a_dir_without_metrics_or_onnx(tmp_path):
    torch.manual_seed(0)
    config = ForecastingConfig(context_length=32, horizon=8, patch_length=8, patch_stride=4,
                               backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16})
    PolyheadForForecasting(config).save_pretrained(tmp_path / "bare")
    card = render_card(tmp_path / "bare")
    assert card.data.eval_results is None and "model-index" not in str(card)
    assert "No measured metrics" in card.text and "Not exported yet" in card.text
    assert card.data.library_name == "polyhead" and card.data.datasets is None


def test_hub_section_of_the_config_is_read_without_running_it(model_dir, tmp_path):
    config = model_dir / "training_config.json"
    sections = json.loads(config.read_text())
    config.write_text(json.dumps({**sections, "hub": {"license": "mit", "tags": ["co2", "forecasting"]}}))
    marker = tmp_path / "pwned"
    (model_dir / "training_config.py").write_text(f"_pwn = __import__('pathlib').Path({str(marker)!r}).touch()\n")
    card = render_card(model_dir)
    assert not marker.exists(), "a Python file in the model folder was executed"
    assert card.data.license == "mit"
    assert card.data.tags == ["forecasting", "time-series", "transformer", "forecast", "co2"]
    assert render_card(model_dir, license="cc-by-4.0").data.license == "cc-by-4.0"


def test_write_card_and_refusals(model_dir, tmp_path):
    path = write_card(model_dir, repo_id="org/name")
    assert path == model_dir / CARD_NAME and ModelCard.load(path).data.model_name == "name"
    hidden = [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
    assert hidden == [".polyhead.json"], f"temporary file left behind: {hidden}"

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="holds a bert model, not a polyhead model"):
        render_card(other)
    with pytest.raises(ModelLoadError, match="has no config.json"):
        write_card(tmp_path)
    assert not (tmp_path / CARD_NAME).exists()


@pytest.mark.slow
def test_polyhead_train_writes_the_card(tmp_path):
    result = polyhead.train("forecasting", cfg_options={**TINY_FORECASTING, "train.epochs": 1, "train.output_dir": str(tmp_path / "run")})
    card = ModelCard.load(result.best_dir / CARD_NAME)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == result.metrics["test"]
    assert f'model="{result.best_dir}"' in card.text
    # a freshly trained dir is ready to push: the card matches what render_card gives for it now
    assert str(card) == str(render_card(result.best_dir, model_id=str(result.best_dir)))
    shutil.rmtree(tmp_path / "run")
