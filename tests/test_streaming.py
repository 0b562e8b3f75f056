"""Training from a stream (``data.streaming=True``, :mod:`polyhead.streaming`), for every task that streams
(forecasting, detection, ASR, recommendation next-item and CTR, the Decision Transformer, segmentation): every row
once per epoch under one process and two, DataLoader workers included; orders that
repeat per seed and change per epoch; bit-identical mid-epoch resume; the tasks that refuse; bad inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

import polyhead
from polyhead.errors import ConfigError, DataError
from polyhead.streaming import (
    StreamingLoader,
    StreamingOptions,
    StreamRows,
    TrainStream,
    split_streaming_options,
)
from polyhead.training import Trainer, make_accelerator

from .distributed.streaming_probe import HANG_SECONDS, PROBE_TASKS, TASKS, RowId, id_source, read_epochs, task_data, task_options

PROBE = Path(__file__).with_name("distributed") / "streaming_probe.py"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
STREAMING_TASKS = list(TASKS)


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Each streaming task's ``(task, config, TaskData)``, built once."""
    return {name: task_data(name) for name in STREAMING_TASKS}


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator()


def _id_source(loaded: dict, name: str) -> tuple[StreamRows, list[int]]:
    """The task's own training rows with a per-example function that returns the row id, and every id."""
    return id_source(loaded[name][2], name)


# -- one process ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", STREAMING_TASKS)
def test_an_epoch_reads_every_row_exactly_once(loaded, accelerator, name, workers):
    source, ids = _id_source(loaded, name)
    assert len(ids) == len(set(ids)) > 100
    for epoch in read_epochs(source, accelerator, batch_size=16, num_workers=workers, epochs=2):
        assert Counter(epoch["ids"]) == Counter(ids)
        assert epoch["repeats"] == []  # one process: nothing to even out


@pytest.mark.parametrize("name", ["forecasting", "segmentation"])
def test_workers_started_by_a_forkserver_read_the_same_rows(loaded, accelerator, name):
    """``train.multiprocessing_context="forkserver"``: the stream (and a task's reseeded MONAI transforms) is pickled
    to workers that start from a process without threads; they read what forked workers read, in the same order."""
    source, ids = _id_source(loaded, name)
    forked = read_epochs(source, accelerator, batch_size=16, num_workers=2, epochs=1)[0]
    served = read_epochs(source, accelerator, batch_size=16, num_workers=2, epochs=1, multiprocessing_context="forkserver")[0]
    assert Counter(served["ids"]) == Counter(ids) and served["ids"] == forked["ids"]


@pytest.mark.parametrize("name", STREAMING_TASKS)
def test_the_order_repeats_per_seed_and_changes_per_epoch(loaded, accelerator, name):
    source, ids = _id_source(loaded, name)
    first = [e["ids"] for e in read_epochs(source, accelerator, batch_size=16, epochs=2)]
    again = [e["ids"] for e in read_epochs(source, accelerator, batch_size=16, epochs=2)]
    other_seed = read_epochs(source, accelerator, batch_size=16, epochs=1, seed=1)[0]["ids"]
    assert first == again
    assert first[0] != first[1] and first[0] != other_seed
    assert first[0] != sorted(first[0])  # shuffled, not the rows' own order
    # a bigger buffer mixes rows from further apart: the first batch reaches beyond the first 32 rows' neighbourhood
    wide = read_epochs(source, accelerator, batch_size=16, epochs=1, options=StreamingOptions(shuffle_buffer=len(ids)))[0]["ids"]
    assert Counter(wide) == Counter(ids) and max(wide[:16]) > max(first[0][:16])


@pytest.mark.parametrize("name", STREAMING_TASKS)
def test_streamed_batches_are_the_tasks_own_batches(loaded, accelerator, name):
    """The task's per-example function and collate function, as the map-style loader uses them."""
    _, _, data = loaded[name]
    # a buffer of one row keeps the rows' order: the first batch holds the samples 0-3 (ASR pads them to the same length)
    stream = TrainStream(data.train_stream, StreamingOptions(shuffle_buffer=1), seed=0)
    loader = StreamingLoader(stream, accelerator, batch_size=4, collate_fn=data.collate_fn)
    batch, real = next(iter(loader))
    reference = (data.collate_fn or torch.utils.data.default_collate)([data.train[i] for i in range(4)])
    assert real and batch.keys() == reference.keys()
    for key in batch:
        assert batch[key].shape == reference[key].shape and batch[key].dtype == reference[key].dtype


