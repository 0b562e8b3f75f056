"""ONNX export of every registered task: the parity gate, the ONNX Runtime model, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

import polyhead
from polyhead import registry
from polyhead.errors import ExportError, InputError, ModelLoadError
from polyhead.export import INT8_NAME, ONNX_NAME, REPORT_NAME, OnnxModel, export_onnx
from polyhead.pipelines import default_model_dir

#: every model class of every task (one adapter each), through the task's tiny example configs; a multi-task
#: model is exported one task at a time (tests/test_multitask.py)
MODELS = [
    pytest.param((name, index), id=f"{name}-{config.model_type.removeprefix('polyhead-')}")
    for name in registry.names(registry.TASKS)
    if name != "multitask"
    for index, config in enumerate(registry.get(registry.TASKS, name).example_configs())
]


def test_every_model_class_has_an_example_config():
    for name in registry.names(registry.TASKS):
        task = registry.get(registry.TASKS, name)
        covered = {config.model_type for config in task.example_configs()}
        assert covered == set(task.model_types()), f"{name}: no example config for {set(task.model_types()) - covered}"


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory):
    """A tiny model of each model class of each task, saved and exported (module scope: export once each)."""
    name, index = request.param
    task = registry.get(registry.TASKS, name)
    torch.manual_seed(0)
    model = task().build_model(task.example_configs()[index]).eval()
    model_dir = tmp_path_factory.mktemp(name) / "model"
    model.save_pretrained(model_dir)
    report = export_onnx(model_dir)
    return task, model, model_dir, report


def test_report_and_file(exported):
    task, model, model_dir, report = exported
    assert report["passed"] and (model_dir / ONNX_NAME).is_file()
    assert json.loads((model_dir / REPORT_NAME).read_text()) == report
    assert report["opset"] == 18 and report["tolerance"]["atol"] == pytest.approx(1e-4)
    traced = {r["sizes"]["batch"] for r in report["parity"]}
    spec = task().export_spec(model.config)
    assert traced >= {s["batch"] for s in spec.parity_sizes} and 1 in traced  # batch 1 ...
    assert max(traced) > spec.example_sizes["batch"]  # ... and larger than the traced example
    for row in report["parity"]:
        for diff in row["outputs"].values():
            assert diff["within_tolerance"] and diff["max_abs_diff"] < 1e-3
    assert {f"batch_{b}" for b in task().export_spec(model.config).latency_batches} == set(report["latency"])
    assert set(report["versions"]) >= {"polyhead", "torch", "onnxruntime"}
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".polyhead-staging")], "temporary export folder left behind"


def test_dynamic_axes_are_symbolic(exported):
    task, model, model_dir, report = exported
    graph = onnx.load(str(model_dir / ONNX_NAME)).graph
    spec = task().export_spec(model.config)
    inputs = {i.name: i for i in graph.input}
    for name, axes in spec.dynamic_axes.items():
        dims = inputs[name].type.tensor_type.shape.dim
        for axis, size_name in axes.items():
            assert dims[axis].dim_param == size_name
    for output in graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [i.name for i in graph.input] == spec.input_names and [o.name for o in graph.output] == spec.output_names


def test_onnx_model_matches_pytorch(exported):
    task, model, model_dir, _ = exported
    spec = task().export_spec(model.config)
    onnx_model = OnnxModel(model_dir)
    inputs = spec.make_inputs({"batch": 5})
    got, want = onnx_model(**inputs), model(**inputs)
    assert type(got) is type(want) and got.loss is None
    for name in map(spec.field_name, spec.output_names):
        torch.testing.assert_close(getattr(got, name), getattr(want, name).detach(), atol=1e-4, rtol=1e-5)


def test_onnx_model_rejects_bad_inputs(exported):
    task, model, model_dir, _ = exported
    spec = task().export_spec(model.config)
    onnx_model = OnnxModel(model_dir)
    good = spec.make_inputs({"batch": 2})
    name = spec.input_names[0]
    with pytest.raises(InputError, match="must have .* dimensions"):
        onnx_model(**{**good, name: good[name][0]})
    with pytest.raises(InputError, match="Missing input"):
        onnx_model()
    if good[name].is_floating_point():
        with pytest.raises(InputError, match="must be float32, got int64"):
            onnx_model(**{**good, name: good[name].long()})


def test_broken_and_foreign_onnx_files(exported, tmp_path):
    task, model, model_dir, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    data = (broken / ONNX_NAME).read_bytes()
    (broken / ONNX_NAME).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load"):
        OnnxModel(broken)
    foreign = tmp_path / "foreign"
    shutil.copytree(model_dir, foreign)
    x = torch.randn(2, 3)
    torch.onnx.export(torch.nn.Linear(3, 1), (x,), str(foreign / ONNX_NAME), input_names=["x"], output_names=["y"], dynamo=False)
    with pytest.raises(ModelLoadError, match="does not belong to this model"):
        OnnxModel(foreign)
    (foreign / ONNX_NAME).unlink()
    with pytest.raises(ModelLoadError, match="run `polyhead export"):
        OnnxModel(foreign)


def test_export_refuses_non_polyhead_dirs(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        export_onnx(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        export_onnx(tmp_path / "empty")


def test_parity_failure_is_an_error_and_writes_nothing(tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(default_model_dir("time-series-forecasting"), model_dir)
    with pytest.raises(ExportError, match=r"differs from PyTorch beyond atol=1e-12.*for input shapes"):
        export_onnx(model_dir, atol=1e-12, rtol=0.0)
    assert not (model_dir / ONNX_NAME).exists() and not (model_dir / REPORT_NAME).exists()


@pytest.mark.slow
def test_default_forecaster_int8_and_onnx_pipeline(tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(default_model_dir("time-series-forecasting"), model_dir)
    report = export_onnx(model_dir, quantize="int8")
    int8 = report["int8"]
    assert (model_dir / INT8_NAME).is_file()
    assert set(int8["test_metrics"]) == {"fp32", "int8", "relative_change"}
    assert abs(int8["test_metrics"]["relative_change"]["mae"]) < 0.05

    history = np.linspace(330, 340, 200) + np.sin(np.arange(200) / 52 * 2 * np.pi)
    torch_out = polyhead.pipeline("forecasting", model=str(model_dir))(history)
    onnx_pipe = polyhead.pipeline("forecasting", model=str(model_dir), backend="onnx")
    assert isinstance(onnx_pipe.model, OnnxModel)
    onnx_out = onnx_pipe(history)
    np.testing.assert_allclose(onnx_out["forecast"]["target"], torch_out["forecast"]["target"], atol=1e-3, rtol=1e-5)
    assert onnx_out["quantiles"].keys() == torch_out["quantiles"].keys()
    short_torch, short_onnx = (pipe(history[:20])["forecast"]["target"] for pipe in (polyhead.pipeline("forecasting", model=str(model_dir)), onnx_pipe))
    np.testing.assert_allclose(short_onnx, short_torch, atol=1e-3, rtol=1e-5)  # a short history: left-padded and masked in both
    with pytest.raises(InputError, match="at least 8"):
        onnx_pipe(history[:5])

    from polyhead.workflows import evaluate_model_dir

    torch_metrics = evaluate_model_dir(model_dir)["metrics"]
    onnx_metrics = evaluate_model_dir(model_dir, backend="onnx")["metrics"]
    assert onnx_metrics["mae"] == pytest.approx(torch_metrics["mae"], rel=1e-4)


def test_unsupported_operator_is_named(tmp_path, monkeypatch):
    """An operator ONNX cannot express fails the export with its name; nothing is written."""
    from polyhead.heads.forecasting import ForecastHead

    model_dir = tmp_path / "m"
    shutil.copytree(default_model_dir("time-series-forecasting"), model_dir)
    original = ForecastHead.forward

    def forward_with_eigh(self, feature_maps):
        tokens = feature_maps[0]
        gram = tokens.transpose(1, 2) @ tokens
        eigenvalues = torch.linalg.eigvalsh(gram)  # no ONNX counterpart
        return original(self, feature_maps) + eigenvalues.mean() * 0

    monkeypatch.setattr(ForecastHead, "forward", forward_with_eigh)
    with pytest.raises(ExportError, match=r"unsupported operator\(s\) aten\._linalg_eigh"):
        export_onnx(model_dir)
    assert not (model_dir / ONNX_NAME).exists()


def test_onnx_serving_uses_the_cuda_provider_when_present(exported, monkeypatch):
    """``backend="onnx"`` serves on ONNX Runtime's CUDA provider when onnxruntime-gpu and a GPU are there; the export's
    parity gate stays on the CPU. No GPU here: onnxruntime's provider list and torch's CUDA check are stood in for, and
    ``InferenceSession`` is recorded rather than run for the CUDA case."""
    import onnxruntime as ort

    from polyhead.onnx_runtime import execution_providers, session

    _, _, model_dir, _ = exported
    assert execution_providers() == ["CPUExecutionProvider"]  # this machine: the CPU build, no GPU
    assert OnnxModel(model_dir).session.get_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert execution_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = []
    monkeypatch.setattr(ort, "InferenceSession", lambda path, sess_options, providers: chosen.append(providers))
    session(model_dir / ONNX_NAME)
    session(model_dir / ONNX_NAME, providers=["CPUExecutionProvider"])
    assert chosen == [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # onnxruntime-gpu on a machine without a GPU
    assert execution_providers() == ["CPUExecutionProvider"]
