"""ONNX export with a parity gate, and an ONNX Runtime model with the PyTorch model's interface.

``export_onnx(model_dir)`` captures the network with ``torch.export`` (non-strict,
so nothing retries silently), converts it with the dynamo ONNX exporter, checks
the file (``onnx.checker`` full check, every declared dynamic axis symbolic, the
requested input/output names), runs it in ONNX Runtime on fresh inputs of other
batch sizes, and only then moves ``model.onnx`` next to the weights and writes
``onnx_report.json``. Any difference beyond the tolerance is an :class:`ExportError`.

Each task declares what to export through :meth:`polyhead.tasks.Task.export_spec`;
post-processing (NMS, decoding, sliding windows) stays in Python and runs on either backend.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError, ExportError
from .loading import load_model
from .onnx_runtime import OnnxModel, task_and_spec
from .onnx_runtime import session as ort_session
from .workflows import evaluate_model_dir
from .model_dir import INT8_NAME, ONNX_NAME, REPORT_NAME, atomic_write_text, check_model_dir, check_writable_folder, onnx_names, write_folder

__all__ = ["ExportSpec", "OnnxModel", "export_onnx", "ONNX_NAME", "REPORT_NAME", "INT8_NAME"]

OPSET = 18


@dataclass
class ExportSpec:
    """What a task exports: the network's tensors in and out, and which axes are dynamic.

    Attributes:
        input_names: forward keyword arguments fed to the graph, in order.
        output_names: the graph's outputs, in order: fields of ``output_class`` (see ``renamed_outputs``).
        renamed_outputs: ``{graph output name: output_class field}`` where a field was renamed after
            graphs were exported under its first name (the graph keeps that name).
        output_class: the task's ``ModelOutput`` class, returned by :class:`OnnxModel` too.
        make_inputs: ``sizes -> {input name: tensor}``, e.g. ``{"batch": 3}``.
        dynamic_axes: ``{input name: {axis: size name}}``; every size name is a key of the sizes.
        example_sizes: sizes of the traced example (batch >= 2: a batch of 1 would be specialised).
        parity_sizes: further sizes the parity gate runs, including ones not traced.
        atol / rtol: the parity tolerance, ``|onnx - torch| <= atol + rtol * |torch|``.
        min_sizes: smallest value of each dynamic size.
        multiples: dynamic sizes that must be multiples of a stride (``{"height": 32}``), traced as
            ``32 * Dim(...)`` so the exporter can prove the network's shape arithmetic.
    """

    input_names: list[str]
    output_names: list[str]
    output_class: type
    make_inputs: Callable[[Mapping[str, int]], dict[str, torch.Tensor]]
    dynamic_axes: dict[str, dict[int, str]]
    example_sizes: dict[str, int] = field(default_factory=lambda: {"batch": 2})
    parity_sizes: list[dict[str, int]] = field(default_factory=lambda: [{"batch": 1}, {"batch": 3}, {"batch": 8}])
    atol: float = 1e-4
    rtol: float = 1e-5
    min_sizes: dict[str, int] = field(default_factory=lambda: {"batch": 1})
    latency_batches: tuple[int, ...] = (1, 32)
    latency_repeats: int = 20
    multiples: dict[str, int] = field(default_factory=dict)
    renamed_outputs: dict[str, str] = field(default_factory=dict)

    def field_name(self, output_name: str) -> str:
        """The ``output_class`` field a graph output fills."""
        return self.renamed_outputs.get(output_name, output_name)


class _ExportWrapper(nn.Module):
    """Positional tensors in, a tuple of tensors out: the graph ONNX sees.

    ``forward`` has one named parameter per input name (its ``__signature__`` says
    ``forward(self, observations, attention_mask)``), not an anonymous ``*tensors``:
    torch.export names the guards that tie inputs together (equal batch sizes) after the
    parameters, and cannot resolve ``*tensors`` when the exported program is converted.
    No code is generated or executed to get there.
    """

    def __new__(cls, model: nn.Module, spec: ExportSpec) -> "_ExportWrapper":
        if cls is _ExportWrapper:
            names = list(spec.input_names)
            if not all(name.isidentifier() for name in names):
                raise ExportError(f"Input names must be Python identifiers, got {names}.")

            def forward(self: "_ExportWrapper", *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
                return self._run(tensors)

            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            forward.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in ["self", *names]])  # type: ignore[attr-defined]
            cls = type("_ExportWrapper", (_ExportWrapper,), {"forward": forward})
        return super().__new__(cls)

    def __init__(self, model: nn.Module, spec: ExportSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def _run(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.spec.input_names, tensors)))
        return tuple(getattr(outputs, self.spec.field_name(name)) for name in self.spec.output_names)


def _dynamic_shapes(spec: ExportSpec) -> dict[str, dict[int, torch.export.Dim]]:
    def dim(name: str):
        multiple, low = spec.multiples.get(name, 1), spec.min_sizes.get(name, 1)
        if multiple == 1:
            return torch.export.Dim(name, min=low, max=65536)
        return multiple * torch.export.Dim(f"{name}_over_{multiple}", min=max(1, -(-low // multiple)), max=65536 // multiple)

    dims = {name: dim(name) for axes in spec.dynamic_axes.values() for name in axes.values()}
    return {inp: {axis: dims[name] for axis, name in spec.dynamic_axes.get(inp, {}).items()} for inp in spec.input_names}


def _export_graph(wrapper: _ExportWrapper, spec: ExportSpec, path: Path) -> None:
    example = spec.make_inputs(spec.example_sizes)
    args = tuple(example[name] for name in spec.input_names)
    try:
        program = torch.export.export(wrapper, args, dynamic_shapes=tuple(_dynamic_shapes(spec).values()), strict=False)
    except Exception as err:  # torch.export raises many types; the message names the operator or guard
        raise ExportError(f"torch.export could not capture the network: {type(err).__name__}: {str(err)[:2000]}") from None
    narrowed = [str(r) for r in program.range_constraints.values() if r.lower == r.upper]
    if narrowed:
        raise ExportError(f"A declared dynamic axis was fixed during capture ({narrowed}); the graph would not be dynamic.")
    # the exporter logs a warning per torchvision operator it registers ("Missing annotation for parameter
    # 'rois'"): about its own schema table, not about this model
    schemas = logging.getLogger("torch.onnx._internal.exporter._schemas")
    level = schemas.level
    schemas.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            program, args, str(path), input_names=spec.input_names, output_names=spec.output_names,
            opset_version=OPSET, dynamo=True, external_data=False, optimize=True, fallback=False, verbose=False,
        )
    except Exception as err:
        raise ExportError(_conversion_message(err)) from None
    finally:
        schemas.setLevel(level)


def _conversion_message(err: Exception) -> str:
    """Put the operator ONNX could not express first; drop the exporter's colour codes and boilerplate."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    ops = sorted(set(re.findall(r"op='([^']+)'", text)))
    summary = text.split("## Exception summary", 1)[-1].strip()
    head = f"unsupported operator(s) {', '.join(ops)}; " if ops else ""
    return f"ONNX conversion failed: {head}{type(err).__name__}: {summary[:1500]}"


def _name_dynamic_axes(path: Path, spec: ExportSpec) -> None:
    """Give the exporter's symbols (``s41``) the spec's names (``batch``) and check every axis is symbolic."""
    import onnx

    model = onnx.load(str(path))
    renames: dict[str, str] = {}
    inputs = {i.name: i for i in model.graph.input}
    for name, axes in spec.dynamic_axes.items():
        dims = inputs[name].type.tensor_type.shape.dim
        for axis, size_name in axes.items():
            if not dims[axis].dim_param:
                raise ExportError(f"Input {name!r} axis {axis} ({size_name}) was exported as the constant {dims[axis].dim_value}.")
            renames[dims[axis].dim_param] = size_name
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != spec.input_names or got_out != spec.output_names:
        raise ExportError(f"Exported names {got_in} -> {got_out} differ from the requested {spec.input_names} -> {spec.output_names}.")
    for output in model.graph.output:
        if not any(d.dim_param == "batch" for d in output.type.tensor_type.shape.dim) and "batch" in renames.values():
            raise ExportError(f"Output {output.name!r} lost its dynamic batch axis.")
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _parity(wrapper: _ExportWrapper, session, spec: ExportSpec, seed: int = 0) -> list[dict[str, Any]]:
    torch.manual_seed(seed)
    results = []
    for sizes in spec.parity_sizes:
        inputs = spec.make_inputs(sizes)
        with torch.no_grad():
            expected = wrapper(*(inputs[n] for n in spec.input_names))
        got = session.run(spec.output_names, {n: inputs[n].numpy() for n in spec.input_names})
        row: dict[str, Any] = {"sizes": dict(sizes), "shapes": {n: list(inputs[n].shape) for n in spec.input_names}, "outputs": {}}
        ok = True
        for name, want, have in zip(spec.output_names, expected, got):
            want = want.numpy()
            if want.shape != have.shape:
                raise ExportError(f"Output {name!r} has shape {have.shape} in ONNX Runtime but {want.shape} in PyTorch for inputs {row['shapes']}.")
            diff = np.abs(have - want)
            max_abs = float(diff.max()) if diff.size else 0.0
            max_rel = float((diff / np.maximum(np.abs(want), 1e-12)).max()) if diff.size else 0.0
            within = bool(np.all(diff <= spec.atol + spec.rtol * np.abs(want)))
            ok &= within
            row["outputs"][name] = {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "within_tolerance": within}
        row["passed"] = ok
        results.append(row)
    return results


def _latency_ms(fn: Callable[[], Any], repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure_latency(wrapper: nn.Module, session, spec: ExportSpec, batch: int) -> dict[str, float]:
    """Median eager and ORT latency (ms) at ``batch``, same thread count."""
    inputs = spec.make_inputs({**spec.example_sizes, "batch": batch})
    args = tuple(inputs[n] for n in spec.input_names)
    feed = {n: inputs[n].numpy() for n in spec.input_names}
    with torch.inference_mode():
        eager = _latency_ms(lambda: wrapper(*args), spec.latency_repeats)
    onnx_ms = _latency_ms(lambda: session.run(spec.output_names, feed), spec.latency_repeats)
    return {"eager_ms": round(eager, 3), "onnx_ms": round(onnx_ms, 3), "speedup": round(eager / onnx_ms, 3)}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    from . import __version__

    return {"polyhead": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def export_onnx(
    model_dir: str | os.PathLike,
    *,
    quantize: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    evaluate_quantized: bool = True,
    task: str | None = None,
) -> dict[str, Any]:
    """Export a saved polyhead model to ``<model_dir>/model.onnx`` and check it.

    Args:
        model_dir: a local polyhead model dir.
        task: for a multi-task folder, the task to export (``model.<task>.onnx``, its own report).
        quantize: ``"int8"`` also writes ``model.int8.onnx`` (dynamic int8 of MatMul/Gemm).
        atol / rtol: override the task's parity tolerance.
        evaluate_quantized: report the task metric of the int8 file vs fp32 on the test split.

    Returns:
        The report, also written to ``<model_dir>/onnx_report.json``.

    Raises:
        ExportError: capture or conversion failed, or ONNX Runtime differs from PyTorch.
    """
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    check_writable_folder(model_dir, kind="model", what="model folder")  # before minutes of export
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be None or 'int8', got {quantize!r}.")
    model = load_model(model_dir, task=task).eval()
    onnx_name, int8_name, report_name = onnx_names(task)
    task_name = task
    task, spec = task_and_spec(model.config)
    if atol is not None:
        spec.atol = atol
    if rtol is not None:
        spec.rtol = rtol
    wrapper = _ExportWrapper(model, spec).eval()

    with write_folder(model_dir, kind="model", replace=False, what="model folder") as staging:
        tmp_path = staging / onnx_name
        started = time.perf_counter()
        _export_graph(wrapper, spec, tmp_path)
        _name_dynamic_axes(tmp_path, spec)
        export_seconds = time.perf_counter() - started
        session = ort_session(tmp_path, providers=["CPUExecutionProvider"])
        parity = _parity(wrapper, session, spec)
        failed = [row for row in parity if not row["passed"]]
        if failed:
            worst = max(((row["shapes"], name, o) for row in failed for name, o in row["outputs"].items()), key=lambda t: t[2]["max_abs_diff"])
            raise ExportError(
                f"ONNX Runtime differs from PyTorch beyond atol={spec.atol}, rtol={spec.rtol}: output {worst[1]!r} "
                f"max abs diff {worst[2]['max_abs_diff']:.3g}, max rel diff {worst[2]['max_rel_diff']:.3g} "
                f"for input shapes {worst[0]}. model.onnx was not written."
            )
        report: dict[str, Any] = {
            "passed": True,
            "task": task.name,
            "exporter": "torch.export (non-strict) + torch.onnx dynamo",
            "opset": OPSET,
            "inputs": spec.input_names,
            "outputs": spec.output_names,
            "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in spec.dynamic_axes.items()},
            "tolerance": {"atol": spec.atol, "rtol": spec.rtol, "rule": "|onnx - torch| <= atol + rtol * |torch|"},
            "parity": parity,
            "export_seconds": round(export_seconds, 2),
            "latency": {f"batch_{b}": measure_latency(wrapper, session, spec, b) for b in spec.latency_batches},
            "threads": torch.get_num_threads(),
            "file_bytes": tmp_path.stat().st_size,
            "versions": _versions(),
        }
        if quantize == "int8":
            if task_name is not None:
                raise ExportError("int8 quantization of one task of a multi-task folder is not supported; export it without quantize.")
            report["int8"] = _quantize_int8(tmp_path, staging / int8_name, wrapper, spec, model_dir if evaluate_quantized else None)
        atomic_write_text(staging / report_name, json.dumps(report, indent=2) + "\n")
    return report


def _quantize_int8(fp32: Path, int8: Path, wrapper: nn.Module, spec: ExportSpec, model_dir: Path | None) -> dict[str, Any]:
    """Dynamic int8 of MatMul/Gemm only (convolutions get slower on this CPU), with ``reduce_range``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The exporter's intermediate value_info can disagree with ONNX's own shape
    # inference, which the quantizer runs; it is optional, so drop it for the quantizer.
    stripped = int8.with_name("fp32-stripped.onnx")
    model = onnx.load(str(fp32))
    del model.graph.value_info[:]
    onnx.save(model, str(stripped))
    try:
        quantize_dynamic(str(stripped), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"], reduce_range=True)
    finally:
        stripped.unlink(missing_ok=True)
    session = ort_session(int8, providers=["CPUExecutionProvider"])
    result: dict[str, Any] = {
        "settings": {"weight_type": "QInt8", "op_types": ["MatMul", "Gemm"], "reduce_range": True},
        "file_bytes": int8.stat().st_size,
        "latency": {f"batch_{b}": measure_latency(wrapper, session, spec, b) for b in spec.latency_batches},
        "parity": _parity(wrapper, session, spec),
    }
    if model_dir is not None:
        try:
            fp32_metrics = evaluate_model_dir(model_dir, backend="onnx", onnx_file=fp32)["metrics"]
            int8_metrics = evaluate_model_dir(model_dir, backend="onnx", onnx_file=int8)["metrics"]
        except (ConfigError, DataError) as err:  # e.g. an online RL agent has no test split: it is judged by episodes
            result["test_metrics"] = {"skipped": str(err)}
        else:
            result["test_metrics"] = {"fp32": fp32_metrics, "int8": int8_metrics,
                                      "relative_change": {k: (int8_metrics[k] - v) / v for k, v in fp32_metrics.items() if k in int8_metrics and v}}
    return result
