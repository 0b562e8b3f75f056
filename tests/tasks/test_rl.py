"""RL task: configs, the two agents (PPO, Decision Transformer), PPO routing, trajectory collection, DT training, evaluation, errors."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
import transformers

import polyhead
from polyhead.cli import main as cli_main
from polyhead.errors import ConfigError, DataError, InputError, UnknownNameError
from polyhead.tasks.rl import (
    DecisionTransformerConfig,
    DecisionTransformerOutput,
    PolyheadForDecisionTransformer,
    PolyheadForPPO,
    PPOConfig,
    PPOOutput,
    RLConfig,
    RLFeatureExtractor,
    RLTask,
    collect,
    evaluate_agent,
)
from polyhead.tasks.rl.data import TrajectoryWindows, load_trajectories


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Agents act one small batch at a time: one thread is fastest (two threads contend on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

TINY_BACKBONE = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "dropout": 0.0, "max_length": 4, "residual": "gru"}

TINY_PPO = {
    "model.algorithm": "ppo", "model.env_id": "CartPole-v1", "model.context_length": 4,
    "model.backbone": TINY_BACKBONE, "model.head": {"type": "actor_critic", "hidden_dim": 8},
    "train.total_timesteps": 256, "train.num_envs": 2, "train.num_steps": 64, "train.num_minibatches": 2,
    "train.update_epochs": 1, "train.eval_every": 1, "train.eval_episodes": 1, "train.final_eval_episodes": 2,
    "train.log_with": None, "train.progress_bar": False,
}


@pytest.fixture(scope="module")
def ppo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppo")
    result = polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options={**TINY_PPO, "train.output_dir": str(out)})
    return result


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory, ppo_dir):
    root = tmp_path_factory.mktemp("traj")
    collect("random", "CartPole-v1", episodes=6, seed=0, out=root / "random")
    collect(ppo_dir.best_dir, "CartPole-v1", episodes=4, seed=100, epsilon=0.2, out=root / "agent")
    return root


@pytest.fixture(scope="module")
def dt_result(tmp_path_factory, trajectories):
    out = tmp_path_factory.mktemp("dt")
    options = {
        "model.context_length": 4, "model.max_timestep": 512, "model.target_return": None,
        "model.backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "max_length": 12},
        "data.source": [str(trajectories / "random"), str(trajectories / "agent")], "data.val_fraction": 0.2,
        "data.test_fraction": 0.2, "data.eval_episodes": 2,
        "train.output_dir": str(out), "train.max_steps": 4, "train.eval_every": 2, "train.batch_size": 8, "train.warmup_steps": 0,
        "train.progress_bar": False,
    }
    return polyhead.train("configs/rl/decision_transformer_cartpole.py", cfg_options=options)


def _example(config_class):
    """The task's tiny example config of ``config_class``."""
    return next(c for c in RLTask.example_configs() if type(c) is config_class)


# -- configs and models -------------------------------------------------------------------
@pytest.mark.parametrize("config_class", [PPOConfig, DecisionTransformerConfig])
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"observation_space": {"type": "box", "shape": [2, 2]}}, ConfigError, "must be a flat Box"),
        ({"observation_space": {"type": "discrete", "n": 3}}, ConfigError, "discrete observations are not supported"),
        ({"action_space": {"type": "box", "shape": [1]}}, ConfigError, "needs 'low' and 'high'"),
        ({"observation_mean": [0.0]}, ConfigError, "observation_mean must have 4 values"),
        ({"context_length": 0}, ConfigError, "context_length must be a positive integer"),
    ],
)
def test_config_validation(config_class, kwargs, error, message):
    """The shared checks (RLConfig) hold for both agents' configs."""
    with pytest.raises(error, match=message):
        config_class(**kwargs)


def test_decision_transformer_config_validation_and_the_shared_base():
    with pytest.raises(ConfigError, match="max_timestep must be a positive integer"):
        DecisionTransformerConfig(max_timestep=0)
    with pytest.raises(ConfigError, match="return_scale must be a positive number"):
        DecisionTransformerConfig(return_scale=-1.0)
    with pytest.raises(ConfigError, match="shared base .* build a PPOConfig or a DecisionTransformerConfig"):
        RLConfig()
    assert isinstance(PPOConfig(), RLConfig) and isinstance(DecisionTransformerConfig(), RLConfig)


