"""Acting in Gymnasium environments: the rolling context window, evaluation episodes, trajectory collection.

Everything here runs outside the exported network, on a PyTorch model or an
:class:`~polyhead.export.OnnxModel` alike (same call signature, same output).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from polyhead.errors import ConfigError, InputError

from .configuration import DecisionTransformerConfig
from .modeling import PolyheadForPPO
from .processing import RLFeatureExtractor, finite_float32, make_env

__all__ = [
    "ContextWindow", "AgentPolicy", "RandomPolicy", "ScriptedPolicy", "BEHAVIOUR_POLICIES", "lunar_lander_heuristic",
    "pendulum_swing_up", "run_episodes", "collect_trajectories", "check_target_return", "TRAJECTORY_COLUMNS",
]

TRAJECTORY_COLUMNS = ("observations", "actions", "rewards", "terminations", "truncations")


class ContextWindow:
    """The last ``K`` steps of ``N`` parallel episodes, right-aligned and left-padded.

    Holds what the model reads: ``observations (N, K, D)``, ``actions``, ``returns_to_go
    (N, K, 1)``, ``timesteps (N, K)`` and ``attention_mask (N, K)``.
    """

    def __init__(self, *, num_envs: int, context_length: int, observation_dim: int, action_shape: tuple[int, ...], discrete: bool) -> None:
        self.num_envs, self.k = num_envs, context_length
        self.observations = torch.zeros(num_envs, context_length, observation_dim)
        self.actions = torch.zeros(num_envs, context_length, *action_shape, dtype=torch.long if discrete else torch.float32)
        self.returns_to_go = torch.zeros(num_envs, context_length, 1)
        self.timesteps = torch.zeros(num_envs, context_length, dtype=torch.long)
        self.attention_mask = torch.zeros(num_envs, context_length, dtype=torch.long)
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def reset(self, index: int | np.ndarray | None = None) -> None:
        """Forget the context of env ``index`` (all envs by default)."""
        index = slice(None) if index is None else index
        for buffer in self._buffers():
            buffer[index] = 0
        self.steps[index] = 0

    def _buffers(self) -> tuple[torch.Tensor, ...]:
        return (self.observations, self.actions, self.returns_to_go, self.timesteps, self.attention_mask)

    def state(self) -> tuple[list[torch.Tensor], np.ndarray]:
        """A copy of the whole window, for :meth:`restore`."""
        return [buffer.clone() for buffer in self._buffers()], self.steps.copy()

    def restore(self, state: tuple[list[torch.Tensor], np.ndarray]) -> None:
        """Put back a window saved with :meth:`state` (in place)."""
        buffers, steps = state
        for buffer, saved in zip(self._buffers(), buffers):
            buffer.copy_(saved)
        self.steps[:] = steps

    def push(self, observations: np.ndarray, returns_to_go: np.ndarray | None = None) -> None:
        """Shift every window by one step and append the new observations (action slot left 0)."""
        for buffer in self._buffers():
            buffer[:, :-1] = buffer[:, 1:].clone()
            buffer[:, -1] = 0
        self.observations[:, -1] = torch.as_tensor(observations, dtype=torch.float32)
        if returns_to_go is not None:
            self.returns_to_go[:, -1, 0] = torch.as_tensor(returns_to_go, dtype=torch.float32)
        self.timesteps[:, -1] = torch.as_tensor(self.steps)
        self.attention_mask[:, -1] = 1
        self.steps += 1

    def set_last_actions(self, actions: torch.Tensor) -> None:
        self.actions[:, -1] = actions.to(self.actions.dtype)

    def inputs(self, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The buffers the model reads, by input name (its config's ``input_names``)."""
        return {name: getattr(self, name) for name in names}


