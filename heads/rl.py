"""Reinforcement-learning heads: a PPO actor-critic and the Decision Transformer action head.

Both read one sequence feature map ``(B, T, D)`` and act per token; the task's adapter
picks the tokens it needs (every step of a PPO window, the state tokens of a trajectory).

References: Schulman et al., "Proximal Policy Optimization Algorithms" (2017), with
the clipped value loss and entropy bonus of the CleanRL implementation (Huang et al.,
"The 37 Implementation Details of PPO", 2022); Chen et al., "Decision Transformer:
Reinforcement Learning via Sequence Modeling" (NeurIPS 2021).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polyhead.backbones._base import FeatureInfo
from polyhead.errors import ConfigError, InputError
from polyhead.registry import register_head
from polyhead.validation import check_positive

from ._base import Head

__all__ = ["ActorCriticHead", "DecisionTransformerActionHead", "policy_distribution"]


def _check_one_map(head: Head) -> int:
    if len(head.feature_info) != 1:
        raise ConfigError(f"{type(head).__name__} reads one sequence feature map, but the backbone has {len(head.feature_info)} outputs.")
    return head.feature_info[0]["num_chs"]


def _check_action_space(discrete: bool, action_dim: int) -> None:
    check_positive("action_dim", action_dim)
    if isinstance(discrete, bool) is False:
        raise ConfigError(f"discrete must be True or False, got {discrete!r}.")
    if discrete and action_dim < 2:
        raise ConfigError(f"A discrete action space needs at least 2 actions, got action_dim={action_dim}.")


class _RLOrthogonalLinear(nn.Linear):
    """``nn.Linear`` with orthogonal weights (gain ``std``) and zero bias: the PPO initialisation of CleanRL."""

    def __init__(self, in_features: int, out_features: int, *, std: float) -> None:
        self.std = std  # read by reset_parameters, which nn.Linear's constructor calls
        super().__init__(in_features, out_features)

    def reset_parameters(self) -> None:
        nn.init.orthogonal_(self.weight, self.std)
        nn.init.zeros_(self.bias)


def policy_distribution(action_preds: torch.Tensor, log_std: torch.Tensor | None) -> torch.distributions.Distribution:
    """The policy's distribution: categorical over logits, or a diagonal Gaussian around the mean."""
    if log_std is None:
        return torch.distributions.Categorical(logits=action_preds)
    return torch.distributions.Independent(torch.distributions.Normal(action_preds, log_std.exp().expand_as(action_preds)), 1)


