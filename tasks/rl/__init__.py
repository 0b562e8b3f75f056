"""Reinforcement learning: PPO-GTrXL (online) and the Decision Transformer (offline) on the shared backbone.

Two model classes, one per algorithm (:class:`PolyheadForPPO`, :class:`PolyheadForDecisionTransformer`);
a config file's ``model.algorithm`` picks one. PPO trains in its own loop (:mod:`polyhead.tasks.rl.ppo`),
the Decision Transformer with the generic Trainer; both are evaluated in their environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

from polyhead.configuration import register_auto_config
from polyhead.errors import ConfigError, DataError
from polyhead.export import ExportSpec
from polyhead.loading import Initialisation, initialise_from, load_model, load_processor
from polyhead.pretrained import load_pretrained_backbone
from polyhead.model_dir import BEST_DIR
from polyhead.registry import register_task
from polyhead.streaming import StreamRows, split_streaming_options
from polyhead.validation import look_up_option
from polyhead.workflows import RunResult, config_section, model_section, training_section

from .._base import Task, TaskData
from .configuration import ALGORITHMS, DecisionTransformerConfig, PPOConfig, RLConfig, space_description
from .data import TrajectoryWindows, load_trajectories, split_episodes
from .modeling import (
    DecisionTransformerAdapter,
    DecisionTransformerOutput,
    PolyheadForDecisionTransformer,
    PolyheadForPPO,
    PPOAdapter,
    PPOOutput,
)
from .processing import RLFeatureExtractor, make_env
from .rollout import BEHAVIOUR_POLICIES, AgentPolicy, RandomPolicy, ScriptedPolicy, collect_trajectories, run_episodes

__all__ = [
    "AgentPolicy",
    "DecisionTransformerAdapter",
    "DecisionTransformerConfig",
    "DecisionTransformerOutput",
    "PolyheadForDecisionTransformer",
    "PolyheadForPPO",
    "PPOAdapter",
    "PPOConfig",
    "PPOOutput",
    "RLConfig",
    "RLFeatureExtractor",
    "RLMetrics",
    "RLTask",
    "collect",
    "config_class_for",
    "collect_trajectories",
    "evaluate_agent",
]

register_auto_config(PPOConfig)
AutoModel.register(PPOConfig, PolyheadForPPO)
AutoFeatureExtractor.register(PPOConfig, RLFeatureExtractor)
register_auto_config(DecisionTransformerConfig)
# transformers refuses a config class that has the *name* of one of its own (its DecisionTransformerConfig);
# registered models are looked up by the class itself, so this one maps to polyhead's model, and theirs to theirs
AutoModel.register(DecisionTransformerConfig, PolyheadForDecisionTransformer, exist_ok=True)
AutoFeatureExtractor.register(DecisionTransformerConfig, RLFeatureExtractor)

_DATA_KEYS = ("source", "val_fraction", "test_fraction", "stride", "eval_episodes", "seed")


class RLMetrics:
    """Offline metrics of a Decision Transformer on held-out windows: action accuracy (discrete) or MSE."""

    def __init__(self, *, discrete: bool) -> None:
        self.discrete = discrete
        self.reset()

    def names(self) -> list[str]:
        return ["action_accuracy"] if self.discrete else ["action_mse"]

    def reset(self) -> None:
        self._sum, self._count = 0.0, 0.0

    @staticmethod
    def select(outputs: Any, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"action_preds": outputs.action_preds, "labels": batch["labels"], "mask": batch["attention_mask"]}

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        preds, labels, mask = gathered["action_preds"].float(), gathered["labels"], gathered["mask"].float()
        if self.discrete:
            per_step = (preds.argmax(-1) == labels).float()
        else:
            per_step = ((preds - labels.float()) ** 2).mean(-1)
        self._sum += float((per_step * mask).sum())
        self._count += float(mask.sum())

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        return {self.names()[0]: self._sum / self._count}


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def config_class_for(algorithm: str) -> type[RLConfig]:
    """The config class a config file's ``model.algorithm`` names (``"ppo"``, ``"decision_transformer"``)."""
    return look_up_option(algorithm, ALGORITHMS, "RL algorithm")


