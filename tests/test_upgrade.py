"""`polyhead upgrade`: a folder in polyhead 0.1's layout (one tower per task) becomes the same model, renamed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import polyhead
from polyhead import registry
from polyhead.cli import main as cli
from polyhead.errors import ModelLoadError
from polyhead.pipelines import default_model_dir
from polyhead.upgrade import upgrade_model_dir

#: how 0.1 wrote each model type that changed: (model_type, fields it also held, backbone.causal)
_AS_0_1 = {
    "polyhead-ppo": ("polyhead-rl", {"algorithm": "ppo", "max_timestep": 1024, "return_scale": 1.0, "target_return": None}, True),
    "polyhead-decision-transformer": ("polyhead-rl", {"algorithm": "decision_transformer"}, True),
    "polyhead-next-item": ("polyhead-recommendation", {"fields": [], "rating_threshold": 4.0}, True),
    "polyhead-ctr": ("polyhead-recommendation", {"max_length": 50, "item_vocab": [], "item_titles": [], "item_id_type": "int"}, False),
}
DEFAULTS = ["time-series-forecasting", "segmentation", "object-detection", "automatic-speech-recognition", "recommendation", "reinforcement-learning"]


def _as_0_1(current, old):
    """Write ``current`` as polyhead 0.1 would have: tensors without ``adapter.``, the 0.1 config fields."""
    shutil.copytree(current, old)
    weights = load_file(str(current / "model.safetensors"))
    assert {k.split(".")[0] for k in weights} == {"backbone", "adapter"}
    save_file({k.removeprefix("adapter."): v for k, v in weights.items()}, str(old / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((current / "config.json").read_text())
    if config["model_type"] in _AS_0_1:
        old_type, fields, causal = _AS_0_1[config["model_type"]]
        config.update(model_type=old_type, **fields)
        config["backbone"]["causal"] = causal
    (old / "config.json").write_text(json.dumps(config))


def _same_outputs(a, b, config) -> None:
    task = registry.task_for(config.model_type)()
    torch.manual_seed(0)
    inputs = task.export_spec(config).make_inputs({"batch": 2})
    with torch.no_grad():
        got, want = a.eval()(**inputs), b.eval()(**inputs)
    for name, value in want.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(got[name], value), name


@pytest.mark.parametrize("pipeline_task", DEFAULTS)
def test_every_default_upgrades_from_its_0_1_layout(pipeline_task, tmp_path):
    current, old = default_model_dir(pipeline_task), tmp_path / "old"
    _as_0_1(current, old)
    with pytest.raises(ModelLoadError, match=f"written by polyhead 0.1 .* run `polyhead upgrade {old}`"):
        polyhead.AutoModel.from_pretrained(old)
    upgraded = upgrade_model_dir(old, tmp_path / "new")
    assert json.loads((upgraded / "config.json").read_text()) == json.loads((current / "config.json").read_text())
    assert sorted(load_file(upgraded / "model.safetensors")) == sorted(load_file(current / "model.safetensors"))
    reference = polyhead.AutoModel.from_pretrained(current)
    _same_outputs(polyhead.AutoModel.from_pretrained(upgraded), reference, reference.config)


def test_ctr_and_in_place_upgrade_through_the_cli(tmp_path, capsys):
    """The objective without a default (CTR), upgraded in place by the command; the user's files stay."""
    task = registry.get(registry.TASKS, "recommendation")
    config = next(c for c in task.example_configs() if c.model_type == "polyhead-ctr")
    torch.manual_seed(0)
    current = tmp_path / "current"
    task().build_model(config).save_pretrained(current)
    _as_0_1(current, tmp_path / "old")
    (tmp_path / "old" / "notes.txt").write_text("mine")
    assert cli(["upgrade", str(tmp_path / "old")]) == 0
    assert "Upgraded" in capsys.readouterr().out and (tmp_path / "old" / "notes.txt").read_text() == "mine"
    _same_outputs(polyhead.AutoModel.from_pretrained(tmp_path / "old"), polyhead.AutoModel.from_pretrained(current), config)


def test_upgrade_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="not a polyhead model"):
        upgrade_model_dir(tmp_path / "bert")
    broken = tmp_path / "broken"
    _as_0_1(default_model_dir("reinforcement-learning"), broken)
    config = json.loads((broken / "config.json").read_text())
    config["algorithm"] = "sac"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"algorithm='sac'; expected one of \['decision_transformer', 'ppo'\]"):
        upgrade_model_dir(broken, tmp_path / "out")
