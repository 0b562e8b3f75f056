"""Serving an exported polyhead model with ONNX Runtime behind the PyTorch model's interface.

``OnnxModel(model_dir)(**inputs)`` returns the task's ``ModelOutput``, so pipelines, the
task's inferer and ``polyhead evaluate --backend onnx`` run unchanged on either backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import registry
from .errors import InputError, ModelLoadError
from .model_dir import MULTITASK_MODEL_TYPE, onnx_names, read_config_dict

__all__ = ["OnnxModel", "execution_providers", "session", "task_and_spec"]


def task_and_spec(config: Any) -> tuple[Any, Any]:
    """The task of ``config`` and its :class:`~polyhead.export.ExportSpec`."""
    task = registry.task_for(config.model_type)()
    return task, task.export_spec(config)


def execution_providers() -> list[str]:
    """ONNX Runtime's providers for serving: CUDA first when this onnxruntime has it (``onnxruntime-gpu``) and a GPU
    is visible, then the CPU (which ONNX Runtime falls back to for operators CUDA lacks)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(path: Path, threads: int | None = None, *, providers: list[str] | None = None):
    """An ONNX Runtime session of ``path``; ``providers``: :func:`execution_providers` unless given (the export's parity
    gate passes ``["CPUExecutionProvider"]``: it compares against PyTorch on the CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers or execution_providers())
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"ONNX Runtime cannot load {path} (truncated or not an ONNX file?): {str(err)[:500]}") from None


class OnnxModel(nn.Module):
    """A polyhead model served by ONNX Runtime, with the PyTorch model's call signature and output type.

    ``OnnxModel(model_dir)(**inputs)`` returns the task's ``ModelOutput`` (without ``loss``:
    label keys such as ``future_values`` are ignored), so pipelines, metrics and
    ``polyhead evaluate --backend onnx`` run unchanged.
    """

    is_onnx = True
    input_modalities = "time"

    def __init__(self, model_dir: str | os.PathLike, *, file: str | os.PathLike | None = None, task: str | None = None) -> None:
        super().__init__()
        import transformers

        self.model_dir = Path(model_dir)
        config_dict = read_config_dict(self.model_dir)
        self.config = transformers.AutoConfig.from_pretrained(str(self.model_dir))
        if config_dict["model_type"] == MULTITASK_MODEL_TYPE:  # one graph per task: model.<task>.onnx
            if task is None:
                raise ModelLoadError(f"{self.model_dir} is a multi-task model ({', '.join(self.config.tasks)}): name the task (task=...).")
            self.config = self.config.task_config(task)
        elif task is not None:
            raise ModelLoadError(f"{self.model_dir} is a single-task model; task={task!r} applies to multi-task models only.")
        self.name_or_path = str(self.model_dir)
        path = Path(file) if file is not None else self.model_dir / onnx_names(task)[0]
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist; run `polyhead export {self.model_dir}{f' --task {task}' if task else ''}` first.")
        _, self.spec = task_and_spec(self.config)
        self.main_input_name = self.spec.input_names[0]  # read by transformers' pipelines (e.g. ASR)
        self.session = session(path)
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
        return self.spec.output_class(**{self.spec.field_name(n): torch.from_numpy(o) for n, o in zip(self.spec.output_names, outputs)})
