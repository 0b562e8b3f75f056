"""ConvNeXt for images and volumes (one implementation, ``spatial_dims`` 2 or 3).

MONAI has no ConvNeXt backbone (MedNeXt is a whole U-Net), so this is a compact
port of Liu et al., "A ConvNet for the 2020s" (CVPR 2022) on MONAI's N-D layer
factories: patchify stem (stride 4), then stages of depthwise 7^N convolution ->
LayerNorm -> pointwise MLP (4x) -> layer scale -> stochastic depth, with a
LayerNorm + stride-2 convolution between stages. Outputs one map per stage at
strides 4, 8, 16, 32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from polyhead.errors import ConfigError
from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability

from ._base import BackboneOutput, BackboneSpec, FeatureInfo, PyramidBackbone

__all__ = ["ConvNeXt"]


class _ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``(B, C, *spatial)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class _ConvNeXtBlock(GradientCheckpointingLayer):
    """``x + drop_path(gamma * MLP(LN(dwconv(x))))`` on ``(B, C, *spatial)`` (gradient-checkpointable)."""

    def __init__(self, *, spatial_dims: int, dim: int, kernel_size: int, drop_path: float, layer_scale_init: float) -> None:
        super().__init__()
        from monai.networks.layers import Conv, DropPath  # MONAI loads on first use, not at `import polyhead`

        conv = Conv[Conv.CONV, spatial_dims]
        self.depthwise = conv(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pointwise1 = nn.Linear(dim, 4 * dim)
        self.activation = nn.GELU()
        self.pointwise2 = nn.Linear(4 * dim, dim)
        self.layer_scale_init = layer_scale_init
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def reset_parameters(self) -> None:
        """Layer scale back to ``layer_scale_init`` (the layers are initialised by :class:`ConvNeXt`)."""
        if self.gamma is not None:
            nn.init.constant_(self.gamma, self.layer_scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x).movedim(1, -1)  # channels last for the norm and the MLP
        y = self.pointwise2(self.activation(self.pointwise1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.movedim(-1, 1))


@register_backbone("convnext")
class ConvNeXt(PyramidBackbone):
    """ConvNeXt pyramid backbone.

    Args:
        spatial_dims: 2 (images ``(B, C, H, W)``) or 3 (volumes ``(B, C, D, H, W)``).
        in_channels: input channels.
        depths: blocks per stage (ConvNeXt-T: ``(3, 3, 9, 3)``).
        dims: channels per stage (ConvNeXt-T: ``(96, 192, 384, 768)``).
        kernel_size: depthwise kernel size (odd).
        drop_path_rate: stochastic depth, rising linearly to this value over the blocks.
        layer_scale_init: initial layer-scale value; 0 disables layer scale.

    ``feature_info``: ``dims[i]`` channels at stride ``4 * 2**i``.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 3,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        kernel_size: int = 7,
        drop_path_rate: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        self.check_spatial_dims(spatial_dims)
        check_positive("in_channels", in_channels)
        check_positive("kernel_size", kernel_size)
        check_probability("drop_path_rate", drop_path_rate)
        depths, dims = tuple(depths), tuple(dims)
        if not depths or len(depths) != len(dims):
            raise ConfigError(f"depths and dims need one entry per stage and the same length, got {depths} and {dims}.")
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            check_positive(f"depths[{i}]", depth)
            check_positive(f"dims[{i}]", dim)
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size}.")
        if layer_scale_init < 0:
            raise ConfigError(f"layer_scale_init must be >= 0, got {layer_scale_init}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = 4 * 2 ** (len(depths) - 1)
        from monai.networks.layers import Conv  # MONAI loads on first use, not at `import polyhead`

        conv = Conv[Conv.CONV, spatial_dims]

        self.downsamples = nn.ModuleList(
            [nn.Sequential(conv(in_channels, dims[0], kernel_size=4, stride=4), _ChannelsFirstLayerNorm(dims[0], eps=1e-6))]
        )
        for i in range(1, len(dims)):
            self.downsamples.append(
                nn.Sequential(_ChannelsFirstLayerNorm(dims[i - 1], eps=1e-6), conv(dims[i - 1], dims[i], kernel_size=2, stride=2))
            )
        total = sum(depths)  # stochastic depth rising linearly over the blocks (python floats: safe on the meta device)
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(depths, dims):
            blocks = [
                _ConvNeXtBlock(
                    spatial_dims=spatial_dims, dim=dim, kernel_size=kernel_size, drop_path=rates[start + j], layer_scale_init=layer_scale_init
                )
                for j in range(depth)
            ]
            self.stages.append(nn.Sequential(*blocks))
            start += depth
        self.norms = nn.ModuleList([_ChannelsFirstLayerNorm(dim, eps=1e-6) for dim in dims])
        self.feature_info = [FeatureInfo(num_chs=dim, reduction=4 * 2**i) for i, dim in enumerate(dims)]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ConvNeXt's init: truncated normal (std 0.02) linear and convolution weights, zero biases."""
        self.apply(self._trunc_normal_init)

    @staticmethod
    def _trunc_normal_init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @classmethod
    def describe(cls, **kwargs) -> BackboneSpec:
        args = cls.arguments(kwargs)
        dims = tuple(args["dims"])
        return BackboneSpec(
            kind="pyramid", feature_info=tuple(FeatureInfo(num_chs=d, reduction=4 * 2**i) for i, d in enumerate(dims)),
            spatial_dims=args["spatial_dims"], in_channels=args["in_channels"], size_divisor=4 * 2 ** (len(dims) - 1),
        )

    @classmethod
    def example_config(cls) -> dict:
        return {"spatial_dims": 2, "in_channels": 3, "depths": (1, 1, 1, 1), "dims": (8, 16, 16, 16)}

    def parameter_depths(self) -> dict[str, int]:
        """The stem 0, block ``k`` (counted over all stages) ``k + 1``; a downsampling layer goes with the
        first block after it, an output norm with the last block before it."""
        first = [0]
        for stage in self.stages:
            first.append(first[-1] + len(stage))
        prefixes = {"downsamples.0.": 0}
        for i, stage in enumerate(self.stages):
            prefixes.update({f"stages.{i}.{j}.": first[i] + j + 1 for j in range(len(stage))})
            prefixes[f"norms.{i}."] = first[i + 1]
            if i:
                prefixes[f"downsamples.{i}."] = first[i] + 1
        return self._depths_by_prefix(prefixes, default=0)

    def forward(self, x: torch.Tensor, *, output_hidden_states: bool = False) -> BackboneOutput:
        """``x: (B, in_channels, *spatial)`` -> ``feature_maps``: ``(B, dims[i], *spatial / 4*2**i)``.

        ``hidden_states``: the stem's output, then each stage's (before its output norm), as
        transformers' ConvNext returns them.
        """
        self.check_inputs(x)
        features, hidden_states = [], []
        for i, (downsample, stage, norm) in enumerate(zip(self.downsamples, self.stages, self.norms)):
            x = downsample(x)
            if i == 0:
                hidden_states.append(x)
            x = stage(x)
            hidden_states.append(x)
            features.append(norm(x))
        return BackboneOutput(feature_maps=tuple(features), hidden_states=tuple(hidden_states) if output_hidden_states else None)
