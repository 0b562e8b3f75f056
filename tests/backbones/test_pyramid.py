"""The pyramid backbones (``swin``, ``convnext``): 2D and 3D, feature_info, checked arguments and inputs."""

from __future__ import annotations

import pytest
import torch

from polyhead.backbones import ConvNeXt, SwinBackbone
from polyhead.errors import ConfigError, InputError

TINY_SWIN = {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 3), "window_size": 4}
TINY_CONVNEXT = {"depths": (1, 1, 1, 1), "dims": (8, 16, 16, 16)}


@pytest.mark.parametrize(("cls", "kwargs"), [(SwinBackbone, TINY_SWIN), (ConvNeXt, TINY_CONVNEXT)])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_maps_follow_feature_info_for_non_cubic_inputs(cls, kwargs, spatial_dims):
    torch.manual_seed(0)
    backbone = cls(spatial_dims=spatial_dims, in_channels=2, **kwargs)
    sizes = (32, 64, 96)[-spatial_dims:]
    maps = backbone(torch.randn(1, 2, *sizes)).feature_maps
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in backbone.feature_info]
    for fmap, info in zip(maps, backbone.feature_info):
        assert tuple(fmap.shape[2:]) == tuple(s // info["reduction"] for s in sizes)
    reductions = [f["reduction"] for f in backbone.feature_info]
    assert reductions == sorted(reductions) and reductions[-1] == backbone.size_divisor


def test_feature_info_of_the_published_shapes():
    assert [f["reduction"] for f in SwinBackbone(**TINY_SWIN).feature_info] == [2, 4, 8, 16, 32]
    assert [f["num_chs"] for f in SwinBackbone(**TINY_SWIN).feature_info] == [12, 24, 48, 96, 192]
    convnext = ConvNeXt(spatial_dims=2, dims=(96, 192, 384, 768))
    assert convnext.feature_info == [
        {"num_chs": 96, "reduction": 4},
        {"num_chs": 192, "reduction": 8},
        {"num_chs": 384, "reduction": 16},
        {"num_chs": 768, "reduction": 32},
    ]
    assert sum(p.numel() for p in convnext.parameters()) == pytest.approx(27.8e6, rel=0.01)  # ConvNeXt-T: 28M with its classifier


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (SwinBackbone, {"spatial_dims": 1}, "spatial_dims must be 2"),
        (SwinBackbone, {"depths": (2, 2, 2)}, "has 4 stages"),
        (SwinBackbone, {"feature_size": 12, "num_heads": (5, 6, 12, 24)}, r"num_heads\[0\] \(5\) must divide"),
        (SwinBackbone, {"in_channels": 0}, "in_channels must be a positive integer"),
        (SwinBackbone, {"drop_path_rate": 1.5}, r"drop_path_rate must be a number in \[0, 1\)"),
        (ConvNeXt, {"depths": (1, 1), "dims": (8, 16, 32)}, "the same length"),
        (ConvNeXt, {"kernel_size": 4}, "kernel_size must be odd"),
        (ConvNeXt, {"dims": (8, -1, 16, 16)}, r"dims\[1\] must be a positive integer"),
    ],
)
def test_bad_configs(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize(("cls", "kwargs"), [(SwinBackbone, TINY_SWIN), (ConvNeXt, TINY_CONVNEXT)])
def test_bad_inputs(cls, kwargs):
    backbone = cls(spatial_dims=3, in_channels=1, **kwargs)
    with pytest.raises(InputError, match=r"takes \(B, C, D, H, W\) inputs, got shape \(1, 1, 32, 32\)"):
        backbone(torch.randn(1, 1, 32, 32))  # a 2D image given to a 3D backbone
    with pytest.raises(InputError, match=r"expects 1 input channel\(s\), got 3"):
        backbone(torch.randn(1, 3, 32, 32, 32))
    with pytest.raises(InputError, match="multiples of 32, got \\(32, 32, 40\\)"):
        backbone(torch.randn(1, 1, 32, 32, 40))
    with pytest.raises(InputError, match="floating-point"):
        backbone(torch.zeros(1, 1, 32, 32, 32, dtype=torch.long))