@register_task("rl")
class RLTask(Task):
    """Act in Gymnasium environments: PPO-GTrXL online, or a Decision Transformer on collected trajectories."""

    name = "rl"
    pipeline_task = "reinforcement-learning"
    domain = "reinforcement-learning"
    models = (PolyheadForPPO, PolyheadForDecisionTransformer)
    processor_class = RLFeatureExtractor
    default_config = "rl/ppo_gtrxl_cartpole.py"
    best_metric = "loss"
    greater_is_better = False

    data_options = _DATA_KEYS
    prediction_files = "a Gymnasium environment id (e.g. CartPole-v1): the agent plays episodes in it"

    def predict(self, pipe: Any, inputs: Any, *, episodes: int = 1, seed: int = 0, target_return: float | None = None) -> Any:
        """``polyhead predict AGENT CartPole-v1``: play ``episodes`` episodes per environment id, report the returns."""
        processor = pipe.feature_extractor
        for env_id in inputs:
            result = run_episodes(env_id, lambda env: AgentPolicy(pipe.model, processor, target_return=target_return), episodes=episodes,
                                  seed=seed, check_env=processor.check_env)
            yield {"env_id": env_id, **{k: result[k] for k in ("returns", "mean_return", "env_steps")}}

    # -- config -----------------------------------------------------------------------
    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> RLConfig:
        """The config ``model.algorithm`` names (default ``"ppo"``), its spaces filled from the environment
        (PPO) or the trajectories (DT), with the DT's data statistics."""
        self.check_data_section(data_section)
        section = dict(model_section)
        config_class = config_class_for(section.pop("algorithm", "ppo"))
        backbone = section.get("backbone")
        if isinstance(backbone, Mapping) and "causal" in backbone:  # polyhead 0.1 configs: the adapters attend causally, per call
            section["backbone"] = {k: v for k, v in backbone.items() if k != "causal"}
        if config_class is DecisionTransformerConfig:
            if "source" not in data_section:
                raise ConfigError("A Decision Transformer config needs data.source: trajectory dataset folder(s) from `polyhead collect`.")
            episodes, meta = load_trajectories(data_section["source"])
            section.setdefault("env_id", meta.get("env_id"))
            for key in ("observation_space", "action_space"):
                if key not in section and key in meta:
                    section[key] = meta[key]
            observations = np.concatenate([e.observations for e in episodes])
            section.setdefault("observation_mean", observations.mean(0).tolist())
            section.setdefault("observation_std", (observations.std(0) + 1e-6).tolist())
            if section.get("target_return") is None:  # default: the best return in the data
                section["target_return"] = float(max(e.total_return for e in episodes))
            longest = max(len(e) for e in episodes)
            if section.get("max_timestep", 1024) < longest:
                raise ConfigError(f"model.max_timestep ({section.get('max_timestep', 1024)}) is shorter than the longest episode ({longest}).")
        else:
            env_id = section.get("env_id")
            if not env_id:
                raise ConfigError("A PPO config needs model.env_id (a Gymnasium id such as 'CartPole-v1').")
            env = make_env(env_id)
            section.setdefault("observation_space", space_description(env.observation_space))
            section.setdefault("action_space", space_description(env.action_space))
            env.close()
        return config_class.from_model_section(section)

    def build_processor(self, config: RLConfig) -> RLFeatureExtractor:
        return RLFeatureExtractor.from_config(config)

    # -- offline data (Decision Transformer) --------------------------------------------------
    def build_data(self, data_section: Mapping[str, Any], config: RLConfig) -> TaskData:
        self.check_data_section(data_section)
        if not isinstance(config, DecisionTransformerConfig):
            raise ConfigError("A PPO agent has no dataset (it collects its own experience): evaluate it in its environment "
                              "with polyhead.evaluate_agent(...) or `polyhead evaluate MODEL_DIR --env ID`.")
        episodes, meta = load_trajectories(data_section["source"])
        if episodes[0].observations.shape[1] != config.observation_dim:
            raise DataError(f"The trajectories have {episodes[0].observations.shape[1]}-D observations; the model expects {config.observation_dim}.")
        splits = split_episodes(episodes, val_fraction=float(data_section.get("val_fraction", 0.1)),
                                test_fraction=float(data_section.get("test_fraction", 0.1)), seed=int(data_section.get("seed", 0)))
        stride = int(data_section.get("stride", 1))
        windows = {name: TrajectoryWindows(eps, context_length=config.context_length, discrete=config.discrete,
                                           action_dim=config.action_dim, stride=stride if name == "train" else 1)
                   for name, eps in splits.items()}
        returns = [e.total_return for e in episodes]
        behaviours = sorted({e.behaviour for e in episodes if e.behaviour})
        description = {
            "source": data_section["source"] if isinstance(data_section["source"], str) else ", ".join(map(str, data_section["source"])),
            "env_id": config.env_id,
            "episodes": len(episodes),
            "steps": int(sum(len(e) for e in episodes)),
            "behaviour_policies": ", ".join(behaviours) or "unknown",
            "behaviour_mean_return": float(np.mean(returns)),
            "eval_episodes": int(data_section.get("eval_episodes", 20)),
            "splits": {name: {"episodes": len(eps), "windows": len(windows[name])} for name, eps in splits.items()},
        }
        # data.streaming: the training windows as a stream (the episodes are read whole: they are split by episode)
        return TaskData(**windows, collate_fn=_collate, description=description, train_stream=StreamRows.of_indices(windows["train"]))

    def build_metrics(self, config: RLConfig) -> RLMetrics:
        return RLMetrics(discrete=config.discrete)

    def baselines(self, data: TaskData, config: RLConfig) -> dict[str, dict[str, float]]:
        """The data's (behaviour policy's) mean episode return and a random policy's, in the same environment."""
        episodes = int(data.description.get("eval_episodes", 20))
        random_ = run_episodes(config.env_id, lambda env: RandomPolicy(env.action_space, seed=0), episodes=episodes, seed=0)
        return {"behaviour_policy": {"mean_return": data.description["behaviour_mean_return"]},
                "random_policy": {"mean_return": random_["mean_return"], "std_return": random_["std_return"]}}

    def test_metrics(self, model: Any, data: TaskData, config: RLConfig, *, accelerator: Any, batch_size: int) -> dict[str, float]:
        """The offline metrics on ``data.test``, and the agent's return in its environment over
        ``data.eval_episodes`` episodes (reset seeds 0, 1, ...; deterministic actions)."""
        metrics = super().test_metrics(model, data, config, accelerator=accelerator, batch_size=batch_size)
        if not config.env_id:
            return metrics
        agent = accelerator.unwrap_model(model).eval()
        processor = RLFeatureExtractor.from_config(config)
        result = run_episodes(config.env_id, lambda env: AgentPolicy(agent, processor), check_env=processor.check_env,
                              episodes=int(data.description.get("eval_episodes", 20)), seed=0)
        return {**metrics, **{k: result[k] for k in ("mean_return", "std_return", "min_return", "max_return")}}

    # -- training: PPO online, in its own loop; the Decision Transformer with the generic Trainer ---
    def train(self, cfg: Any, *, resume: bool = False, callbacks: tuple = (), init: Initialisation | None = None) -> RunResult:
        """Train the agent ``cfg`` describes; a PPO config runs :func:`~polyhead.tasks.rl.ppo.train_ppo`.

        PPO writes ``<output_dir>/best`` like the generic path (model, processor, ``metrics.json``
        with ``init``: what ``init`` loaded, ``training_config.json``, the model card).
        """
        model_options = model_section(cfg)
        if config_class_for(model_options.get("algorithm", "ppo")) is not PPOConfig:
            return super().train(cfg, resume=resume, callbacks=callbacks, init=init)
        from .ppo import PPOArguments, train_ppo

        if split_streaming_options(config_section(cfg, "data"))[0] is not None:
            raise ConfigError("PPO cannot train from a stream (data.streaming=True): it collects its own experience online, in its "
                              "environment, and has no training data to stream. Drop data.streaming; the Decision Transformer "
                              "(model.algorithm='decision_transformer') streams its offline trajectory windows.")
        if resume:
            raise ConfigError("PPO runs do not resume from checkpoints; start the run again (it is seeded).")
        if callbacks:
            raise ConfigError("PPO runs take no callbacks: they are called by the generic Trainer, which PPO does not use.")
        args = PPOArguments.from_section(training_section(cfg))  # bad options fail before any environment starts
        config = self.build_config(model_options, config_section(cfg, "data"))
        torch.manual_seed(args.seed)
        model = self.build_model(config)
        pretrained = load_pretrained_backbone(model)  # backbone.pretrained (e.g. a polyhead model's backbone)
        init_report = initialise_from(model, init) if init is not None else None
        metrics = train_ppo(model, self.build_processor(config), args, env_id=config.env_id, cfg=cfg, init=init_report, pretrained=pretrained)
        return RunResult(best_dir=Path(args.output_dir) / BEST_DIR, metrics=metrics)

    # -- export --------------------------------------------------------------------------------
    def export_spec(self, config: RLConfig) -> ExportSpec:
        """The config's inputs (:attr:`RLConfig.input_names`) with a dynamic batch; the window is
        ``context_length`` steps (left-padded by the rollout); the outputs are the model's output fields but ``loss``.
        PPO's ``state_values`` keeps its first name ``values`` in the graph: exported agents stay valid."""
        output_class = self.model_class_for(config).adapter_class.output_class
        renamed = {"values": "state_values"} if output_class is PPOOutput else {}
        graph_name = {field: name for name, field in renamed.items()}
        outputs = [graph_name.get(f.name, f.name) for f in dataclasses.fields(output_class)
                   if f.name not in ("loss", "hidden_states", "attentions")]
        k = config.context_length

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            b = sizes["batch"]
            mask = torch.ones(b, k, dtype=torch.long)
            mask[0, : k // 2] = 0  # one left-padded window, as at an episode's start
            made = {"observations": torch.randn(b, k, config.observation_dim), "attention_mask": mask}
            if isinstance(config, DecisionTransformerConfig):
                if config.discrete:
                    made["actions"] = torch.randint(0, config.action_dim, (b, k))
                else:
                    low, high = (torch.tensor(config.action_space[x], dtype=torch.float32) for x in ("low", "high"))
                    made["actions"] = low + torch.rand(b, k, config.action_dim) * (high - low)
                made["returns_to_go"] = torch.rand(b, k, 1) * (config.target_return or 1.0)
                made["timesteps"] = torch.arange(k).expand(b, k).clone()
            return made

        return ExportSpec(input_names=list(config.input_names), output_names=outputs, output_class=output_class, renamed_outputs=renamed,
                          make_inputs=make_inputs, dynamic_axes={name: {0: "batch"} for name in config.input_names})

    @classmethod
    def example_configs(cls) -> list[RLConfig]:
        """A tiny Decision Transformer (first: :meth:`example_config`) and a tiny PPO-GTrXL agent, for CartPole-v1."""
        cartpole = {"env_id": "CartPole-v1", "context_length": 4, "observation_space": {"type": "box", "shape": [4]},
                    "action_space": {"type": "discrete", "n": 2}}
        return [
            DecisionTransformerConfig(
                **cartpole, max_timestep=64, return_scale=100.0, target_return=100.0, head={"type": "dt_action"},
                backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "max_length": 12},
            ),
            PPOConfig(
                **cartpole, head={"type": "actor_critic", "hidden_dim": 8},
                backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 4, "residual": "gru"},
            ),
        ]