class AgentPolicy:
    """Acts with a polyhead agent in ``num_envs`` environments, keeping each one's context.

    Args:
        model: a :class:`PolyheadForPPO` or :class:`PolyheadForDecisionTransformer`, or an ``OnnxModel`` of one.
        processor: its :class:`RLFeatureExtractor`.
        num_envs: parallel environments.
        target_return: the return a Decision Transformer is conditioned on (default:
            the model's ``target_return``).
        deterministic: argmax / mean action; ``False`` samples (PPO's stochastic policy).
        epsilon: probability of a uniformly random action instead (for collecting
            mixed-quality data).
        seed: seed of the sampling and epsilon draws.
    """

    def __init__(self, model: Any, processor: RLFeatureExtractor, *, num_envs: int = 1, target_return: float | None = None,
                 deterministic: bool = True, epsilon: float = 0.0, seed: int = 0) -> None:
        self.model, self.processor = model, processor
        cfg = model.config
        self.config = cfg
        conditioned = isinstance(cfg, DecisionTransformerConfig)  # acts for a target return
        saved = cfg.target_return if conditioned else None
        self.target_return = check_target_return(target_return) if target_return is not None else saved
        if conditioned and self.target_return is None:
            raise ConfigError("A Decision Transformer needs a target_return (none is saved with this model).")
        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"epsilon must be in [0, 1], got {epsilon}.")
        self.deterministic, self.epsilon = deterministic, epsilon
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        action_shape = () if cfg.discrete else (cfg.action_dim,)
        self.window = ContextWindow(num_envs=num_envs, context_length=cfg.context_length, observation_dim=cfg.observation_dim,
                                    action_shape=action_shape, discrete=cfg.discrete)
        self.returns_to_go = np.zeros(num_envs)
        self._undo: tuple | None = None
        self.reset()

    def reset(self, index: int | np.ndarray | None = None) -> None:
        """Start a new episode in env ``index`` (all by default)."""
        self._undo = None
        self.window.reset(index)
        self.returns_to_go[slice(None) if index is None else index] = self.target_return or 0.0

    @torch.no_grad()
    def act(self, observations: Any, rewards: Any = None) -> np.ndarray:
        """Actions for ``observations (N, D)``; ``rewards (N,)`` are those received since the previous call.

        A call that raises leaves the episodes' context as it was before it.
        """
        inputs = self.prepare(observations, rewards)
        try:
            output = self.model(**inputs)
            return self.choose(output.action_preds[:, -1])
        except BaseException:
            self.undo()
            raise

    def prepare(self, observations: Any, rewards: Any = None) -> dict[str, torch.Tensor]:
        """Check ``observations``, add them (and the rewards) to the context; the model's inputs.

        Everything is checked before the context changes; :meth:`choose` keeps the step,
        :meth:`undo` takes it back (the episode goes on as if the call never happened).
        """
        obs = self.processor.check_observations(observations, batched=True)
        if obs.shape[0] != self.window.num_envs:
            raise InputError(f"Expected observations for {self.window.num_envs} environment(s), got {obs.shape[0]}.")
        returns_to_go = self.returns_to_go
        if rewards is not None:
            if isinstance(rewards, torch.Tensor):
                rewards = rewards.detach().cpu().numpy()
            values = finite_float32(rewards, "rewards").reshape(-1)
            if values.shape[0] != self.window.num_envs:
                raise InputError(f"rewards must be {self.window.num_envs} finite number(s), got {rewards!r}.")
            returns_to_go = self.returns_to_go - np.asarray(rewards, dtype=np.float64).reshape(-1)  # float64, as before
            finite_float32(returns_to_go, f"The return-to-go after the rewards {values.tolist()}")
        self._undo = (self.window.state(), self.returns_to_go.copy())
        self.returns_to_go = returns_to_go
        self.window.push(obs, returns_to_go)
        return {k: v.clone() for k, v in self.window.inputs(self.config.input_names).items()}

    def undo(self) -> None:
        """Take back the step the last :meth:`prepare` added, if :meth:`choose` has not kept it."""
        if self._undo is not None:
            window, self.returns_to_go = self._undo
            self.window.restore(window)
            self._undo = None

    def choose(self, action_preds: torch.Tensor) -> np.ndarray:
        """Actions from the newest step's ``action_preds (N, A)``; remembered in the context.

        Raises:
            InputError: the predictions are NaN or infinite (an observation too large for the
                network's float32 arithmetic, e.g. ``3e38``); the step is taken back.
        """
        preds = action_preds.float()
        if not torch.isfinite(preds).all():
            self.undo()
            raise InputError(
                "The agent's action scores are NaN or infinite for this step: an input is too large for its float32 "
                "arithmetic (observations should be on the scale of the training environment's). The step was not added "
                "to the episode's context."
            )
        self._undo = None
        cfg = self.config
        if cfg.discrete:
            if self.deterministic:
                actions = preds.argmax(-1)
            else:
                actions = torch.distributions.Categorical(logits=preds).sample()
        else:
            actions = preds
            if not self.deterministic and isinstance(self.model, PolyheadForPPO):  # the Gaussian policy (not exported to ONNX)
                std = self.model.adapter.head.log_std.exp()
                actions = preds + std * torch.randn(preds.shape, generator=self.generator)
            low = torch.tensor(cfg.action_space["low"], dtype=torch.float32)
            high = torch.tensor(cfg.action_space["high"], dtype=torch.float32)
            actions = actions.clamp(low, high)
        if self.epsilon:
            explore = self.rng.random(len(actions)) < self.epsilon
            for i in np.nonzero(explore)[0]:
                actions[i] = torch.as_tensor(self._random_action())
        self.window.set_last_actions(actions)
        return actions.numpy()

    def _random_action(self):
        cfg = self.config
        if cfg.discrete:
            return int(self.rng.integers(cfg.action_dim))
        return self.rng.uniform(cfg.action_space["low"], cfg.action_space["high"]).astype(np.float32)