def test_model_section_algorithm_picks_the_config_class():
    """`model.algorithm` of a config file picks the config class; config.json has no algorithm (nor the 0.1 `causal`)."""
    task = RLTask()
    section = {"env_id": "CartPole-v1", "context_length": 4, "backbone": {**TINY_BACKBONE, "causal": True}}  # a polyhead 0.1 section
    config = task.build_config({"algorithm": "ppo", **section}, {})
    assert type(config) is PPOConfig and config.action_space == {"type": "discrete", "n": 2}
    assert task.build_config(section, {}).to_dict() == config.to_dict()  # PPO is the default
    saved = config.to_dict()
    assert "algorithm" not in saved and "causal" not in saved["backbone"] and saved["model_type"] == "polyhead-ppo"
    assert task.model_class_for(config) is PolyheadForPPO and type(task.build_model(config)) is PolyheadForPPO
    assert task.model_class_for("polyhead-decision-transformer") is PolyheadForDecisionTransformer
    with pytest.raises(UnknownNameError, match="Unknown RL algorithm 'dqn'.*decision_transformer, ppo"):
        task.build_config({"algorithm": "dqn", **section}, {})


def test_model_checks_head_backbone_and_length():
    with pytest.raises(ConfigError, match="DecisionTransformerAdapter needs a DecisionTransformerActionHead head, got 'actor_critic'"):
        PolyheadForDecisionTransformer(DecisionTransformerConfig(backbone={**TINY_BACKBONE, "max_length": 64}, head={"type": "actor_critic"}))
    with pytest.raises(ConfigError, match="PPOAdapter needs a ActorCriticHead head, got 'dt_action'"):
        PolyheadForPPO(PPOConfig(backbone={**TINY_BACKBONE, "max_length": 64}, head={"type": "dt_action"}))
    conformer = {"type": "conformer", "dim": 16, "depth": 1, "num_heads": 2}
    for model_class in (PolyheadForPPO, PolyheadForDecisionTransformer):
        with pytest.raises(ConfigError, match="attends causally; the 'conformer' backbone cannot"):
            model_class(model_class.config_class(backbone=conformer))
    with pytest.raises(ConfigError, match="context_length=8 makes 8 tokens, more than the backbone's max_length"):
        PolyheadForPPO(PPOConfig(context_length=8, backbone=TINY_BACKBONE))
    with pytest.raises(ConfigError, match="context_length=2 makes 6 tokens, more than the backbone's max_length"):
        PolyheadForDecisionTransformer(DecisionTransformerConfig(context_length=2, backbone=TINY_BACKBONE))


