"""Every registered backbone x every head that accepts it: builds, runs, trains, matches feature_info."""

from __future__ import annotations

import pytest
import torch

from polyhead import registry
from polyhead.backbones import Backbone
from polyhead.errors import ConfigError, UnknownNameError
from polyhead.heads import Head

BACKBONES = registry.names(registry.BACKBONES)
HEADS = registry.names(registry.HEADS)
PAIRS = [
    (b, h)
    for b in BACKBONES
    for h in HEADS
    if registry.get(registry.HEADS, h).accepts(registry.get(registry.BACKBONES, b))
]


def test_every_head_accepts_some_backbone():
    assert PAIRS, "no backbone/head pair is registered"
    for head in HEADS:
        assert any(h == head for _, h in PAIRS), f"head {head!r} accepts no registered backbone"


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_outputs_match_feature_info(name):
    cls = registry.get(registry.BACKBONES, name)
    assert issubclass(cls, Backbone)
    backbone = registry.build(registry.BACKBONES, {"type": name, **cls.example_config()})
    inputs = backbone.example_inputs(batch_size=2)
    out = backbone(**inputs)
    assert len(out.feature_maps) == len(backbone.feature_info)
    for fmap, info in zip(out.feature_maps, backbone.feature_info):
        if cls.kind == "sequence":
            assert fmap.shape[-1] == info["num_chs"]
            assert fmap.shape[1] == inputs["x"].shape[1] // info["reduction"]
        else:
            assert fmap.shape[1] == info["num_chs"]
            assert tuple(fmap.shape[2:]) == tuple(size // info["reduction"] for size in inputs["x"].shape[2:])
        assert torch.isfinite(fmap).all()


@pytest.mark.parametrize(("backbone_name", "head_name"), PAIRS)
def test_pair_forward_backward(backbone_name, head_name):
    backbone_cls = registry.get(registry.BACKBONES, backbone_name)
    head_cls = registry.get(registry.HEADS, head_name)
    assert issubclass(head_cls, Head)
    backbone_cfg = {**backbone_cls.example_config(), **head_cls.example_backbone_overrides()}
    backbone = registry.build(registry.BACKBONES, {"type": backbone_name, **backbone_cfg})
    inputs = backbone.example_inputs(batch_size=2)
    head = registry.build(
        registry.HEADS, {"type": head_name}, feature_info=backbone.feature_info, **head_cls.example_kwargs(example_inputs=inputs)
    )
    outputs = head(backbone(**inputs).feature_maps)
    losses = head.loss(outputs, head.example_targets(outputs))
    assert set(losses) >= {"loss"} and losses["loss"].ndim == 0
    losses["loss"].backward()
    grads = [p.grad for p in list(backbone.parameters()) + list(head.parameters()) if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # one return type whatever the mode
    backbone.eval(), head.eval()
    assert type(head(backbone(**inputs).feature_maps)) is type(outputs)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"Unknown backbone 'transfomer'\. Did you mean 'transformer'\?.*Known backbones: (\w+, )*transformer"):
        registry.build(registry.BACKBONES, {"type": "transfomer"})
    with pytest.raises(UnknownNameError, match=r"Known tasks: (\w+, )*forecasting"):
        registry.get(registry.TASKS, "segmentaton")


def test_bad_build_configs():
    with pytest.raises(ConfigError, match="must be a dict with a 'type' key"):
        registry.build(registry.BACKBONES, {"dim": 3})
    with pytest.raises(ConfigError, match=r"unknown option 'dimm'\. Did you mean 'dim'\?"):
        registry.build(registry.BACKBONES, {"type": "transformer", "dimm": 3})
    with pytest.raises(ConfigError, match="fills in from the model"):
        registry.build(registry.HEADS, {"type": "forecast", "feature_info": []}, feature_info=[{"num_chs": 2, "reduction": 1}])


def test_duplicate_registration_fails_loudly():
    with pytest.raises(KeyError, match="already registered"):
        @registry.register_backbone("transformer")
        class Another(Backbone):  # noqa: F841
            pass
