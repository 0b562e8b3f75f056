"""Run under ``accelerate launch`` (or plain python): read the streaming training data of every streaming task
(:data:`TASKS`: their small recipes, which ``tests/test_streaming.py`` also trains) for two epochs, record which rows
this process got, then train a tiny forecaster from its stream.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed/streaming_probe.py OUT_DIR

Writes ``OUT_DIR/rank<r>.json``: per task and worker count, the row ids of each epoch (real batches only), the
number of ``(batch, real)`` pairs and which were repeats; the same for seven rows in batches of three (an uneven
split: one process has a batch fewer); and a training run's evaluation steps and a weight checksum after each
step (97 windows an epoch: one process repeats a batch at the end of each epoch, with zero loss); and the same
run crashed after a mid-epoch checkpoint and resumed: how far its final weights are from the uninterrupted run's.
"""

from __future__ import annotations

import atexit
import csv
import faulthandler
import functools
import json
import multiprocessing
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

import polyhead
from polyhead import registry
from polyhead.config import load_config
from polyhead.tasks import BUILTIN_TASKS
from polyhead.streaming import (
    StreamingLoader,
    StreamingOptions,
    StreamRows,
    TrainStream,
)
from polyhead.training import make_accelerator
from polyhead.workflows import model_section

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.conftest import TINY_FORECASTING
from tests.recommendation_data import TINY_CTR, TINY_NEXT_ITEM, synthetic_interactions

_QUIET = {"train.log_with": None, "train.progress_bar": False, "train.warmup_steps": 0}
_SEQUENCE = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "dropout": 0.0}