def check_target_return(value: Any) -> float:
    """A Decision Transformer's target return as a float, or an :class:`InputError` (not one number, NaN, or infinite in float32)."""
    if np.ndim(value) != 0:
        raise InputError(f"target_return must be one finite number, got {value!r}.")
    return float(finite_float32(value, "target_return"))


class RandomPolicy:
    """Uniformly random actions from an environment's action space (seeded)."""

    def __init__(self, action_space: Any, *, seed: int = 0) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def reset(self, index: Any = None) -> None:
        pass

    def act(self, observations: Any, rewards: Any = None) -> np.ndarray:
        return np.asarray([self.action_space.sample() for _ in range(len(observations))])


def lunar_lander_heuristic(env: Any, observation: np.ndarray):
    """Gymnasium's own hand-written LunarLander controller (``gymnasium.envs.box2d.lunar_lander.heuristic``).

    A PID-like rule on angle and hover height; about 264 ± 39 mean return over reset seeds
    0-19 of ``LunarLander-v3`` (the 'solved' line is 200). Works for the discrete and the
    continuous variant (it reads ``env.unwrapped.continuous``).
    """
    from gymnasium.envs.box2d.lunar_lander import heuristic

    return heuristic(env.unwrapped, observation)


def pendulum_swing_up(env: Any, observation: np.ndarray) -> np.ndarray:
    """Energy-based swing-up with a PD balancer for ``Pendulum-v1`` (about -140 mean return; random: about -1200).

    Pendulum-v1 (``m = l = 1``, ``g = 10``) obeys ``θ'' = 15 sin θ + 3u`` with ``θ = 0`` upright,
    so its energy ``E = θ'²/6 + 5 cos θ`` changes as ``dE/dt = θ' u``. Far from upright
    (``cos θ <= 0.8``) the torque pumps energy towards the upright value 5:
    ``u = 2 (5 - E) sign(θ')``; near upright a PD law balances: ``u = -(15 θ + 4 θ')``.
    Torques are clipped to the ±2 bound.
    """
    cos, sin, speed = (float(v) for v in observation)
    if cos > 0.8:
        torque = -(15.0 * np.arctan2(sin, cos) + 4.0 * speed)
    else:
        energy = speed * speed / 6.0 + 5.0 * cos
        torque = 2.0 * (5.0 - energy) * (1.0 if speed >= 0 else -1.0)
    return np.clip(np.asarray([torque], dtype=np.float32), -2.0, 2.0)


