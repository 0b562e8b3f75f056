"""RL agents: an RL stem -> the shared backbone, attending causally -> an RL head; one adapter per algorithm.

* :class:`PolyheadForPPO` (:class:`PPOAdapter`): the observation stem embeds each of the last
  ``K`` observations as one token; the backbone (with GTrXL gating, ``residual="gru"``) is the
  agent's memory over that window; the ``actor_critic`` head reads every token. PPO's loss
  needs rollout targets: :mod:`polyhead.tasks.rl.ppo` computes it through the head's ``loss``.
* :class:`PolyheadForDecisionTransformer` (:class:`DecisionTransformerAdapter`, Chen et al.,
  NeurIPS 2021): the trajectory stem embeds return-to-go, state and action of each step as
  three tokens (plus a timestep embedding); the ``dt_action`` head predicts each action from
  its state token.

Both adapters normalise observations with the statistics saved in the config
(``adapter.observation_mean`` / ``adapter.observation_std``) and keep a continuous action
space's bounds (``adapter.action_low`` / ``adapter.action_high``). The exported network is
tensors in, tensors out; sampling, argmax and the rolling context live in
:mod:`polyhead.tasks.rl.rollout`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.backbones._base import ComputedBuffers
from polyhead.errors import ConfigError, InputError
from polyhead.heads.rl import ActorCriticHead, DecisionTransformerActionHead
from polyhead.modeling import PolyheadModel

from .configuration import DecisionTransformerConfig, PPOConfig, RLConfig

__all__ = [
    "DecisionTransformerAdapter",
    "DecisionTransformerOutput",
    "PPOAdapter",
    "PPOOutput",
    "PolyheadForDecisionTransformer",
    "PolyheadForPPO",
]


@dataclass
class PPOOutput(ModelOutput):
    """Output of :class:`PolyheadForPPO`.

    Attributes:
        loss: always ``None``: PPO's loss needs rollout targets (old log-probabilities,
            advantages, returns); :func:`~polyhead.tasks.rl.ppo.train_ppo` computes it with
            the head's ``loss``.
        action_preds: ``(B, K, A)`` action logits (discrete), or the Gaussian policy's mean.
        state_values: ``(B, K)`` the critic's state values ``V(s)`` (not ``values``: that name would hide
            ``ModelOutput.values()``; the exported graph's output keeps the name ``values``).
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    action_preds: torch.Tensor | None = None
    state_values: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class DecisionTransformerOutput(ModelOutput):
    """Output of :class:`PolyheadForDecisionTransformer`.

    Attributes:
        loss: the action loss over real steps; set exactly when ``labels`` are given.
        action_preds: ``(B, K, A)`` action logits (discrete), or actions in the environment's bounds.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    action_preds: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class _RLObservationEmbedding(nn.Module):
    """``(B, K, D_obs)`` normalised observations -> ``(B, K, D)`` tokens."""

    def __init__(self, *, observation_dim: int, dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(observation_dim, dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.projection(observations)


class _RLTrajectoryEmbedding(nn.Module):
    """Returns-to-go, states and actions -> interleaved ``(B, 3K, D)`` tokens ``R_1, s_1, a_1, R_2, ...``."""

    def __init__(self, *, observation_dim: int, action_dim: int, discrete: bool, max_timestep: int, dim: int) -> None:
        super().__init__()
        self.discrete = discrete
        self.state = nn.Linear(observation_dim, dim)
        self.ret = nn.Linear(1, dim)
        self.action = nn.Embedding(action_dim, dim) if discrete else nn.Linear(action_dim, dim)
        self.timestep = nn.Embedding(max_timestep, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, observations: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        time = self.timestep(timesteps)  # (B, K, D)
        tokens = torch.stack((self.ret(returns_to_go) + time, self.state(observations) + time, self.action(actions) + time), dim=2)
        return self.norm(tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]))


class _RLAdapter(TaskAdapter, ComputedBuffers):
    """What both RL adapters share: the observation window's checks and normalisation, the action bounds.

    Class attributes:
        tokens_per_step: backbone tokens per environment step (the window is ``K`` steps).
    """

    accepted_kinds = frozenset({"sequence"})
    needs_causal = True
    tokens_per_step: ClassVar[int] = 1

    def __init__(self, config: RLConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        tokens = config.context_length * self.tokens_per_step
        if backbone.max_length is not None and tokens > backbone.max_length:
            raise ConfigError(
                f"context_length={config.context_length} makes {tokens} tokens, more than the backbone's "
                f"max_length ({backbone.max_length}); raise backbone.max_length."
            )
        self.config = config
        obs_dim = config.observation_dim
        self.register_buffer("observation_mean", torch.empty(obs_dim), persistent=True)
        self.register_buffer("observation_std", torch.empty(obs_dim), persistent=True)
        if not config.discrete:
            self.register_buffer("action_low", torch.empty(config.action_dim), persistent=True)
            self.register_buffer("action_high", torch.empty(config.action_dim), persistent=True)
        self.reset_computed_buffers()

    def reset_computed_buffers(self) -> None:
        """The observation statistics (``config.observation_mean`` / ``_std``, default 0 / 1) and the action bounds."""
        cfg = self.config
        obs_dim = cfg.observation_dim
        init.copy_(self.observation_mean, torch.tensor(cfg.observation_mean or [0.0] * obs_dim, dtype=torch.float32))
        init.copy_(self.observation_std, torch.tensor(cfg.observation_std or [1.0] * obs_dim, dtype=torch.float32))
        if not cfg.discrete:
            init.copy_(self.action_low, torch.tensor(cfg.action_space["low"], dtype=torch.float32))
            init.copy_(self.action_high, torch.tensor(cfg.action_space["high"], dtype=torch.float32))

    # -- checks (shapes only: values are checked by the processor, outside the exported graph)
    def check(self, name: str, tensor: torch.Tensor | None, shape: tuple, floating: bool | None) -> None:
        """Raise :class:`InputError` unless ``tensor`` is given, has ``shape`` (names match any size) and the dtype kind."""
        if tensor is None:
            raise InputError(f"{type(self).__name__} needs {name} (shape {_shape_text(shape)}).")
        if tensor.dim() != len(shape) or any(isinstance(s, int) and s != t for s, t in zip(shape, tensor.shape)):
            raise InputError(f"{name} must have shape {_shape_text(shape)}, got {tuple(tensor.shape)}.")
        if floating is True and not tensor.is_floating_point():
            raise InputError(f"{name} must be a floating-point tensor, got {tensor.dtype}.")
        if floating is False and tensor.is_floating_point():
            raise InputError(f"{name} must be an integer tensor, got {tensor.dtype}.")

    def window(self, observations: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Check a window of ``K`` steps; returns the normalised observations and ``real (B, K)`` (``True`` at real steps)."""
        cfg = self.config
        self.check("observations", observations, ("B", "K", cfg.observation_dim), True)
        length = observations.shape[1]
        if length > cfg.context_length:
            raise InputError(f"observations has {length} steps; this agent reads at most context_length={cfg.context_length}.")
        if attention_mask is None:
            attention_mask = torch.ones(observations.shape[:2], dtype=torch.long, device=observations.device)
        # batch sizes are not compared here: a shape comparison becomes an export guard (the ops below check them)
        self.check("attention_mask", attention_mask, ("B", length), None)
        return (observations - self.observation_mean) / self.observation_std, attention_mask.bool()

    def normalised_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Continuous actions in the environment's bounds -> ``[-1, 1]``."""
        return ((actions - self.action_low) / (self.action_high - self.action_low) * 2 - 1).clamp(-1, 1)


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class PPOAdapter(_RLAdapter):
    """PPO's actor-critic on a sequence backbone: one token per observation of the window, attending causally.

    Reference: Schulman et al., "Proximal Policy Optimization Algorithms" (2017); with
    ``residual="gru"`` on the backbone, PPO-GTrXL (Parisotto et al., ICML 2020).
    """

    output_class = PPOOutput
    head_base = ActorCriticHead

    def __init__(self, config: PPOConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        self.stem = _RLObservationEmbedding(observation_dim=config.observation_dim, dim=backbone.dim)
        self.head = self.build_head(config, backbone, action_dim=config.action_dim, discrete=config.discrete)

    def embed(self, observations: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Embedded:
        observations, real = self.window(observations, attention_mask)
        return Embedded(x=self.stem(observations), padding_mask=~real, is_causal=True)

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        action_preds, state_values = self.head.split(self.head(features))
        return {"action_preds": action_preds, "state_values": state_values}

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, **labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise InputError(
            "A PPO agent has no supervised labels: PPO's loss needs rollout targets (ActorCriticHead.loss); "
            "train it with `polyhead train` and a PPO config."
        )

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> PPOOutput:
        return PPOOutput(loss=None, action_preds=predictions["action_preds"], state_values=predictions["state_values"])


class DecisionTransformerAdapter(_RLAdapter):
    """The Decision Transformer on a sequence backbone: (return-to-go, state, action) tokens per step, attending causally.

    Each step's action is predicted from its state token, which comes before the action's
    token: the action at step ``t`` never reaches the prediction at ``t``.

    Reference: Chen et al., "Decision Transformer: Reinforcement Learning via Sequence Modeling" (NeurIPS 2021).
    """

    output_class = DecisionTransformerOutput
    head_base = DecisionTransformerActionHead
    tokens_per_step = 3

    def __init__(self, config: DecisionTransformerConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        self.stem = _RLTrajectoryEmbedding(observation_dim=config.observation_dim, action_dim=config.action_dim,
                                           discrete=config.discrete, max_timestep=config.max_timestep, dim=backbone.dim)
        self.head = self.build_head(config, backbone, action_dim=config.action_dim, discrete=config.discrete)

    def action_shape(self, length: int) -> tuple:
        return ("B", length) if self.config.discrete else ("B", length, self.config.action_dim)

    def embed(
        self,
        observations: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> Embedded:
        cfg = self.config
        observations, real = self.window(observations, attention_mask)
        length = observations.shape[1]
        self.check("actions", actions, self.action_shape(length), not cfg.discrete)
        self.check("returns_to_go", returns_to_go, ("B", length, 1), True)
        self.check("timesteps", timesteps, ("B", length), False)
        action_in = actions if cfg.discrete else self.normalised_actions(actions)
        tokens = self.stem(observations, action_in, returns_to_go / cfg.return_scale, timesteps.clamp(0, cfg.max_timestep - 1))
        padding = (~real).repeat_interleave(self.tokens_per_step, dim=1)
        return Embedded(x=tokens, padding_mask=padding, is_causal=True, context={"real": real, "length": length})

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        tokens = features[0]
        state_tokens = tokens.reshape(tokens.shape[0], embedded.context["length"], self.tokens_per_step, -1)[:, :, 1]
        raw = self.head((state_tokens,))  # logits, or tanh actions in [-1, 1]
        if self.config.discrete:
            return {"raw": raw, "action_preds": raw}
        return {"raw": raw, "action_preds": self.action_low + (raw + 1) / 2 * (self.action_high - self.action_low)}

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.check("labels", labels, self.action_shape(embedded.context["length"]), not cfg.discrete)
        target = labels if cfg.discrete else self.normalised_actions(labels)
        return self.head.loss(predictions["raw"], {"actions": target, "mask": embedded.context["real"]})

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded,
               losses: dict[str, torch.Tensor] | None) -> DecisionTransformerOutput:
        return DecisionTransformerOutput(loss=None if losses is None else losses["loss"], action_preds=predictions["action_preds"])


class PolyheadForPPO(PolyheadModel):
    """A PPO actor-critic agent: a sequence backbone + :class:`PPOAdapter`.

    Example:
        >>> model = PolyheadForPPO(PPOConfig(context_length=4))
        >>> out = model(observations=torch.randn(2, 4, 4), attention_mask=torch.ones(2, 4, dtype=torch.long))
        >>> out.action_preds.shape, out.state_values.shape
        (torch.Size([2, 4, 2]), torch.Size([2, 4]))
    """

    config_class = PPOConfig
    adapter_class = PPOAdapter
    main_input_name = "observations"
    input_modalities = "other"

    def forward(
        self,
        observations: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> PPOOutput | tuple:
        """Policy and value at each step of a window of ``K`` steps (left-padded; ``attention_mask`` 1 at real steps).

        Args:
            observations: ``(B, K, D_obs)`` raw observations (normalised inside).
            attention_mask: ``(B, K)`` 1 at real steps, 0 at padding; default all real.
            labels: refused with an :class:`InputError`: PPO learns from rollouts, not labels.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        return self.run({"observations": observations, "attention_mask": attention_mask}, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)


class PolyheadForDecisionTransformer(PolyheadModel):
    """A Decision Transformer: a sequence backbone + :class:`DecisionTransformerAdapter`.

    Example:
        >>> config = DecisionTransformerConfig(context_length=4, target_return=100.0)
        >>> model = PolyheadForDecisionTransformer(config)
        >>> out = model(observations=torch.randn(2, 4, 4), actions=torch.zeros(2, 4, dtype=torch.long),
        ...             returns_to_go=torch.full((2, 4, 1), 100.0), timesteps=torch.arange(4).expand(2, 4))
        >>> out.action_preds.shape
        torch.Size([2, 4, 2])
    """

    config_class = DecisionTransformerConfig
    adapter_class = DecisionTransformerAdapter
    main_input_name = "observations"
    input_modalities = "other"

    def forward(
        self,
        observations: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> DecisionTransformerOutput | tuple:
        """Predict the action of each step of a window of ``K`` steps (left-padded; ``attention_mask`` 1 at real steps).

        Args:
            observations: ``(B, K, D_obs)`` raw observations (normalised inside).
            attention_mask: ``(B, K)`` 1 at real steps, 0 at padding; default all real.
            actions: ``(B, K)`` int64 previous actions, or ``(B, K, A)`` continuous ones; the
                action at a step is never seen by that step's prediction.
            returns_to_go: ``(B, K, 1)`` returns still to collect, in environment units.
            timesteps: ``(B, K)`` int64 step index within the episode.
            labels: the actions to predict, like ``actions``; when given, ``loss`` is set.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        inputs = {"observations": observations, "attention_mask": attention_mask, "actions": actions,
                  "returns_to_go": returns_to_go, "timesteps": timesteps}
        return self.run(inputs, {"labels": labels}, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
