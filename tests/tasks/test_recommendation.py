"""Recommendation task: configs, the two models, processor, leave-one-out split, metrics, baselines, training, CTR export, ML-100k."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import torch
import transformers

import polyhead
from polyhead.errors import ConfigError, DataError, InputError, UnknownNameError
from polyhead.export import OnnxModel, export_onnx
from polyhead.tasks.recommendation import (
    CTRConfig,
    NextItemConfig,
    PolyheadForCTR,
    PolyheadForNextItem,
    RecommendationConfig,
    RecommendationProcessor,
    RecommendationTask,
)
from polyhead.tasks.recommendation import data as rec_data
from polyhead.tasks.recommendation.data import NextItemTargets, NextItemWindows, collate_recommendation, leave_one_out
from polyhead.tasks.recommendation.metrics import NextItemMetrics, mask_items, ranks_of_targets
from polyhead.workflows import evaluate_model_dir

from ..recommendation_data import TINY_CTR, TINY_NEXT_ITEM, synthetic_interactions


@pytest.fixture(scope="module")
def interactions_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec-data") / "interactions.csv"
    synthetic_interactions().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def next_item_run(interactions_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec-run") / "run"
    return polyhead.train("recommendation", cfg_options={**TINY_NEXT_ITEM, "data.source": str(interactions_csv), "train.output_dir": str(out)})


@pytest.fixture(scope="module")
def ctr_run(interactions_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("ctr-run") / "run"
    return polyhead.train("configs/recommendation/hiformer_ctr_ml100k.py", cfg_options={**TINY_CTR, "data.source": str(interactions_csv), "train.output_dir": str(out)})


# -- config and model ---------------------------------------------------------------------
def _example_next_item() -> NextItemConfig:
    return RecommendationTask.example_configs()[0]


def _example_ctr() -> CTRConfig:
    return RecommendationTask.example_configs()[1]


def test_configs_per_objective_and_validation():
    config = _example_next_item()
    assert config.objective == "next_item" and config.num_items == 40 and config.model_type == "polyhead-next-item"
    ctr = _example_ctr()
    assert ctr.objective == "ctr" and ctr.model_type == "polyhead-ctr" and [f["name"] for f in ctr.categorical_fields] == ["user_id", "item_id", "genre", "year"]
    assert isinstance(config, RecommendationConfig) and isinstance(ctr, RecommendationConfig)
    assert "fields" not in config.to_dict() and "item_vocab" not in ctr.to_dict() and "objective" not in config.to_dict()
    assert RecommendationTask.models == (PolyheadForNextItem, PolyheadForCTR)
    assert RecommendationTask.model_class_for(config) is PolyheadForNextItem and RecommendationTask.model_class_for(ctr) is PolyheadForCTR
    with pytest.raises(ConfigError, match="Unknown kind of field 'x' 'cat'"):
        CTRConfig(fields=[{"name": "x", "kind": "cat"}])
    with pytest.raises(ConfigError, match="needs increasing 'boundaries'"):
        CTRConfig(fields=[{"name": "x", "kind": "bucketized", "boundaries": [3, 1]}])
    with pytest.raises(ConfigError, match="Field names must be unique"):
        CTRConfig(fields=[{"name": "x"}, {"name": "x"}])
    with pytest.raises(ConfigError, match="duplicate ids"):
        NextItemConfig(item_vocab=["1", "1"])
    with pytest.raises(ConfigError, match="shared base of the recommendation configs; build a NextItemConfig or a CTRConfig"):
        RecommendationConfig()


def test_config_file_objective_picks_the_config_class(interactions_csv):
    task, data = RecommendationTask(), {"source": str(interactions_csv)}
    fields = [{"name": "genre"}, {"name": "age", "kind": "numeric"}]
    assert type(task.build_config({"objective": "next_item"}, data)) is NextItemConfig
    assert type(task.build_config({"objective": "ctr", "fields": fields}, data)) is CTRConfig
    # polyhead 0.1 files name no objective: the head's type says which; no head: next-item
    assert type(task.build_config({"head": {"type": "ctr"}, "fields": fields}, data)) is CTRConfig
    assert type(task.build_config({}, data)) is NextItemConfig
    # ... and their backbone.causal is dropped: the adapter attends causally, per call
    old = task.build_config({"backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "causal": True}}, data)
    assert "causal" not in old.backbone
    with pytest.raises(UnknownNameError, match="Unknown recommendation objective 'cvr'"):
        task.build_config({"objective": "cvr"}, data)
    with pytest.raises(UnknownNameError, match="Unknown recommendation head 'forecast'"):
        task.build_config({"head": {"type": "forecast"}}, data)
    with pytest.raises(ConfigError, match="model.objective is 'next_item' but model.head is the 'ctr' head"):
        task.build_config({"objective": "next_item", "head": {"type": "ctr"}}, data)
    with pytest.raises(ConfigError, match="model.item_vocab is not an option of CTRConfig"):
        task.build_config({"objective": "ctr", "fields": fields, "item_vocab": ["1"]}, data)


def test_models_check_their_parts():
    base = _example_next_item()
    conformer = {"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3}
    with pytest.raises(ConfigError, match="NextItemAdapter attends causally; the 'conformer' backbone cannot"):
        PolyheadForNextItem(NextItemConfig(item_vocab=base.item_vocab, max_length=8, backbone=conformer))
    with pytest.raises(ConfigError, match="item_vocab is empty"):
        PolyheadForNextItem(NextItemConfig(backbone=base.backbone, max_length=8))
    with pytest.raises(ConfigError, match="exceeds the backbone's max_length"):
        PolyheadForNextItem(NextItemConfig(item_vocab=base.item_vocab, max_length=16, backbone=base.backbone))
    with pytest.raises(ConfigError, match="NextItemAdapter needs a NextItemHead head, got 'ctr'"):
        PolyheadForNextItem(NextItemConfig(item_vocab=base.item_vocab, max_length=8, backbone=base.backbone, head={"type": "ctr"}))
    with pytest.raises(ConfigError, match="fields is empty"):
        PolyheadForCTR(CTRConfig(backbone=base.backbone))
    with pytest.raises(ConfigError, match="CTRAdapter needs a CTRHead head, got 'next_item'"):
        PolyheadForCTR(CTRConfig(fields=_example_ctr().fields, backbone=base.backbone, head={"type": "next_item"}))
    # the CTR model reads its fields bidirectionally: a Conformer serves it
    assert PolyheadForCTR(CTRConfig(fields=_example_ctr().fields, backbone=conformer))(features=torch.zeros(2, 5)).logits.shape == (2,)


def test_one_backbone_serves_both_objectives():
    """Causality is a per-call choice of the adapter: one encoder, a causal next-item model and a bidirectional CTR model."""
    next_item = PolyheadForNextItem(_example_next_item())
    ctr = PolyheadForCTR(_example_ctr(), backbone=next_item.backbone)
    assert ctr.backbone is next_item.backbone
    next_item(input_ids=torch.randint(0, 40, (2, 8)), labels=torch.randint(0, 40, (2, 8))).loss.backward()
    ctr(features=torch.tensor([[1.0, 2.0, 3.0, 0.5, 1.0]] * 2), labels=torch.tensor([0.0, 1.0])).loss.backward()
    assert all(p.grad is not None for p in next_item.backbone.parameters() if p.requires_grad)


def test_forward_loss_exactly_with_labels_and_tied_table():
    torch.manual_seed(0)
    model = PolyheadForNextItem(_example_next_item())
    ids = torch.randint(0, 40, (3, 8))
    out = model(input_ids=ids)
    assert out.loss is None and out.scores.shape == (3, 40) and set(out.keys()) == {"scores"}
    assert model(input_ids=ids, labels=torch.randint(0, 40, (3, 8))).loss.ndim == 0
    assert model(input_ids=ids, labels=torch.tensor([1, 2, 3])).loss.ndim == 0
    # one table: the stem looks up what the head scores against
    assert not hasattr(model.adapter, "item_embedding") and sum(p.numel() for n, p in model.named_parameters() if "item_embedding" in n) == 41 * 16
    with pytest.raises(InputError, match=r"item indices in \[0, 40\]"):
        model(input_ids=torch.tensor([[41] * 8]))
    with pytest.raises(InputError, match="shape of input_ids"):
        model(input_ids=ids, labels=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(InputError, match="shape of input_ids"):
        model(input_ids=ids, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError, match="takes input_ids"):
        model()
    # a history padded on the left: padding does not change the last position's scores
    model.eval()
    short = torch.tensor([[40] * 5 + [1, 2, 3]])
    assert torch.isfinite(model(input_ids=short).scores).all()


def test_sampled_softmax_model_trains():
    torch.manual_seed(0)
    base = _example_next_item()
    model = PolyheadForNextItem(NextItemConfig(item_vocab=base.item_vocab, max_length=8, backbone=base.backbone,
                                               head={"type": "next_item", "loss": "sampled", "num_negatives": 16}))
    labels = torch.randint(0, 40, (3, 8))
    labels[:, :2] = -100
    loss = model(input_ids=torch.randint(0, 40, (3, 8)), labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss) and model.adapter.head.item_embedding.weight.grad is not None


def test_save_load_roundtrip_with_auto_classes(tmp_path):
    config = _example_ctr()
    model = PolyheadForCTR(config).eval()
    model.save_pretrained(tmp_path)
    RecommendationProcessor.from_config(config).save_pretrained(tmp_path)
    loaded = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, PolyheadForCTR) and "objective" not in json.loads((tmp_path / "config.json").read_text())
    processor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(processor, RecommendationProcessor) and processor.fields == config.fields
    row = {"user_id": 3, "item_id": "7", "genre": "Comedy", "age": 31, "year": 1995}
    inputs = processor(row)
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    assert inputs["features"].tolist() == [[3, 7, 2, pytest.approx(0.1), 2]]  # schema order: ids, the scaled age, the year's bucket
    with pytest.raises(InputError, match="integer ids below the field sizes"):
        model(features=torch.tensor([[3.0, 99.0, 2.0, 0.1, 2.0]]))
    with pytest.raises(InputError, match=r"features must have shape \(batch, 5\)"):
        model(features=torch.zeros(1, 4))
    with pytest.raises(InputError, match="must be a float tensor"):
        model(features=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(InputError, match="takes features"):
        model()
    with pytest.raises(InputError, match=r"labels must have shape \(batch,\)"):
        model(**inputs, labels=torch.zeros(1, 1))


# -- processor ----------------------------------------------------------------------------
def test_processor_histories():
    p = RecommendationProcessor(max_length=4, item_vocab=["10", "20", "30", "40", "50"], item_id_type="int")
    assert p({"history": [10, 20]})["input_ids"].tolist() == [[5, 5, 0, 1]]
    assert p({"history": [10, 20, 30, 40, 50, 10]})["input_ids"].tolist() == [[2, 3, 4, 0]]  # most recent 4
    assert p({"history": [10, 10, 20]})["input_ids"].tolist() == [[5, 0, 0, 1]]  # duplicates kept
    assert p({"history": ["20"]})["input_ids"].tolist() == [[5, 5, 5, 1]]  # ids as strings too
    assert p([{"history": [10]}, {"history": [20]}])["input_ids"].shape == (2, 4)
    assert p({"history": [10, 99]}, on_unknown="skip")["input_ids"].tolist() == [[5, 5, 5, 0]]
    assert p.item_id(4) == 50
    with pytest.raises(InputError, match="The history is empty"):
        p({"history": []})
    with pytest.raises(InputError, match=r"Unknown item id\(s\) \[99\]"):
        p({"history": [10, 99]})
    with pytest.raises(InputError, match="None of the history's item ids"):
        p({"history": [99]}, on_unknown="skip")
    with pytest.raises(InputError, match="must be a list of item ids"):
        p({"history": "10 20"})
    with pytest.raises(InputError, match="integers or strings"):
        p({"history": [1.5]})
    with pytest.raises(InputError, match="got keys"):
        p({"items": [10]})


def test_processor_ctr_rows():
    p = RecommendationProcessor.from_config(_example_ctr())
    good = {"user_id": 1, "item_id": 2, "genre": "Drama", "age": 30.0, "year": 1979, "extra": "ignored"}
    out = p(good)
    assert out["features"].tolist() == [[1, 2, 3, 0, 0]]
    with pytest.raises(InputError, match=r"lacks field\(s\) \['genre'\]"):
        p({k: v for k, v in good.items() if k != "genre"})
    with pytest.raises(InputError, match="'Horror', never seen in training"):
        p({**good, "genre": "Horror"})
    assert p({**good, "genre": "Horror"}, on_unknown="skip")["features"][0, 2] == 0
    with pytest.raises(InputError, match="'age' is numeric: expected a finite number, got '30'"):
        p({**good, "age": "30"})
    with pytest.raises(InputError, match="'age' is numeric"):
        p({**good, "age": float("nan")})
    with pytest.raises(InputError, match="'genre' is categorical: expected a string or an integer, got 1.5"):
        p({**good, "genre": 1.5})
    with pytest.raises(InputError, match="'year' is bucketized: expected a finite number"):
        p({**good, "year": "1990"})
    with pytest.raises(InputError, match="A CTR input is a dict"):
        p.encode_row([1, 2])


def test_training_and_serving_encode_ctr_rows_identically(interactions_csv, tmp_path):
    """One CTR encoder: the features a model trains on are those the processor and the pipeline compute for the same raw rows."""
    task, data_section = RecommendationTask(), {"source": str(interactions_csv)}
    fields = [{"name": "user_id"}, {"name": "item_id"}, {"name": "gender"}, {"name": "genre"}, {"name": "age", "kind": "numeric"},
              {"name": "timestamp", "kind": "bucketized", "boundaries": [5000, 15000, 25000]}]
    config = task.build_config({"objective": "ctr", "fields": fields}, data_section)
    data = task.build_data(data_section, config)
    PolyheadForCTR(config).save_pretrained(tmp_path)
    task.build_processor(config).save_pretrained(tmp_path)
    processor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path)
    pipe = polyhead.pipeline("recommendation", model=str(tmp_path))
    raw = pd.read_csv(interactions_csv)  # the rows as a user holds them: integer ids, not the table's strings
    names = [f["name"] for f in fields]
    for split in (data.train, data.validation, data.test):
        rows = [raw.iloc[int(i)][names].to_dict() for i in split.rows]
        assert torch.equal(processor(rows)["features"], split.features)
        for i in range(0, len(rows), 25):
            assert torch.equal(pipe.preprocess(rows[i])["features"][0], split.features[i])
    # a value serving refuses is refused in training too: float ids would be looked up as '24.0' and never match 24
    frame = synthetic_interactions().astype({"age": float})
    with pytest.raises(DataError, match=r"cannot be encoded.*'age' is categorical: expected a string or an integer, got \d+\.0 \(float\)"):
        task.build_data({"source": frame}, task.build_config({"objective": "ctr", "fields": [{"name": "age"}]}, {"source": frame}))


# -- split and metrics --------------------------------------------------------------------
def test_leave_one_out_by_time_with_stable_ties():
    frame = pd.DataFrame({
        "user_id": ["a"] * 5 + ["b"] * 3 + ["c"] * 2,
        "item_id": ["3", "1", "2", "4", "5", "1", "2", "3", "1", "2"],
        "timestamp": [30, 10, 20, 40, 40, 5, 6, 7, 1, 2],
    })
    index = {str(i): i - 1 for i in range(1, 6)}
    seqs = leave_one_out(frame, index)
    assert seqs.users == ["a", "b"]  # c has 2 interactions: dropped
    assert seqs.train == [[0, 1, 2], [0]] and seqs.valid_target == [3, 1] and seqs.test_target == [4, 2]
    windows = NextItemWindows([[0, 1, 2, 3, 4]], max_length=3, pad=9)
    assert [windows[i]["input_ids"].tolist() for i in range(len(windows))] == [[1, 2, 3], [9, 9, 0]]  # every target once
    assert [windows[i]["labels"].tolist() for i in range(len(windows))] == [[2, 3, 4], [-100, -100, 1]]
    targets = NextItemTargets([[0, 1, 1, 2]], [1], max_length=3, pad=9)
    assert targets[0]["exclude_items"].tolist() == [0, 2]  # the whole history, minus the target itself
    batch = collate_recommendation([targets[0], NextItemTargets([[4]], [0], max_length=3, pad=9)[0]], pad=9)
    assert batch["exclude_items"].tolist() == [[0, 2], [4, 9]]


def test_ranking_metrics_closed_forms():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6]])
    masked = mask_items(scores, torch.tensor([[0, 4], [4, 4]]))  # 4 = padding, ignored
    assert masked[0, 0] == float("-inf") and torch.isfinite(masked[1]).all()
    ranks = ranks_of_targets(masked, torch.tensor([2, 0]))
    assert ranks.tolist() == [1, 4]
    metrics = NextItemMetrics(k=3)
    metrics.update({"rank": ranks})
    got = metrics.compute()
    assert got == pytest.approx({"hr@3": 0.5, "ndcg@3": 0.5, "mrr": (1 + 0.25) / 2})


def test_fetch_reports_pip_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(rec_data.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(DataError, match="(?s)exited with 1: ERROR: No matching distribution.*POLYHEAD_ML100K_DIR"):
        rec_data.fetch_movielens_100k(tmp_path / "ml")
    assert not (tmp_path / "ml").exists()


def test_bad_data_sections(interactions_csv):
    task = RecommendationTask()
    with pytest.raises(ConfigError, match="data.sorce is not a recommendation data option. Did you mean 'source'"):
        task.build_config({}, {"sorce": "x"})
    with pytest.raises(DataError, match="is not an existing file or folder"):
        task.build_config({}, {"source": "no-such-file.csv"})
    with pytest.raises(DataError, match="Field 'zip' is not a column"):
        task.build_config({"head": {"type": "ctr"}, "fields": [{"name": "zip"}]}, {"source": str(interactions_csv)})
    frame = synthetic_interactions().drop(columns=["timestamp"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['timestamp'\]"):
        rec_data.load_interactions(frame)


# -- training runs ------------------------------------------------------------------------
def test_next_item_training_run(next_item_run):
    metrics = next_item_run.metrics
    assert set(metrics["test"]) >= {"hr@10", "ndcg@10", "mrr", "loss"}
    assert set(metrics["baselines"]) == {"most_popular", "bpr_mf"}
    assert metrics["data"]["users"] == 30 and metrics["data"]["splits"]["test"]["samples"] == 30
    best = next_item_run.best_dir
    card = (best / "README.md").read_text()
    assert "ranked against **all** 40 items" in card and "bpr_mf" in card
    again = evaluate_model_dir(best)
    assert again["metrics"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], rel=1e-5)


def test_ctr_training_run_and_onnx(ctr_run):
    metrics = ctr_run.metrics
    assert set(metrics["test"]) >= {"auc", "logloss"} and 0.0 <= metrics["test"]["auc"] <= 1.0
    assert set(metrics["baselines"]["logistic_regression"]) == {"auc", "logloss"}
    best = ctr_run.best_dir
    config = json.loads((best / "config.json").read_text())
    assert [f["name"] for f in config["fields"]] == ["user_id", "item_id", "gender", "genre", "age"]
    report = export_onnx(best)
    assert report["inputs"] == ["features"] and report["outputs"] == ["logits", "probabilities"] and report["passed"]
    onnx_metrics = evaluate_model_dir(best, backend="onnx")["metrics"]
    assert onnx_metrics["auc"] == pytest.approx(metrics["test"]["auc"], abs=1e-4)
    row = {"user_id": 1, "item_id": 5, "gender": "F", "genre": "Comedy", "age": 24}
    torch_p = polyhead.pipeline("recommendation", model=str(best))(row)
    onnx_pipe = polyhead.pipeline("recommendation", model=str(best), backend="onnx")
    assert isinstance(onnx_pipe.model, OnnxModel)
    assert onnx_pipe(row)["click_probability"] == pytest.approx(torch_p["click_probability"], abs=1e-5)


# -- the real MovieLens-100k --------------------------------------------------------------
@pytest.fixture(scope="module")
def ml100k():
    task = RecommendationTask()
    config = task.build_config({"backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 50}}, {"source": "ml-100k"})
    return task, config, task.build_data({"source": "ml-100k", "bpr_epochs": 3}, config)


def test_ml100k_leave_one_out_protocol(ml100k):
    task, config, data = ml100k
    assert config.num_items == 1682 and config.item_titles[0] == "Toy Story" and config.item_id_type == "int"
    assert len(data.test) == len(data.validation) == 943
    frame = rec_data.load_interactions("ml-100k")
    user = data.test.users[0]
    rows = frame[frame.user_id == user].sort_values("timestamp", kind="stable")
    assert config.item_vocab[data.test.targets[0]] == rows.item_id.iloc[-1]
    assert data.test.histories[0] == data.validation.histories[0] + [data.validation.targets[0]]
    assert len(data.test.histories[0]) == len(rows) - 1  # the whole history is masked, not only the last 50
    sample = data.test[0]
    assert sample["input_ids"].shape == (50,) and data.test.targets[0] not in sample["exclude_items"].tolist()


def test_ml100k_baselines_rank_against_all_items(ml100k):
    task, config, data = ml100k
    baselines = task.baselines(data, config)
    for name in ("most_popular", "bpr_mf"):
        assert 0.02 < baselines[name]["hr@10"] < 0.3, baselines  # all-item ranking: far below sampled-negative figures
        assert baselines[name]["ndcg@10"] < baselines[name]["hr@10"]


def test_catalogue_growth_with_resize_token_embeddings(tmp_path):
    """New items (issue 22): extend ``item_vocab``, ``resize_token_embeddings(num_items + 1)``; the old items keep
    their vectors and scores, the new ones are scored and can be read, and the model saves and loads."""
    config = NextItemConfig(item_vocab=[str(i) for i in range(10)], max_length=4,
                            backbone={"type": "transformer", "dim": 8, "depth": 1, "num_heads": 2, "max_length": 4})
    model = PolyheadForNextItem(config).eval()
    history = torch.tensor([[10, 3, 4, 5], [1, 2, 3, 4]])  # 10: padding
    with torch.no_grad():
        before = model(input_ids=history).scores
    old_items = model.get_input_embeddings().weight[:10].detach().clone()

    model.config.item_vocab += ["new-a", "new-b"]
    table = model.resize_token_embeddings(model.config.num_items + 1)
    assert table.num_embeddings == 13 and table.padding_idx == 12 and model.config.vocab_size == 13
    torch.testing.assert_close(table.weight[:10], old_items)
    padded = history.masked_fill(history == 10, 12)  # the padding index is the new catalogue size
    with torch.no_grad():
        after = model(input_ids=padded).scores
    assert after.shape == (2, 12)
    torch.testing.assert_close(after[:, :10], before)
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[12, 12, 10, 11]])).scores).all()  # new items as input

    model.save_pretrained(tmp_path / "grown")
    loaded = PolyheadForNextItem.from_pretrained(tmp_path / "grown").eval()
    assert loaded.config.item_vocab[-2:] == ["new-a", "new-b"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=padded).scores, after)
    # without new ids in item_vocab the catalogue still grows, under placeholder names
    loaded.resize_token_embeddings(15)
    assert loaded.config.item_vocab[-2:] == ["<new item 12>", "<new item 13>"]
