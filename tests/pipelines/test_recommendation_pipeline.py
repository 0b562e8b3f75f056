"""The recommendation pipeline: the embedded next-item default, batches, bad input, CTR rows, ONNX backend."""

from __future__ import annotations

import json
import shutil

import pytest
import transformers

import polyhead
from polyhead.errors import InputError
from polyhead.export import OnnxModel, export_onnx
from polyhead.pipelines import RecommendationPipeline, default_model_dir
from polyhead.tasks.recommendation import PolyheadForCTR, PolyheadForNextItem, RecommendationProcessor, RecommendationTask

HISTORY = [50, 172, 133]


@pytest.fixture(scope="module")
def rec():
    return polyhead.pipeline("recommendation")


def test_default_model_is_embedded_and_beats_the_baselines(rec):
    assert isinstance(rec, RecommendationPipeline)
    assert rec.model.name_or_path == str(default_model_dir("recommendation"))
    assert isinstance(rec.model, PolyheadForNextItem) and rec.model.config.model_type == "polyhead-next-item"
    assert rec.model.config.num_items == 1682 and rec.model.config.objective == "next_item"
    metrics = json.loads((default_model_dir("recommendation") / "metrics.json").read_text())
    for name in ("hr@10", "ndcg@10", "mrr"):
        for baseline in ("most_popular", "bpr_mf"):
            assert metrics["test"][name] > metrics["baselines"][baseline][name], (name, baseline)


def test_top_k_excludes_the_history(rec):
    out = rec({"history": HISTORY}, top_k=10)
    assert len(out) == 10 and set(out[0]) == {"item_id", "score", "title"}
    ids = [r["item_id"] for r in out]
    assert all(isinstance(i, int) for i in ids) and not set(ids) & set(HISTORY)
    assert [r["score"] for r in out] == sorted((r["score"] for r in out), reverse=True)
    assert out[0]["title"] and isinstance(out[0]["score"], float)
    kept = rec({"history": HISTORY}, top_k=1682, exclude_history=False)
    assert set(HISTORY) <= {r["item_id"] for r in kept}
    assert len(rec({"history": HISTORY}, top_k=5000)) == 1682 - 3  # capped at the items left


def test_batches_and_equivalent_inputs(rec):
    batch = rec([{"history": HISTORY}, {"history": [1, 2]}], top_k=5)
    assert len(batch) == 2 and all(len(r) == 5 for r in batch)
    assert batch[0] == rec({"history": HISTORY}, top_k=5)
    assert rec({"history": ["50", "172", "133"]}, top_k=5) == batch[0]  # ids as strings


def test_long_histories_keep_the_most_recent_items(rec):
    max_length = rec.model.config.max_length
    recent = list(range(1, max_length + 1))
    long = list(range(500, 560)) + recent
    assert [r["item_id"] for r in rec({"history": long}, top_k=10, exclude_history=False)] == [
        r["item_id"] for r in rec({"history": recent}, top_k=10, exclude_history=False)
    ]
    # ...but the whole history is excluded from the results
    assert not {r["item_id"] for r in rec({"history": long}, top_k=50)} & set(long)


def test_duplicates_are_kept_as_signal(rec):
    out = rec({"history": [50, 50, 50]}, top_k=10)
    assert 50 not in [r["item_id"] for r in out] and len(out) == 10


def test_bad_input(rec):
    with pytest.raises(InputError, match="The history is empty"):
        rec({"history": []})
    with pytest.raises(InputError, match=r"Unknown item id\(s\) \[99999\]"):
        rec({"history": [50, 99999]})
    assert len(rec({"history": [50, 99999]}, on_unknown="skip", top_k=3)) == 3
    with pytest.raises(InputError, match="got keys"):
        rec({"items": [50]})
    with pytest.raises(InputError, match="top_k must be a positive integer"):
        rec({"history": HISTORY}, top_k=0)
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        rec({"history": HISTORY}, k=3)
    with pytest.raises(InputError, match="Expected a dict"):
        rec("50 172")
    with pytest.raises(InputError, match="empty batch"):
        rec([])
    with pytest.raises(InputError, match="list of dicts"):
        rec([[50, 172]])


def test_transformers_pipeline_works_on_a_polyhead_model():
    pipe = transformers.pipeline("recommendation", model=str(default_model_dir("recommendation")))
    assert len(pipe({"history": HISTORY}, top_k=3)) == 3


@pytest.mark.slow
def test_onnx_backend_matches_torch(rec, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(default_model_dir("recommendation"), model_dir)
    report = export_onnx(model_dir)
    assert report["dynamic_axes"] == {"input_ids": {"0": "batch"}}
    onnx_rec = polyhead.pipeline("recommendation", model=str(model_dir), backend="onnx")
    assert isinstance(onnx_rec.model, OnnxModel)
    got, want = onnx_rec({"history": HISTORY}, top_k=10), rec({"history": HISTORY}, top_k=10)
    assert [r["item_id"] for r in got] == [r["item_id"] for r in want]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-4)


def test_ctr_model_pipeline(tmp_path):
    config = RecommendationTask.example_configs()[1]
    PolyheadForCTR(config).save_pretrained(tmp_path)
    RecommendationProcessor.from_config(config).save_pretrained(tmp_path)
    ctr = polyhead.pipeline("recommendation", model=str(tmp_path))
    row = {"user_id": 3, "item_id": 7, "genre": "Comedy", "age": 24, "year": 1994}
    out = ctr(row)
    assert set(out) == {"click_probability"} and 0.0 < out["click_probability"] < 1.0
    assert len(ctr([row, {**row, "age": 50}])) == 2
    with pytest.raises(InputError, match=r"lacks field\(s\) \['genre'\]"):
        ctr({k: v for k, v in row.items() if k != "genre"})
    with pytest.raises(InputError, match="never seen in training"):
        ctr({**row, "genre": "Horror"})
    with pytest.raises(InputError, match="'age' is numeric"):
        ctr({**row, "age": "24"})
    assert 0.0 < ctr({**row, "genre": "Horror"}, on_unknown="skip")["click_probability"] < 1.0


@pytest.mark.parametrize("value", ["no", "False", 0, 1, [], "yes"], ids=repr)
def test_exclude_history_must_be_a_bool(rec, value):
    with pytest.raises(InputError, match=rf"exclude_history must be True or False, got {value!r}".replace("[", r"\[").replace("]", r"\]")):
        rec({"history": HISTORY}, exclude_history=value)


def test_exclude_history_false_and_true(rec):
    import numpy as np

    kept = {r["item_id"] for r in rec({"history": HISTORY}, top_k=1682, exclude_history=False)}
    assert set(HISTORY) <= kept
    assert not set(HISTORY) & {r["item_id"] for r in rec({"history": HISTORY}, top_k=1682, exclude_history=np.bool_(True))}


def test_next_item_arguments_are_refused_for_a_ctr_model(tmp_path):
    config = RecommendationTask.example_configs()[1]
    PolyheadForCTR(config).save_pretrained(tmp_path)
    RecommendationProcessor.from_config(config).save_pretrained(tmp_path)
    ctr = polyhead.pipeline("recommendation", model=str(tmp_path))
    row = {"user_id": 3, "item_id": 7, "genre": "Comedy", "age": 24, "year": 1994}
    for kwargs in ({"top_k": 3}, {"exclude_history": False}):
        with pytest.raises(InputError, match=r"next-item .*this is a CTR model"):
            ctr(row, **kwargs)
