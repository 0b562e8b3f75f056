"""``PolyheadForForecasting``: patching stem with RevIN -> sequence backbone -> forecast head.

Channel-independent like PatchTST (Nie et al., ICLR 2023): each of the ``C`` series of
a window is normalised on its own (reversible instance normalisation, Kim et al.,
ICLR 2022), cut into patches, encoded by the shared backbone, and projected to the horizon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from polyhead.adapters import Embedded, TaskAdapter
from polyhead.backbones import BackboneSpec
from polyhead.errors import ConfigError, InputError
from polyhead.heads.forecasting import ForecastHead
from polyhead.modeling import PolyheadModel

from .configuration import ForecastingConfig

__all__ = ["ForecastingAdapter", "ForecastingOutput", "PolyheadForForecasting"]


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
    """Reversible instance normalisation over the time axis of ``(B, L, C)``, free of the data's units.

    ``scale = sqrt(var + eps * mean|x|^2)``: the epsilon that keeps a flat window from
    dividing by zero is relative to the window's own magnitude, so multiplying a series
    by ``a`` multiplies ``loc`` and ``scale`` by ``|a|`` and the forecast by ``a`` (an
    absolute epsilon swamps the variance of a series in small units). The statistics are
    computed on the window divided by its largest magnitude, then scaled back, so neither
    the sum nor the variance can overflow or underflow float32. Only an all-zero window,
    which has no scale, gets an absolute floor (the smallest normal float).

    Args:
        num_channels: ``C``, for the affine map.
        affine: learn a per-channel affine map after normalising (RevIN).
        eps: relative variance floor, as a fraction of the squared mean magnitude
            (``1e-10``: a standard deviation of at least ``1e-5`` of the level).
        affine_eps: added to the affine weight when undoing it (RevIN's ``eps^2``).
    """

    def __init__(self, *, num_channels: int, affine: bool, eps: float = 1e-10, affine_eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps
        self.affine_eps = affine_eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_channels))
            self.bias = nn.Parameter(torch.zeros(num_channels))

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``loc, scale: (B, 1, C)`` of ``x: (B, L, C)``; ``statistics(a * x) == (a * loc, |a| * scale)``."""
        largest = x.abs().amax(dim=1, keepdim=True)
        largest = torch.where(largest > 0, largest, torch.ones_like(largest))  # an all-zero window stays zero
        unit = x / largest  # in [-1, 1]: its mean and variance are safe in float32 whatever the units
        loc = unit.mean(dim=1, keepdim=True)
        magnitude = unit.abs().mean(dim=1, keepdim=True)
        scale = torch.sqrt(unit.var(dim=1, keepdim=True, unbiased=False) + self.eps * magnitude * magnitude)
        floor = torch.finfo(x.dtype).tiny
        return loc * largest, (scale * largest).clamp_min(floor)

    def normalise(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        x = (x - loc) / scale
        return x * self.weight + self.bias if self.affine else x

    def undo_affine(self, y: torch.Tensor) -> torch.Tensor:
        """Map model outputs ``(B, H, C, Q)`` back to unit-normalised values."""
        if not self.affine:
            return y
        return (y - self.bias[:, None]) / (self.weight[:, None] + self.affine_eps)  # RevIN's eps^2; unit-free already


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


class ForecastingAdapter(TaskAdapter):
    """Forecasting on a sequence backbone: RevIN + patch tokens in, horizon (and quantiles) out.

    Each of the ``C`` series of a window is normalised on its own and cut into ``N``
    patches; the backbone reads ``(B * C, N, D)`` tokens bidirectionally; the head projects
    them to ``(B * C, H, Q)``, which RevIN maps back to the data's units.
    """

    accepted_kinds = frozenset({"sequence"})
    output_class = ForecastingOutput
    label_names = ("future_values",)
    head_base = ForecastHead

    def __init__(self, config: ForecastingConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if backbone.max_length is not None and config.num_patches > backbone.max_length:
            raise ConfigError(
                f"The context makes {config.num_patches} patches, more than the backbone's max_length "
                f"({backbone.max_length}); raise backbone.max_length or patch_stride."
            )
        self.config = config
        self.revin = _ForecastingRevIN(num_channels=config.num_channels, affine=config.revin and config.revin_affine)
        self.stem = _ForecastingPatchEmbedding(
            patch_length=config.patch_length, patch_stride=config.patch_stride, num_patches=config.num_patches, dim=backbone.dim,
        )
        self.head = self.build_head(config, backbone, num_tokens=config.num_patches, horizon=config.horizon)

    def embed(self, past_values: torch.Tensor) -> Embedded:
        cfg = self.config
        if past_values.dim() != 3 or past_values.shape[1] != cfg.context_length or past_values.shape[2] != cfg.num_channels:
            raise InputError(
                f"past_values must have shape (batch, {cfg.context_length}, {cfg.num_channels}) "
                f"(batch, context_length, num_channels), got {tuple(past_values.shape)}."
            )
        if not past_values.is_floating_point():
            raise InputError(f"past_values must be a floating-point tensor, got {past_values.dtype}.")
        if cfg.revin:
            loc, scale = self.revin.statistics(past_values)
            normalised = self.revin.normalise(past_values, loc, scale)
        else:
            loc, scale, normalised = torch.zeros_like(past_values[:, :1]), torch.ones_like(past_values[:, :1]), past_values
        context = {"loc": loc, "scale": scale, "past_values": past_values}
        return Embedded(x=self.stem(normalised), is_causal=False, context=context)  # (B * C, N, D)

    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        loc, scale = embedded.context["loc"], embedded.context["scale"]
        batch, channels = loc.shape[0], loc.shape[2]
        raw = self.head(features)  # (B * C, H, Q)
        raw = raw.reshape(batch, channels, raw.shape[1], raw.shape[2]).permute(0, 2, 1, 3)  # (B, H, C, Q)
        unit = self.revin.undo_affine(raw) if self.config.revin else raw
        return {"unit": unit, "forecasts": unit * scale[..., None] + loc[..., None]}  # data units

    def loss(self, predictions: dict[str, torch.Tensor], embedded: Embedded, future_values: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, unit = self.config, predictions["unit"]
        if future_values.dim() != 3 or tuple(future_values.shape[1:]) != (cfg.horizon, cfg.num_channels):
            raise InputError(f"future_values must have shape (batch, {cfg.horizon}, {cfg.num_channels}), got {tuple(future_values.shape)}.")
        loc, scale, past = embedded.context["loc"], embedded.context["scale"], embedded.context["past_values"]
        # unit-normalised, like `unit`; an all-zero window has no scale: its loss is taken in data units
        loss_scale = torch.where(past.abs().amax(dim=1, keepdim=True) > 0, scale, torch.ones_like(scale))
        target = (future_values - loc) / loss_scale
        batch, channels = unit.shape[0], unit.shape[2]
        # the head sees (series, horizon, Q): channels fold into the series axis
        return self.head.loss(
            unit.permute(0, 2, 1, 3).reshape(batch * channels, -1, unit.shape[-1]),
            target.permute(0, 2, 1).reshape(batch * channels, -1),
        )

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> ForecastingOutput:
        forecasts = predictions["forecasts"]
        return ForecastingOutput(
            loss=None if losses is None else losses["loss"],
            prediction=forecasts[..., self.head.median_index],
            quantile_predictions=forecasts if self.head.quantiles.numel() else None,
            loc=embedded.context["loc"],
            scale=embedded.context["scale"],
        )


class PolyheadForForecasting(PolyheadModel):
    """Multivariate, channel-independent forecaster: a sequence backbone + :class:`ForecastingAdapter`.

    Example:
        >>> model = PolyheadForForecasting(ForecastingConfig(context_length=32, horizon=8))
        >>> out = model(past_values=torch.randn(4, 32, 1))
        >>> out.prediction.shape, out.quantile_predictions.shape
        (torch.Size([4, 8, 1]), torch.Size([4, 8, 1, 3]))
    """

    config_class = ForecastingConfig
    adapter_class = ForecastingAdapter
    main_input_name = "past_values"
    input_modalities = "time"

    def forward(
        self,
        past_values: torch.Tensor,
        future_values: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ForecastingOutput:
        """Forecast the next ``horizon`` steps.

        Args:
            past_values: ``(B, L, C)`` history, ``L = context_length``.
            future_values: ``(B, H, C)`` targets (transformers' time-series name for the labels);
                when given, ``loss`` is computed.
            return_dict: accepted for transformers compatibility; the output is always
                a :class:`ForecastingOutput`.
        """
        return self.run({"past_values": past_values}, {"future_values": future_values})
