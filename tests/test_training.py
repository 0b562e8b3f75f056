"""Training-at-scale options of the generic Trainer (issue 21) that a CPU can check: ``train.compile``,
precision checks, the DataLoader defaults and per-worker seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

from polyhead import registry
from polyhead.config import load_config
from polyhead.errors import ConfigError, UnknownNameError
from polyhead.training import (
    Trainer,
    TrainingArguments,
    default_num_workers,
    make_loader,
)
from tests.conftest import TINY_FORECASTING


class RandomAugmentation(Dataset):
    """Each sample is a fresh random draw from torch, NumPy and ``random`` (an augmentation), with the worker that drew it."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict:
        worker = get_worker_info()
        return {
            "worker": torch.tensor(worker.id if worker is not None else -1),
            "torch": torch.rand(()),
            "numpy": torch.tensor(np.random.rand()),
            "random": torch.tensor(random.random()),
        }


def _draws(seed: int, process_index: int = 0) -> dict[str, torch.Tensor]:
    loader = make_loader(RandomAugmentation(), batch_size=1, shuffle=True, collate_fn=None, num_workers=2, seed=seed, process_index=process_index)
    batches = list(loader)
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


@pytest.mark.slow
def test_workers_draw_different_augmentations_that_repeat_across_runs():
    first, again, other_seed = _draws(0), _draws(0), _draws(1)
    assert set(first["worker"].tolist()) == {0, 1}
    for source in ("torch", "numpy", "random"):
        by_worker = [first[source][first["worker"] == w] for w in (0, 1)]
        # worker 0's k-th draw differs from worker 1's k-th draw
        assert not torch.equal(by_worker[0], by_worker[1]), source
        assert torch.equal(first[source], again[source]), f"{source}: the same seed must draw the same augmentations"
        assert not torch.equal(first[source], other_seed[source]), source
    # another rank's workers draw other values (Accelerate hands every rank the same generator)
    assert not torch.equal(first["torch"], _draws(0, process_index=1)["torch"])


def test_loader_options_follow_the_device(monkeypatch):
    plain = make_loader(RandomAugmentation(), batch_size=4, shuffle=False, collate_fn=None, num_workers=2)
    assert plain.pin_memory is torch.cuda.is_available() and plain.persistent_workers is torch.cuda.is_available()
    assert plain.worker_init_fn is not None
    assert make_loader(RandomAugmentation(), batch_size=4, shuffle=False, collate_fn=None, num_workers=0).worker_init_fn is None
    # workers start as train.multiprocessing_context says; None leaves PyTorch's default
    assert plain.multiprocessing_context is None
    forkserver = make_loader(RandomAugmentation(), batch_size=4, shuffle=False, collate_fn=None, num_workers=2, multiprocessing_context="forkserver")
    assert forkserver.multiprocessing_context.get_start_method() == "forkserver"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda = make_loader(RandomAugmentation(), batch_size=4, shuffle=True, collate_fn=None, num_workers=2)
    assert cuda.pin_memory and cuda.persistent_workers
    assert make_loader(RandomAugmentation(), batch_size=4, shuffle=True, collate_fn=None, num_workers=None).num_workers == default_num_workers()


def test_default_num_workers(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_num_workers() == 0  # the model's own threads already use every core
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_num_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 GPU processes share 32 cores
    assert default_num_workers() == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert default_num_workers() == 1
    assert TrainingArguments().num_workers is None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_workers": -1}, ConfigError, "train.num_workers must be a non-negative integer or None"),
        ({"compile": "yes"}, ConfigError, "train.compile must be true or false"),
        ({"compile": True, "compile_backend": "inductr"}, UnknownNameError, "Did you mean 'inductor'"),
        ({"precision": "fp8"}, UnknownNameError, "Unknown train.precision 'fp8'"),
        ({"multiprocessing_context": "forks"}, UnknownNameError, r"Did you mean 'fork'\? Expected one of: fork, forkserver, spawn"),
        ({"multiprocessing_context": 2}, UnknownNameError, "Unknown train.multiprocessing_context"),
    ],
)
def test_bad_options_are_config_errors(options, error, match):
    with pytest.raises(error, match=match):
        TrainingArguments(**options)


def test_fp16_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'fp16' needs a GPU; on the CPU use 'bf16' or 'no'"):
        TrainingArguments(precision="fp16")
    assert TrainingArguments(precision="bf16").precision == "bf16"


def test_bf16_on_a_gpu_without_it_names_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    with pytest.raises(ConfigError, match="not supported by Tesla V100; use 'fp16'"):
        TrainingArguments(precision="bf16")
    assert TrainingArguments(precision="fp16").precision == "fp16"


