"""Next-item head (tied table, full and sampled softmax) and CTR head (Hiformer option)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polyhead.errors import ConfigError, UnknownNameError
from polyhead.heads import CTRHead, NextItemHead

INFO = [{"num_chs": 16, "reduction": 1}]


def test_next_item_scores_are_dot_products_with_the_table():
    head = NextItemHead(feature_info=INFO, num_items=30)
    tokens = torch.randn(4, 6, 16)
    scores = head([tokens])
    assert scores.shape == (4, 30)
    torch.testing.assert_close(scores, tokens[:, -1] @ head.item_embedding.weight[:30].T)
    assert head.item_embedding.weight.shape == (31, 16)  # + the padding row
    assert torch.all(head.embed(torch.tensor([30])) == 0)  # padding embeds to zeros


def test_full_softmax_loss_ignores_padding_targets():
    head = NextItemHead(feature_info=INFO, num_items=10)
    scores = torch.randn(3, 10)
    targets = torch.tensor([1, -100, 4])
    want = F.cross_entropy(scores[[0, 2]], targets[[0, 2]])
    torch.testing.assert_close(head.loss(scores, targets)["loss"], want)


def test_sampled_softmax_trains_and_masks_accidental_hits():
    torch.manual_seed(0)
    head = NextItemHead(feature_info=INFO, num_items=5, loss="sampled", num_negatives=64)
    hidden = torch.randn(8, 16, requires_grad=True)
    targets = torch.randint(0, 5, (8,))
    loss = head.sampled_loss(hidden, targets)["loss"]
    assert torch.isfinite(loss)  # with 64 draws from 5 items, every target is also drawn: masked, not -inf loss
    loss.backward()
    assert torch.isfinite(hidden.grad).all() and head.item_embedding.weight.grad is not None
    all_ignored = head.sampled_loss(hidden, torch.full((8,), -100))["loss"]
    assert all_ignored.item() == 0.0


def test_next_item_bad_configs():
    with pytest.raises(ConfigError, match="num_items must be a positive integer"):
        NextItemHead(feature_info=INFO, num_items=0)
    with pytest.raises(UnknownNameError, match="Unknown next-item loss 'sampeld'.*Did you mean 'sampled'"):
        NextItemHead(feature_info=INFO, num_items=5, loss="sampeld")
    with pytest.raises(ConfigError, match="reads one sequence feature map"):
        NextItemHead(feature_info=INFO * 2, num_items=5)


@pytest.mark.parametrize("interaction", ["none", "hiformer"])
@pytest.mark.parametrize("pooling", ["flatten", "mean"])
def test_ctr_head_shapes_and_loss(interaction, pooling):
    head = CTRHead(feature_info=INFO, num_fields=5, interaction=interaction, pooling=pooling)
    logits = head([torch.randn(4, 5, 16)])
    assert logits.shape == (4,)
    loss = head.loss(logits, torch.tensor([0, 1, 1, 0]))["loss"]
    loss.backward()
    assert torch.isfinite(loss)


def test_hiformer_projections_are_per_field():
    torch.manual_seed(0)
    head = CTRHead(feature_info=INFO, num_fields=3, interaction="hiformer", dropout=0.0).eval()
    assert head.hiformer.qkv.shape == (3, 16, 48) and head.hiformer.out.shape == (3, 16, 16)
    tokens = torch.randn(2, 3, 16)
    before = head([tokens])
    with torch.no_grad():
        head.hiformer.qkv[1].add_(torch.randn(16, 48))  # change only field 1's projection
    assert not torch.allclose(before, head([tokens]))
    swapped = tokens[:, [1, 0, 2]]  # the same vectors in other fields give another output: fields are typed
    assert not torch.allclose(head([tokens]), head([swapped]))


def test_ctr_bad_configs_and_inputs():
    with pytest.raises(UnknownNameError, match="Unknown CTR interaction 'hiformr'.*Did you mean 'hiformer'"):
        CTRHead(feature_info=INFO, num_fields=3, interaction="hiformr")
    with pytest.raises(ConfigError, match="must divide the token width"):
        CTRHead(feature_info=INFO, num_fields=3, interaction="hiformer", num_heads=3)
    with pytest.raises(ConfigError, match="num_fields must be a positive integer"):
        CTRHead(feature_info=INFO, num_fields=0)
    head = CTRHead(feature_info=INFO, num_fields=3)
    with pytest.raises(ConfigError, match="built for 3 field tokens, got 4"):
        head([torch.randn(2, 4, 16)])