#: Hand-written behaviour policies for ``polyhead collect NAME``: name -> (controller, the env ids it is written for).
BEHAVIOUR_POLICIES: dict[str, tuple[Callable[[Any, np.ndarray], Any], tuple[str, ...]]] = {
    "lunarlander-heuristic": (lunar_lander_heuristic, ("LunarLander-v3",)),
    "pendulum-swingup": (pendulum_swing_up, ("Pendulum-v1",)),
}


class ScriptedPolicy:
    """A hand-written controller ``(env, observation) -> action`` (see :data:`BEHAVIOUR_POLICIES`).

    With ``epsilon`` > 0 each action is replaced, with that probability, by a uniformly
    random one from the action space (seeded): mixed-quality data from one controller.
    With ``noise`` > 0 (continuous actions only) zero-mean Gaussian noise of that standard
    deviation (in action units) is added to each action, clipped to the bounds.
    """

    def __init__(self, controller: Callable[[Any, np.ndarray], Any], env: Any, *, epsilon: float = 0.0, noise: float = 0.0,
                 seed: int = 0) -> None:
        from gymnasium import spaces

        if not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"epsilon must be in [0, 1], got {epsilon}.")
        if not noise >= 0.0:
            raise ConfigError(f"noise must be a non-negative standard deviation, got {noise}.")
        if noise and not isinstance(env.action_space, spaces.Box):
            raise ConfigError(f"noise (Gaussian action noise) needs continuous actions; {env.spec.id} has {env.action_space}. Use epsilon.")
        self.controller, self.env, self.epsilon, self.noise = controller, env, epsilon, noise
        self.rng = np.random.default_rng(seed)
        self.env.action_space.seed(seed)

    def reset(self, index: Any = None) -> None:
        pass

    def act(self, observations: Any, rewards: Any = None) -> np.ndarray:
        actions = []
        for obs in np.asarray(observations):
            if self.epsilon and self.rng.random() < self.epsilon:
                actions.append(self.env.action_space.sample())
                continue
            action = self.controller(self.env, obs)
            if self.noise:
                space = self.env.action_space
                action = np.clip(action + self.rng.normal(0.0, self.noise, space.shape), space.low, space.high).astype(space.dtype)
            actions.append(action)
        return np.asarray(actions)