#: each streaming task's recipe, its small overrides (data sources: :data:`SOURCES`), and the row column that
#: identifies a sample (``None``: the rows have none, the tests number them)
TASKS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "forecasting": ("forecasting", {**TINY_FORECASTING, "data.train_stride": 4}, "index"),
    "detection": ("configs/detection/convnext_tiny_fcos.py", {
        "model.image_size": 64,
        "model.backbone": {"type": "convnext", "spatial_dims": 2, "in_channels": 3, "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 32]},
        "model.head": {"type": "fcos", "fpn_channels": 32, "num_convs": 1, "min_reduction": 8}, **_QUIET,
    }, "image_id"),
    "asr": ("asr", {
        "model.n_mels": 16, "model.backbone": {"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3},
        **_QUIET,
    }, None),
    "recommendation/next_item": ("recommendation", {**TINY_NEXT_ITEM, "train.epochs": 1}, "index"),
    "recommendation/ctr": ("configs/recommendation/hiformer_ctr_ml100k.py", {**TINY_CTR, "train.epochs": 1}, "index"),
    "rl/decision_transformer": ("configs/rl/decision_transformer_cartpole.py", {
        "model.context_length": 4, "model.max_timestep": 512, "model.target_return": None, "model.backbone": {**_SEQUENCE, "max_length": 12},
        "data.val_fraction": 0.2, "data.test_fraction": 0.2, "data.eval_episodes": 1, "train.epochs": 1, "train.eval_every": None, **_QUIET,
    }, "index"),
    # the embedded template (one volume: a region split) at 4 mm, MONAI's random patches; 128 patches an epoch
    "segmentation": ("segmentation", {
        "model.target_spacing": [4.0, 4.0, 4.0], "model.sw_overlap": 0.0, "model.sw_batch_size": 2,
        "model.backbone": {"_delete_": True, "type": "convnext", "depths": [1, 1, 1, 1], "dims": [8, 16, 16, 32]},
        "model.head": {"type": "unetr_decoder", "feature_size": 8, "identity_skip_levels": [-1]},
        "data.patches_per_volume": 128, "train.batch_size": 2, "train.early_stopping_patience": None, "train.eval_every": None, **_QUIET,
    }, "index"),
}

#: what the two-process probe reads: every streaming task's own rows
PROBE_TASKS = tuple(TASKS)


@functools.cache
def _scratch() -> Path:
    """A folder for the generated data sources, removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="polyhead-streaming-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def _speech() -> Path:
    """120 training and 8 validation / test clips of the embedded speech set, as an audiofolder."""
    from polyhead.tasks.asr import embedded_speech_dir

    root, embedded = _scratch() / "speech", embedded_speech_dir()
    for split, count in (("train", 120), ("validation", 8), ("test", 8)):
        (root / split).mkdir(parents=True)
        with open(embedded / split / "metadata.csv") as handle:
            rows = list(csv.DictReader(handle))[:count]
        with open(root / split / "metadata.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "text"])
            for row in rows:
                shutil.copy(embedded / split / row["file_name"], root / split / row["file_name"])
                writer.writerow([row["file_name"], row["text"]])
    return root


@functools.cache
def _interactions() -> Path:
    path = _scratch() / "interactions.csv"
    synthetic_interactions(num_users=100).to_csv(path, index=False)
    return path


@functools.cache
def _trajectories() -> Path:
    from polyhead.tasks.rl import collect

    out = _scratch() / "cartpole-random"
    collect("random", "CartPole-v1", episodes=12, seed=0, out=out)
    return out


#: the data a task's small recipe reads, made on first use
SOURCES: dict[str, Callable[[], dict[str, Any]]] = {
    "asr": lambda: {"data.source": str(_speech())},
    "recommendation/next_item": lambda: {"data.source": str(_interactions())},
    "recommendation/ctr": lambda: {"data.source": str(_interactions())},
    "rl/decision_transformer": lambda: {"data.source": [str(_trajectories())]},
}


def task_options(name: str) -> dict[str, Any]:
    """A streaming task's small overrides, its data sources included."""
    return {**TASKS[name][1], **SOURCES.get(name, dict)()}


def task_data(name: str) -> tuple[Any, Any, Any]:
    """``(task, model config, TaskData)`` of a streaming task's small recipe."""
    recipe = TASKS[name][0]
    cfg = load_config(recipe, task_options(name))
    task = registry.get(registry.TASKS, cfg.model.task)()
    data_section = cfg.data.to_dict() if "data" in cfg else {}
    config = task.build_config(model_section(cfg), data_section)
    return task, config, task.build_data(data_section, config)


class RowId:
    """A per-example function that returns the row's id instead of the sample: what the counting tests read."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, row: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"id": torch.tensor(int(row[self.column]))}


def id_source(data: Any, name: str) -> tuple[StreamRows, list[int]]:
    """A task's own training rows with a per-example function that returns the row id (:class:`RowId`), and every id."""
    rows, column = data.train_stream.rows, TASKS[name][2]
    if column is None:  # rows without an id (ASR's clips): number them
        column = "_row"
        rows = rows.add_column(column, list(range(len(rows))))
    return StreamRows(rows, RowId(column)), [int(i) for i in rows[column]]


def read_epochs(source: StreamRows, accelerator: Any, *, batch_size: int, num_workers: int = 0, epochs: int = 2, seed: int = 0,
                options: StreamingOptions | None = None, multiprocessing_context: str | None = None) -> list[dict[str, Any]]:
    """Each epoch of this process's :class:`StreamingLoader`: real ids in order, pair count, repeated pairs."""
    stream = TrainStream(source, options or StreamingOptions(shuffle_buffer=32), seed=seed, num_workers=num_workers,
                         process_index=accelerator.process_index, num_processes=accelerator.num_processes)
    loader = StreamingLoader(stream, accelerator, batch_size=batch_size, num_workers=num_workers, multiprocessing_context=multiprocessing_context)
    records = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        ids, pairs, repeats = [], 0, []
        for batch, real in loader:
            if real:
                ids += batch["id"].tolist()
            else:
                repeats.append(pairs)
            pairs += 1
        records.append({"ids": ids, "pairs": pairs, "repeats": repeats})
    return records


#: how long a process may run before it prints every thread's stack and exits: a hang becomes a failure that says
#: where it waited (the test's own limit is longer)
HANG_SECONDS = 420


def main(out_dir: str) -> None:
    import datasets

    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
    # the forkserver imports what the workers unpickle once, not each worker of each epoch again
    multiprocessing.set_forkserver_preload(["__main__", "datasets", *(BUILTIN_TASKS[name.split("/")[0]][0] for name in PROBE_TASKS)])
    torch.set_num_threads(1)
    accelerator = make_accelerator()
    record: dict[str, Any] = {"rank": accelerator.process_index, "num_processes": accelerator.num_processes,
                              "distributed_type": str(accelerator.distributed_type), "reads": {}}
    for name in PROBE_TASKS:
        _, _, data = task_data(name)
        record[f"{name}_rows"] = len(data.train_stream.rows)
        source, _ = id_source(data, name)
        for workers in (0, 2):
            # workers start from a forkserver: this process runs gloo's threads (and pyarrow's, tqdm's), and a fork
            # copies whatever lock one of them holds at that moment; the sharding under test is the same either way
            record["reads"][f"{name}/{workers}"] = read_epochs(source, accelerator, batch_size=16, num_workers=workers,
                                                               multiprocessing_context="forkserver" if workers else None)
    seven = StreamRows(datasets.Dataset.from_dict({"id": list(range(7))}), RowId("id"))
    record["uneven"] = read_epochs(seven, accelerator, batch_size=3, epochs=1, options=StreamingOptions(shuffle_buffer=4, num_shards=2))

    out = Path(out_dir)
    checksums: list[float] = []

    def checksum(trainer: Any) -> None:
        weights = trainer.accelerator.unwrap_model(trainer.model).state_dict()
        checksums.append(float(sum(v.double().sum() for v in weights.values())))

    options = {
        # 97 windows in 2 shards of 49 and 48: one process runs 2 batches of 48 an epoch, the other 1 and a repeat;
        # the checkpoint at step 3 is one batch into epoch 1
        **TASKS["forecasting"][1], "data.train_samples": 97, "data.streaming": True, "data.shuffle_buffer": 64, "data.num_shards": 2,
        "train.max_steps": 5, "train.batch_size": 48, "train.checkpoint_every": 3,
    }
    run = polyhead.train("forecasting", callbacks=[checksum], cfg_options={**options, "train.output_dir": str(out / "run")})
    record["train"] = {"global_step": run.metrics["global_step"], "history_steps": [h["step"] for h in run.metrics["history"]],
                       "checksums": checksums}

    class Crash(RuntimeError):
        pass

    def crash(trainer: Any) -> None:
        if trainer.state.global_step == 4:
            raise Crash("simulated crash")

    resumed_options = {**options, "train.output_dir": str(out / "resumed")}
    try:
        polyhead.train("forecasting", callbacks=[crash], cfg_options=resumed_options)
    except Crash:
        pass
    state = json.loads((out / "resumed" / "checkpoints" / "step-00000003" / "trainer_state.json").read_text())["trainer"]
    polyhead.train("forecasting", cfg_options=resumed_options, resume=True)
    last = Path("checkpoints") / "step-00000005" / "model.safetensors"
    full, resumed = load_file(out / "run" / last), load_file(out / "resumed" / last)
    record["resume"] = {"epoch": state["epoch"], "batches_in_epoch": state["batches_in_epoch"], "keys_equal": full.keys() == resumed.keys(),
                        "max_abs_diff": max(float((full[k] - resumed[k]).abs().max()) for k in full)}
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1])
