"""RL agent configs: what every agent shares (:class:`RLConfig`), and one config per algorithm.

* :class:`PPOConfig` (``model_type: polyhead-ppo``): PPO-GTrXL, trained online;
* :class:`DecisionTransformerConfig` (``model_type: polyhead-decision-transformer``): trained offline.

Both record the environment (id and spaces) the agent was built for, its memory window and
the statistics observations are normalised with.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError, UnknownNameError, did_you_mean
from polyhead.validation import check_positive

__all__ = ["RLConfig", "PPOConfig", "DecisionTransformerConfig", "ALGORITHMS", "check_env_id", "space_description"]

_FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 4, "dropout": 0.0, "position": "learned",
            "max_length": 64, "residual": "gru"}


def check_env_id(env_id: Any) -> str:
    """Check that ``env_id`` is an id in Gymnasium's registry, and return it.

    Gymnasium reads ``"module:Env-v0"`` as "import ``module``, then make ``Env-v0``", which
    runs whatever that module holds. An id read from a model folder, a trajectory dataset or
    the command line must never do that, so polyhead accepts only ids already registered:
    Gymnasium's own environments (Box2D's included) and any the caller registered before.
    Every environment polyhead makes, and every agent's config, goes through this check.

    Raises:
        ConfigError: ``env_id`` is not a string, or has a ``module:`` part.
        UnknownNameError: ``env_id`` is not registered (with a did-you-mean hint).
    """
    from gymnasium.envs.registration import registry

    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"env_id must be a Gymnasium id such as 'CartPole-v1', got {env_id!r}.")
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        hint = f" Did you mean {name!r}?" if name in registry else did_you_mean(name, registry)
        raise ConfigError(
            f"env_id {env_id!r} has a module part ({module!r}): Gymnasium would import that module, running its code. "
            f"polyhead only makes environments already in Gymnasium's registry; expected an id such as 'CartPole-v1' "
            f"(register your own environment before calling polyhead).{hint}"
        )
    if env_id not in registry:
        raise UnknownNameError(
            f"Unknown Gymnasium environment {env_id!r}: it is not in Gymnasium's registry.{did_you_mean(env_id, registry)} "
            "Expected a registered id such as 'CartPole-v1' (gymnasium.pprint_registry() lists them)."
        )
    return env_id


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


def _check_finite(name: str, values: Any) -> list[float]:
    """``values`` as floats, or a :class:`ConfigError` unless each is a number finite in float32 (what the agent computes in)."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numbers, got {values!r}.") from None
    if not all(math.isfinite(v) and abs(v) <= _FLOAT32_MAX for v in floats):
        raise ConfigError(f"{name} must be finite numbers (|x| <= {_FLOAT32_MAX:.3g}, float32), got {values!r}.")
    return floats


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
    if action:  # actions are clamped to these bounds: a NaN bound would make every action NaN
        try:
            low, high = ([float(v) for v in space[b]] for b in ("low", "high"))
        except (TypeError, ValueError):
            raise ConfigError(f"{name}.low and .high must be numbers, got {space['low']!r} and {space['high']!r}.") from None
        if any(math.isnan(v) for v in low + high) or any(lo > hi for lo, hi in zip(low, high)):
            raise ConfigError(f"{name} bounds must be numbers with low <= high (no NaN), got low={low} and high={high}.")
    return space


