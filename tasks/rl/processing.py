"""``RLFeatureExtractor``: checks observations and environments against the spaces an agent was built for.

Saved with the model (``preprocessor_config.json``), so a loaded agent refuses an
environment whose spaces differ from its training environment's, and observations of
the wrong shape, dtype, or with NaN / infinite values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import FeatureExtractionMixin

from polyhead.errors import ConfigError, InputError, UnknownNameError

from .configuration import DecisionTransformerConfig, RLConfig, check_env_id, space_description

__all__ = ["RLFeatureExtractor", "check_env_id", "finite_float32", "make_env"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite_float32(values: Any, name: str) -> np.ndarray:
    """``values`` (numbers, a list or an array of them) as float32, or an :class:`InputError`.

    Every value must be a finite number both as given and after the cast: ``1e300`` is
    finite in float64 but infinite in float32, the precision agents compute in.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        raw = np.asarray(values)
        array = raw.astype(np.float64) if raw.dtype.kind in "biuf" else None
    except (TypeError, ValueError):
        array = None
    if array is None:
        raise InputError(f"{name} must be numbers, got {values!r}.")
    if not np.isfinite(array).all():
        raise InputError(f"{name} must be finite numbers, got NaN or infinite values: {_preview(array)}.")
    if (np.abs(array) > _FLOAT32_MAX).any():
        raise InputError(f"{name} must be finite in float32 (|x| <= {_FLOAT32_MAX:.3g}, the precision the agent computes in), "
                         f"got {_preview(array)}.")
    return array.astype(np.float32)


def _preview(array: np.ndarray, limit: int = 8) -> str:
    flat = np.asarray(array).reshape(-1)
    text = ", ".join(f"{v:.6g}" for v in flat[:limit].tolist())
    return f"[{text}{', ...' if flat.size > limit else ''}]" if np.ndim(array) else text


def make_env(env_id: str, **kwargs: Any):
    """``gymnasium.make(env_id)`` for a registered id (:func:`check_env_id`), with polyhead errors."""
    import gymnasium as gym

    check_env_id(env_id)  # before Gymnasium sees it: a "module:Env" id would import the module
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(f"{env_id} needs a package that is not installed: {err}") from None
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, NamespaceNotFound (with gymnasium's own hint)
        raise UnknownNameError(f"Unknown Gymnasium environment {env_id!r}: {err}") from None


class RLFeatureExtractor(FeatureExtractionMixin):
    """The observation/action spaces of an agent and the checks that go with them.

    Args:
        observation_space: ``{"type": "box", "shape": [D], ...}`` (see :class:`RLConfig`).
        action_space: ``{"type": "discrete", "n": N}`` or ``{"type": "box", "shape": [A], "low", "high"}``.
        env_id: the environment the agent was trained in.
        context_length: steps of history the agent reads.
        algorithm: ``"ppo"`` or ``"decision_transformer"``.
        target_return: default return-to-go a Decision Transformer is conditioned on.
    """

    model_input_names = ["observations", "attention_mask"]

    def __init__(
        self,
        observation_space: dict | None = None,
        action_space: dict | None = None,
        env_id: str | None = None,
        context_length: int = 8,
        algorithm: str = "ppo",
        target_return: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.observation_space = dict(observation_space or {"type": "box", "shape": [1]})
        self.action_space = dict(action_space or {"type": "discrete", "n": 2})
        self.env_id = env_id
        self.context_length = int(context_length)
        self.algorithm = algorithm
        self.target_return = target_return

    @classmethod
    def from_config(cls, config: RLConfig) -> "RLFeatureExtractor":
        """The processor of an agent built from ``config`` (a :class:`PPOConfig` or :class:`DecisionTransformerConfig`)."""
        target_return = config.target_return if isinstance(config, DecisionTransformerConfig) else None
        return cls(observation_space=config.observation_space, action_space=config.action_space, env_id=config.env_id,
                   context_length=config.context_length, algorithm=config.algorithm, target_return=target_return)

    @property
    def observation_dim(self) -> int:
        return int(self.observation_space["shape"][0])

    def check_observations(self, observations: Any, *, batched: bool = False) -> np.ndarray:
        """One observation ``(D,)`` (or a batch ``(N, D)``) -> float32, or an :class:`InputError`."""
        if isinstance(observations, torch.Tensor):
            observations = observations.detach().cpu().numpy()
        if isinstance(observations, (list, tuple)):
            try:
                observations = np.asarray(observations, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("An observation given as a list must hold numbers.") from None
        if not isinstance(observations, np.ndarray):
            raise InputError(f"Expected an observation as a numpy array, list or tensor, got {type(observations).__name__}.")
        if observations.dtype.kind not in "iuf" or observations.dtype == np.bool_:
            raise InputError(f"Observations must be numeric (this agent's space is {self.observation_space.get('dtype', 'float32')}), got dtype {observations.dtype}.")
        want = (self.observation_dim,)
        shape = observations.shape[1:] if batched else observations.shape
        if tuple(shape) != want or (batched and observations.ndim != 2):
            expected = f"(N, {self.observation_dim})" if batched else f"({self.observation_dim},)"
            raise InputError(f"This agent ({self.env_id or 'RL agent'}) takes observations of shape {expected}, got {observations.shape}.")
        if not np.isfinite(observations).all():
            raise InputError(f"Observation contains NaN or infinite values: {_preview(observations)}.")
        if (np.abs(observations) > _FLOAT32_MAX).any():  # finite as given, infinite after the float32 cast
            raise InputError(f"Observation values must be finite in float32 (|x| <= {_FLOAT32_MAX:.3g}), got {_preview(observations)}.")
        return observations.astype(np.float32)

    def check_env(self, env: Any) -> None:
        """Refuse an environment whose observation or action space differs from the agent's."""
        got_obs = space_description(getattr(env, "single_observation_space", env.observation_space))
        got_act = space_description(getattr(env, "single_action_space", env.action_space))
        name = getattr(getattr(env, "spec", None), "id", None) or "the environment"
        for what, got, want in (("observation", got_obs, self.observation_space), ("action", got_act, self.action_space)):
            keys = ("type", "n") if want["type"] == "discrete" else ("type", "shape", "low", "high")
            if any(not _same(got.get(k), want.get(k)) for k in keys if k in want or k in got):
                raise InputError(
                    f"{name} has the {what} space {_short(got)}, but this agent was trained on "
                    f"{self.env_id or 'an environment'} with {_short(want)}."
                )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)
    return a == b


def _short(space: dict) -> str:
    if space["type"] == "discrete":
        return f"Discrete({space['n']})"
    return f"Box(shape={tuple(space['shape'])})"