# -- two processes --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("streaming_ddp")
    command = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "0", str(PROBE), str(out)]
    try:  # a hang ends in the probe itself after HANG_SECONDS, printing every thread's stack to stderr
        result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=HANG_SECONDS + 120)
    except subprocess.TimeoutExpired as timeout:  # its output is bytes (or None) even with text=True
        stderr = timeout.stderr or b""
        stderr = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise AssertionError(f"the two-process probe did not finish:\n{stderr[-6000:]}") from None
    assert result.returncode == 0, result.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_processes_read_disjoint_shares_that_cover_every_row(loaded, two_processes):
    first, second = two_processes
    assert [r["num_processes"] for r in two_processes] == [2, 2]
    assert first["distributed_type"] == "DistributedType.MULTI_CPU"
    for name in PROBE_TASKS:
        _, ids = _id_source(loaded, name)
        for workers in (0, 2):
            key = f"{name}/{workers}"
            for a, b in zip(first["reads"][key], second["reads"][key], strict=True):
                assert a["ids"] and b["ids"], key  # both processes read
                assert not set(a["ids"]) & set(b["ids"]), key
                assert Counter(a["ids"] + b["ids"]) == Counter(ids), key  # every row, exactly once
                assert a["pairs"] == b["pairs"], key  # the same number of steps on both
            assert first["reads"][key][0]["ids"] != first["reads"][key][1]["ids"]


@pytest.mark.slow
def test_an_uneven_split_repeats_a_batch_that_counts_zero(two_processes):
    """Seven rows in shards of 4 and 3, batches of 3: one process has 2 batches, the other 1 and a repeat."""
    (a,), (b,) = (r["uneven"] for r in two_processes)
    assert sorted(a["ids"] + b["ids"]) == list(range(7))
    assert a["pairs"] == b["pairs"] == 2
    assert sorted([a["repeats"], b["repeats"]]) == [[], [1]]
    # training with such a split (97 windows, batches of 48) stays in step on both ranks, across epochs
    train_a, train_b = (r["train"] for r in two_processes)
    assert train_a["global_step"] == 5 and train_a["history_steps"] == [2, 4, 5]
    assert train_a["checksums"] == train_b["checksums"] and len(set(train_a["checksums"])) == 5


@pytest.mark.slow
def test_two_processes_resume_mid_epoch_bit_identically(two_processes):
    for rank in two_processes:
        assert rank["resume"]["epoch"] == 1 and rank["resume"]["batches_in_epoch"] == 1  # the checkpoint was mid-epoch
        assert rank["resume"]["keys_equal"] and rank["resume"]["max_abs_diff"] == 0.0


# -- resume ---------------------------------------------------------------------------------------------------------
def _crash_at(step: int):
    class Crash(RuntimeError):
        pass

    def callback(trainer: Trainer) -> None:
        if trainer.state.global_step == step:
            raise Crash("simulated crash")

    return Crash, callback


