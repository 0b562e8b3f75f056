"""Every registered backbone x every head that accepts it: builds, runs, trains, matches feature_info."""

from __future__ import annotations

import inspect

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


# ----------------------------------------------------------------------------- backbone x task adapter


def _example_models():
    """(task name, index of its example config, model type): every model class (= adapter) of every task.

    The multi-task model composes these same adapters on one backbone; tests/test_multitask.py covers it.
    """
    return [
        (name, index, config.model_type)
        for name in registry.names(registry.TASKS)
        if name != "multitask"
        for index, config in enumerate(registry.get(registry.TASKS, name).example_configs())
    ]


def _on_backbone(config, backbone_name: str):
    """``config`` with its backbone replaced by ``backbone_name``'s example config (input layout kept)."""
    cls = registry.get(registry.BACKBONES, backbone_name)
    options = dict(cls.example_config())
    if cls.kind == "pyramid":  # the task fixes the input layout: 2-D RGB images, 3-D volumes of its channels
        options.update({k: config.backbone[k] for k in ("spatial_dims", "in_channels") if k in config.backbone})
    elif "max_length" in inspect.signature(cls).parameters:
        options["max_length"] = 512  # long enough for every task's tokens
    copy = type(config).from_dict(config.to_dict())
    copy.backbone = {"type": backbone_name, **options}
    return copy


ADAPTER_PAIRS = [
    pytest.param(task, index, backbone, id=f"{model_type.removeprefix('polyhead-')}-{backbone}")
    for task, index, model_type in _example_models()
    for backbone in BACKBONES
]


@pytest.mark.parametrize(("task_name", "index", "backbone_name"), ADAPTER_PAIRS)
def test_every_adapter_on_every_backbone_it_accepts(task_name, index, backbone_name):
    """Each adapter builds on the backbones it accepts (and says why it refuses the others), runs, and trains the backbone."""
    task = registry.get(registry.TASKS, task_name)()
    config = _on_backbone(task.example_configs()[index], backbone_name)
    model_class = task.model_class_for(config)
    spec = registry.describe_backbone(config.backbone)
    try:
        model_class.adapter_class.check_backbone(config, spec)
    except ConfigError as err:
        assert backbone_name in str(err) and ("needs a" in str(err) or "attends causally" in str(err))
        with pytest.raises(ConfigError):
            task.build_model(config)
        return
    torch.manual_seed(0)
    model = task.build_model(config)
    assert model.backbone.spec == spec  # what the adapter was built for is what it runs on
    inputs = task.export_spec(config).make_inputs({"batch": 2})
    outputs = model(**inputs)
    tensors = [v for v in outputs.to_tuple() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    sum(t.float().sum() for t in tensors).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the backbone"


def test_backbone_spec_is_known_without_building_it():
    for name in BACKBONES:
        cls = registry.get(registry.BACKBONES, name)
        built = registry.build(registry.BACKBONES, {"type": name, **cls.example_config()})
        assert registry.describe_backbone({"type": name, **cls.example_config()}) == built.spec
        assert registry.build(registry.BACKBONES, built.config).spec == built.spec  # .config rebuilds it


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, True, "8"])
def test_sizes_must_be_finite_positive_numbers(value):
    with pytest.raises(ConfigError, match="must be a positive"):
        registry.build(registry.BACKBONES, {"type": "transformer", "mlp_ratio": value})
