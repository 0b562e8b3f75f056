"""UNETR-style decoder for pyramid backbones (Swin-UNETR, Hatamizadeh et al., 2022).

Built from MONAI's blocks: every pyramid level goes through a residual
``UnetrBasicBlock``; from the coarsest level up, ``UnetrUpBlock`` upsamples by the
ratio of neighbouring strides and fuses the skip; ``UnetOutBlock`` maps to class
logits. It reads only ``feature_info``, so any pyramid backbone plugs in. The segmentation
adapter passes the input itself as the finest level (``reduction`` 1), as Swin-UNETR does;
if the finest level is coarser, a transposed convolution restores full resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from polyhead.backbones._base import BackboneKind
from polyhead.errors import ConfigError, InputError
from polyhead.registry import register_head
from polyhead.validation import check_positive

from ._base import Head

__all__ = ["UnetrDecoder"]


@register_head("unetr_decoder")
class UnetrDecoder(Head):
    """Segmentation decoder with skip connections over every pyramid level.

    Args:
        feature_info: the levels, finest first (strides must grow by integer ratios).
        num_labels: classes to predict, background included.
        spatial_dims: 2 or 3.
        feature_size: decoder width at the finest level.
        decoder_channels: decoder width per level; default ``feature_size`` for a
            full-resolution level and the level's own channels elsewhere (Swin-UNETR).
        identity_skip_levels: levels whose features skip the encoder block (Swin-UNETR
            feeds its stride-16 map raw); only where channels already match. Negative indices
            count from the coarsest level (``-1``: the coarsest, whatever the backbone's depth).
        norm_name: MONAI norm name (``"instance"``, ``"batch"``, ...).
        dice_weight / ce_weight: weights of the Dice and cross-entropy losses.

    ``forward(feature_maps)``: maps ``(B, num_chs_i, *S / reduction_i)`` -> logits ``(B, num_labels, *S)``.
    """

    accepted_kinds: ClassVar[frozenset[BackboneKind]] = frozenset({"pyramid"})

    def __init__(
        self,
        *,
        feature_info: Sequence[Mapping[str, int]],
        num_labels: int,
        spatial_dims: int = 3,
        feature_size: int = 12,
        decoder_channels: Sequence[int] | None = None,
        identity_skip_levels: Sequence[int] = (),
        norm_name: str = "instance",
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
    ) -> None:
        from monai.losses import DiceCELoss  # MONAI loads on first use, not at `import polyhead`
        from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
        from monai.networks.blocks.dynunet_block import get_conv_layer

        super().__init__(feature_info=feature_info)
        check_positive("num_labels", num_labels)
        check_positive("feature_size", feature_size)
        if num_labels < 2:
            raise ConfigError(f"num_labels counts the background too: at least 2, got {num_labels}.")
        if spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        reductions = [f["reduction"] for f in self.feature_info]
        for finer, coarser in zip(reductions, reductions[1:]):
            if coarser <= finer or coarser % finer:
                raise ConfigError(f"The decoder needs strides that grow by integer ratios, finest first; got {reductions}.")
        channels = [f["num_chs"] for f in self.feature_info]
        if decoder_channels is None:
            decoder_channels = [feature_size if r == 1 else c for r, c in zip(reductions, channels)]
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != len(channels):
            raise ConfigError(f"decoder_channels needs one width per level ({len(channels)}), got {decoder_channels}.")
        for level in identity_skip_levels:
            if not -len(channels) <= level < len(channels) or channels[level] != decoder_channels[level]:
                raise ConfigError(f"identity_skip_levels: level {level} must exist and keep its width; levels {channels}, decoder {decoder_channels}.")
        identity_skip_levels = {level % len(channels) for level in identity_skip_levels}
        self.spatial_dims = spatial_dims
        self.num_labels = num_labels
        self.encoders = nn.ModuleList(
            nn.Identity()
            if level in identity_skip_levels
            else UnetrBasicBlock(spatial_dims, c, d, kernel_size=3, stride=1, norm_name=norm_name, res_block=True)
            for level, (c, d) in enumerate(zip(channels, decoder_channels))
        )
        self.decoders = nn.ModuleList(
            UnetrUpBlock(
                spatial_dims,
                decoder_channels[i + 1],
                decoder_channels[i],
                kernel_size=3,
                upsample_kernel_size=reductions[i + 1] // reductions[i],
                norm_name=norm_name,
                res_block=True,
            )
            for i in range(len(channels) - 1)
        )
        finest = reductions[0]
        self.final_upsample = (
            get_conv_layer(spatial_dims, decoder_channels[0], decoder_channels[0], kernel_size=finest, stride=finest, conv_only=True, is_transposed=True)
            if finest > 1
            else nn.Identity()
        )
        self.out = UnetOutBlock(spatial_dims, decoder_channels[0], num_labels)
        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=dice_weight, lambda_ce=ce_weight)

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"num_labels": 3, "spatial_dims": example_inputs["x"].dim() - 2, "feature_size": 8}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feature_maps) != len(self.encoders):
            raise InputError(f"{type(self).__name__} was built for {len(self.encoders)} levels, got {len(feature_maps)} feature maps.")
        skips = [encoder(fmap) for encoder, fmap in zip(self.encoders, feature_maps)]
        x = skips[-1]
        for i in range(len(self.decoders) - 1, -1, -1):
            x = self.decoders[i](x, skips[i])
        return self.out(self.final_upsample(x))

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.randint(0, self.num_labels, (outputs.shape[0], 1, *outputs.shape[2:]))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dice + cross-entropy of logits ``(B, K, *S)`` against labels ``(B, 1, *S)`` or ``(B, *S)``."""
        if targets.dim() == outputs.dim() - 1:
            targets = targets.unsqueeze(1)
        if targets.shape[0] != outputs.shape[0] or targets.shape[2:] != outputs.shape[2:] or targets.shape[1] != 1:
            raise InputError(f"labels must have shape {(outputs.shape[0], 1, *outputs.shape[2:])}, got {tuple(targets.shape)}.")
        dice = self.loss_fn.dice(outputs, targets)
        ce = self.loss_fn.ce(outputs, targets)
        return {"loss": self.loss_fn.lambda_dice * dice + self.loss_fn.lambda_ce * ce, "dice_loss": dice.detach(), "ce_loss": ce.detach()}
