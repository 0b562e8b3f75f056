"""``PolyheadForDecisionMaking``: RL stems -> the shared causal Transformer -> an RL head.

Two algorithms, one model class (the config's ``algorithm``):

* ``"ppo"``: the observation stem embeds each of the last ``K`` observations as one
  token; the shared Transformer (with GTrXL gating, ``residual="gru"``) is the agent's
  memory over that window; the actor-critic head reads every token.
* ``"decision_transformer"`` (Chen et al., NeurIPS 2021): the trajectory stem embeds
  return-to-go, state and action of each step as three tokens (plus a timestep
  embedding); the causal Transformer predicts each action from its state token.

The exported network is tensors in, tensors out; sampling, argmax and the rolling
context live in :mod:`polyhead.tasks.rl.rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from polyhead.errors import ConfigError, InputError
from polyhead.heads.rl import ActorCriticHead, DecisionTransformerActionHead
from polyhead.modeling import PolyheadPreTrainedModel
from polyhead.registry import BACKBONES, HEADS, build, get

from .configuration import RLConfig

__all__ = ["DecisionMakingOutput", "PolyheadForDecisionMaking"]


@dataclass
class DecisionMakingOutput(ModelOutput):
    """Output of :class:`PolyheadForDecisionMaking`.

    Attributes:
        loss: the Decision Transformer's action loss over real steps; set exactly when
            ``labels`` are given.
        action_preds: ``(B, K, A)``: action logits (discrete), or actions in the
            environment's bounds (continuous; the Gaussian mean for PPO).
        values: ``(B, K)`` the critic's state values (PPO), else ``None``.
    """

    loss: torch.Tensor | None = None
    action_preds: torch.Tensor | None = None
    values: torch.Tensor | None = None


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


class PolyheadForDecisionMaking(PolyheadPreTrainedModel):
    """An RL agent: PPO actor-critic or Decision Transformer on the shared backbone.

    Example:
        >>> model = PolyheadForDecisionMaking(RLConfig(algorithm="ppo", context_length=4))
        >>> out = model(observations=torch.randn(2, 4, 4), attention_mask=torch.ones(2, 4, dtype=torch.long))
        >>> out.action_preds.shape, out.values.shape
        (torch.Size([2, 4, 2]), torch.Size([2, 4]))
    """

    config_class = RLConfig
    main_input_name = "observations"
    input_modalities = "other"

    def __init__(self, config: RLConfig) -> None:
        super().__init__(config)
        is_dt = config.algorithm == "decision_transformer"
        head_cls = get(HEADS, config.head.get("type"))
        wanted = DecisionTransformerActionHead if is_dt else ActorCriticHead
        if not issubclass(head_cls, wanted):
            names = {DecisionTransformerActionHead: "'dt_action'", ActorCriticHead: "'actor_critic'"}
            raise ConfigError(f"algorithm={config.algorithm!r} needs the {names[wanted]} head, got {config.head['type']!r}.")
        self.backbone = build(BACKBONES, config.backbone)
        if self.backbone.kind != "sequence" or not getattr(self.backbone, "causal", False):
            raise ConfigError(f"RL agents need a causal sequence backbone (e.g. transformer with causal=True), got {config.backbone!r}.")
        tokens = config.context_length * config.tokens_per_step
        if self.backbone.max_length is not None and tokens > self.backbone.max_length:
            raise ConfigError(
                f"context_length={config.context_length} makes {tokens} tokens, more than the backbone's "
                f"max_length ({self.backbone.max_length}); raise backbone.max_length."
            )
        dim = self.backbone.dim
        if is_dt:
            self.stem = _RLTrajectoryEmbedding(observation_dim=config.observation_dim, action_dim=config.action_dim,
                                               discrete=config.discrete, max_timestep=config.max_timestep, dim=dim)
        else:
            self.stem = _RLObservationEmbedding(observation_dim=config.observation_dim, dim=dim)
        self.head = build(HEADS, config.head, feature_info=self.backbone.feature_info,
                          action_dim=config.action_dim, discrete=config.discrete)
        obs_dim = config.observation_dim
        mean = config.observation_mean or [0.0] * obs_dim
        std = config.observation_std or [1.0] * obs_dim
        self.register_buffer("observation_mean", torch.tensor(mean, dtype=torch.float32), persistent=True)
        self.register_buffer("observation_std", torch.tensor(std, dtype=torch.float32), persistent=True)
        if not config.discrete:
            low = torch.tensor(config.action_space["low"], dtype=torch.float32)
            high = torch.tensor(config.action_space["high"], dtype=torch.float32)
            self.register_buffer("action_low", low, persistent=True)
            self.register_buffer("action_high", high, persistent=True)
        self.post_init()

    # -- checks (shapes only: values are checked by the processor, outside the exported graph)
    def _check(self, name: str, tensor: torch.Tensor | None, shape: tuple, floating: bool | None) -> None:
        if tensor is None:
            raise InputError(f"{type(self).__name__} ({self.config.algorithm}) needs {name}.")
        want = "(" + ", ".join(str(s) for s in shape) + ")"
        if tensor.dim() != len(shape) or any(isinstance(s, int) and s != t for s, t in zip(shape, tensor.shape)):
            raise InputError(f"{name} must have shape {want}, got {tuple(tensor.shape)}.")
        if floating is True and not tensor.is_floating_point():
            raise InputError(f"{name} must be a floating-point tensor, got {tensor.dtype}.")
        if floating is False and tensor.is_floating_point():
            raise InputError(f"{name} must be an integer tensor, got {tensor.dtype}.")

    def normalised_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Continuous actions in the environment's bounds -> ``[-1, 1]``."""
        return ((actions - self.action_low) / (self.action_high - self.action_low) * 2 - 1).clamp(-1, 1)

    def forward(
        self,
        observations: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> DecisionMakingOutput:
        """Act on a window of ``K`` steps (left-padded; ``attention_mask`` 1 at real steps).

        Args:
            observations: ``(B, K, D_obs)`` raw observations (normalised inside).
            attention_mask: ``(B, K)`` 1 at real steps, 0 at padding; default all real.
            actions: (DT) ``(B, K)`` int64 previous actions, or ``(B, K, A)`` continuous;
                the action at a step is never seen by that step's prediction.
            returns_to_go: (DT) ``(B, K, 1)`` returns still to collect, in environment units.
            timesteps: (DT) ``(B, K)`` int64 step index within the episode.
            labels: (DT) the actions to predict, like ``actions``; when given, ``loss`` is set.
            return_dict: accepted for transformers compatibility.
        """
        cfg = self.config
        batch_t = ("B", "K")
        self._check("observations", observations, (*batch_t, cfg.observation_dim), True)
        length = observations.shape[1]
        if length > cfg.context_length:
            raise InputError(f"observations has {length} steps; this agent reads at most context_length={cfg.context_length}.")
        if attention_mask is None:
            attention_mask = torch.ones(observations.shape[:2], dtype=torch.long, device=observations.device)
        # batch sizes are not compared here: a shape comparison becomes an export guard (the ops below check them)
        self._check("attention_mask", attention_mask, ("B", length), None)
        obs = (observations - self.observation_mean) / self.observation_std
        real = attention_mask.bool()
        if cfg.algorithm == "ppo":
            if labels is not None:
                raise InputError("A PPO agent has no supervised labels: it is trained by `polyhead train` with a PPO config.")
            tokens = self.stem(obs)
            features = self.backbone(tokens, padding_mask=~real).feature_maps
            action_preds, values = self.head.split(self.head(features))
            return DecisionMakingOutput(loss=None, action_preds=action_preds, values=values)

        shape_a = ("B", length) if cfg.discrete else ("B", length, cfg.action_dim)
        self._check("actions", actions, shape_a, not cfg.discrete)
        self._check("returns_to_go", returns_to_go, ("B", length, 1), True)
        self._check("timesteps", timesteps, ("B", length), False)
        action_in = actions if cfg.discrete else self.normalised_actions(actions)
        tokens = self.stem(obs, action_in, returns_to_go / cfg.return_scale, timesteps.clamp(0, cfg.max_timestep - 1))
        padding = (~real).repeat_interleave(cfg.tokens_per_step, dim=1)
        features = self.backbone(tokens, padding_mask=padding).feature_maps[0]
        state_features = features.reshape(features.shape[0], length, cfg.tokens_per_step, -1)[:, :, 1]
        raw = self.head((state_features,))  # logits, or tanh actions in [-1, 1]
        loss = None
        if labels is not None:
            self._check("labels", labels, shape_a, not cfg.discrete)
            target = labels if cfg.discrete else self.normalised_actions(labels)
            loss = self.head.loss(raw, {"actions": target, "mask": attention_mask})["loss"]
        action_preds = raw if cfg.discrete else self.action_low + (raw + 1) / 2 * (self.action_high - self.action_low)
        return DecisionMakingOutput(loss=loss, action_preds=action_preds, values=None)
