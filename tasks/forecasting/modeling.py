"""``PolyheadForForecasting``: patching stem with RevIN -> sequence backbone -> forecast head.

Channel-independent like PatchTST (Nie et al., ICLR 2023): each of the ``C`` series of
a window is normalised on its own (reversible instance normalisation, Kim et al.,
ICLR 2022), cut into patches, encoded by the shared backbone, and projected to the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from polyhead.errors import ConfigError, InputError
from polyhead.heads.forecasting import ForecastHead
from polyhead.modeling import PolyheadPreTrainedModel
from polyhead.registry import BACKBONES, HEADS, build, get

from .configuration import ForecastingConfig

__all__ = ["ForecastingOutput", "PolyheadForForecasting"]


@dataclass
class ForecastingOutput(ModelOutput):
    """Output of :class:`PolyheadForForecasting`.

    Attributes:
        loss: scalar training loss in normalised units; set exactly when
            ``future_values`` is given.
        prediction: ``(B, H, C)`` point forecast in the data's units.
        quantile_predictions: ``(B, H, C, Q)`` forecasts per quantile level, or
            ``None`` for a point-forecast head.
        loc: ``(B, 1, C)`` per-window mean used by RevIN.
        scale: ``(B, 1, C)`` per-window standard deviation used by RevIN.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    quantile_predictions: torch.Tensor | None = None
    loc: torch.Tensor | None = None
    scale: torch.Tensor | None = None


class _ForecastingRevIN(nn.Module):
    """Reversible instance normalisation over the time axis of ``(B, L, C)``."""

    def __init__(self, *, num_channels: int, affine: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = x.mean(dim=1, keepdim=True)
        scale = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)
        return loc, scale

    def normalise(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = (x - loc) / scale
        return x * self.weight + self.bias if self.affine else x

    def undo_affine(self, y: torch.Tensor) -> torch.Tensor:
        """Map model outputs ``(B, H, C, Q)`` back to unit-normalised values."""
        if not self.affine:
            return y
        return (y - self.bias[:, None]) / (self.weight[:, None] + self.eps * self.eps)  # eps^2, as in RevIN


class _ForecastingPatchEmbedding(nn.Module):
    """``(B, L, C)`` -> ``(B * C, N, D)`` patch tokens."""

    def __init__(self, *, patch_length: int, patch_stride: int, num_patches: int, dim: int) -> None:
        super().__init__()
        self.patch_length = patch_length
        self.patch_stride = patch_stride
        self.used_length = (num_patches - 1) * patch_stride + patch_length
        self.projection = nn.Linear(patch_length, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        series = x[:, x.shape[1] - self.used_length :, :].transpose(1, 2)  # (B, C, L')
        patches = series.unfold(2, self.patch_length, self.patch_stride)  # positive dim: exports correctly
        tokens = self.projection(patches)  # (B, C, N, D)
        return tokens.reshape(-1, tokens.shape[2], tokens.shape[3])


class PolyheadForForecasting(PolyheadPreTrainedModel):
    """Multivariate, channel-independent forecaster.

    Example:
        >>> model = PolyheadForForecasting(ForecastingConfig(context_length=32, horizon=8))
        >>> out = model(past_values=torch.randn(4, 32, 1))
        >>> out.prediction.shape, out.quantile_predictions.shape
        (torch.Size([4, 8, 1]), torch.Size([4, 8, 1, 3]))
    """

    config_class = ForecastingConfig
    main_input_name = "past_values"
    input_modalities = "time"

    def __init__(self, config: ForecastingConfig) -> None:
        super().__init__(config)
        head_cls = get(HEADS, config.head.get("type"))
        if not issubclass(head_cls, ForecastHead):
            raise ConfigError(
                f"The forecasting task needs a forecasting head such as 'forecast', got {config.head['type']!r}."
            )
        self.backbone = build(BACKBONES, config.backbone)
        if self.backbone.kind != "sequence":
            raise ConfigError(
                f"Forecasting needs a sequence backbone; {config.backbone['type']!r} is a {self.backbone.kind} backbone."
            )
        if self.backbone.max_length is not None and config.num_patches > self.backbone.max_length:
            raise ConfigError(
                f"The context makes {config.num_patches} patches, more than the backbone's max_length "
                f"({self.backbone.max_length}); raise backbone.max_length or patch_stride."
            )
        self.revin = _ForecastingRevIN(num_channels=config.num_channels, affine=config.revin and config.revin_affine)
        self.stem = _ForecastingPatchEmbedding(
            patch_length=config.patch_length,
            patch_stride=config.patch_stride,
            num_patches=config.num_patches,
            dim=self.backbone.dim,
        )
        self.head = build(
            HEADS,
            config.head,
            feature_info=self.backbone.feature_info,
            num_tokens=config.num_patches,
            horizon=config.horizon,
        )
        self.post_init()

    def _check_inputs(self, past_values: torch.Tensor, future_values: torch.Tensor | None) -> None:
        cfg = self.config
        if past_values.dim() != 3 or past_values.shape[1] != cfg.context_length or past_values.shape[2] != cfg.num_channels:
            raise InputError(
                f"past_values must have shape (batch, {cfg.context_length}, {cfg.num_channels}) "
                f"(batch, context_length, num_channels), got {tuple(past_values.shape)}."
            )
        if not past_values.is_floating_point():
            raise InputError(f"past_values must be a floating-point tensor, got {past_values.dtype}.")
        if future_values is not None and (
            future_values.dim() != 3 or tuple(future_values.shape[1:]) != (cfg.horizon, cfg.num_channels)
        ):
            raise InputError(
                f"future_values must have shape (batch, {cfg.horizon}, {cfg.num_channels}), "
                f"got {tuple(future_values.shape)}."
            )

    def forward(
        self,
        past_values: torch.Tensor,
        future_values: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ForecastingOutput:
        """Forecast the next ``horizon`` steps.

        Args:
            past_values: ``(B, L, C)`` history, ``L = context_length``.
            future_values: ``(B, H, C)`` targets; when given, ``loss`` is computed.
            return_dict: accepted for transformers compatibility; the output is always
                a :class:`ForecastingOutput`.
        """
        self._check_inputs(past_values, future_values)
        batch, _, channels = past_values.shape
        if self.config.revin:
            loc, scale = self.revin.statistics(past_values)
        else:
            loc = torch.zeros_like(past_values[:, :1])
            scale = torch.ones_like(past_values[:, :1])
        normalised = self.revin.normalise(past_values, loc, scale) if self.config.revin else past_values
        tokens = self.stem(normalised)  # (B * C, N, D)
        features = self.backbone(tokens).feature_maps
        raw = self.head(features)  # (B * C, H, Q)
        raw = raw.reshape(batch, channels, raw.shape[1], raw.shape[2]).permute(0, 2, 1, 3)  # (B, H, C, Q)
        unit = self.revin.undo_affine(raw) if self.config.revin else raw
        forecasts = unit * scale[..., None] + loc[..., None]  # data units

        loss = None
        if future_values is not None:
            target = (future_values - loc) / scale  # unit-normalised, like `unit`
            # heads see (series, horizon, Q): fold channels into the series axis
            loss = self.head.loss(
                unit.permute(0, 2, 1, 3).reshape(batch * channels, -1, unit.shape[-1]),
                target.permute(0, 2, 1).reshape(batch * channels, -1),
            )["loss"]
        point = forecasts[..., self.head.median_index]
        has_quantiles = self.head.quantiles.numel() > 0
        return ForecastingOutput(
            loss=loss,
            prediction=point,
            quantile_predictions=forecasts if has_quantiles else None,
            loc=loc,
            scale=scale,
        )