def test_ppo_forward_attends_causally_and_refuses_labels():
    config = _example(PPOConfig)
    model = PolyheadForPPO(config).eval()
    inputs = RLTask().export_spec(config).make_inputs({"batch": 3})
    assert set(inputs) == {"observations", "attention_mask"}
    out = model(**inputs)
    assert isinstance(out, PPOOutput) and out.loss is None
    assert out.action_preds.shape == (3, 4, 2) and out.state_values.shape == (3, 4)
    changed = dict(inputs, observations=inputs["observations"].clone())
    changed["observations"][:, -1] += 1.0  # the newest step does not change what the earlier steps see
    torch.testing.assert_close(model(**changed).action_preds[:, :-1], out.action_preds[:, :-1])
    assert not torch.allclose(model(**changed).state_values[:, -1], out.state_values[:, -1])
    with pytest.raises(InputError, match="A PPO agent has no supervised labels"):
        model(**inputs, labels=torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(InputError, match="reads at most context_length=4"):
        model(observations=torch.randn(1, 5, 4))


def test_dt_forward_loss_and_causality():
    config = _example(DecisionTransformerConfig)
    model = PolyheadForDecisionTransformer(config).eval()
    inputs = RLTask().export_spec(config).make_inputs({"batch": 3})
    out = model(**inputs)
    assert isinstance(out, DecisionTransformerOutput) and list(out.keys()) == ["action_preds"]
    assert out.loss is None and out.action_preds.shape == (3, 4, 2)
    assert model(**inputs, labels=inputs["actions"]).loss.ndim == 0
    # the action at step t does not change the prediction at step t (it comes after the state token)
    changed = dict(inputs, actions=inputs["actions"].clone())
    changed["actions"][:, -1] = 1 - changed["actions"][:, -1]
    torch.testing.assert_close(model(**changed).action_preds[:, -1], out.action_preds[:, -1])
    with pytest.raises(InputError, match=r"observations must have shape \(B, K, 4\)"):
        model(**dict(inputs, observations=inputs["observations"][..., :3]))
    with pytest.raises(InputError, match="timesteps must be an integer tensor"):
        model(**dict(inputs, timesteps=inputs["timesteps"].float()))
    with pytest.raises(InputError, match="reads at most context_length=4"):
        model(observations=torch.randn(1, 5, 4))
    with pytest.raises(InputError, match=r"needs actions \(shape \(B, 4\)\)"):
        model(observations=torch.randn(1, 4, 4))


def test_continuous_dt_actions_stay_in_bounds():
    config = DecisionTransformerConfig(observation_space={"type": "box", "shape": [3]},
                                       action_space={"type": "box", "shape": [1], "low": [-2.0], "high": [2.0]}, context_length=3,
                                       target_return=0.0, backbone={**TINY_BACKBONE, "max_length": 9}, head={"type": "dt_action"})
    model = PolyheadForDecisionTransformer(config)
    assert {"adapter.action_low", "adapter.action_high", "adapter.observation_mean"} <= set(model.state_dict())
    inputs = RLTask().export_spec(config).make_inputs({"batch": 2})
    out = model(**inputs, labels=inputs["actions"])
    assert out.action_preds.shape == (2, 3, 1) and out.action_preds.abs().max() <= 2.0
    out.loss.backward()


@pytest.mark.parametrize("model_class", [PolyheadForPPO, PolyheadForDecisionTransformer])
def test_save_load_roundtrip(tmp_path, model_class):
    config = _example(model_class.config_class)
    model = model_class(config).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == config.model_type and saved["architectures"] == [model_class.__name__]
    assert "algorithm" not in saved and "causal" not in saved["backbone"]
    loaded = transformers.AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class and loaded.config.action_space == config.action_space
    assert type(polyhead.AutoModel.from_pretrained(tmp_path)) is model_class
    inputs = RLTask().export_spec(config).make_inputs({"batch": 2})
    for name, value in model(**inputs).items():
        torch.testing.assert_close(loaded(**inputs)[name], value)


def test_transformers_own_decision_transformer_is_left_alone():
    """Both libraries name a config class DecisionTransformerConfig: each maps to its own model."""
    assert type(transformers.AutoModel.from_config(_example(DecisionTransformerConfig))) is PolyheadForDecisionTransformer
    theirs = transformers.DecisionTransformerConfig(state_dim=3, act_dim=2, hidden_size=8, n_layer=1, n_head=1, max_ep_len=8)
    assert type(transformers.AutoModel.from_config(theirs)).__name__ == "DecisionTransformerModel"


# -- PPO (online, through `polyhead train`) ------------------------------------------------
def test_ppo_trains_through_polyhead_train(ppo_dir):
    best = ppo_dir.best_dir
    metrics = json.loads((best / "metrics.json").read_text())
    assert metrics["algorithm"] == "ppo" and metrics["budget"]["env_steps"] == 256 and metrics["init"] is None
    assert set(metrics["test"]) >= {"mean_return", "std_return"} and "random_policy" in metrics["baselines"]
    assert (best / "training_config.json").is_file() and (best / "preprocessor_config.json").is_file()
    card = (best / "README.md").read_text()
    assert "reinforcement-learning" in card and "random_policy" in card
    model = polyhead.AutoModel.from_pretrained(best)
    assert type(model) is PolyheadForPPO and type(model.config) is PPOConfig
    assert model.config.backbone["residual"] == "gru" and model.config.env_id == "CartPole-v1"
    assert json.loads((best / "config.json").read_text())["model_type"] == "polyhead-ppo"


def test_ppo_starts_from_another_agent(ppo_dir, tmp_path):
    """`train.init_from` (`--init-from`): the PPO agent starts from a trained one's weights; metrics.json says what was loaded."""
    options = {**TINY_PPO, "train.output_dir": str(tmp_path / "run"), "train.total_timesteps": 128, "train.final_eval_episodes": 1}
    result = polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options=options, init_from=ppo_dir.best_dir, init_modules="backbone")
    init = json.loads((result.best_dir / "metrics.json").read_text())["init"]
    source = polyhead.AutoModel.from_pretrained(ppo_dir.best_dir).state_dict()
    assert init["source"] == str(ppo_dir.best_dir) and init["modules"] == ["backbone"]
    assert init["loaded"] == sum(k.startswith("backbone.") for k in source) and init["new"] and all(k.startswith("adapter.") for k in init["new"])
    assert init["mismatched"] == [] and init == result.metrics["init"]
    with pytest.raises(ConfigError, match="PPO runs take no callbacks"):
        polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options={**options, "train.output_dir": str(tmp_path / "cb")},
                       callbacks=[lambda trainer: None])


