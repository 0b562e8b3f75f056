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


def test_processors_and_declared_parts_resolve_after_import_polyhead():
    """transformers' AutoFeatureExtractor finds a processor by its class name before it reads any config.json; mmengine's
    own ``BACKBONES.get`` / ``in`` see declared backbones."""
    asr = str(default_model_dir("automatic-speech-recognition"))
    forecasting = str(default_model_dir("time-series-forecasting"))
    out = _fresh(
        "import json, polyhead, transformers\n"
        "from polyhead.loading import load_processor\n"
        "from polyhead.registry import BACKBONES\n"
        f"first = transformers.AutoFeatureExtractor.from_pretrained({forecasting!r})\n"
        f"second = load_processor({asr!r})\n"
        "print(json.dumps({'forecasting': type(first).__name__, 'asr': type(second).__name__,\n"
        "                  'swin_in': 'swin' in BACKBONES, 'swin': BACKBONES.get('swin').__name__, 'nope': 'nope' in BACKBONES}))"
    )
    assert out == {"forecasting": "ForecastingFeatureExtractor", "asr": "ASRFeatureExtractor", "swin_in": True, "swin": "SwinBackbone",
                   "nope": False}


def test_names_polyhead_declared_are_not_taken_silently():
    from polyhead.configuration import PolyheadConfig, register_auto_config
    from polyhead.registry import register_backbone, register_task

    with pytest.raises(KeyError, match="swin"):
        register_backbone("swin")(type("MySwin", (), {}))
    with pytest.raises(KeyError, match="asr"):
        register_task("asr")(type("MyASRTask", (), {}))
    assert registry.get(registry.BACKBONES, "swin").__module__ == "polyhead.backbones.swin"

    first = type("ClashConfigA", (PolyheadConfig,), {"model_type": "polyhead-test-clash"})
    second = type("ClashConfigB", (PolyheadConfig,), {"model_type": "polyhead-test-clash"})
    register_auto_config(first)
    register_auto_config(first)  # the same class again: fine
    with pytest.raises(ValueError, match="already registered to .*ClashConfigA"):
        register_auto_config(second)
    with pytest.raises(ValueError, match="already registered to .*ASRConfig"):
        register_auto_config(type("MyASRConfig", (PolyheadConfig,), {"model_type": "polyhead-asr"}))


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_declared_tasks_match_the_tasks_their_packages_register(task):
    package, configs, processor = BUILTIN_TASKS[task]
    cls = registry.get(registry.TASKS, task)
    assert cls.__module__.startswith(package)
    assert sorted(cls.model_types()) == sorted(configs)
    for model_type, class_name in configs.items():
        real = getattr(sys.modules[package], class_name)
        assert real.model_type == model_type
        assert CONFIG_MAPPING[model_type] is real  # the package took over from the stand-in
        assert registry.task_name_for(model_type) == task
    if processor is not None:
        assert getattr(sys.modules[package], processor).__name__ == processor


def test_declared_backbones_match_their_classes():
    from polyhead.backbones import BUILTIN_BACKBONES

    for name, (_, class_name) in BUILTIN_BACKBONES.items():
        cls = registry.get(registry.BACKBONES, name)
        assert cls.__name__ == class_name and cls.registry_name == name
        assert getattr(polyhead.backbones, class_name) is cls


def test_every_pipeline_class_resolves_and_transformers_holds_stand_ins_for_polyheads_own_tasks():
    from transformers.pipelines import PIPELINE_REGISTRY, SUPPORTED_TASKS

    from polyhead.pipelines import pipeline_class

    for task, (path, folder) in PIPELINES.items():
        real = pipeline_class(task)
        assert issubclass(real, transformers.Pipeline) and f"{real.__module__}:{real.__name__}" == path
        assert getattr(polyhead.pipelines, real.__name__) is real
        assert default_model_dir(task).name == folder
        if task not in SUPPORTED_TASKS:  # polyhead's own tasks: registered through the post-import hook
            registered = PIPELINE_REGISTRY.supported_tasks[task]["impl"]
            assert is_deferred(registered) and registered.resolve() is real and registered.__name__ == real.__name__


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
