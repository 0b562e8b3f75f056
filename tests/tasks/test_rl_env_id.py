"""RL environment ids are names in Gymnasium's registry, never "module:Env" strings that make Gymnasium import code.

Gymnasium reads ``"mod:Env-v0"`` as "import ``mod`` first": an ``env_id`` written into a
model's ``config.json`` (or a trajectory dataset) must not run code on ``polyhead evaluate``.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

import polyhead
from polyhead.cli import main as cli_main
from polyhead.errors import ConfigError, PolyheadError, UnknownNameError
from polyhead.pipelines import default_model_dir
from polyhead.tasks.rl import DecisionTransformerConfig, PPOConfig, RLTask, evaluate_agent
from polyhead.tasks.rl.processing import make_env

pytest.importorskip("gymnasium")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """An importable ``evilenv`` module that writes a marker file when imported; returns the marker's path."""
    folder = tmp_path / "mods"
    folder.mkdir()
    marker = tmp_path / "evil-ran"
    (folder / "evilenv.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "evilenv", raising=False)
    monkeypatch.delitem(sys.modules, "this", raising=False)  # `import this` prints the Zen of Python
    yield marker
    assert "evilenv" not in sys.modules and "this" not in sys.modules


def _agent_dir(tmp_path, env_id: str):
    model_dir = tmp_path / "agent"
    shutil.copytree(default_model_dir("reinforcement-learning"), model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["env_id"] = env_id
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


@pytest.mark.parametrize("env_id", ["this:CartPole-v1", "evilenv:CartPole-v1", "nosuchmodule:CartPole-v1"])
def test_cli_evaluate_refuses_a_module_env_id_from_the_model_dir(tmp_path, evil_module, capsys, env_id):
    model_dir = _agent_dir(tmp_path, env_id)
    assert cli_main(["evaluate", str(model_dir), "--episodes", "1"]) == 2
    out, err = capsys.readouterr()
    assert "Beautiful is better than ugly" not in out + err
    assert "polyhead evaluate: error:" in err and repr(env_id) in err and "module" in err
    assert not evil_module.exists()


def test_evaluate_agent_and_pipeline_refuse_a_module_env_id(tmp_path, evil_module, capsys):
    model_dir = _agent_dir(tmp_path, "evilenv:CartPole-v1")
    with pytest.raises(PolyheadError, match=r"'evilenv:CartPole-v1'.*module"):
        evaluate_agent(model_dir, episodes=1)
    with pytest.raises(PolyheadError, match=r"'evilenv:CartPole-v1'.*module"):
        polyhead.pipeline("reinforcement-learning", model=str(model_dir))
    with pytest.raises(ConfigError, match=r"'evilenv:CartPole-v1'.*module"):
        PPOConfig.from_pretrained(model_dir)
    # an env id passed by hand (`polyhead evaluate DIR --env ...`) goes through the same check
    with pytest.raises(ConfigError, match="module.*Did you mean 'CartPole-v1'"):
        evaluate_agent(default_model_dir("reinforcement-learning"), "evilenv:CartPole-v1", episodes=1)
    assert cli_main(["evaluate", str(default_model_dir("reinforcement-learning")), "--env", "this:CartPole-v1", "--episodes", "1"]) == 2
    assert "Beautiful is better than ugly" not in capsys.readouterr().out
    assert not evil_module.exists()


def test_make_env_and_config_only_accept_registered_ids(evil_module):
    from polyhead.tasks.rl.processing import check_env_id

    with pytest.raises(ConfigError, match="module"):
        make_env("evilenv:CartPole-v1")
    with pytest.raises(ConfigError, match="module"):
        make_env("evilenv:mod:CartPole-v1")
    for config_class in (PPOConfig, DecisionTransformerConfig):
        with pytest.raises(ConfigError, match="module"):
            config_class(env_id="evilenv:CartPole-v1")
    with pytest.raises(UnknownNameError, match="Unknown Gymnasium environment 'CartPol-v1'.*Did you mean 'CartPole-v1'"):
        check_env_id("CartPol-v1")
    with pytest.raises(UnknownNameError, match="Unknown Gymnasium environment 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(UnknownNameError, match="Did you mean 'CartPole-v1'"):
        PPOConfig(env_id="CartPole")  # Gymnasium would pick a version silently; polyhead wants the registered id
    with pytest.raises(ConfigError, match="env_id must be a Gymnasium id"):
        DecisionTransformerConfig(env_id=["CartPole-v1"])
    assert check_env_id("CartPole-v1") == "CartPole-v1" and check_env_id("LunarLander-v3") == "LunarLander-v3"
    assert PPOConfig(env_id="Pendulum-v1", action_space={"type": "box", "shape": [1], "low": [-2.0], "high": [2.0]}).env_id == "Pendulum-v1"
    make_env("CartPole-v1").close()
    assert not evil_module.exists()


def test_collect_and_training_refuse_module_env_ids(tmp_path, evil_module):
    from polyhead.tasks.rl import collect

    with pytest.raises(ConfigError, match="module"):
        collect("random", "evilenv:CartPole-v1", episodes=1)
    with pytest.raises(ConfigError, match="module"):
        RLTask().build_config({"algorithm": "ppo", "env_id": "evilenv:CartPole-v1"}, {})
    assert not evil_module.exists()