def _forecasting_run(tmp_path, **options):
    """Three optimizer steps of the tiny forecaster (no dropout), then its validation loss and weights."""
    cfg = load_config("forecasting", {**TINY_FORECASTING, "model.backbone.dropout": 0.0})
    task = registry.get(registry.TASKS, "forecasting")()
    config = task.build_config({k: v for k, v in cfg.model.to_dict().items() if k != "task"}, cfg.data.to_dict())
    data = task.build_data(cfg.data.to_dict(), config)
    torch.manual_seed(0)
    model = task.build_model(config)
    args = TrainingArguments(output_dir=str(tmp_path), batch_size=16, max_steps=3, eval_every=3, scheduler="constant",
                             log_with=None, progress_bar=False, num_workers=0, **options)
    trainer = Trainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                      processor=task.build_processor(config), collate_fn=data.collate_fn)
    result = trainer.train()
    return model, result.history[-1]["eval_loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_compile_matches_eager(tmp_path):
    """``train.compile`` compiles the backbone only, and trains to the same weights as eager.

    The ``aot_eager`` backend runs what ``inductor`` runs up to code generation (Dynamo's graph capture, AOTAutograd's
    forward/backward split), without generating C++: inductor works on this machine (gcc 12) but needs ~40 s to
    compile even the tiny model on 2 shared cores, too slow for every test run. ``benchmarks/gpu.py`` uses inductor.
    """
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager_model, eager_loss, eager_weights = _forecasting_run(tmp_path / "eager")
    compiled_model, compiled_loss, compiled_weights = _forecasting_run(tmp_path / "compiled", compile=True, compile_backend="aot_eager")

    assert compiled_model.backbone._compiled_call_impl is not None and eager_model.backbone._compiled_call_impl is None
    assert compiled_model.adapter._compiled_call_impl is None  # the task's parts stay eager
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1, "Dynamo captured no graph: the run was eager"
    assert list(compiled_weights) == list(eager_weights)  # checkpoint names unchanged (no `_orig_mod.`)
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-5)
    for name, value in eager_weights.items():
        torch.testing.assert_close(compiled_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert (tmp_path / "compiled" / "best" / "model.safetensors").is_file()


def test_fsdp_options_are_checked_by_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'reshard_after_forward'"):
        TrainingArguments(fsdp={"reshard_after_forwrd": True})
    with pytest.raises(ConfigError, match="train.fsdp must be a dict"):
        TrainingArguments(fsdp="FULL_SHARD")


def test_fsdp_options_from_the_command_line():
    from polyhead.workflows import training_section

    cfg = load_config("forecasting", ["train.fsdp.reshard_after_forward=True", "train.fsdp.cpu_offload=False"])
    assert TrainingArguments.from_section(training_section(cfg)).fsdp == {"reshard_after_forward": True, "cpu_offload": False}


def test_fsdp_without_gpus_is_refused_before_training(tmp_path, monkeypatch):
    """On the CPU Accelerate would ignore the plugin and train with DDP (tests/distributed/test_fsdp.py): refuse instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="train.fsdp needs GPUs"):
        _forecasting_run(tmp_path, fsdp={"reshard_after_forward": True})


def test_fsdp_plugin_on_gpus(monkeypatch):
    from polyhead.training import fsdp_plugin

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plugin = fsdp_plugin(TrainingArguments(fsdp={"reshard_after_forward": False, "activation_checkpointing": True}).fsdp)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is False and plugin.activation_checkpointing is True
    assert fsdp_plugin({"fsdp_version": 1}).fsdp_version == 1


@pytest.mark.parametrize("task_name", ["detection", "segmentation"])
def test_channels_last_changes_the_memory_layout_not_the_results(task_name):
    """``train.channels_last``: every image (volume) weight in NHWC (NDHWC) memory, the same outputs and gradients."""
    import copy

    from polyhead.training import to_channels_last

    task = registry.get(registry.TASKS, task_name)
    config = task.example_config()
    torch.manual_seed(0)
    model = task.model_class_for(config)(config).train().double()  # float64: the layouts' summation orders agree to ~1e-12
    twin = to_channels_last(copy.deepcopy(model))
    dims = model.backbone.spatial_dims
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    kernels = [name for name, p in model.named_parameters() if p.dim() == dims + 2 and p.shape[1] > 1 and max(p.shape[2:]) > 1]
    assert kernels and all(not model.get_parameter(n).is_contiguous(memory_format=layout) for n in kernels)
    assert all(twin.get_parameter(n).is_contiguous(memory_format=layout) for n in kernels)
    size = [64, 64] if dims == 2 else list(config.patch_size)
    pixels = torch.randn(2, model.backbone.in_channels, *size, dtype=torch.float64)
    results = []
    for network in (model, twin):
        torch.manual_seed(1)  # the same dropout / drop-path draws
        out = network(pixel_values=pixels)
        total = sum(v.float().sum() for v in out.values() if torch.is_tensor(v) and v.is_floating_point() and v.requires_grad)
        total.backward()
        results.append((out, {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}))
    (out, grads), (twin_out, twin_grads) = results
    for key, value in out.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(twin_out[key], value, rtol=1e-9, atol=1e-9, msg=key)
    assert grads.keys() == twin_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(twin_grads[name], grad, rtol=1e-9, atol=1e-9, msg=name)


def test_channels_last_is_refused_for_sequence_backbones_and_non_booleans():
    from polyhead.training import to_channels_last

    task = registry.get(registry.TASKS, "forecasting")
    model = task.model_class_for(task.example_config())(task.example_config())
    with pytest.raises(ConfigError, match="train.channels_last applies to image and volume"):
        to_channels_last(model)
    with pytest.raises(ConfigError, match="train.channels_last must be true or false"):
        TrainingArguments(channels_last="yes")
