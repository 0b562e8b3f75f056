"""The CTC head and ``ctc_loss``: logits, F.ctc_loss with padded labels and output lengths, greedy decoding, argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polyhead.errors import ConfigError, InputError
from polyhead.heads import CTCHead, ctc_collapse, ctc_greedy_decode
from polyhead.heads.ctc import ctc_loss

INFO = [{"num_chs": 8, "reduction": 1}]


def _head(**kwargs) -> CTCHead:
    torch.manual_seed(0)
    return CTCHead(**{"feature_info": INFO, "vocab_size": 5, "dropout": 0.0, **kwargs})


def test_forward_shape():
    head = _head()
    assert head([torch.randn(2, 7, 8)]).shape == (2, 7, 5)


def test_loss_matches_ctc_loss_and_ignores_label_padding():
    head = _head()
    logits = torch.randn(2, 10, 5)
    labels = torch.tensor([[1, 2, 2, 3], [4, 1, -100, -100]])
    lengths = torch.tensor([10, 7])
    got = ctc_loss(logits, labels, lengths)
    log_probs = F.log_softmax(logits, dim=-1).transpose(0, 1)
    want = F.ctc_loss(log_probs, torch.tensor([1, 2, 2, 3, 4, 1]), lengths, torch.tensor([4, 2]), blank=0, reduction="mean")
    torch.testing.assert_close(got, want)
    # what lies in padded frames does not matter
    noisy = logits.clone()
    noisy[1, 7:] = torch.randn(3, 5) * 50
    torch.testing.assert_close(ctc_loss(noisy, labels, lengths), got)
    # the head's own loss: every frame valid
    full = F.ctc_loss(log_probs, torch.tensor([1, 2, 2, 3, 4, 1]), torch.tensor([10, 10]), torch.tensor([4, 2]), blank=0, reduction="mean")
    torch.testing.assert_close(head.loss(logits, labels)["loss"], full)
    torch.testing.assert_close(ctc_loss(logits, labels), full)


def test_impossible_alignment_is_zeroed_not_inf():
    head = _head()
    loss = head.loss(torch.randn(1, 2, 5), torch.tensor([[1, 2, 3, 4]]))["loss"]
    assert torch.isfinite(loss)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 3, 4, 4, 4, 4]])
    assert ctc_collapse(ids, torch.tensor([8, 3])) == [[1, 1, 2], [3, 3]]
    logits = F.one_hot(ids, 5).float()
    assert ctc_greedy_decode(logits) == [[1, 1, 2], [3, 3, 4]]


def test_bad_labels():
    head = _head()
    with pytest.raises(InputError, match="other than the blank"):
        head.loss(torch.randn(1, 6, 5), torch.tensor([[0, 1]]))
    with pytest.raises(InputError, match=r"token ids in \[0, 5\)"):
        head.loss(torch.randn(1, 6, 5), torch.tensor([[7, 1]]))
    with pytest.raises(InputError, match="must have shape"):
        head.loss(torch.randn(2, 6, 5), torch.tensor([1, 2]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab_size": 1}, "at least 2"),
        ({"blank_id": 5}, r"blank_id must be a token id in \[0, 5\)"),
        ({"reduction": "max"}, "Unknown CTC loss reduction"),
        ({"feature_info": INFO * 2}, "reads one sequence feature map"),
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _head(**kwargs)