class RLConfig(PolyheadConfig):
    """What every RL agent's config holds: the environment it acts in and how it reads it.

    The shared base of :class:`PPOConfig` and :class:`DecisionTransformerConfig` (build one of
    those; the model section's ``algorithm`` key picks it in a config file).

    Attributes:
        backbone: sequence backbone, ``{"type": "transformer", ...}``; the agent attends causally
            (chosen per call, so any backbone that can is accepted); for PPO-GTrXL set ``residual="gru"``.
        head: the algorithm's head (see the subclasses).
        env_id: the Gymnasium environment the agent was trained for; an id in Gymnasium's
            registry (see :func:`check_env_id`: ``"module:Env"`` ids are refused).
        observation_space: ``{"type": "box", "shape": [D], "dtype", "low", "high"}``.
        action_space: ``{"type": "discrete", "n": N}`` or ``{"type": "box", "shape": [A], "low", "high"}``.
        context_length: steps of history the agent reads, ``K`` (its memory window).
        observation_mean / observation_std: per-feature statistics observations are
            normalised with (from the training data), or ``None``.

    Class attributes:
        algorithm: the name a config file's ``model.algorithm`` gives this config class.
        input_names: the model's inputs, in order: what the rollout feeds it and ONNX exports.
    """

    task = "rl"
    algorithm: ClassVar[str] = ""
    input_names: ClassVar[tuple[str, ...]] = ("observations", "attention_mask")

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    env_id: str | None = None
    observation_space: dict = dataclasses.field(default_factory=lambda: {"type": "box", "shape": [4]})
    action_space: dict = dataclasses.field(default_factory=lambda: {"type": "discrete", "n": 2})
    context_length: int = 8
    observation_mean: list | None = None
    observation_std: list | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if not self.algorithm:
            raise ConfigError("RLConfig is the shared base of the RL agents' configs; build a PPOConfig or a DecisionTransformerConfig.")
        if self.env_id is not None:  # also when loaded from a model folder: config.json is not trusted to name modules
            self.env_id = check_env_id(self.env_id)
        check_positive("context_length", self.context_length)
        self.observation_space = _check_space("observation_space", self.observation_space, action=False)
        self.action_space = _check_space("action_space", self.action_space, action=True)
        for name in ("observation_mean", "observation_std"):
            value = getattr(self, name)
            if value is not None:
                value = _check_finite(name, value)
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


class PPOConfig(RLConfig):
    """Configuration of :class:`~polyhead.tasks.rl.PolyheadForPPO` (PPO-GTrXL, trained online).

    Attributes (beside :class:`RLConfig`'s):
        head: ``{"type": "actor_critic", ...}`` (the actor-critic head owns PPO's clipped loss).

    Example:
        >>> PPOConfig(env_id="CartPole-v1", context_length=4).model_type
        'polyhead-ppo'
    """

    model_type = "polyhead-ppo"
    algorithm: ClassVar[str] = "ppo"

    head: dict = dataclasses.field(default_factory=lambda: {"type": "actor_critic"})


class DecisionTransformerConfig(RLConfig):
    """Configuration of :class:`~polyhead.tasks.rl.PolyheadForDecisionTransformer` (trained offline).

    Attributes (beside :class:`RLConfig`'s):
        head: ``{"type": "dt_action", ...}``.
        max_timestep: size of the timestep embedding (longest episode).
        return_scale: returns-to-go are divided by this before embedding.
        target_return: the return the agent is conditioned on by default.
    """

    model_type = "polyhead-decision-transformer"
    algorithm: ClassVar[str] = "decision_transformer"
    input_names: ClassVar[tuple[str, ...]] = ("observations", "attention_mask", "actions", "returns_to_go", "timesteps")

    head: dict = dataclasses.field(default_factory=lambda: {"type": "dt_action"})
    max_timestep: int = 1024
    return_scale: float = 1.0
    target_return: float | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        check_positive("max_timestep", self.max_timestep)
        check_positive("return_scale", self.return_scale, integer=False)
        _check_finite("return_scale", [self.return_scale])
        if self.target_return is not None:
            self.target_return = _check_finite("target_return", [self.target_return])[0]
        super().__post_init__(**kwargs)


#: ``model.algorithm`` in a config file -> the config class it builds
ALGORITHMS: dict[str, type[RLConfig]] = {cls.algorithm: cls for cls in (PPOConfig, DecisionTransformerConfig)}