def _assert_resume_is_bit_identical(tmp_path, recipe: str, options: dict, *, crash: int, checkpoint: int) -> dict:
    full = polyhead.train(recipe, cfg_options={**options, "train.output_dir": str(tmp_path / "full")})
    interrupted = {**options, "train.output_dir": str(tmp_path / "resumed")}
    Crash, callback = _crash_at(crash)
    with pytest.raises(Crash):
        polyhead.train(recipe, cfg_options=interrupted, callbacks=[callback])
    state = json.loads((tmp_path / "resumed" / "checkpoints" / f"step-{checkpoint:08d}" / "trainer_state.json").read_text())["trainer"]
    assert state["batches_in_epoch"] > 0, "the checkpoint must be mid-epoch"
    resumed = polyhead.train(recipe, cfg_options=interrupted, resume=True)
    assert resumed.metrics["global_step"] == full.metrics["global_step"] == options["train.max_steps"]
    last = f"step-{options['train.max_steps']:08d}"
    a = load_file(tmp_path / "full" / "checkpoints" / last / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / last / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert resumed.metrics["test"] == full.metrics["test"]
    return full.metrics


@pytest.mark.slow
def test_forecasting_resumes_mid_epoch_bit_identically(tmp_path):
    # 395 windows in batches of 64: 7 micro-batches, 4 optimizer steps an epoch (accumulation ends with the epoch);
    # the checkpoint at step 6 is 4 micro-batches into epoch 1, the crash at step 8 one epoch later
    options = {**TASKS["forecasting"][1], "data.streaming": True, "data.shuffle_buffer": 100, "train.max_steps": 10,
               "train.grad_accum": 2, "train.checkpoint_every": 3}
    metrics = _assert_resume_is_bit_identical(tmp_path, "forecasting", options, crash=8, checkpoint=6)
    assert [h["step"] for h in metrics["history"]] == [4, 8, 10]  # the epochs ended where the stream did
    # the model folder evaluates without the training stream (data.streaming is about training only)
    evaluated = polyhead.evaluate_model_dir(tmp_path / "full" / "best", split="validation")
    assert evaluated["metrics"]["mae"] > 0


@pytest.mark.slow
def test_resuming_with_another_stream_layout_is_refused(tmp_path):
    """The stream's order depends on its workers and shards (the default worker count depends on the machine): a
    resume that would read another order is an error, not rows trained twice."""
    options = {**TASKS["forecasting"][1], "data.streaming": True, "train.max_steps": 4, "train.checkpoint_every": 2,
               "train.num_workers": 0, "train.output_dir": str(tmp_path / "run")}
    Crash, callback = _crash_at(3)
    with pytest.raises(Crash):
        polyhead.train("forecasting", cfg_options=options, callbacks=[callback])
    with pytest.raises(DataError, match=r"train.num_workers / data.num_shards differ: its stream had \{'num_workers': 0, 'num_shards': 1\}"):
        polyhead.train("forecasting", cfg_options={**options, "data.num_shards": 2}, resume=True)
    polyhead.train("forecasting", cfg_options=options, resume=True)  # the same layout resumes


#: per task: overrides of its small recipe for a 4-step streamed run, checkpointed at step 2, crashed at step 3 (unless
#: the overrides say otherwise: ``crash`` / ``checkpoint`` are popped from them)
RESUMED = {
    # augmentation on (flip, scale jitter, crop): each sample's draws are seeded by its place in the stream
    "detection": {"train.batch_size": 4, "train.eval_batch_size": 40},
    # audio decoded in the stream (SpecAugment, in the model, draws from torch's generator: the checkpoint restores it)
    "asr": {"train.batch_size": 4, "train.eval_every": None},
    "recommendation/next_item": {"train.batch_size": 16},
    "recommendation/ctr": {"train.batch_size": 32},
    "rl/decision_transformer": {"train.batch_size": 8},
    # MONAI's random crop, flip and intensity transforms reseeded per sample from its place in the stream: 3 batches an
    # epoch, the checkpoint one batch into epoch 1 (an uninterrupted run's transforms have drawn for epoch 0 by then, a
    # resumed run's have not: without the reseeding the weights differ)
    "segmentation": {"train.batch_size": 2, "data.patches_per_volume": 6, "train.max_steps": 6, "train.checkpoint_every": 4,
                     "crash": 5, "checkpoint": 4},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RESUMED))
def test_a_task_resumes_mid_epoch_bit_identically(tmp_path, name):
    overrides = dict(RESUMED[name])
    steps = {"crash": overrides.pop("crash", 3), "checkpoint": overrides.pop("checkpoint", 2)}
    options = {**task_options(name), "data.streaming": True, "data.shuffle_buffer": 16, "train.max_steps": 4, "train.checkpoint_every": 2, **overrides}
    _assert_resume_is_bit_identical(tmp_path, TASKS[name][0], options, **steps)