def test_ppo_rejects_unknown_options_and_resume(tmp_path):
    options = {**TINY_PPO, "train.output_dir": str(tmp_path / "run")}  # not the recipe's runs/ppo_cartpole
    with pytest.raises(ConfigError, match="train.num_env is not a PPO option. Did you mean 'num_envs'"):
        polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options={**options, "train.num_env": 2})
    with pytest.raises(ConfigError, match="do not resume"):
        polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options=options, resume=True)
    with pytest.raises(UnknownNameError, match="Unknown Gymnasium environment 'CartPol-v1'"):
        polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options={**options, "model.env_id": "CartPol-v1"})


def test_evaluate_agent_is_seeded_and_checks_the_env(ppo_dir):
    first = evaluate_agent(ppo_dir.best_dir, "CartPole-v1", episodes=2, seed=3)
    again = evaluate_agent(ppo_dir.best_dir, episodes=2, seed=3)
    assert first["returns"] == again["returns"] and len(first["returns"]) == 2
    assert first["mean_return"] == pytest.approx(np.mean(first["returns"]))
    assert first["steps_per_second"] > 0
    with pytest.raises(InputError, match="Pendulum-v1 has the observation space Box\\(shape=\\(3,\\)\\).*CartPole-v1"):
        evaluate_agent(ppo_dir.best_dir, "Pendulum-v1", episodes=1)
    with pytest.raises(UnknownNameError, match="Unknown Gymnasium environment"):
        evaluate_agent(ppo_dir.best_dir, "NoSuchEnv-v0", episodes=1)
    with pytest.raises(ConfigError, match="episodes must be a positive integer"):
        evaluate_agent(ppo_dir.best_dir, episodes=0)


