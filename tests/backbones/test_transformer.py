"""The shared Transformer encoder: options, masking semantics, and argument checks."""

from __future__ import annotations

import pytest
import torch

from polyhead.backbones import TransformerEncoder
from polyhead.errors import ConfigError, InputError, UnknownNameError


def _encoder(**kwargs) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(**{"dim": 16, "depth": 2, "num_heads": 2, "dropout": 0.0, "max_length": 32, **kwargs}).eval()


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rotary", "none"])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_options_shapes(position, norm):
    enc = _encoder(position=position, norm=norm)
    out = enc(torch.randn(3, 10, 16)).feature_maps
    assert len(out) == 1 and out[0].shape == (3, 10, 16)
    assert enc.feature_info == [{"num_chs": 16, "reduction": 1}]


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_causal_ignores_the_future(position):
    enc = _encoder(position=position)
    x = torch.randn(2, 12, 16)
    y = x.clone()
    y[:, 8:] = torch.randn(2, 4, 16)
    a, b = enc(x, is_causal=True).feature_maps[0], enc(y, is_causal=True).feature_maps[0]
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_causality_is_a_per_call_choice_of_one_encoder():
    """The same weights serve a causal task and a bidirectional one: nothing is fixed at build time."""
    enc = _encoder()
    x = torch.randn(1, 12, 16)
    causal, bidirectional = enc(x, is_causal=True).feature_maps[0], enc(x).feature_maps[0]
    torch.testing.assert_close(causal[:, :1], enc(x[:, :1]).feature_maps[0])  # causally, the first token sees only itself
    assert not torch.allclose(causal[:, 0], bidirectional[:, 0])
    with pytest.raises(ConfigError, match="unknown option 'causal'"):
        from polyhead import registry

        registry.build(registry.BACKBONES, {"type": "transformer", "dim": 16, "num_heads": 2, "causal": True})


def test_bidirectional_sees_the_future():
    enc = _encoder()
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, -1] = torch.randn(1, 16)  # (a constant shift would vanish in the pre-norm)
    assert not torch.allclose(enc(x).feature_maps[0][:, 0], enc(y).feature_maps[0][:, 0])


@pytest.mark.parametrize("causal", [False, True])
def test_padding_mask_hides_padded_tokens(causal):
    enc = _encoder(position="rotary")
    x = torch.randn(2, 10, 16)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 7:] = True
    y = x.clone()
    y[:, 7:] = 100 * torch.randn(2, 3, 16)  # change only padded tokens
    a, b = enc(x, mask, is_causal=causal).feature_maps[0], enc(y, mask, is_causal=causal).feature_maps[0]
    torch.testing.assert_close(a[:, :7], b[:, :7])
    # same as running the unpadded sequence
    torch.testing.assert_close(a[:, :7], enc(x[:, :7], is_causal=causal).feature_maps[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(a).all()


def test_rotary_is_relative():
    """Rotary attention scores depend on relative position: shifting all tokens changes nothing without other position info."""
    enc = _encoder(position="rotary", depth=1)
    x = torch.randn(1, 6, 16)
    out = enc(x).feature_maps[0]
    assert torch.isfinite(out).all()
    # a sinusoidal or learned encoder would differ when the same tokens are moved; rotary in a
    # permutation-equivariant block is equivariant only to the *relative* structure, so a constant
    # sequence gives identical outputs at every position
    const = torch.ones(1, 6, 16)
    y = enc(const).feature_maps[0]
    torch.testing.assert_close(y, y[:, :1].expand_as(y), atol=1e-5, rtol=1e-5)


def test_too_long_sequence_is_an_input_error():
    enc = _encoder(position="learned", max_length=8)
    with pytest.raises(InputError, match="longer than this backbone's max_length=8"):
        enc(torch.randn(1, 9, 16))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dim": 10, "num_heads": 3}, ConfigError, "must divide dim"),
        ({"depth": 0}, ConfigError, "depth must be a positive integer"),
        ({"dropout": 1.5}, ConfigError, r"dropout must be a number in \[0, 1\)"),
        ({"norm": "batchnorm"}, UnknownNameError, "Expected one of: layernorm, rmsnorm"),
        ({"position": "alibi"}, UnknownNameError, "Unknown position encoding 'alibi'"),
        ({"activation": "gelu2"}, UnknownNameError, "Did you mean 'gelu'"),
        ({"dim": 6, "num_heads": 2, "position": "rotary"}, ConfigError, "even head width"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        TransformerEncoder(**{"dim": 16, "num_heads": 2, **kwargs})


def test_computed_buffers_are_rebuilt():
    enc = _encoder(position="sinusoidal")
    expected = enc.sinusoidal_table.clone()
    enc.sinusoidal_table.fill_(float("nan"))
    enc.reset_computed_buffers()
    torch.testing.assert_close(enc.sinusoidal_table, expected)
    assert "sinusoidal_table" not in enc.state_dict()


# -- GTrXL gating (residual="gru") -------------------------------------------------------
def test_gru_residual_defaults_leave_the_encoder_unchanged():
    torch.manual_seed(0)
    plain = TransformerEncoder(dim=16, depth=2, num_heads=2, max_length=8)
    torch.manual_seed(0)
    explicit = TransformerEncoder(dim=16, depth=2, num_heads=2, max_length=8, residual="add")
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    assert not any("gate" in k for k in plain.state_dict())
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(plain.eval()(x).feature_maps[0], explicit.eval()(x).feature_maps[0])


def test_gru_gates_start_near_the_identity_map():
    """With b_g > 0 the update gate z starts near 0, so each gated block passes x through (GTrXL)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 16)
    moved = {}
    for bias in (0.0, 2.0, 8.0):
        enc = TransformerEncoder(dim=16, depth=2, num_heads=2, max_length=8, residual="gru", gate_bias=bias, final_norm=False, dropout=0.0).eval()
        moved[bias] = float((enc(x).feature_maps[0] - x).abs().mean())
    assert moved[8.0] < moved[2.0] < moved[0.0]
    assert moved[8.0] < 0.05 * moved[0.0]


def test_gru_encoder_is_causal_and_trains():
    torch.manual_seed(0)
    enc = TransformerEncoder(dim=16, depth=2, num_heads=2, max_length=8, residual="gru", dropout=0.0)
    assert {"blocks.0.gate1.w.weight", "blocks.0.gate2.u_g.weight"} <= set(enc.state_dict())
    x = torch.randn(1, 6, 16, requires_grad=True)
    out = enc(x, is_causal=True).feature_maps[0]
    out[0, 2].sum().backward()
    assert x.grad[0, 3:].abs().sum() == 0 and x.grad[0, :3].abs().sum() > 0  # no peeking at later tokens
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, :2] = True
    assert torch.isfinite(enc(x, padding_mask=mask, is_causal=True).feature_maps[0]).all()


def test_gru_residual_bad_options():
    with pytest.raises(UnknownNameError, match="Unknown residual 'gated'.*Expected one of: add, gru"):
        TransformerEncoder(dim=16, num_heads=2, residual="gated")
    with pytest.raises(ConfigError, match="gate_bias must be a number"):
        TransformerEncoder(dim=16, num_heads=2, residual="gru", gate_bias="2")
