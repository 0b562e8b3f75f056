"""The reinforcement-learning pipeline: embedded default agent, context across calls, reset, ONNX backend, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import transformers

import polyhead
from polyhead.errors import ConfigError, InputError
from polyhead.pipelines import ReinforcementLearningPipeline, default_model_dir
from polyhead.tasks.rl import PolyheadForDecisionMaking, RLFeatureExtractor, RLTask

gym = pytest.importorskip("gymnasium")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Agents act one small batch at a time: one thread is fastest (two threads contend on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def agent():
    return polyhead.pipeline("reinforcement-learning")


def _play(agent, seed: int = 0, max_steps: int = 150) -> float:
    env = gym.make("CartPole-v1", max_episode_steps=max_steps)  # short episodes keep the tests quick
    obs, _ = env.reset(seed=seed)
    agent.reset()
    reward, total, done = None, 0.0, False
    while not done:
        action = agent(obs, reward=reward)["action"]
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


def test_default_agent_is_embedded_and_plays(agent):
    assert isinstance(agent, ReinforcementLearningPipeline)
    assert agent.model.config.env_id == "CartPole-v1" and agent.model.config.algorithm == "ppo"
    assert agent.model.name_or_path == str(default_model_dir("reinforcement-learning"))
    assert _play(agent) == 150  # the embedded agent is trained (random play averages ~22)


def test_context_is_kept_and_reset(agent):
    obs = np.array([0.01, 0.02, -0.01, 0.0], dtype=np.float32)
    agent.reset()
    out = agent(obs)
    assert set(out) == {"action"} and out["action"] in (0, 1)
    assert agent.policy.window.attention_mask[0].tolist() == [0, 0, 0, 1]
    agent(obs.tolist())  # a list works too
    agent(torch.from_numpy(obs))
    assert agent.policy.window.attention_mask[0].tolist() == [0, 1, 1, 1]
    agent.reset()
    assert agent.policy.window.attention_mask.sum() == 0


def test_bad_observations(agent):
    with pytest.raises(InputError, match=r"shape \(4,\), got \(3,\)"):
        agent(np.zeros(3))
    with pytest.raises(InputError, match="NaN or infinite"):
        agent(np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(InputError, match="must be numeric"):
        agent(np.array([True, False, True, False]))
    with pytest.raises(InputError, match=r"shape \(4,\), got \(2, 4\)"):
        agent(np.zeros((2, 4)))
    with pytest.raises(InputError, match="Unknown pipeline argument"):
        agent(np.zeros(4), temperature=1.0)


def test_transformers_pipeline_and_onnx_backend(tmp_path):
    model_dir = tmp_path / "agent"
    shutil.copytree(default_model_dir("reinforcement-learning"), model_dir)
    via_transformers = transformers.pipeline("reinforcement-learning", model=str(model_dir))
    polyhead.export_onnx(model_dir)
    onnx_agent = polyhead.pipeline("rl", model=str(model_dir), backend="onnx")
    torch_agent = polyhead.pipeline("rl", model=str(model_dir))
    assert _play(onnx_agent, seed=1, max_steps=60) == _play(torch_agent, seed=1, max_steps=60) == _play(via_transformers, seed=1, max_steps=60)
    random_obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    onnx_agent.reset(), torch_agent.reset()
    assert [onnx_agent(o)["action"] for o in random_obs] == [torch_agent(o)["action"] for o in random_obs]
    result = polyhead.evaluate_agent(model_dir, "CartPole-v1", episodes=1, seed=1, backend="onnx")
    assert result["backend"] == "onnx" and result["returns"] == [500.0]


def test_decision_transformer_pipeline_uses_rewards(tmp_path):
    config = RLTask.example_config()
    model = PolyheadForDecisionMaking(config)
    model.save_pretrained(tmp_path)
    RLFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    agent = polyhead.pipeline("reinforcement-learning", model=str(tmp_path), target_return=80.0)
    obs = np.zeros(4, dtype=np.float32)
    agent(obs)
    agent(obs, reward=1.0)
    assert agent.policy.window.returns_to_go[0, -2:, 0].tolist() == [80.0, 79.0]
    assert agent.policy.window.timesteps[0, -2:].tolist() == [0, 1]
    agent.reset(target_return=10.0)
    agent(obs)
    assert agent.policy.window.returns_to_go[0, -1, 0] == 10.0
    with pytest.raises(InputError, match="finite number"):
        agent(obs, reward=float("nan"))


def test_embedded_lunarlander_decision_transformer_lands():
    """The second embedded agent: a DT trained offline on LunarLander-v3 (Box2D from the pinned `box2d` wheel)."""
    model_dir = default_model_dir("reinforcement-learning").with_name("rl_lunarlander")
    agent = polyhead.pipeline("reinforcement-learning", model=str(model_dir))
    config = agent.model.config
    assert config.env_id == "LunarLander-v3" and config.algorithm == "decision_transformer" and config.target_return == 280.0
    env = gym.make("LunarLander-v3")
    obs, _ = env.reset(seed=1)
    agent.reset()
    reward, total, done, terminated = None, 0.0, False, False
    while not done:
        action = agent(obs, reward=reward)["action"]  # the rewards lower the return-to-go it is conditioned on
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    assert terminated and total > 200  # it lands (247.1 on reset seed 1; random play: -227 on average)
    with pytest.raises(InputError, match=r"shape \(8,\), got \(4,\)"):
        agent(np.zeros(4, dtype=np.float32))


def test_wrong_model_kind_is_refused():
    with pytest.raises(ConfigError, match="needs a polyhead-rl model"):
        polyhead.pipeline("reinforcement-learning", model=str(default_model_dir("time-series-forecasting")))
