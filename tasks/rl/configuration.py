"""``RLConfig``: the architecture of an RL agent and the environment spaces it was built for."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive, look_up_option

__all__ = ["RLConfig", "ALGORITHMS", "space_description"]

ALGORITHMS = ("ppo", "decision_transformer")


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 4, "causal": True, "dropout": 0.0,
            "position": "learned", "max_length": 64, "residual": "gru"}


def _default_head() -> dict:
    return {"type": "actor_critic"}


def space_description(space: Any) -> dict:
    """A JSON description of a flat Gymnasium ``Box`` or ``Discrete`` space."""
    import numpy as np
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        return {"type": "box", "shape": [int(s) for s in space.shape], "dtype": str(np.dtype(space.dtype)),
                "low": np.asarray(space.low, dtype=np.float64).reshape(-1).tolist(),
                "high": np.asarray(space.high, dtype=np.float64).reshape(-1).tolist()}
    raise ConfigError(f"polyhead RL agents handle flat Box and Discrete spaces, got {space}.")


def _check_space(name: str, space: Any, *, action: bool) -> dict:
    if not isinstance(space, Mapping) or space.get("type") not in ("discrete", "box"):
        raise ConfigError(f"{name} must be {{'type': 'discrete', 'n': N}} or {{'type': 'box', 'shape': [D], ...}}, got {space!r}.")
    space = dict(space)
    if space["type"] == "discrete":
        if action is False:
            raise ConfigError(f"{name}: discrete observations are not supported; use a Box observation space.")
        check_positive(f"{name}.n", space.get("n"))
        return space
    shape = list(space.get("shape") or [])
    if len(shape) != 1 or not isinstance(shape[0], int) or shape[0] < 1:
        raise ConfigError(f"{name} must be a flat Box (shape [D]), got shape {shape!r}.")
    space["shape"] = shape
    for bound in ("low", "high"):
        if bound in space and len(space[bound]) != shape[0]:
            raise ConfigError(f"{name}.{bound} must have {shape[0]} values, got {len(space[bound])}.")
    if action and not ("low" in space and "high" in space):
        raise ConfigError(f"{name}: a continuous action space needs 'low' and 'high' bounds.")
    return space


class RLConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForDecisionMaking`.

    Attributes:
        backbone: sequence backbone, ``{"type": "transformer", "causal": True, ...}``; for
            PPO-GTrXL set ``residual="gru"``.
        head: ``{"type": "actor_critic"}`` (PPO) or ``{"type": "dt_action"}`` (Decision Transformer).
        algorithm: ``"ppo"`` (online) or ``"decision_transformer"`` (offline).
        env_id: the Gymnasium environment the agent was trained for.
        observation_space: ``{"type": "box", "shape": [D], "dtype", "low", "high"}``.
        action_space: ``{"type": "discrete", "n": N}`` or ``{"type": "box", "shape": [A], "low", "high"}``.
        context_length: steps of history the agent reads, ``K`` (its memory window).
        max_timestep: size of the Decision Transformer's timestep embedding (longest episode).
        return_scale: returns-to-go are divided by this before embedding.
        target_return: the return a Decision Transformer is conditioned on by default.
        observation_mean / observation_std: per-feature statistics observations are
            normalised with (from the training data), or ``None``.
    """

    model_type = "polyhead-rl"
    task = "rl"

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    algorithm: str = "ppo"
    env_id: str | None = None
    observation_space: dict = dataclasses.field(default_factory=lambda: {"type": "box", "shape": [4]})
    action_space: dict = dataclasses.field(default_factory=lambda: {"type": "discrete", "n": 2})
    context_length: int = 8
    max_timestep: int = 1024
    return_scale: float = 1.0
    target_return: float | None = None
    observation_mean: list | None = None
    observation_std: list | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        look_up_option(self.algorithm, {a: a for a in ALGORITHMS}, "RL algorithm")
        check_positive("context_length", self.context_length)
        check_positive("max_timestep", self.max_timestep)
        check_positive("return_scale", self.return_scale, integer=False)
        self.observation_space = _check_space("observation_space", self.observation_space, action=False)
        self.action_space = _check_space("action_space", self.action_space, action=True)
        for name in ("observation_mean", "observation_std"):
            value = getattr(self, name)
            if value is not None:
                value = [float(v) for v in value]
                if len(value) != self.observation_dim:
                    raise ConfigError(f"{name} must have {self.observation_dim} values, got {len(value)}.")
                if name == "observation_std" and min(value) <= 0:
                    raise ConfigError("observation_std must be positive.")
                setattr(self, name, value)
        super().__post_init__(**kwargs)

    @property
    def observation_dim(self) -> int:
        return int(self.observation_space["shape"][0])

    @property
    def discrete(self) -> bool:
        return self.action_space["type"] == "discrete"

    @property
    def action_dim(self) -> int:
        """Number of discrete actions, or the size of a continuous action."""
        return int(self.action_space["n"]) if self.discrete else int(self.action_space["shape"][0])

    @property
    def tokens_per_step(self) -> int:
        """Backbone tokens per environment step: (return, state, action) for DT, one for PPO."""
        return 3 if self.algorithm == "decision_transformer" else 1
