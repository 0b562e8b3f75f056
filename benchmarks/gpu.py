"""GPU training throughput and memory per task, and GPU inference, PyTorch vs ONNX Runtime (issue 21).

Training: each task's packaged recipe (``polyhead train TASK``), its training loader (:func:`polyhead.training.make_loader`,
workers pinned as in a run), AdamW steps in three modes: ``fp32``, ``bf16`` (autocast, as Accelerate's
``mixed_precision="bf16"``) and ``bf16+compile`` (plus ``torch.compile`` of the backbone, as ``train.compile``), and for
image/volume (pyramid-backbone) tasks a fourth, ``bf16+channels_last`` (``train.channels_last``).
Reported per task and mode: samples/s over the timed steps (after warm-up steps that include compilation) and the
peak allocated GPU memory. Inference: each pipeline's embedded default model at batch 32, eager PyTorch on CUDA vs the
exported ONNX graph on ONNX Runtime's CUDAExecutionProvider (median latency). Writes ``benchmarks/results/gpu.json``.

    python -m benchmarks.gpu [--steps 30] [--warmup 10] [--tasks forecasting,asr]

On a machine without a CUDA GPU it measures nothing, writes nothing, prints one line on stderr and exits with status 2,
so a script or ``make`` target that expected fresh figures stops instead of committing stale ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "gpu.json"
MODES = ("fp32", "bf16", "bf16+compile", "bf16+channels_last")
NO_GPU_EXIT = 2
NO_GPU_MESSAGE = ("benchmarks/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False): nothing was measured and "
                  f"{RESULTS.relative_to(RESULTS.parents[2])} is unchanged.")


def to_device(value: Any, device: torch.device) -> Any:
    """A batch (tensors in dicts, lists, tuples) on ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


def batch_size_of(batch: dict[str, Any]) -> int:
    return next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]


def recipe(task_name: str) -> tuple[Any, Any, Any, Any]:
    """The task's packaged recipe (``polyhead train TASK``): its config file, task, model config and data."""
    from polyhead import registry
    from polyhead.config import load_config
    from polyhead.workflows import config_section, model_section

    cfg = load_config(task_name)
    task = registry.get(registry.TASKS, task_name)()
    data_section = config_section(cfg, "data")
    config = task.build_config(model_section(cfg), data_section)
    return cfg, task, config, task.build_data(data_section, config)


def measure_training(task_name: str, mode: str, *, device: torch.device, steps: int, warmup: int, compile_backend: str = "inductor") -> dict[str, Any]:
    """samples/s and peak memory of ``steps`` optimizer steps after ``warmup`` (``mode`` in :data:`MODES`)."""
    from polyhead.training import make_loader, to_channels_last

    cfg, task, config, data = recipe(task_name)
    torch.manual_seed(0)
    model = task.build_model(config).to(device).train()
    if mode.endswith("+compile"):
        model.backbone.compile(backend=compile_backend)
    if mode.endswith("+channels_last"):
        if model.backbone.kind != "pyramid":
            return {"skipped": f"a {model.backbone.kind} backbone: channels-last is for image and volume backbones"}
        to_channels_last(model)
    batch_size = int(config_batch_size(cfg))
    loader = make_loader(data.train, batch_size=batch_size, shuffle=True, collate_fn=data.collate_fn, num_workers=None,
                         batch_sampler=data.batch_sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if mode.startswith("bf16") else None
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    done, samples, started = 0, 0, None
    while done < warmup + steps:
        for batch in loader:
            if done == warmup:
                if cuda:
                    torch.cuda.synchronize()
                started = time.perf_counter()
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if done >= warmup:
                samples += batch_size_of(batch)
            done += 1
            if done == warmup + steps:
                break
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "timed_steps": steps,
        "samples_per_second": round(samples / seconds, 1),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "final_loss": float(loss.detach()),
    }


def config_batch_size(cfg: Any) -> int:
    return (cfg.get("train") or {}).get("batch_size") or 32


def _median_ms(run: Any, repeats: int, cuda: bool) -> float:
    times = []
    for index in range(repeats + 3):  # 3 warm-up calls
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        if index >= 3:
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def measure_inference(pipeline_task: str, *, batch: int = 32, repeats: int = 20) -> dict[str, Any]:
    """Median latency of the default model at ``batch``: eager PyTorch on CUDA vs ONNX Runtime's CUDA provider."""
    import onnxruntime as ort
    from polyhead.pipelines import default_model_dir

    import polyhead
    from polyhead.loading import load_model
    from polyhead.onnx_runtime import task_and_spec

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"skipped": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                           f"({ort.get_available_providers()}); install onnxruntime-gpu"}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        shutil.copytree(default_model_dir(pipeline_task), model_dir)
        polyhead.export_onnx(model_dir)
        model = load_model(model_dir).cuda().eval()
        task, spec = task_and_spec(model.config)
        data = task.build_data({}, model.config)
        split = data.test if data.test is not None and len(data.test) else data.validation
        samples = [split[i % len(split)] for i in range(batch)]
        inputs = (data.collate_fn or torch.utils.data.default_collate)(samples)
        inputs = {name: inputs[name] for name in spec.input_names}
        session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CUDAExecutionProvider"])
        feed = {name: value.numpy() if value.dtype != torch.float64 else value.float().numpy() for name, value in inputs.items()}
        cuda_inputs = to_device(inputs, torch.device("cuda"))
        with torch.no_grad():
            torch_ms = _median_ms(lambda: model(**cuda_inputs), repeats, cuda=True)
        onnx_ms = _median_ms(lambda: session.run(spec.output_names, feed), repeats, cuda=True)
    return {"batch": batch, "torch_cuda_ms": torch_ms, "onnxruntime_cuda_ms": onnx_ms, "speedup": round(torch_ms / onnx_ms, 2),
            "providers": session.get_providers()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: every registered task)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_GPU_MESSAGE, file=sys.stderr)
        return NO_GPU_EXIT

    from polyhead.pipelines import PIPELINES

    from polyhead import registry

    device = torch.device("cuda")
    tasks = args.tasks.split(",") if args.tasks else registry.names(registry.TASKS)
    training: dict[str, Any] = {}
    for name in tasks:
        training[name] = {}
        for mode in MODES:
            try:
                training[name][mode] = measure_training(name, mode, device=device, steps=args.steps, warmup=args.warmup)
            except Exception as err:  # one task's failure (no data downloaded, PPO's own loop) must not lose the others
                training[name][mode] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
            print(name, mode, training[name][mode], flush=True)
    inference: dict[str, Any] = {}
    for pipeline_task in PIPELINES:
        try:
            inference[pipeline_task] = measure_inference(pipeline_task)
        except Exception as err:
            inference[pipeline_task] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        print(pipeline_task, inference[pipeline_task], flush=True)
    result = {
        "what": "training samples/s and peak allocated memory per task recipe (fp32, bf16 autocast, bf16 + torch.compile "
                "of the backbone); inference median ms at batch 32, eager PyTorch CUDA vs ONNX Runtime CUDA",
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "training": training,
        "inference": inference,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
