"""Swin Transformer for images and volumes: MONAI's ``SwinTransformer``, wrapped.

MONAI's implementation (the encoder of Swin-UNETR; Hatamizadeh et al., 2022, after
Liu et al., ICCV 2021) handles 2D and 3D with shifted windows and patch merging.
polyhead adds only the backbone contract: checked arguments, ``feature_info`` and a
:class:`BackboneOutput`. Outputs, finest first: the patch embedding (stride
``patch_size``) and the four stages (strides ``2 * patch_size`` ... ``16 * patch_size``),
each layer-normalised over channels as in Swin-UNETR.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn
from transformers.initialization import meta_device_safe_creation_ops
from transformers.modeling_layers import GradientCheckpointingLayer

from polyhead.errors import ConfigError
from polyhead.registry import register_backbone
from polyhead.validation import check_positive, check_probability

from ._base import BackboneOutput, BackboneSpec, FeatureInfo, PyramidBackbone

__all__ = ["SwinBackbone"]

#: MONAI's patch merging layers: ``"merging"`` (MONAI's ``PatchMerging``, the Swin-UNETR checkpoints') or
#: ``"mergingv2"`` (``PatchMergingV2``); the two differ only in 3D, in the order of the 2x2x2 sub-patches.
_DOWNSAMPLES = ("merging", "mergingv2")


@functools.cache
def _checkpointable_block_class() -> type[nn.Module]:
    """MONAI's ``SwinTransformerBlock`` as a :class:`GradientCheckpointingLayer` (same modules, same state dict).

    Made on first use (MONAI loads lazily) and kept as this module's ``_SwinBlock``, so models pickle.
    """
    from monai.networks.nets.swin_unetr import SwinTransformerBlock

    global _SwinBlock
    _SwinBlock = type("_SwinBlock", (GradientCheckpointingLayer, SwinTransformerBlock), {"__module__": __name__})
    return _SwinBlock


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
        patch_norm: layer-normalise the patch embedding (timm's and torchvision's Swin do; Swin-UNETR
            does not). Needed to start from an ImageNet Swin (``pretrained=``).
        downsample: ``"merging"`` (MONAI's default, the Swin-UNETR checkpoints') or ``"mergingv2"``:
            the patch merging layer. They differ only in 3D, in the order of the 2x2x2 sub-patches.

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
        patch_norm: bool = False,
        downsample: str = "merging",
    ) -> None:
        super().__init__()
        self.check_spatial_dims(spatial_dims)
        for name, value in (("in_channels", in_channels), ("feature_size", feature_size), ("window_size", window_size), ("patch_size", patch_size)):
            check_positive(name, value)
        check_positive("mlp_ratio", mlp_ratio, integer=False)
        check_probability("drop_path_rate", drop_path_rate)
        check_probability("attention_dropout", attention_dropout)
        if downsample not in _DOWNSAMPLES:
            raise ConfigError(f"downsample must be one of {', '.join(map(repr, _DOWNSAMPLES))}, got {downsample!r}.")
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
        from monai.networks.nets.swin_unetr import SwinTransformerBlock
        # MONAI computes its drop-path schedule with torch.linspace(...).item(): on the CPU even under torch.device("meta")
        with meta_device_safe_creation_ops():
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
                patch_norm=patch_norm,
                downsample=downsample,
            )
        block_class = _checkpointable_block_class()
        for block in self.encoder.modules():
            if type(block) is SwinTransformerBlock:
                block.__class__ = block_class
        self.feature_info = [FeatureInfo(num_chs=feature_size * 2**i, reduction=patch_size * 2**i) for i in range(5)]

    def reset_parameters(self) -> None:
        """MONAI's init of the relative position bias tables (truncated normal, std 0.02); its layers keep torch's."""
        from monai.networks.nets.swin_unetr import WindowAttention

        for module in self.encoder.modules():
            if isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

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

    def parameter_depths(self) -> dict[str, int]:
        """The patch embedding 0, Swin block ``k`` (counted over all stages) ``k + 1``; a stage's patch merging
        goes with its last block, Swin-UNETR v2's residual conv block with the first block after it."""
        first = [0]
        for name in ("layers1", "layers2", "layers3", "layers4"):
            first.append(first[-1] + len(getattr(self.encoder, name)[0].blocks))
        prefixes = {"encoder.patch_embed.": 0}
        for i, name in enumerate(("layers1", "layers2", "layers3", "layers4")):
            prefixes.update({f"encoder.{name}.0.blocks.{j}.": first[i] + j + 1 for j in range(first[i + 1] - first[i])})
            prefixes[f"encoder.{name}.0.downsample."] = first[i + 1]
            prefixes[f"encoder.{name}c."] = first[i] + 1
        return self._depths_by_prefix(prefixes, default=0)

    def forward(self, x: torch.Tensor, *, output_hidden_states: bool = False) -> BackboneOutput:
        """``x: (B, in_channels, *spatial)`` -> 5 maps ``(B, C * 2**i, *spatial / (patch_size * 2**i))``.

        ``hidden_states``: the same 5 maps (the patch embedding, then each stage).
        """
        self.check_inputs(x)
        maps = tuple(self.encoder(x, normalize=self.normalize))
        return BackboneOutput(feature_maps=maps, hidden_states=maps if output_hidden_states else None)