def evaluate_agent(
    model_dir: str | Path,
    env_id: str | None = None,
    *,
    episodes: int = 20,
    seed: int = 0,
    target_return: float | None = None,
    video: str | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """Play ``episodes`` Gymnasium episodes with a saved agent (deterministic policy, reset seeds ``seed, seed + 1, ...``).

    Args:
        model_dir: a polyhead RL agent's folder (or Hub repo id): PPO or Decision Transformer.
        env_id: the environment (default: the one the agent was trained in); its spaces must match the agent's.
        target_return: the return a Decision Transformer is conditioned on (default: the saved one).
        video: write the first episode to this ``.mp4`` (Gymnasium ``RecordVideo``, needs ``moviepy``).
        backend: ``"torch"`` or ``"onnx"`` (the exported ``model.onnx``).

    Returns:
        ``{"mean_return", "std_return", "min_return", "max_return", "returns", "env_steps", "steps_per_second", ...}``.
    """
    model = load_model(model_dir, backend=backend).eval()
    _check_agent(model, model_dir, "evaluate_agent")
    processor = load_processor(model_dir)
    env_id = env_id or model.config.env_id
    if not env_id:
        raise ConfigError("Pass env_id: this agent does not record the environment it was trained in.")
    result = run_episodes(env_id, lambda env: AgentPolicy(model, processor, target_return=target_return), episodes=episodes,
                          seed=seed, video=video, check_env=processor.check_env)
    result.update({"model": str(model_dir), "backend": backend, "algorithm": model.config.algorithm})
    if isinstance(model.config, DecisionTransformerConfig):
        result["target_return"] = target_return if target_return is not None else model.config.target_return
    return result


def collect(
    model_dir: str | Path,
    env_id: str,
    *,
    episodes: int,
    out: str | Path | None = None,
    seed: int = 0,
    epsilon: float = 0.0,
    deterministic: bool = True,
    target_return: float | None = None,
    noise: float = 0.0,
    overwrite: bool = False,
):
    """Roll a policy out into a trajectory dataset; ``save_to_disk`` it to ``out`` if given.

    The behaviour policy ``model_dir`` is a saved polyhead RL agent, ``"random"`` (uniform
    actions), or the name of a hand-written controller in
    :data:`~polyhead.tasks.rl.rollout.BEHAVIOUR_POLICIES`: ``"lunarlander-heuristic"``
    (Gymnasium's LunarLander heuristic) or ``"pendulum-swingup"`` (energy-based swing-up + PD).
    ``epsilon`` replaces each action by a random one with that probability (mixed-quality data);
    ``noise`` adds Gaussian noise of that standard deviation to a controller's continuous actions.
    ``out`` must be new or empty; a dataset folder polyhead wrote is replaced only with
    ``overwrite=True`` (``--overwrite``), and a folder polyhead did not write never is. It is
    checked before any episode is played, and written complete or not at all.
    """
    from polyhead.model_dir import check_writable_folder, write_folder

    if out is not None:
        check_writable_folder(out, kind="dataset", overwrite=overwrite, what="--out folder")

    if noise and str(model_dir) not in BEHAVIOUR_POLICIES:
        raise ConfigError(f"noise applies to the hand-written controllers ({', '.join(BEHAVIOUR_POLICIES)}); use epsilon for {model_dir}.")
    if str(model_dir) == "random":
        factory, behaviour, check = (lambda env: RandomPolicy(env.action_space, seed=seed)), "random", None
    elif str(model_dir) in BEHAVIOUR_POLICIES:
        controller, env_ids = BEHAVIOUR_POLICIES[str(model_dir)]
        if env_id not in env_ids:
            raise ConfigError(f"The behaviour policy {model_dir!r} is written for {', '.join(env_ids)}, not {env_id!r}.")
        behaviour = str(model_dir) + (f"+eps{epsilon:g}" if epsilon else "") + (f"+noise{noise:g}" if noise else "")

        def factory(env):
            return ScriptedPolicy(controller, env, epsilon=epsilon, noise=noise, seed=seed)

        check = None
    else:
        if "/" not in str(model_dir) and not Path(str(model_dir)).exists():  # neither a folder nor a Hub id (owner/name)
            look_up_option(str(model_dir), {"random": None, **BEHAVIOUR_POLICIES}, "behaviour policy (or model folder)")
        model = load_model(model_dir).eval()
        _check_agent(model, model_dir, "collect", alternatives=" (or 'random', or a behaviour policy)")
        processor = load_processor(model_dir)
        behaviour = f"{model.config.algorithm}:{Path(str(model_dir)).name}" + (f"+eps{epsilon:g}" if epsilon else "")

        def factory(env):
            return AgentPolicy(model, processor, deterministic=deterministic, epsilon=epsilon, seed=seed, target_return=target_return)

        check = processor.check_env
    dataset = collect_trajectories(env_id, factory, episodes=episodes, seed=seed, behaviour=behaviour, check_env=check)
    if out is not None:
        with write_folder(out, kind="dataset", overwrite=overwrite, what="--out folder") as staging:
            dataset.save_to_disk(str(staging))
    return dataset


def _check_agent(model: Any, model_dir: str | Path, what: str, alternatives: str = "") -> None:
    """Refuse a model that is not an RL agent, naming the model types ``what`` accepts."""
    if not isinstance(model.config, RLConfig):
        agents = " or ".join(m.config_class.model_type for m in RLTask.models)
        raise ConfigError(f"{model_dir} is a {model.config.model_type} model; {what} needs an RL agent ({agents}){alternatives}.")
