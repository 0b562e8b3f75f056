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
from polyhead.tasks.rl import DecisionTransformerConfig, PolyheadForDecisionTransformer, PolyheadForPPO, RLFeatureExtractor, RLTask

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
    assert type(agent.model) is PolyheadForPPO and agent.model.config.model_type == "polyhead-ppo"
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
    model = PolyheadForDecisionTransformer(config)
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
    assert type(agent.model) is PolyheadForDecisionTransformer and type(config) is DecisionTransformerConfig
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
    with pytest.raises(ConfigError, match="is a polyhead-forecasting model; the 'reinforcement-learning' pipeline needs a model of the 'rl' task"):
        polyhead.pipeline("reinforcement-learning", model=str(default_model_dir("time-series-forecasting")))


def _episode_state(agent) -> dict:
    """Everything a call may change: the context window, the return still to collect, the target."""
    window = agent.policy.window
    state = {name: getattr(window, name).clone() for name in ("observations", "actions", "returns_to_go", "timesteps", "attention_mask")}
    return {**state, "steps": window.steps.copy(), "rtg": agent.policy.returns_to_go.copy(), "target": agent.policy.target_return}


def _assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], torch.Tensor):
            assert torch.equal(before[key], after[key]), key
        else:
            np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_decision_transformer_refuses_non_finite_rewards_and_targets(tmp_path):
    """reward=1e300 is finite in float64 but -inf in float32: refused, and the episode's context is left as it was."""
    config = RLTask.example_config()
    PolyheadForDecisionTransformer(config).save_pretrained(tmp_path)
    RLFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    agent = polyhead.pipeline("reinforcement-learning", model=str(tmp_path), target_return=80.0)
    obs = np.zeros(4, dtype=np.float32)
    agent(obs)
    agent(obs, reward=1.0)
    before = _episode_state(agent)
    for reward in (1e300, -1e300, 3.5e38, float("inf"), float("nan")):
        with pytest.raises(InputError, match="reward.*finite"):
            agent(obs, reward=reward)
        _assert_same_state(before, _episode_state(agent))
    for reward in ("abc", [1.0, 2.0], {"r": 1.0}):
        with pytest.raises(InputError, match="reward"):
            agent(obs, reward=reward)
        _assert_same_state(before, _episode_state(agent))
    for target in (float("nan"), float("inf"), -float("inf"), 1e300, "abc"):
        with pytest.raises(InputError, match="target_return"):
            agent.reset(target_return=target)
        _assert_same_state(before, _episode_state(agent))  # not reset: the episode goes on with its target
    with pytest.raises(InputError, match="target_return"):
        polyhead.pipeline("reinforcement-learning", model=str(tmp_path), target_return=float("nan"))
    out = agent(obs, reward=1.0)
    assert out["action"] in (0, 1)
    assert agent.policy.window.returns_to_go[0, -3:, 0].tolist() == [80.0, 79.0, 78.0]
    assert torch.isfinite(agent.policy.window.returns_to_go).all()


def test_agent_refuses_observations_that_overflow_float32(agent):
    """1e300 becomes inf in float32; 3e38 is finite but overflows the network to NaN logits: both refused, context kept."""
    obs = np.array([0.01, 0.02, -0.01, 0.0], dtype=np.float32)
    agent.reset()
    agent(obs)
    before = _episode_state(agent)
    for bad in (np.full(4, 1e300), [1e300, 0.0, 0.0, 0.0], np.full(4, 3e38, dtype=np.float32), np.full(4, -3e38)):
        with pytest.raises(InputError, match="finite"):
            agent(bad)
        _assert_same_state(before, _episode_state(agent))
    assert agent(obs)["action"] in (0, 1)
    assert agent.policy.window.attention_mask[0].tolist() == [0, 0, 1, 1]


def test_agent_policy_act_refuses_non_finite_outputs_and_keeps_context():
    """The rollout path (evaluate / collect) goes through AgentPolicy.act: the same checks, the same rollback."""
    from polyhead.tasks.rl import AgentPolicy

    model_dir = default_model_dir("reinforcement-learning")
    model = polyhead.AutoModel.from_pretrained(model_dir).eval()
    policy = AgentPolicy(model, RLFeatureExtractor.from_pretrained(model_dir))
    policy.act(np.zeros((1, 4)), None)
    window = policy.window
    before = [b.clone() for b in (window.observations, window.actions, window.attention_mask, window.timesteps)]
    with pytest.raises(InputError, match="finite"):
        policy.act(np.full((1, 4), 3e38), [1.0])
    with pytest.raises(InputError, match="reward.*finite"):
        policy.act(np.zeros((1, 4)), [1e300])
    after = [window.observations, window.actions, window.attention_mask, window.timesteps]
    assert all(torch.equal(a, b) for a, b in zip(before, after)) and window.steps.tolist() == [1]
    with pytest.raises(InputError, match="target_return"):
        AgentPolicy(model, policy.processor, target_return=float("inf"))


def test_rl_config_refuses_non_finite_numbers():
    """config.json is read back into RLConfig: NaN / infinite statistics would poison every step."""
    base = RLTask.example_config().to_dict()
    for key, value in (("target_return", float("nan")), ("target_return", 1e300), ("return_scale", float("inf")),
                       ("return_scale", float("nan")), ("observation_std", [1.0, float("nan"), 1.0, 1.0]),
                       ("observation_mean", [0.0, 0.0, float("inf"), 0.0])):
        with pytest.raises(ConfigError, match=key):
            type(RLTask.example_config()).from_dict({**base, key: value})
    continuous = {"type": "box", "shape": [1], "low": [float("nan")], "high": [2.0]}
    with pytest.raises(ConfigError, match=r"action_space bounds must be numbers with low <= high \(no NaN\)"):
        type(RLTask.example_config()).from_dict({**base, "action_space": continuous})


def test_decision_transformer_acts_the_same_on_onnx(tmp_path):
    """The rollout (context window, return-to-go, argmax) runs a DT on ONNX Runtime exactly as on PyTorch."""
    from polyhead.tasks.rl.configuration import space_description

    env = gym.make("CartPole-v1")
    spaces = {"observation_space": space_description(env.observation_space), "action_space": space_description(env.action_space)}
    config = DecisionTransformerConfig.from_dict({**RLTask.example_config().to_dict(), **spaces})  # the environment's full spaces
    torch.manual_seed(0)
    PolyheadForDecisionTransformer(config).save_pretrained(tmp_path)
    RLFeatureExtractor.from_config(config).save_pretrained(tmp_path)
    polyhead.export_onnx(tmp_path)
    runs = {backend: polyhead.evaluate_agent(tmp_path, episodes=2, seed=0, backend=backend) for backend in ("torch", "onnx")}
    assert runs["onnx"]["returns"] == runs["torch"]["returns"] and runs["onnx"]["target_return"] == 100.0
    assert runs["onnx"]["backend"] == "onnx" and runs["onnx"]["algorithm"] == "decision_transformer"