@pytest.mark.slow
def test_the_cli_trains_forecasting_from_a_stream(tmp_path):
    from .conftest import cli_options

    out = tmp_path / "run"
    options = cli_options(**{"data.train_stride": 4, "data.streaming": True, "data.shuffle_buffer": 32, "data.baselines": [],
                             "train.max_steps": 3, "train.output_dir": str(out)})
    done = subprocess.run([sys.executable, "-m", "polyhead", "train", "forecasting", "--cfg-options", *options],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 3
    saved = json.loads((out / "best" / "training_config.json").read_text())["data"]
    assert saved["streaming"] is True and saved["shuffle_buffer"] == 32


# -- bad inputs -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("section", "message"), [
    ({"streaming": "yes"}, "data.streaming must be true or false, got 'yes'"),
    ({"streaming": True, "shuffle_buffer": 0}, "data.shuffle_buffer must be a positive integer"),
    ({"streaming": True, "shuffle_buffer": -5}, "data.shuffle_buffer must be a positive integer"),
    ({"streaming": True, "shuffle_buffer": True}, "data.shuffle_buffer must be a positive integer"),
    ({"streaming": True, "shuffle_buffer": "100"}, "data.shuffle_buffer must be a positive integer"),
    ({"streaming": True, "num_shards": 0}, "data.num_shards must be a positive integer or None"),
    ({"shuffle_buffer": 100}, "data.shuffle_buffer is a streaming option; it needs data.streaming=True"),
])
def test_bad_streaming_options(section, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        split_streaming_options(section)


def test_streaming_options_are_split_from_the_tasks_own():
    options, rest = split_streaming_options({"source": "co2_weekly", "streaming": True, "shuffle_buffer": 10})
    assert options == StreamingOptions(shuffle_buffer=10) and rest == {"source": "co2_weekly"}
    assert split_streaming_options({"source": "x", "streaming": False}) == (None, {"source": "x"})


def _generated(shards: int) -> datasets.IterableDataset:
    def rows(shard_ids):
        for shard in shard_ids:
            for i in range(4):
                yield {"id": 4 * shard + i}

    return datasets.IterableDataset.from_generator(rows, gen_kwargs={"shard_ids": list(range(shards))})


def test_a_streaming_source_reads_its_own_shards(accelerator):
    source = StreamRows(_generated(4), RowId("id"))
    for workers in (0, 2):
        (epoch,) = read_epochs(source, accelerator, batch_size=3, num_workers=workers, epochs=1)
        assert Counter(epoch["ids"]) == Counter(range(16))


@pytest.mark.parametrize(("make", "kwargs", "message"), [
    (lambda: StreamRows(datasets.Dataset.from_dict({"id": list(range(10))}), RowId("id")), {"num_workers": 2, "options": StreamingOptions(num_shards=3)},
     r"data.num_shards is 3; it must be a multiple of num_processes × max\(1, num_workers\) = 1 × 2 = 2"),
    (lambda: StreamRows(datasets.Dataset.from_dict({"id": list(range(3))}), RowId("id")), {"num_workers": 4},
     r"data.num_shards is 4, but the training split has only 3 row\(s\)"),
    (lambda: StreamRows(_generated(3), RowId("id")), {"num_workers": 2},
     r"The streaming source has 3 shard\(s\); the number must be a multiple of .* = 2"),
    (lambda: StreamRows(_generated(2), RowId("id")), {"options": StreamingOptions(num_shards=2)},
     r"this streaming source has its own 2 shard\(s\) \(its files\): drop data.num_shards"),
    (lambda: StreamRows([{"id": 1}], RowId("id")), {},
     r"needs rows as a datasets.Dataset or datasets.IterableDataset; the task gave list"),
])
def test_sources_that_cannot_stream_as_configured(make, kwargs, message):
    options = kwargs.pop("options", StreamingOptions())
    with pytest.raises(ConfigError, match=message):
        TrainStream(make(), options, seed=0, **kwargs)


def test_streaming_needs_max_steps(tmp_path):
    options = {**TASKS["forecasting"][1], "data.streaming": True, "train.output_dir": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match="data.streaming=True needs train.max_steps"):
        polyhead.train("forecasting", cfg_options=options)


def test_a_task_that_cannot_stream_refuses(tmp_path, monkeypatch):
    task_class = type(loaded_task := task_data("forecasting")[0])
    build = task_class.build_data
    monkeypatch.setattr(task_class, "build_data", lambda self, section, config: dataclasses.replace(build(self, section, config), train_stream=None))
    options = {**TASKS["forecasting"][1], "data.streaming": True, "train.max_steps": 2, "train.output_dir": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match=f"The {loaded_task.name} task cannot train from a stream yet"):
        polyhead.train("forecasting", cfg_options=options)


def test_a_task_path_that_bypasses_the_trainer_refuses_streaming_keys():
    from polyhead import registry

    task = registry.get(registry.TASKS, "rl")()
    with pytest.raises(ConfigError, match="data.streaming: the rl task cannot train from a stream on this path"):
        task.check_data_section({"streaming": True})


@pytest.mark.parametrize(("recipe", "message"), [
    ("configs/rl/ppo_gtrxl_cartpole.py", r"PPO cannot train from a stream \(data.streaming=True\): it collects its own experience online"),
    ("configs/multitask/sequence_trio.py", r"The multitask task cannot train from a stream \(data.streaming=True\): its training batches come "
                                           r"from a multi-task batch sampler"),
])
def test_tasks_that_never_stream_say_why(tmp_path, recipe, message):
    options = {"data.streaming": True, "train.max_steps": 2, "train.output_dir": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match=message):
        polyhead.train(recipe, cfg_options=options)


class _DropOdd(RowId):
    """Odd rows dropped (``None``), as ASR drops a clip longer than ``data.max_seconds``."""

    def __call__(self, row):
        return None if int(row[self.column]) % 2 else super().__call__(row)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_row_the_task_drops_is_skipped(accelerator, workers):
    source = StreamRows(datasets.Dataset.from_dict({"id": list(range(20))}), _DropOdd("id"))
    (epoch,) = read_epochs(source, accelerator, batch_size=3, num_workers=workers, epochs=1)
    assert Counter(epoch["ids"]) == Counter(range(0, 20, 2))


def test_asr_drops_clips_longer_than_max_seconds_from_the_stream(loaded):
    _, _, data = loaded["asr"]
    row = data.train_stream.rows[0]
    assert data.train_stream.transform(row)["input_features"].shape[1] == 16
    limit, data.train.max_seconds = data.train.max_seconds, 0.01  # the same ASRClips object: its per-example function reads the limit
    try:
        assert data.train_stream.transform(row) is None
    finally:
        data.train.max_seconds = limit