@register_head("actor_critic")
class ActorCriticHead(Head):
    """PPO actor and critic on every token: action logits (or Gaussian mean) and a value.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output of width ``D``).
        action_dim: number of discrete actions, or the size of a continuous action.
        discrete: categorical policy over ``action_dim`` logits, else a diagonal Gaussian
            with a learned, state-independent log standard deviation.
        hidden_dim: width of the one hidden layer of the actor and of the critic (0: linear).
        clip_coef: PPO's ratio clipping ``ε``.
        value_coef: weight of the (clipped) value loss.
        entropy_coef: weight of the entropy bonus.
        init_log_std: initial log standard deviation of a Gaussian policy.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (B, T, D)`` returns a
        ``(B, T, action_dim + 1)`` tensor: the action logits / means, then the value.
        :meth:`split` separates them.
    """

    accepted_kinds = frozenset({"sequence"})

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        action_dim: int,
        discrete: bool = True,
        hidden_dim: int = 64,
        clip_coef: float = 0.2,
        value_coef: float = 0.5,
        entropy_coef: float = 0.01,
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__(feature_info=feature_info)
        dim = _check_one_map(self)
        _check_action_space(discrete, action_dim)
        if hidden_dim < 0:
            raise ConfigError(f"hidden_dim must be >= 0, got {hidden_dim}.")
        for name, value in (("clip_coef", clip_coef), ("value_coef", value_coef), ("entropy_coef", entropy_coef)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number, got {value!r}.")
        self.action_dim = action_dim
        self.discrete = discrete
        self.clip_coef, self.value_coef, self.entropy_coef = float(clip_coef), float(value_coef), float(entropy_coef)

        def mlp(out: int, std: float) -> nn.Module:
            if not hidden_dim:
                return _RLOrthogonalLinear(dim, out, std=std)
            return nn.Sequential(_RLOrthogonalLinear(dim, hidden_dim, std=math.sqrt(2)), nn.Tanh(), _RLOrthogonalLinear(hidden_dim, out, std=std))

        self.actor = mlp(action_dim, 0.01)
        self.critic = mlp(1, 1.0)
        self.init_log_std = float(init_log_std)
        self.log_std = None if discrete else nn.Parameter(torch.full((action_dim,), self.init_log_std))

    def reset_parameters(self) -> None:
        """The Gaussian policy's log standard deviation back to ``init_log_std`` (the layers init themselves)."""
        if self.log_std is not None:
            nn.init.constant_(self.log_std, self.init_log_std)

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"action_dim": 3, "discrete": True, "hidden_dim": 8}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = feature_maps[0]
        return torch.cat((self.actor(tokens), self.critic(tokens)), dim=-1)

    def split(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(..., A + 1)`` -> action logits / means ``(..., A)`` and values ``(...)``."""
        return outputs[..., : self.action_dim], outputs[..., self.action_dim]

    def distribution(self, action_preds: torch.Tensor) -> torch.distributions.Distribution:
        return policy_distribution(action_preds, self.log_std)

    def example_targets(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        shape = outputs.shape[:-1]
        return {
            "actions": torch.randint(0, self.action_dim, shape) if self.discrete else torch.randn(*shape, self.action_dim),
            "logprobs": -torch.rand(shape),
            "advantages": torch.randn(shape),
            "returns": torch.randn(shape),
            "values": torch.randn(shape),
        }

    def loss(self, outputs: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """PPO's clipped surrogate, clipped value loss and entropy bonus.

        Args:
            outputs: ``(..., A + 1)`` from :meth:`forward` for the acting tokens.
            targets: ``actions (...)`` (or ``(..., A)``), the rollout's ``logprobs``,
                ``advantages`` (normalised here), ``returns`` and ``values``, each ``(...)``.
        """
        missing = {"actions", "logprobs", "advantages", "returns", "values"} - set(targets)
        if missing:
            raise InputError(f"ActorCriticHead.loss needs targets {sorted(missing)}.")
        action_preds, values = self.split(outputs)
        dist = self.distribution(action_preds)
        logprobs = dist.log_prob(targets["actions"])
        log_ratio = logprobs - targets["logprobs"]
        ratio = log_ratio.exp()
        adv = targets["advantages"]
        adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.clip_coef, 1 + self.clip_coef)).mean()
        old_values = targets["values"]
        clipped = old_values + (values - old_values).clamp(-self.clip_coef, self.clip_coef)
        value_loss = 0.5 * torch.max((values - targets["returns"]) ** 2, (clipped - targets["returns"]) ** 2).mean()
        entropy = dist.entropy().mean()
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > self.clip_coef).float().mean()
        return {"loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                "approx_kl": approx_kl, "clip_fraction": clip_fraction}


@register_head("dt_action")
class DecisionTransformerActionHead(Head):
    """Decision Transformer action prediction: logits for discrete actions, ``tanh`` for continuous.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output of width ``D``).
        action_dim: number of discrete actions, or the size of a continuous action.
        discrete: predict logits (cross-entropy loss), else a ``tanh``-squashed action in
            ``[-1, 1]`` (mean-squared error; the task rescales to the action bounds).
        dropout: dropout before the projection.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (B, T, D)`` (the state tokens)
        returns ``(B, T, action_dim)``. ``loss(outputs, {"actions", "mask"})`` with
        ``actions: (B, T)`` int64 (discrete) or ``(B, T, A)`` in ``[-1, 1]``, and
        ``mask: (B, T)`` (1 at real steps) averages over real steps only.
    """

    accepted_kinds = frozenset({"sequence"})

    def __init__(self, *, feature_info: Sequence[FeatureInfo], action_dim: int, discrete: bool = True, dropout: float = 0.0) -> None:
        super().__init__(feature_info=feature_info)
        dim = _check_one_map(self)
        _check_action_space(discrete, action_dim)
        self.action_dim = action_dim
        self.discrete = discrete
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(dim, action_dim)

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"action_dim": 3, "discrete": True}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.projection(self.dropout(feature_maps[0]))
        return out if self.discrete else torch.tanh(out)

    def example_targets(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        shape = outputs.shape[:-1]
        actions = torch.randint(0, self.action_dim, shape) if self.discrete else torch.rand(*shape, self.action_dim) * 2 - 1
        return {"actions": actions, "mask": torch.ones(shape)}

    def loss(self, outputs: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        actions = targets["actions"]
        mask = targets.get("mask")
        mask = torch.ones(outputs.shape[:-1], device=outputs.device) if mask is None else mask.to(outputs.dtype)
        if self.discrete:
            per_step = F.cross_entropy(outputs.reshape(-1, self.action_dim), actions.reshape(-1).long(), reduction="none")
        else:
            per_step = ((outputs - actions.to(outputs.dtype)) ** 2).mean(-1).reshape(-1)
        loss = (per_step * mask.reshape(-1)).sum() / mask.sum().clamp_min(1)
        return {"loss": loss}
