"""``import polyhead`` is cheap: tasks, MONAI, torchaudio, gymnasium, torchvision and transformers' modeling code are
imported on first use of what needs them, and transformers still finds polyhead's models and pipelines.

What a fresh process imports is checked in subprocesses (this test process has imported everything already).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

import polyhead
from polyhead import registry
from polyhead.errors import UnknownNameError
from polyhead.lazy import deferred_class, is_deferred, lazy_exports
from polyhead.pipelines import PIPELINES, default_model_dir
from polyhead.tasks import BUILTIN_TASKS

#: imported by no `import polyhead`: each belongs to a task (or to transformers' modeling/pipelines code)
HEAVY = ["monai", "torchaudio", "torchvision", "gymnasium", "peft", "datasets", "torchmetrics", "matplotlib", "scipy",
         "transformers.modeling_utils", "transformers.pipelines", "polyhead.tasks.segmentation", "polyhead.tasks.asr",
         "polyhead.tasks.forecasting", "polyhead.multitask", "polyhead.training"]


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_polyhead_imports_no_task_and_no_heavy_library():
    loaded = _fresh(f"import json, sys, polyhead; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert loaded == []


def test_help_imports_no_task():
    loaded = _fresh(
        "import contextlib, io, json, sys\n"
        "from polyhead.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['train', '--help'])\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert loaded == []


def test_transformers_finds_polyhead_models_and_pipelines_after_import_polyhead():
    """The promise in the README: after `import polyhead`, transformers' own Auto classes and pipeline() work; the
    forecasting task's use pulls in neither MONAI nor gymnasium."""
    folder = str(default_model_dir("time-series-forecasting"))
    out = _fresh(
        "import json, sys, numpy as np, polyhead, transformers\n"
        f"model = transformers.AutoModel.from_pretrained({folder!r})\n"
        f"pipe = transformers.pipeline('time-series-forecasting', model={folder!r})\n"
        "forecast = pipe(np.sin(np.arange(120) / 6.0))['forecast']\n"
        "print(json.dumps({'model': type(model).__name__, 'pipeline': type(pipe).__name__, 'steps': len(forecast),\n"
        "                  'monai': 'monai' in sys.modules, 'gymnasium': 'gymnasium' in sys.modules}))"
    )
    assert out == {"model": "PolyheadForForecasting", "pipeline": "TimeSeriesForecastingPipeline", "steps": out["steps"],
                   "monai": False, "gymnasium": False}
    assert out["steps"] > 0


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_declared_tasks_match_the_tasks_their_packages_register(task):
    package, configs = BUILTIN_TASKS[task]
    cls = registry.get(registry.TASKS, task)
    assert cls.__module__.startswith(package)
    assert sorted(cls.model_types()) == sorted(configs)
    for model_type, class_name in configs.items():
        real = getattr(sys.modules[package], class_name)
        assert real.model_type == model_type
        assert CONFIG_MAPPING[model_type] is real  # the package took over from the stand-in
        assert registry.task_name_for(model_type) == task


def test_declared_backbones_match_their_classes():
    from polyhead.backbones import BUILTIN_BACKBONES

    for name, (_, class_name) in BUILTIN_BACKBONES.items():
        cls = registry.get(registry.BACKBONES, name)
        assert cls.__name__ == class_name and cls.registry_name == name
        assert getattr(polyhead.backbones, class_name) is cls


def test_every_pipeline_stand_in_resolves_to_its_class():
    for task, (stand_in, folder) in PIPELINES.items():
        real = stand_in.resolve()
        assert is_deferred(stand_in) and not is_deferred(real)
        assert real.__name__ == stand_in.__name__ and issubclass(real, transformers.Pipeline)
        assert getattr(polyhead.pipelines, real.__name__) is real
        assert default_model_dir(task).name == folder


def test_deferred_class_forwards_to_the_real_class():
    stand_in = deferred_class("collections:OrderedDict", marker=1)
    from collections import OrderedDict

    assert stand_in.__name__ == "OrderedDict" and stand_in.marker == 1
    assert stand_in.resolve() is OrderedDict
    made = stand_in(a=1)  # calling it builds the real class
    assert type(made) is OrderedDict and isinstance(made, stand_in)
    assert stand_in.fromkeys("ab") == OrderedDict.fromkeys("ab")  # attributes are the real class's
    with pytest.raises(AttributeError):
        stand_in.no_such_attribute
    with pytest.raises(ValueError, match="package.module:ClassName"):
        deferred_class("collections.OrderedDict")


def test_lazy_exports_import_on_first_access_and_refuse_unknown_names():
    module = type(sys)("polyhead_lazy_probe")
    sys.modules[module.__name__] = module
    try:
        module.__getattr__, module.__dir__ = lazy_exports(module.__name__, {"OrderedDict": "collections"})
        assert "OrderedDict" in dir(module)
        from collections import OrderedDict

        assert module.OrderedDict is OrderedDict and "OrderedDict" in vars(module)  # kept after the first access
        with pytest.raises(AttributeError, match="no attribute 'missing'"):
            module.missing
    finally:
        del sys.modules[module.__name__]


def test_a_model_folder_cannot_choose_what_polyhead_imports(tmp_path, monkeypatch):
    """A name from data (a config.json model_type, a task name) is looked up in polyhead's declarations; a module
    it names is never imported."""
    (tmp_path / "probe_module_polyhead.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "probe_module_polyhead"}))
    with pytest.raises(UnknownNameError, match="probe_module_polyhead"):
        registry.task_name_for("probe_module_polyhead")
    with pytest.raises(UnknownNameError, match="Known tasks"):
        registry.get(registry.TASKS, "probe_module_polyhead")
    with pytest.raises(ValueError):
        transformers.AutoConfig.from_pretrained(folder)
    with pytest.raises(polyhead.errors.PolyheadError):
        polyhead.AutoModel.from_pretrained(folder)
    assert "probe_module_polyhead" not in sys.modules