def run_episodes(
    env_id: str,
    policy_factory: Callable[[Any], Any],
    *,
    episodes: int,
    seed: int = 0,
    record: bool = False,
    video: str | None = None,
    check_env: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` full episodes, one after the other, with reset seeds ``seed, seed + 1, ...``.

    Args:
        env_id: a Gymnasium id.
        policy_factory: ``env -> policy`` with ``reset()`` and ``act(obs (1, D), rewards) -> (1, ...)``.
        record: also return the trajectories (for :func:`collect_trajectories`).
        video: write the first episode to this ``.mp4`` (Gymnasium ``RecordVideo``; needs ``moviepy``).
        check_env: called with the environment before playing (space checks).

    Returns:
        ``{"mean_return", "std_return", "returns", "lengths", "env_steps", "steps_per_second", "trajectories"?}``.
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}.")
    env = make_env(env_id, render_mode="rgb_array" if video else None)
    if check_env is not None:
        check_env(env)
    if video:
        env = _video_env(env, video)
    policy = policy_factory(env)
    returns, lengths, trajectories = [], [], []
    started, steps = time.perf_counter(), 0
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            policy.reset()
            reward, done, total = None, False, 0.0
            trajectory = {k: [] for k in TRAJECTORY_COLUMNS}
            while not done:
                action = policy.act(np.asarray(obs)[None], None if reward is None else [reward])[0]
                env_action = int(action) if np.ndim(action) == 0 else np.asarray(action, dtype=np.float32)
                next_obs, reward, terminated, truncated, _ = env.step(env_action)
                if record:
                    trajectory["observations"].append(np.asarray(obs, dtype=np.float32).tolist())
                    trajectory["actions"].append(env_action if isinstance(env_action, int) else env_action.tolist())
                    trajectory["rewards"].append(float(reward))
                    trajectory["terminations"].append(bool(terminated))
                    trajectory["truncations"].append(bool(truncated))
                total += float(reward)
                steps += 1
                done = terminated or truncated
                obs = next_obs
            returns.append(total)
            lengths.append(len(trajectory["rewards"]) if record else None)
            if record:
                trajectories.append(trajectory)
    finally:
        env.close()  # RecordVideo writes the file on close
    seconds = time.perf_counter() - started
    if video:
        from pathlib import Path

        written = Path(video).with_name(f"{Path(video).stem}-episode-0.mp4")  # RecordVideo's own name
        if written.is_file():
            written.replace(video)
    result: dict[str, Any] = {
        "env_id": env_id, "episodes": episodes, "seed": seed,
        "mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
        "min_return": float(np.min(returns)), "max_return": float(np.max(returns)),
        "returns": returns, "env_steps": steps, "steps_per_second": steps / seconds if seconds else float("inf"),
    }
    if record:
        result["lengths"] = lengths
        result["trajectories"] = trajectories
    if video:
        result["video"] = video
    return result


def _video_env(env: Any, path: str):
    """Wrap ``env`` in Gymnasium's ``RecordVideo`` writing the first episode to ``path`` (moviepy writes the mp4)."""
    from pathlib import Path

    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise ConfigError("--video needs moviepy (Gymnasium's RecordVideo writes mp4 files with it): pip install moviepy") from None
    from gymnasium.wrappers import RecordVideo

    target = Path(path)
    if target.suffix != ".mp4":
        raise ConfigError(f"--video must name an .mp4 file, got {path}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    return RecordVideo(env, video_folder=str(target.parent), name_prefix=target.stem, episode_trigger=lambda e: e == 0,
                       disable_logger=True)


def collect_trajectories(env_id: str, policy_factory: Callable[[Any], Any], *, episodes: int, seed: int = 0,
                         behaviour: str = "policy", check_env: Callable[[Any], None] | None = None):
    """Roll a policy out into a ``datasets.Dataset``: one row per episode.

    Columns: ``observations`` (list of float lists), ``actions``, ``rewards``,
    ``terminations``, ``truncations``, ``episode_return``, ``length``, ``behaviour``.
    The dataset's ``info.description`` holds ``{"env_id", "observation_space", "action_space"}`` as JSON.
    """
    import datasets

    from .configuration import space_description

    result = run_episodes(env_id, policy_factory, episodes=episodes, seed=seed, record=True, check_env=check_env)
    rows = result["trajectories"]
    probe = make_env(env_id)
    meta = {"env_id": env_id, "observation_space": space_description(probe.observation_space),
            "action_space": space_description(probe.action_space)}
    probe.close()
    table = {k: [r[k] for r in rows] for k in TRAJECTORY_COLUMNS}
    table["episode_return"] = [float(sum(r["rewards"])) for r in rows]
    table["length"] = [len(r["rewards"]) for r in rows]
    table["behaviour"] = [behaviour] * len(rows)
    dataset = datasets.Dataset.from_dict(table, info=datasets.DatasetInfo(description=json.dumps(meta)))
    return dataset