def test_processor_checks_observations():
    proc = RLFeatureExtractor.from_config(PPOConfig())
    assert proc.check_observations([0.1, 0.2, 0.3, 0.4]).dtype == np.float32
    with pytest.raises(InputError, match=r"shape \(4,\), got \(3,\)"):
        proc.check_observations(np.zeros(3))
    with pytest.raises(InputError, match="NaN or infinite"):
        proc.check_observations(np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(InputError, match="must be numeric"):
        proc.check_observations(np.array(["a", "b", "c", "d"]))
    with pytest.raises(InputError, match="must hold numbers"):
        proc.check_observations(["a", None, 1, 2])


# -- trajectories and the Decision Transformer --------------------------------------------------
def test_collect_writes_a_trajectory_dataset(trajectories):
    ds = datasets.load_from_disk(str(trajectories / "random"))
    assert len(ds) == 6 and set(ds.column_names) >= {"observations", "actions", "rewards", "terminations", "truncations", "episode_return"}
    meta = json.loads(ds.info.description)
    assert meta["env_id"] == "CartPole-v1" and meta["action_space"] == {"type": "discrete", "n": 2}
    row = ds[0]
    assert len(row["observations"]) == len(row["actions"]) == len(row["rewards"]) == row["length"]
    assert row["terminations"][-1] or row["truncations"][-1]
    assert sum(row["rewards"]) == row["episode_return"]
    again = collect("random", "CartPole-v1", episodes=6, seed=0)
    assert again["episode_return"] == ds["episode_return"]  # seeded


def test_trajectory_windows_are_left_padded(trajectories):
    episodes, _ = load_trajectories(str(trajectories / "random"))
    windows = TrajectoryWindows(episodes, context_length=4, discrete=True, action_dim=2)
    assert len(windows) == sum(len(e) for e in episodes)
    first = windows[0]
    assert first["attention_mask"].tolist() == [0, 0, 0, 1] and first["timesteps"][-1] == 0
    assert first["returns_to_go"][-1, 0] == pytest.approx(episodes[0].total_return)
    later = windows[5]
    assert later["attention_mask"].tolist() == [1, 1, 1, 1] and later["timesteps"].tolist() == [2, 3, 4, 5]
    torch.testing.assert_close(later["labels"], later["actions"])


def test_bad_trajectory_datasets(tmp_path):
    with pytest.raises(DataError, match="does not exist; create it with `polyhead collect"):
        load_trajectories(str(tmp_path / "missing"))
    empty = datasets.Dataset.from_dict({"observations": [], "actions": [], "rewards": []})
    empty.save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="has no episodes|is not a datasets folder"):  # datasets cannot reload 0 shards
        load_trajectories(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="is not a datasets folder"):
        load_trajectories(str(tmp_path))
    datasets.Dataset.from_dict({"observations": [[[0.0] * 4]], "rewards": [[1.0]]}).save_to_disk(str(tmp_path / "noact"))
    with pytest.raises(DataError, match=r"lacks column\(s\) \['actions'\]"):
        load_trajectories(str(tmp_path / "noact"))
    bad = {"observations": [[[0.0] * 4, [0.0] * 4]], "actions": [[0]], "rewards": [[1.0, 1.0]]}
    datasets.Dataset.from_dict(bad).save_to_disk(str(tmp_path / "ragged"))
    with pytest.raises(DataError, match="Episode 0 .* is malformed: 2 observations, 1 actions and 2 rewards"):
        load_trajectories(str(tmp_path / "ragged"))
    nan = {"observations": [[[float("nan")] * 4]], "actions": [[0]], "rewards": [[1.0]]}
    datasets.Dataset.from_dict(nan).save_to_disk(str(tmp_path / "nan"))
    with pytest.raises(DataError, match="NaN or infinite"):
        load_trajectories(str(tmp_path / "nan"))
    with pytest.raises(ConfigError, match="needs data.source"):
        RLTask().build_config({"algorithm": "decision_transformer"}, {})


def test_decision_transformer_trains_with_the_generic_trainer(dt_result, trajectories):
    best = dt_result.best_dir
    metrics = dt_result.metrics
    assert metrics["global_step"] == 4
    assert set(metrics["test"]) >= {"loss", "action_accuracy", "mean_return", "std_return"}
    assert set(metrics["baselines"]) == {"behaviour_policy", "random_policy"}
    model = polyhead.AutoModel.from_pretrained(best)
    cfg = model.config
    assert type(model) is PolyheadForDecisionTransformer and type(cfg) is DecisionTransformerConfig
    assert cfg.algorithm == "decision_transformer" and cfg.env_id == "CartPole-v1" and len(cfg.observation_std) == 4
    episodes, _ = load_trajectories([str(trajectories / "random"), str(trajectories / "agent")])
    assert cfg.target_return == max(e.total_return for e in episodes)
    card = (best / "README.md").read_text()
    assert "behaviour_policy" in card and "mean_return" in card
    result = evaluate_agent(best, episodes=1, target_return=50.0)
    assert result["target_return"] == 50.0 and result["algorithm"] == "decision_transformer"


