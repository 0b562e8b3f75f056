"""Swin Transformer for images and volumes: MONAI's ``SwinTransformer``, wrapped.

MONAI's implementation (the encoder of Swin-UNETR; Hatamizadeh et al., 2022, after
Liu et al., ICCV 2021) handles 2D and 3D with shifted windows and patch merging.
polyhead adds only the backbone contract: checked arguments, ``feature_info`` and a
:class:`BackboneOutput`. Outputs, finest first: the patch embedding (stride
``patch_size``) and the four stages (strides ``2 * patch_size`` ... ``16 * patch_size``),
each layer-normalised over channels as in Swin-UNETR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from polyhead.errors import ConfigError
from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability

from ._base import BackboneOutput, BackboneSpec, FeatureInfo, PyramidBackbone

__all__ = ["SwinBackbone"]


@register_backbone("swin")
class SwinBackbone(PyramidBackbone):
    """Swin pyramid backbone (MONAI ``SwinTransformer``).

    Args:
        spatial_dims: 2 (images) or 3 (volumes).
        in_channels: input channels.
        feature_size: embedding width ``C`` of the first stage (Swin-UNETR's ``feature_size``).
        depths: Swin blocks per stage (MONAI supports exactly 4 stages).
        num_heads: attention heads per stage.
        window_size: attention window (shrunk by MONAI where a map is smaller).
        patch_size: patch embedding stride.
        mlp_ratio: MLP width relative to the stage width.
        drop_path_rate / attention_dropout: regularisation.
        use_v2: Swin-UNETR v2 (a residual conv block before each stage).
        use_checkpoint: activation checkpointing (less memory, slower).
        normalize: layer-normalise every output, as Swin-UNETR does.

    ``feature_info``: ``C * 2**i`` channels at stride ``patch_size * 2**i`` for i = 0..4.
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 3,
        in_channels: int = 1,
        feature_size: int = 24,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        patch_size: int = 2,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        attention_dropout: float = 0.0,
        use_v2: bool = False,
        use_checkpoint: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.check_spatial_dims(spatial_dims)
        for name, value in (("in_channels", in_channels), ("feature_size", feature_size), ("window_size", window_size), ("patch_size", patch_size)):
            check_positive(name, value)
        check_positive("mlp_ratio", mlp_ratio, integer=False)
        check_probability("drop_path_rate", drop_path_rate)
        check_probability("attention_dropout", attention_dropout)
        depths, num_heads = tuple(depths), tuple(num_heads)
        if len(depths) != 4 or len(num_heads) != 4:
            raise ConfigError(f"MONAI's SwinTransformer has 4 stages: depths and num_heads need 4 entries, got {depths} and {num_heads}.")
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            check_positive(f"depths[{i}]", depth)
            check_positive(f"num_heads[{i}]", heads)
            if (feature_size * 2**i) % heads:
                raise ConfigError(
                    f"num_heads[{i}] ({heads}) must divide stage {i}'s width feature_size * 2**{i} = {feature_size * 2**i}."
                )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.size_divisor = patch_size * 2**4
        self.normalize = normalize
        from monai.networks.nets.swin_unetr import SwinTransformer as MonaiSwinTransformer  # loads MONAI on first use

        self.encoder = MonaiSwinTransformer(
            in_chans=in_channels,
            embed_dim=feature_size,
            window_size=(window_size,) * spatial_dims,
            patch_size=(patch_size,) * spatial_dims,
            depths=depths,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            attn_drop_rate=attention_dropout,
            use_checkpoint=use_checkpoint,
            spatial_dims=spatial_dims,
            use_v2=use_v2,
        )
        self.feature_info = [FeatureInfo(num_chs=feature_size * 2**i, reduction=patch_size * 2**i) for i in range(5)]

    @classmethod
    def describe(cls, **kwargs) -> BackboneSpec:
        args = cls.arguments(kwargs)
        size, patch = args["feature_size"], args["patch_size"]
        return BackboneSpec(
            kind="pyramid", feature_info=tuple(FeatureInfo(num_chs=size * 2**i, reduction=patch * 2**i) for i in range(5)),
            spatial_dims=args["spatial_dims"], in_channels=args["in_channels"], size_divisor=patch * 2**4,
        )

    @classmethod
    def example_config(cls) -> dict:
        return {"spatial_dims": 2, "in_channels": 3, "feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 3, 3), "window_size": 4}

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """``x: (B, in_channels, *spatial)`` -> 5 maps ``(B, C * 2**i, *spatial / (patch_size * 2**i))``."""
        self.check_inputs(x)
        return BackboneOutput(feature_maps=tuple(self.encoder(x, normalize=self.normalize)))
