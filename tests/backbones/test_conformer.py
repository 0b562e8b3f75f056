"""The Conformer backbone: torchaudio's layers behind polyhead's sequence-backbone interface."""

from __future__ import annotations

import pytest
import torch
from torchaudio.models import Conformer

from polyhead import registry
from polyhead.backbones import ConformerEncoder
from polyhead.errors import ConfigError, InputError


def _encoder(**kwargs) -> ConformerEncoder:
    torch.manual_seed(0)
    return ConformerEncoder(**{"dim": 16, "depth": 2, "num_heads": 2, "ffn_dim": 32, "kernel_size": 3, "dropout": 0.0, **kwargs}).eval()


def test_registered_and_shapes():
    assert registry.get(registry.BACKBONES, "conformer") is ConformerEncoder
    enc = _encoder()
    out = enc(torch.randn(3, 11, 16)).feature_maps
    assert len(out) == 1 and out[0].shape == (3, 11, 16)
    assert enc.feature_info == [{"num_chs": 16, "reduction": 1}] and enc.kind == "sequence" and enc.max_length is None


def test_wraps_torchaudio_and_matches_its_forward():
    """Same layers, same result as torchaudio's own Conformer.forward with lengths."""
    enc = _encoder()
    assert isinstance(enc.conformer, Conformer)
    x = torch.randn(2, 9, 16)
    lengths = torch.tensor([9, 6])
    padding_mask = torch.arange(9)[None] >= lengths[:, None]
    ours = enc(x, padding_mask).feature_maps[0]
    theirs, _ = enc.conformer(x, lengths)
    torch.testing.assert_close(ours, theirs)


def test_padded_keys_are_ignored_by_attention():
    """Changing padded tokens changes nothing in the real ones beyond the conv's reach (kernel 1: none at all)."""
    enc = _encoder(kernel_size=1)
    x = torch.randn(2, 10, 16)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 6:] = True
    y = x.clone()
    y[1, 6:] = torch.randn(4, 16) * 10
    a, b = enc(x, mask).feature_maps[0], enc(y, mask).feature_maps[0]
    torch.testing.assert_close(a[1, :6], b[1, :6])


def test_trains():
    enc = _encoder()
    enc.train()
    out = enc(torch.randn(2, 7, 16)).feature_maps[0]
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_heads": 3}, "must divide dim"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"dim": 0}, "dim must be a positive integer"),
        ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _encoder(**kwargs)


def test_bad_inputs():
    enc = _encoder()
    with pytest.raises(InputError, match=r"ConformerEncoder takes tokens of shape \(batch, time, 16\)"):
        enc(torch.randn(2, 5, 8))
    with pytest.raises(InputError, match="cannot attend causally"):
        enc(torch.randn(2, 5, 16), is_causal=True)
    with pytest.raises(InputError, match="padding_mask must have shape"):
        enc(torch.randn(2, 5, 16), torch.zeros(2, 4, dtype=torch.bool))
