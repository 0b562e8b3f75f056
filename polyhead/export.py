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

import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError, ExportError, InputError, ModelLoadError

__all__ = ["ExportSpec", "OnnxModel", "export_onnx", "ONNX_NAME", "REPORT_NAME", "INT8_NAME"]

ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
REPORT_NAME = "onnx_report.json"
OPSET = 18


@dataclass
class ExportSpec:
    """What a task exports: the network's tensors in and out, and which axes are dynamic.

    Attributes:
        input_names: forward keyword arguments fed to the graph, in order.
        output_names: fields of ``output_class`` the graph returns, in order.
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


class _ExportWrapper(nn.Module):
    """Positional tensors in, a tuple of tensors out: the graph ONNX sees.

    ``forward`` takes one parameter per input name (``forward(self, observations,
    attention_mask)``), not ``*tensors``: torch.export names the guards that tie inputs
    together (equal batch sizes) after the parameters, and cannot resolve ``*tensors``
    when the exported program is converted.
    """

    def __new__(cls, model: nn.Module, spec: ExportSpec) -> "_ExportWrapper":
        if cls is _ExportWrapper:
            names = list(spec.input_names)
            if not all(name.isidentifier() for name in names):
                raise ExportError(f"Input names must be Python identifiers, got {names}.")
            scope: dict[str, Any] = {}
            exec(f"def forward(self, {', '.join(names)}):\n    return self._run(({', '.join(names)},))\n", scope)  # noqa: S102
            cls = type("_ExportWrapper", (_ExportWrapper,), {"forward": scope["forward"]})
        return super().__new__(cls)

    def __init__(self, model: nn.Module, spec: ExportSpec) -> None:
        super().__init__()
        self.model = model
        self.spec = spec

    def _run(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.spec.input_names, tensors)))
        return tuple(getattr(outputs, name) for name in self.spec.output_names)


def _task_and_spec(config: Any):
    from . import registry
    from .loading import task_of

    task = registry.get(registry.TASKS, task_of({"model_type": config.model_type}))()
    return task, task.export_spec(config)


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
    try:
        torch.onnx.export(
            program, args, str(path), input_names=spec.input_names, output_names=spec.output_names,
            opset_version=OPSET, dynamo=True, external_data=False, optimize=True, fallback=False,
        )
    except Exception as err:
        raise ExportError(_conversion_message(err)) from None


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


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"ONNX Runtime cannot load {path} (truncated or not an ONNX file?): {str(err)[:500]}") from None


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
) -> dict[str, Any]:
    """Export a saved polyhead model to ``<model_dir>/model.onnx`` and check it.

    Args:
        model_dir: a local polyhead model dir.
        quantize: ``"int8"`` also writes ``model.int8.onnx`` (dynamic int8 of MatMul/Gemm).
        atol / rtol: override the task's parity tolerance.
        evaluate_quantized: report the task metric of the int8 file vs fp32 on the test split.

    Returns:
        The report, also written to ``<model_dir>/onnx_report.json``.

    Raises:
        ExportError: capture or conversion failed, or ONNX Runtime differs from PyTorch.
    """
    from .loading import AutoModel, check_model_dir

    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be None or 'int8', got {quantize!r}.")
    model = AutoModel.from_pretrained(model_dir).eval()
    task, spec = _task_and_spec(model.config)
    if atol is not None:
        spec.atol = atol
    if rtol is not None:
        spec.rtol = rtol
    wrapper = _ExportWrapper(model, spec).eval()

    with tempfile.TemporaryDirectory(prefix=".onnx-", dir=model_dir) as tmp:
        tmp_path = Path(tmp) / ONNX_NAME
        started = time.perf_counter()
        _export_graph(wrapper, spec, tmp_path)
        _name_dynamic_axes(tmp_path, spec)
        export_seconds = time.perf_counter() - started
        session = _session(tmp_path)
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
            report["int8"] = _quantize_int8(tmp_path, Path(tmp) / INT8_NAME, wrapper, spec, model_dir if evaluate_quantized else None)
            os.replace(Path(tmp) / INT8_NAME, model_dir / INT8_NAME)
        os.replace(tmp_path, model_dir / ONNX_NAME)
    (model_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
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
    quantize_dynamic(str(stripped), str(int8), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"], reduce_range=True)
    session = _session(int8)
    result: dict[str, Any] = {
        "settings": {"weight_type": "QInt8", "op_types": ["MatMul", "Gemm"], "reduce_range": True},
        "file_bytes": int8.stat().st_size,
        "latency": {f"batch_{b}": measure_latency(wrapper, session, spec, b) for b in spec.latency_batches},
        "parity": _parity(wrapper, session, spec),
    }
    if model_dir is not None:
        from .workflows import evaluate_model_dir

        try:
            fp32_metrics = evaluate_model_dir(model_dir, backend="onnx", onnx_file=fp32)["metrics"]
            int8_metrics = evaluate_model_dir(model_dir, backend="onnx", onnx_file=int8)["metrics"]
        except (ConfigError, DataError) as err:  # e.g. an online RL agent has no test split: it is judged by episodes
            result["test_metrics"] = {"skipped": str(err)}
        else:
            result["test_metrics"] = {"fp32": fp32_metrics, "int8": int8_metrics,
                                      "relative_change": {k: (int8_metrics[k] - v) / v for k, v in fp32_metrics.items() if k in int8_metrics and v}}
    return result


class OnnxModel(nn.Module):
    """A polyhead model served by ONNX Runtime, with the PyTorch model's call signature and output type.

    ``OnnxModel(model_dir)(**inputs)`` returns the task's ``ModelOutput`` (without ``loss``:
    label keys such as ``future_values`` are ignored), so pipelines, metrics and
    ``polyhead evaluate --backend onnx`` run unchanged.
    """

    is_onnx = True
    input_modalities = "time"

    def __init__(self, model_dir: str | os.PathLike, *, file: str | os.PathLike | None = None) -> None:
        super().__init__()
        import transformers

        from . import tasks  # noqa: F401  (registers the configs)
        from .loading import read_config_dict

        self.model_dir = Path(model_dir)
        read_config_dict(self.model_dir)
        self.config = transformers.AutoConfig.from_pretrained(str(self.model_dir))
        self.name_or_path = str(self.model_dir)
        path = Path(file) if file is not None else self.model_dir / ONNX_NAME
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist; run `polyhead export {self.model_dir}` first.")
        _, self.spec = _task_and_spec(self.config)
        self.main_input_name = self.spec.input_names[0]  # read by transformers' pipelines (e.g. ASR)
        self.session = _session(path)
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != self.spec.input_names or got_out != self.spec.output_names:
            raise ModelLoadError(
                f"{path} does not belong to this model: it has inputs {got_in} and outputs {got_out}, "
                f"expected {self.spec.input_names} and {self.spec.output_names}."
            )
        self._inputs = {i.name: i for i in self.session.get_inputs()}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def _feed(self, name: str, value: Any) -> np.ndarray:
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        meta = self._inputs[name]
        if array.ndim != len(meta.shape):
            raise InputError(f"{name} must have {len(meta.shape)} dimensions {meta.shape}, got shape {array.shape}.")
        for axis, (want, have) in enumerate(zip(meta.shape, array.shape)):
            if isinstance(want, int) and want != have:
                raise InputError(f"{name} axis {axis} must have size {want} {meta.shape}, got shape {array.shape}.")
        expected = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}[meta.type]
        if array.dtype != expected:
            if expected is np.float32 and array.dtype.kind in "f":
                array = array.astype(np.float32)
            else:
                raise InputError(f"{name} must be {np.dtype(expected).name}, got {array.dtype}.")
        return array

    def forward(self, **inputs: Any):
        missing = [n for n in self.spec.input_names if n not in inputs]
        if missing:
            raise InputError(f"Missing input(s) {missing}; this model takes {self.spec.input_names}.")
        feed = {n: self._feed(n, inputs[n]) for n in self.spec.input_names}
        outputs = self.session.run(self.spec.output_names, feed)
        return self.spec.output_class(**{n: torch.from_numpy(o) for n, o in zip(self.spec.output_names, outputs)})