def test_cli_collect_and_evaluate(ppo_dir, tmp_path, capsys):
    out = tmp_path / "t"
    assert cli_main(["collect", "random", "--env", "CartPole-v1", "--episodes", "3", "--out", str(out)]) == 0
    assert "Collected 3 CartPole-v1 episodes" in capsys.readouterr().out
    assert len(datasets.load_from_disk(str(out))) == 3
    assert cli_main(["evaluate", str(ppo_dir.best_dir), "--env", "CartPole-v1", "--episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 2 and len(report["returns"]) == 2
    assert cli_main(["evaluate", str(ppo_dir.best_dir), "--episodes", "1"]) == 0
    assert "CartPole-v1: mean return" in capsys.readouterr().out
    assert cli_main(["collect", "random", "--env", "Nope-v9", "--episodes", "1", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown Gymnasium environment" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_video_of_the_first_episode(ppo_dir, tmp_path):
    pytest.importorskip("moviepy")
    video = tmp_path / "videos" / "agent.mp4"
    result = evaluate_agent(ppo_dir.best_dir, episodes=2, seed=0, video=str(video))
    assert result["video"] == str(video) and video.stat().st_size > 1000
    assert not list(video.parent.glob("*-episode-*.mp4"))
    with pytest.raises(ConfigError, match="must name an .mp4 file"):
        evaluate_agent(ppo_dir.best_dir, episodes=1, video=str(tmp_path / "agent.gif"))


def test_continuous_ppo_and_dt_run_end_to_end_on_pendulum(tmp_path):
    """The Box-action paths (Gaussian PPO head, tanh DT head) train, save, collect and evaluate (tiny budget)."""
    options = {**TINY_PPO, "model.env_id": "Pendulum-v1", "train.output_dir": str(tmp_path / "ppo"), "train.final_eval_episodes": 1}
    result = polyhead.train("configs/rl/ppo_gtrxl_cartpole.py", cfg_options=options)
    model = polyhead.AutoModel.from_pretrained(result.best_dir)
    assert not model.config.discrete and model.config.action_space["high"] == [2.0]
    assert model.adapter.head.log_std is not None
    data = collect(result.best_dir, "Pendulum-v1", episodes=3, epsilon=0.5, out=tmp_path / "traj")
    assert np.asarray(data[0]["actions"]).shape == (200, 1) and np.abs(np.asarray(data[0]["actions"])).max() <= 2.0
    dt = polyhead.train("configs/rl/decision_transformer_cartpole.py", cfg_options={
        "model.context_length": 4, "model.return_scale": 1000.0, "model.target_return": -200.0,
        "model.backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "max_length": 12},
        "data.source": str(tmp_path / "traj"), "data.val_fraction": 0.34, "data.test_fraction": 0.34, "data.eval_episodes": 1,
        "train.output_dir": str(tmp_path / "dt"), "train.max_steps": 2, "train.eval_every": 2, "train.batch_size": 8,
        "train.warmup_steps": 0, "train.progress_bar": False,
    })
    assert set(dt.metrics["test"]) >= {"action_mse", "mean_return"}


# -- hand-written behaviour policies; LunarLander needs Box2D (the pinned `box2d` wheel, installed by `make setup`)
TINY_DT_BACKBONE = {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "max_length": 12}


def test_lunarlander_heuristic_data_trains_the_lunarlander_recipe(tmp_path):
    """Gymnasium's LunarLander heuristic as a behaviour policy, with epsilon noise; the packaged recipe trains on it."""
    good = collect("lunarlander-heuristic", "LunarLander-v3", episodes=2, seed=0, out=tmp_path / "heuristic")
    assert min(good["episode_return"]) > 200  # it lands (297.4 and 260.9 on reset seeds 0 and 1)
    assert good["behaviour"] == ["lunarlander-heuristic"] * 2
    assert json.loads(good.info.description)["action_space"] == {"type": "discrete", "n": 4}
    noisy = collect("lunarlander-heuristic", "LunarLander-v3", episodes=2, seed=0, epsilon=1.0)
    random_ = collect("random", "LunarLander-v3", episodes=2, seed=0, out=tmp_path / "random")
    assert noisy["behaviour"] == ["lunarlander-heuristic+eps1"] * 2
    assert noisy["episode_return"] == random_["episode_return"]  # epsilon=1: every action from the seeded action space
    assert max(random_["episode_return"]) < 0
    dt = polyhead.train("configs/rl/decision_transformer_lunarlander.py", cfg_options={
        "model.context_length": 4, "model.backbone": TINY_DT_BACKBONE,
        "data.source": [str(tmp_path / "heuristic"), str(tmp_path / "random")], "data.val_fraction": 0.25,
        "data.test_fraction": 0.25, "data.eval_episodes": 1,
        "train.output_dir": str(tmp_path / "dt"), "train.max_steps": 2, "train.eval_every": 2, "train.batch_size": 8,
        "train.warmup_steps": 0, "train.progress_bar": False,
    })
    config = polyhead.AutoModel.from_pretrained(dt.best_dir).config
    assert config.env_id == "LunarLander-v3" and config.max_timestep == 1000 and config.target_return == 280.0
    assert {"action_accuracy", "mean_return"} <= set(dt.metrics["test"])
    assert dt.metrics["baselines"]["behaviour_policy"]["mean_return"] == pytest.approx(
        np.mean(list(good["episode_return"]) + list(random_["episode_return"])))
    with pytest.raises(InputError, match=r"CartPole-v1 has the observation space Box\(shape=\(4,\)\), but this agent was trained on LunarLander-v3"):
        evaluate_agent(dt.best_dir, env_id="CartPole-v1", episodes=1)


def test_pendulum_swing_up_controller(tmp_path, capsys):
    swing = collect("pendulum-swingup", "Pendulum-v1", episodes=3, seed=0)
    random_ = collect("random", "Pendulum-v1", episodes=3, seed=0)
    assert swing["behaviour"] == ["pendulum-swingup"] * 3
    assert np.mean(swing["episode_return"]) > -200 and np.mean(random_["episode_return"]) < -800  # about -80 vs -1081
    actions = np.concatenate([np.asarray(a) for a in swing["actions"]])
    assert actions.shape == (600, 1) and np.abs(actions).max() <= 2.0
    noisy = collect("pendulum-swingup", "Pendulum-v1", episodes=3, seed=0, noise=2.0)
    assert noisy["behaviour"] == ["pendulum-swingup+noise2"] * 3
    noisy_actions = np.concatenate([np.asarray(a) for a in noisy["actions"]])
    assert np.abs(noisy_actions).max() <= 2.0 and not np.allclose(noisy_actions, actions)  # clipped to the bounds
    assert cli_main(["collect", "pendulum-swingup", "--env", "Pendulum-v1", "--episodes", "1", "--noise", "2", "--out", str(tmp_path / "p")]) == 0
    assert "Collected 1 Pendulum-v1 episodes" in capsys.readouterr().out
    assert datasets.load_from_disk(str(tmp_path / "p"))["behaviour"] == ["pendulum-swingup+noise2"]


def test_behaviour_policy_errors():
    with pytest.raises(ConfigError, match="'pendulum-swingup' is written for Pendulum-v1, not 'CartPole-v1'"):
        collect("pendulum-swingup", "CartPole-v1", episodes=1)
    with pytest.raises(ConfigError, match=r"epsilon must be in \[0, 1\]"):
        collect("lunarlander-heuristic", "LunarLander-v3", episodes=1, epsilon=1.5)
    with pytest.raises(UnknownNameError, match="Unknown behaviour policy .*'heuristic'.*lunarlander-heuristic"):
        collect("heuristic", "LunarLander-v3", episodes=1)
    with pytest.raises(ConfigError, match="noise .*needs continuous actions"):
        collect("lunarlander-heuristic", "LunarLander-v3", episodes=1, noise=0.5)
    with pytest.raises(ConfigError, match="noise must be a non-negative"):
        collect("pendulum-swingup", "Pendulum-v1", episodes=1, noise=-1.0)
    with pytest.raises(ConfigError, match="noise applies to the hand-written controllers"):
        collect("random", "Pendulum-v1", episodes=1, noise=0.5)
