"""One backbone serving several domains: co-training, shared tensors, per-task LoRA, serving (issue 17)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import polyhead
from polyhead.errors import ConfigError, InputError
from polyhead.multitask import MultiTaskBatchSampler, MultiTaskDataset, PolyheadForMultiTask
from polyhead.tasks.asr.data import embedded_speech_dir

from .recommendation_data import synthetic_interactions

BACKBONE = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "dropout": 0.0, "position": "rotary"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    """Small data of three domains: the CO2 series, synthetic histories, 24 clips of the embedded speech."""
    root = tmp_path_factory.mktemp("multitask-data")
    synthetic_interactions(num_users=40, num_items=30).to_csv(root / "events.csv", index=False)
    embedded = embedded_speech_dir()
    for split, count in (("train", 24), ("validation", 8), ("test", 8)):
        (root / "speech" / split).mkdir(parents=True)
        with open(embedded / split / "metadata.csv") as handle:
            rows = list(csv.DictReader(handle))[:count]
        with open(root / "speech" / split / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "text"])
            for row in rows:
                shutil.copy(embedded / split / row["file_name"], root / "speech" / split / row["file_name"])
                writer.writerow([row["file_name"], row["text"]])
    return {"events": str(root / "events.csv"), "speech": str(root / "speech")}


def tiny_options(sources: dict[str, str], output_dir: Path, **overrides) -> dict:
    options = {
        "model.backbone": BACKBONE,
        "model.tasks": {
            "forecasting": {"task": "forecasting", "context_length": 32, "horizon": 8, "patch_length": 8, "patch_stride": 4,
                            "seasonal_period": 4, "head": {"type": "forecast", "quantiles": [0.1, 0.5, 0.9]}},
            "next_item": {"task": "recommendation", "objective": "next_item", "max_length": 8, "head": {"type": "next_item"}},
            "speech": {"task": "asr", "n_mels": 16, "head": {"type": "ctc"}, "spec_augment": False},
        },
        "data.sampling": "uniform",
        "data.tasks": {
            "forecasting": {"source": "co2_weekly", "time_column": "date", "target_columns": ["co2"], "batch_size": 32},
            "next_item": {"source": sources["events"], "batch_size": 16},
            "speech": {"source": sources["speech"], "batch_size": 4},
        },
        "train.max_steps": 45, "train.eval_every": 15, "train.lr": 5e-3, "train.warmup_steps": 0, "train.log_with": None,
        "train.progress_bar": False, "train.output_dir": str(output_dir),
    }
    return {**options, **overrides}


@pytest.fixture(scope="module")
def trained(sources, tmp_path_factory):
    return polyhead.train("configs/multitask/sequence_trio.py", cfg_options=tiny_options(sources, tmp_path_factory.mktemp("run") / "run"))


@pytest.mark.slow
def test_three_tasks_train_together_and_every_loss_goes_down(trained):
    history = trained.metrics["history"]
    assert len(history) == 3
    for task in ("forecasting", "next_item", "speech"):
        assert history[-1][f"eval_{task}/loss"] < history[0][f"eval_{task}/loss"], task
    test = trained.metrics["test"]
    assert {"forecasting/mae", "next_item/hr@10", "speech/wer", "task_mean_loss"} <= set(test)
    baselines = trained.metrics["baselines"]
    assert "forecasting/mae" in baselines["seasonal_naive"] and "next_item/hr@10" in baselines["most_popular"]
    config = json.loads((trained.best_dir / "config.json").read_text())
    assert config["model_type"] == "polyhead-multitask" and set(config["tasks"]) == {"forecasting", "next_item", "speech"}
    assert sorted(p.name for p in (trained.best_dir / "processors").iterdir()) == ["forecasting", "next_item", "speech"]


@pytest.mark.slow
def test_every_tasks_pipeline_runs_on_the_same_backbone_tensors(trained):
    model = polyhead.AutoModel.from_pretrained(trained.best_dir)
    assert isinstance(model, PolyheadForMultiTask)
    forecaster = polyhead.pipeline("time-series-forecasting", model=model)
    recommender = polyhead.pipeline("recommendation", model=model)
    recognizer = polyhead.pipeline("automatic-speech-recognition", model=model)
    pointers = {p.model.backbone.blocks[0].attn.qkv.weight.data_ptr() for p in (forecaster, recommender, recognizer)}
    assert pointers == {model.backbone.blocks[0].attn.qkv.weight.data_ptr()}
    assert recommender.model.adapter is model.adapters["next_item"]
    assert len(forecaster(np.linspace(330, 340, 60))["forecast"]["co2"]) == 8
    assert len(recommender({"history": [1, 2, 3]}, top_k=3)) == 3
    assert isinstance(recognizer(np.zeros(8000, np.float32) + 0.01 * np.random.default_rng(0).standard_normal(8000).astype(np.float32),
                                 sampling_rate=16000)["text"], str)
    # from the folder too; `polyhead list` shows what it holds
    assert polyhead.pipeline("forecasting", model=str(trained.best_dir)).model.config.horizon == 8


@pytest.mark.slow
def test_save_load_gives_identical_outputs_per_task(trained, tmp_path):
    model = polyhead.AutoModel.from_pretrained(trained.best_dir).eval()
    model.save_pretrained(tmp_path / "copy")
    again = polyhead.AutoModel.from_pretrained(tmp_path / "copy").eval()
    x = torch.randn(2, 32, 1)
    torch.testing.assert_close(again(task="forecasting", past_values=x).prediction, model(task="forecasting", past_values=x).prediction, rtol=0, atol=0)
    ids = torch.randint(0, 30, (2, 8))
    torch.testing.assert_close(again(task="next_item", input_ids=ids).scores, model(task="next_item", input_ids=ids).scores, rtol=0, atol=0)


@pytest.mark.slow
def test_export_one_task_of_a_multitask_folder(trained, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(trained.best_dir, folder)
    report = polyhead.export_onnx(folder, task="forecasting")
    assert report["passed"] and (folder / "model.forecasting.onnx").is_file() and (folder / "onnx_report.forecasting.json").is_file()
    onnx_pipe = polyhead.pipeline("forecasting", model=str(folder), backend="onnx")
    torch_pipe = polyhead.pipeline("forecasting", model=str(folder))
    history = np.linspace(330, 340, 60)
    np.testing.assert_allclose(onnx_pipe(history)["forecast"]["co2"], torch_pipe(history)["forecast"]["co2"], rtol=1e-4, atol=1e-3)
    with pytest.raises(ConfigError, match="exported one task at a time"):
        polyhead.export_onnx(folder)


@pytest.mark.slow
def test_lora_leaves_the_shared_backbone_bit_identical(sources, tmp_path):
    lora = {"r": 2, "alpha": 4, "target_modules": ["qkv", "proj"]}
    options = tiny_options(sources, tmp_path / "lora", **{"model.lora": lora, "train.max_steps": 12, "train.eval_every": 12})
    torch.manual_seed(0)
    result = polyhead.train("configs/multitask/sequence_trio.py", cfg_options=options)
    model = polyhead.AutoModel.from_pretrained(result.best_dir)
    # the base weights of the backbone are the random initialisation of the seed the run used
    from polyhead.workflows import config_section
    from polyhead.config import load_config
    from polyhead import registry

    cfg = load_config("configs/multitask/sequence_trio.py", options)
    task = registry.get(registry.TASKS, "multitask")()
    config = task.build_config({k: v for k, v in config_section(cfg, "model").items() if k != "task"}, config_section(cfg, "data"))
    torch.manual_seed(0)
    fresh = task.build_model(config)
    base = {k: v for k, v in fresh.backbone.state_dict().items() if "lora_" not in k}
    trained_base = {k: v for k, v in model.backbone.state_dict().items() if "lora_" not in k}
    assert base.keys() == trained_base.keys()
    for key, value in base.items():
        assert torch.equal(trained_base[key], value), key
    lora_keys = [k for k in model.backbone.state_dict() if "lora_B" in k]
    assert {k.split(".")[-2] for k in lora_keys} == {"forecasting", "next_item", "speech"}
    assert any(model.backbone.state_dict()[k].abs().sum() > 0 for k in lora_keys)  # LoRA-B starts at zero: it trained


def test_the_sampler_draws_one_task_per_step_the_same_on_every_rank():
    data = MultiTaskDataset({"a": list(range(100)), "b": list(range(40)), "c": list(range(10))})
    for rule, expected in (("proportional", {"a": 25 / 37, "b": 10 / 37, "c": 2 / 37}), ("uniform", {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})):
        single = MultiTaskBatchSampler(data, batch_size=4, sampling=rule, seed=3)
        two = MultiTaskBatchSampler(data, batch_size=2, sampling=rule, seed=3, num_processes=2)
        assert single.probabilities == pytest.approx(expected)
        global_single = list(single)
        parts = list(two)
        # 2 processes: each step's two batches are the halves of the 1-process global batch
        assert [a + b for a, b in zip(parts[0::2], parts[1::2])] == global_single
        for batch in global_single:
            assert len({data[i][0] for i in batch}) == 1, "a batch mixes tasks"
    temperature = MultiTaskBatchSampler(data, batch_size=4, sampling={"temperature": 2.0}, seed=0)
    raw = {"a": 25 ** 0.5, "b": 10 ** 0.5, "c": 2 ** 0.5}
    assert temperature.probabilities == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()})
    # deterministic per seed, different across epochs
    again = MultiTaskBatchSampler(data, batch_size=4, sampling="uniform", seed=3)
    assert list(again) == list(MultiTaskBatchSampler(data, batch_size=4, sampling="uniform", seed=3))
    first = list(again)
    again.set_epoch(1)
    assert list(again) != first


def test_bad_multitask_configs_fail_before_training(sources, tmp_path):
    base = tiny_options(sources, tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"data.tasks \['forecasting', 'next_item', 'speech', 'weather'\] must name the same tasks"):
        polyhead.train("configs/multitask/sequence_trio.py", cfg_options={**base, "data.tasks": {**base["data.tasks"], "weather": {"source": "x.csv"}}})
    with pytest.raises(ConfigError, match="data.sampling must be 'proportional', 'uniform'"):
        polyhead.train("configs/multitask/sequence_trio.py", cfg_options={**base, "data.sampling": "round-robin"})
    with pytest.raises(ConfigError, match="needs a 'task' key"):
        polyhead.train("configs/multitask/sequence_trio.py", cfg_options={**base, "model.tasks": {**base["model.tasks"], "weather": {"n_mels": 16}},
                                                                   "data.tasks": {**base["data.tasks"], "weather": {"source": "x.csv"}}})
    with pytest.raises(ConfigError, match="match no layer"):
        polyhead.train("configs/multitask/sequence_trio.py", cfg_options={**base, "model.lora": {"target_modules": ["nonexistent"]}})
    assert not (tmp_path / "bad" / "best").exists()


def test_a_multitask_folder_without_the_asked_task(trained_like, tmp_path):
    with pytest.raises(ConfigError, match="has no object-detection task|has no detection task"):
        polyhead.pipeline("object-detection", model=str(trained_like))
    with pytest.raises(InputError, match="Unknown task 'forecast'. Did you mean 'forecasting'"):
        polyhead.AutoModel.from_pretrained(trained_like)(task="forecast", past_values=torch.randn(1, 32, 2))


@pytest.fixture
def trained_like(tmp_path) -> Path:
    """An untrained two-task model folder (the registry's example config), saved."""
    from polyhead.multitask import MultiTaskTask

    folder = tmp_path / "two"
    PolyheadForMultiTask(MultiTaskTask.example_configs()[0]).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_two_processes_train_the_same_task_each_step_and_match_one_process(tmp_path):
    probe = Path(__file__).with_name("distributed") / "multitask_probe.py"
    events = tmp_path / "events.csv"  # enough users that 8 steps of 16 histories never repeat one
    synthetic_interactions(num_users=300, num_items=30).to_csv(events, index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launcher = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0"]
    runs = {}
    for processes, batch in ((1, 16), (2, 8)):
        out = tmp_path / f"p{processes}"
        out.mkdir()
        command = [*(launcher if processes == 2 else [sys.executable]), str(probe), str(out), str(events), str(batch)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[processes] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]
    (single,), (rank0, rank1) = runs[1], runs[2]
    assert rank0["tasks"] == rank1["tasks"] == single["tasks"]  # every rank trains the same task at a step
    # one task per batch (the first record also holds the batch the loader prefetched for step 2)
    assert all(len(step) == 1 for step in single["tasks"][1:])
    assert {task for step in single["tasks"] for task in step} == {"forecasting", "next_item"}
    for a, b, whole in zip(rank0["indices"], rank1["indices"], single["indices"]):
        assert sorted(a + b) == sorted(whole) and not set(a) & set(b)
    assert rank0["checksums"] == rank1["checksums"]
    assert max(abs(x - y) for x, y in zip(rank0["weights"], single["weights"])) < 1e-4
    for name in ("forecasting/mae", "next_item/hr@10", "task_mean_loss"):
        assert rank0["final_eval"][name] == pytest.approx(single["final_eval"][name], rel=1e-4), name
