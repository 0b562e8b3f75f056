"""RL heads: the PPO actor-critic (clipped loss) and the Decision Transformer action head."""

from __future__ import annotations

import pytest
import torch

from polyhead.errors import ConfigError, InputError
from polyhead.heads.rl import ActorCriticHead, DecisionTransformerActionHead

INFO = [{"num_chs": 8, "reduction": 1}]


def test_actor_critic_shapes_and_split():
    head = ActorCriticHead(feature_info=INFO, action_dim=3, hidden_dim=16)
    out = head((torch.randn(2, 5, 8),))
    assert out.shape == (2, 5, 4)
    logits, values = head.split(out)
    assert logits.shape == (2, 5, 3) and values.shape == (2, 5)
    assert isinstance(head.distribution(logits), torch.distributions.Categorical)


def test_ppo_loss_is_zero_policy_gradient_at_the_old_policy_and_clips():
    torch.manual_seed(0)
    head = ActorCriticHead(feature_info=INFO, action_dim=2, hidden_dim=0, entropy_coef=0.0)
    out = head((torch.randn(64, 8),)).detach().requires_grad_(True)
    logits, values = head.split(out)
    dist = head.distribution(logits)
    actions = dist.sample()
    targets = {"actions": actions, "logprobs": dist.log_prob(actions).detach(), "advantages": torch.randn(64),
               "returns": values.detach(), "values": values.detach()}
    losses = head.loss(out, targets)
    assert set(losses) >= {"loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"}
    assert losses["value_loss"] == 0 and losses["approx_kl"].abs() < 1e-6 and losses["clip_fraction"] == 0
    # ratio 1 and normalised advantages: the surrogate is -mean(adv) = 0
    assert losses["policy_loss"].abs() < 1e-5
    # a policy far from the old one is clipped: the gradient of clipped samples vanishes
    moved = out.detach().clone()
    moved[:, :2] += torch.tensor([5.0, -5.0])
    moved.requires_grad_(True)
    far = head.loss(moved, targets)
    assert far["clip_fraction"] > 0.3
    far["loss"].backward()
    assert torch.isfinite(moved.grad).all()


def test_gaussian_actor_critic():
    head = ActorCriticHead(feature_info=INFO, action_dim=2, discrete=False, init_log_std=-0.5)
    out = head((torch.randn(3, 8),))
    dist = head.distribution(head.split(out)[0])
    assert dist.sample().shape == (3, 2)
    torch.testing.assert_close(dist.base_dist.scale, torch.full((3, 2), torch.exp(torch.tensor(-0.5))))
    losses = head.loss(out, head.example_targets(out))
    losses["loss"].backward()
    assert head.log_std.grad is not None


def test_ppo_loss_needs_all_targets():
    head = ActorCriticHead(feature_info=INFO, action_dim=2)
    out = head((torch.randn(3, 8),))
    with pytest.raises(InputError, match=r"needs targets \['advantages'"):
        head.loss(out, {"actions": torch.zeros(3, dtype=torch.long)})


def test_dt_head_discrete_and_continuous():
    head = DecisionTransformerActionHead(feature_info=INFO, action_dim=4)
    out = head((torch.randn(2, 6, 8),))
    assert out.shape == (2, 6, 4)
    mask = torch.ones(2, 6)
    mask[:, :3] = 0
    labels = torch.randint(0, 4, (2, 6))
    loss_masked = head.loss(out, {"actions": labels, "mask": mask})["loss"]
    expected = torch.nn.functional.cross_entropy(out[:, 3:].reshape(-1, 4), labels[:, 3:].reshape(-1))
    torch.testing.assert_close(loss_masked, expected)
    cont = DecisionTransformerActionHead(feature_info=INFO, action_dim=2, discrete=False)
    y = cont((torch.randn(2, 6, 8) * 100,))
    assert y.abs().max() <= 1.0  # tanh-squashed
    assert cont.loss(y, cont.example_targets(y))["loss"].ndim == 0


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (ActorCriticHead, {"action_dim": 0}, "action_dim must be a positive integer"),
        (ActorCriticHead, {"action_dim": 1, "discrete": True}, "at least 2 actions"),
        (ActorCriticHead, {"action_dim": 2, "clip_coef": -0.1}, "clip_coef must be a non-negative number"),
        (DecisionTransformerActionHead, {"action_dim": 2, "discrete": "yes"}, "discrete must be True or False"),
    ],
)
def test_bad_head_arguments(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cls(feature_info=INFO, **kwargs)


def test_heads_need_one_feature_map():
    with pytest.raises(ConfigError, match="reads one sequence feature map"):
        DecisionTransformerActionHead(feature_info=INFO * 2, action_dim=2)
