"""``PolyheadForForecasting``: patching stem with RevIN -> sequence backbone -> forecast head.

Channel-independent like PatchTST (Nie et al., ICLR 2023): each of the ``C`` series of
a window is normalised on its own observed steps (reversible instance normalisation, Kim
et al., ICLR 2022), cut into patches, encoded by the shared backbone, and projected to the
horizon. Missing steps (``past_observed_mask``, transformers' time-series name) are zeroed
after normalising; a patch with no observed step is a padding token, so a history shorter
than the context is left-padded and masked. Known-future covariates (calendar features,
prices, holidays: ``past_time_features`` / ``future_time_features``) are added to the patch
tokens and appended as future tokens; static categorical features are one extra token.
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
        loss: scalar training loss in normalised units, over the observed targets; set exactly
            when ``future_values`` is given.
        prediction: ``(B, H, C)`` point forecast (the median) in the data's units.
        quantile_predictions: ``(B, H, C, Q)`` forecasts per quantile level, increasing along ``Q``,
            or ``None`` for a point-forecast head.
        loc: ``(B, 1, C)`` per-window mean of the observed steps, used by RevIN.
        scale: ``(B, 1, C)`` per-window standard deviation of the observed steps, used by RevIN.
        hidden_states / attentions: the backbone's blocks' outputs and attention weights, when asked for
            (``output_hidden_states`` / ``output_attentions``; see :meth:`polyhead.modeling.PolyheadModel.run`).
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    quantile_predictions: torch.Tensor | None = None
    loc: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class _ForecastingRevIN(nn.Module):
    """Reversible instance normalisation over the observed steps of ``(B, L, C)``, free of the data's units.

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


    def reset_parameters(self) -> None:
        """The affine map starts as the identity."""
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)
    def statistics(self, x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``loc, scale: (B, 1, C)`` of the observed steps of ``x: (B, L, C)`` (zero where ``observed`` is 0).

        ``statistics(a * x) == (a * loc, |a| * scale)``.
        """
        count = observed.sum(dim=1, keepdim=True).clamp_min(1.0)
        largest = x.abs().amax(dim=1, keepdim=True)
        largest = torch.where(largest > 0, largest, torch.ones_like(largest))  # an all-zero window stays zero
        unit = x / largest  # in [-1, 1]: its mean and variance are safe in float32 whatever the units
        loc = unit.sum(dim=1, keepdim=True) / count
        magnitude = unit.abs().sum(dim=1, keepdim=True) / count
        variance = ((unit - loc) * observed).square().sum(dim=1, keepdim=True) / count
        scale = torch.sqrt(variance + self.eps * magnitude * magnitude)
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
    """``(B, L, C)`` values and observed mask -> ``(B * C, N, D)`` patch tokens and ``(B * C, N)`` padding.

    A patch with no observed step is padding (``True``); with ``mask_input`` the mask of each
    patch is projected too and added to its token.
    """

    def __init__(self, *, patch_length: int, patch_stride: int, num_patches: int, dim: int, mask_input: bool) -> None:
        super().__init__()
        self.patch_length = patch_length
        self.patch_stride = patch_stride
        self.used_length = (num_patches - 1) * patch_stride + patch_length
        self.projection = nn.Linear(patch_length, dim)
        self.mask_projection = nn.Linear(patch_length, dim, bias=False) if mask_input else None

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, C)`` -> ``(B, C, N, P)``: the last ``used_length`` steps cut into patches."""
        series = x[:, x.shape[1] - self.used_length :, :].transpose(1, 2)  # (B, C, L')
        return series.unfold(2, self.patch_length, self.patch_stride)  # positive dim: exports correctly

    def forward(self, x: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, mask = self.patches(x), self.patches(observed)
        tokens = self.projection(values)  # (B, C, N, D)
        if self.mask_projection is not None:
            tokens = tokens + self.mask_projection(mask)
        padding = mask.sum(dim=-1) == 0  # (B, C, N)
        return tokens.reshape(-1, tokens.shape[2], tokens.shape[3]), padding.reshape(-1, padding.shape[2])


class _ForecastingCovariateEmbedding(nn.Module):
    """Known-future covariates ``(B, L + H, F)`` -> past tokens ``(B, N, D)`` and future tokens ``(B, Nf, D)``.

    Calendar features (the first ``num_calendar``) are read as they are (already in [-0.5, 0.5]);
    the other covariates are centred on their window mean and divided by their largest deviation
    in the window, so they are bounded and free of their units. Each patch of ``P`` steps of all
    ``F`` features is one token; the future is cut into ``Nf = ceil(H / P)`` patches (the last
    one padded by repeating the final step), which get a learned "future" embedding on top.
    """

    def __init__(self, *, num_features: int, num_calendar: int, patch_length: int, patch_stride: int,
                 num_patches: int, num_future_patches: int, horizon: int, dim: int) -> None:
        super().__init__()
        self.num_calendar = num_calendar
        self.patch_length = patch_length
        self.patch_stride = patch_stride
        self.used_length = (num_patches - 1) * patch_stride + patch_length
        self.future_pad = num_future_patches * patch_length - horizon
        self.projection = nn.Linear(num_features * patch_length, dim)
        self.future_embedding = nn.Parameter(torch.zeros(dim))

    def reset_parameters(self) -> None:
        """The marker of future tokens starts at zero."""
        nn.init.zeros_(self.future_embedding)

    def _scaled(self, features: torch.Tensor) -> torch.Tensor:
        calendar, covariates = features[..., : self.num_calendar], features[..., self.num_calendar :]
        if covariates.shape[-1]:
            centred = covariates - covariates.mean(dim=1, keepdim=True)
            largest = centred.abs().amax(dim=1, keepdim=True)
            covariates = centred / torch.where(largest > 0, largest, torch.ones_like(largest))
        return torch.cat([calendar, covariates], dim=-1)

    def _tokens(self, features: torch.Tensor, stride: int) -> torch.Tensor:
        patches = features.transpose(1, 2).unfold(2, self.patch_length, stride)  # (B, F, N, P)
        patches = patches.permute(0, 2, 1, 3).flatten(2)  # (B, N, F * P)
        return self.projection(patches)

    def forward(self, past: torch.Tensor, future: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = past.shape[1]
        scaled = self._scaled(torch.cat([past, future], dim=1))
        past_part, future_part = scaled[:, length - self.used_length : length], scaled[:, length:]
        if self.future_pad:
            future_part = torch.cat([future_part, future_part[:, -1:].expand(-1, self.future_pad, -1)], dim=1)
        return self._tokens(past_part, self.patch_stride), self._tokens(future_part, self.patch_length) + self.future_embedding


class _ForecastingTrend(nn.Module):
    """The least-squares line through the observed steps of a normalised window, extrapolated over the horizon.

    ``forward(z, w)`` with ``z, w: (B, L, C)`` (values and observed weights) returns ``(B, H, C)``:
    ``z_mean + slope * (t - t_mean)`` at ``t = L .. L + H - 1``, times a learned weight per step.
    """

    def __init__(self, *, context_length: int, horizon: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.horizon = horizon
        self.weight = nn.Parameter(torch.full((horizon,), 0.5))

    def reset_parameters(self) -> None:
        """Each horizon step starts half trend, half model."""
        nn.init.constant_(self.weight, 0.5)

    def forward(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(self.context_length + self.horizon, device=z.device, dtype=z.dtype)  # no buffer: nothing to restore on loading
        t = steps[: self.context_length][None, :, None]
        count = w.sum(dim=1, keepdim=True).clamp_min(1.0)
        t_mean = (w * t).sum(dim=1, keepdim=True) / count
        z_mean = (w * z).sum(dim=1, keepdim=True) / count
        centred = (t - t_mean) * w
        slope = (centred * (z - z_mean)).sum(dim=1, keepdim=True) / centred.square().sum(dim=1, keepdim=True).clamp_min(1e-6)
        future = steps[self.context_length :][None, :, None]
        return (z_mean + slope * (future - t_mean)) * self.weight[None, :, None]


class ForecastingAdapter(TaskAdapter):
    """Forecasting on a sequence backbone: RevIN + patch tokens in, horizon (and quantiles) out.

    Each of the ``C`` series of a window is normalised on its observed steps and cut into
    ``N`` patches; with covariates, their patch embeddings are added to each series' patch
    tokens and ``Nf`` future-covariate tokens follow; with static features, one token of
    their summed embeddings comes first. The backbone reads the ``(B * C, T, D)`` tokens
    bidirectionally (padding patches masked); the head projects them to ``(B * C, H, Q)``,
    which RevIN maps back to the data's units.
    """

    accepted_kinds = frozenset({"sequence"})
    output_class = ForecastingOutput
    label_names = ("future_values",)
    head_base = ForecastHead

    def __init__(self, config: ForecastingConfig, backbone: BackboneSpec) -> None:
        super().__init__(config, backbone)
        if backbone.max_length is not None and config.num_tokens > backbone.max_length:
            raise ConfigError(
                f"The context makes {config.num_tokens} tokens ({config.num_patches} patches"
                + (f", {config.num_future_patches} future-covariate tokens" if config.num_future_patches else "")
                + (", 1 static token" if config.static_columns else "")
                + f"), more than the backbone's max_length ({backbone.max_length}); raise backbone.max_length or patch_stride."
            )
        self.config = config
        self.revin = _ForecastingRevIN(num_channels=config.num_channels, affine=config.revin and config.revin_affine)
        self.stem = _ForecastingPatchEmbedding(
            patch_length=config.patch_length, patch_stride=config.patch_stride, num_patches=config.num_patches,
            dim=backbone.dim, mask_input=config.patch_mask,
        )
        self.covariates = _ForecastingCovariateEmbedding(
            num_features=config.num_time_features, num_calendar=len(config.time_features), patch_length=config.patch_length,
            patch_stride=config.patch_stride, num_patches=config.num_patches, num_future_patches=config.num_future_patches,
            horizon=config.horizon, dim=backbone.dim,
        ) if config.num_time_features else None
        self.static = nn.ModuleList(nn.Embedding(c, backbone.dim) for c in config.cardinality) if config.cardinality else None
        self.trend = _ForecastingTrend(context_length=config.context_length, horizon=config.horizon) if config.trend_skip else None
        self.head = self.build_head(config, backbone, num_tokens=config.num_tokens, horizon=config.horizon)

    # -- inputs -----------------------------------------------------------------------
    def _check(self, name: str, value: torch.Tensor | None, shape: tuple, what: str) -> None:
        if value is None:
            raise InputError(f"This model takes {name} {what}; it is missing.")
        if value.dim() != len(shape) or any(want is not None and have != want for have, want in zip(value.shape, shape)):
            wanted = ", ".join("batch" if want is None else str(want) for want in shape)
            raise InputError(f"{name} must have shape ({wanted}), got {tuple(value.shape)}.")

    def embed(
        self,
        past_values: torch.Tensor,
        past_observed_mask: torch.Tensor | None = None,
        past_time_features: torch.Tensor | None = None,
        future_time_features: torch.Tensor | None = None,
        static_categorical_features: torch.Tensor | None = None,
    ) -> Embedded:
        cfg = self.config
        if past_values.dim() != 3 or past_values.shape[1] != cfg.context_length or past_values.shape[2] != cfg.num_channels:
            raise InputError(
                f"past_values must have shape (batch, {cfg.context_length}, {cfg.num_channels}) "
                f"(batch, context_length, num_channels), got {tuple(past_values.shape)}."
            )
        if not past_values.is_floating_point():
            raise InputError(f"past_values must be a floating-point tensor, got {past_values.dtype}.")
        if past_observed_mask is None:
            observed = torch.isfinite(past_values)
        else:
            if tuple(past_observed_mask.shape) != tuple(past_values.shape):
                raise InputError(
                    f"past_observed_mask must have the shape of past_values {tuple(past_values.shape)}, got {tuple(past_observed_mask.shape)}."
                )
            observed = past_observed_mask.bool()
        weight = observed.to(past_values.dtype)
        values = torch.where(observed, past_values, torch.zeros_like(past_values))  # NaN-safe: missing steps are zero
        if cfg.revin:
            loc, scale = self.revin.statistics(values, weight)
            normalised = self.revin.normalise(values, loc, scale) * weight
        else:
            loc, scale, normalised = torch.zeros_like(values[:, :1]), torch.ones_like(values[:, :1]), values
        trend = self.trend((values - loc) / scale * weight, weight) if self.trend is not None else None  # (B, H, C), unit-normalised
        tokens, padding = self.stem(normalised, weight)  # (B * C, N, D), (B * C, N)
        batch, channels = values.shape[0], values.shape[2]

        def per_series(extra: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B * C, T, D), each series of a window alike
            return extra[:, None].expand(-1, channels, -1, -1).reshape(batch * channels, extra.shape[1], extra.shape[2])

        parts, masks = [tokens], [padding]
        if self.covariates is not None:
            features = cfg.num_time_features
            self._check("past_time_features", past_time_features, (None, cfg.context_length, features),
                        f"((batch, {cfg.context_length}, {features}): {cfg.time_features + cfg.covariate_columns})")
            self._check("future_time_features", future_time_features, (None, cfg.horizon, features),
                        f"((batch, {cfg.horizon}, {features}): {cfg.time_features + cfg.covariate_columns})")
            past_tokens, future_tokens = self.covariates(past_time_features.to(values.dtype), future_time_features.to(values.dtype))
            parts = [tokens + per_series(past_tokens), per_series(future_tokens)]
            masks.append(torch.zeros_like(padding[:, :1]).expand(-1, future_tokens.shape[1]))
        elif past_time_features is not None or future_time_features is not None:
            raise InputError("This model was trained without time features or covariates; pass only past_values (and past_observed_mask).")
        if self.static is not None:
            self._check("static_categorical_features", static_categorical_features, (None, len(cfg.static_columns)),
                        f"((batch, {len(cfg.static_columns)}) category ids of {cfg.static_columns})")
            if static_categorical_features.is_floating_point():
                raise InputError(f"static_categorical_features must hold integer category ids, got {static_categorical_features.dtype}.")
            ids = static_categorical_features.long()
            cardinality = torch.tensor(cfg.cardinality, device=ids.device)
            ids = torch.where((ids >= 0) & (ids < cardinality), ids, torch.zeros_like(ids))  # out of range: the unseen category
            static = sum(embedding(ids[:, i]) for i, embedding in enumerate(self.static))  # (B, D)
            parts.insert(0, per_series(static[:, None]))
            masks.insert(0, torch.zeros_like(padding[:, :1]))
        elif static_categorical_features is not None:
            raise InputError("This model was trained without static features; drop static_categorical_features.")
        context = {"loc": loc, "scale": scale, "observed": weight, "trend": trend}
        return Embedded(x=torch.cat(parts, dim=1), padding_mask=torch.cat(masks, dim=1), is_causal=False, context=context)

    # -- outputs ----------------------------------------------------------------------
    def predict(self, features: Sequence[torch.Tensor], embedded: Embedded) -> dict[str, torch.Tensor]:
        loc, scale = embedded.context["loc"], embedded.context["scale"]
        batch, channels = loc.shape[0], loc.shape[2]
        raw = self.head(features)  # (B * C, H, Q)
        raw = raw.reshape(batch, channels, raw.shape[1], raw.shape[2]).permute(0, 2, 1, 3)  # (B, H, C, Q)
        unit = self.revin.undo_affine(raw) if self.config.revin else raw
        if embedded.context["trend"] is not None:
            unit = unit + embedded.context["trend"][..., None]
        return {"unit": unit, "forecasts": unit * scale[..., None] + loc[..., None]}  # data units

    def loss(
        self,
        predictions: dict[str, torch.Tensor],
        embedded: Embedded,
        future_values: torch.Tensor,
        future_observed_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        cfg, unit = self.config, predictions["unit"]
        if future_values.dim() != 3 or tuple(future_values.shape[1:]) != (cfg.horizon, cfg.num_channels):
            raise InputError(f"future_values must have shape (batch, {cfg.horizon}, {cfg.num_channels}), got {tuple(future_values.shape)}.")
        observed = torch.isfinite(future_values)
        if future_observed_mask is not None:
            if tuple(future_observed_mask.shape) != tuple(future_values.shape):
                raise InputError(f"future_observed_mask must have the shape of future_values {tuple(future_values.shape)}.")
            observed = observed & future_observed_mask.bool()
        loc, scale, past = embedded.context["loc"], embedded.context["scale"], embedded.context["observed"]
        # unit-normalised, like `unit`; a window without a scale (all zero or nothing observed) is taken in data units
        has_scale = (loc.abs() > 0) | (scale > torch.finfo(scale.dtype).tiny)
        loss_scale = torch.where(has_scale & (past.sum(dim=1, keepdim=True) > 0), scale, torch.ones_like(scale))
        target = (torch.where(observed, future_values, torch.zeros_like(future_values)) - loc) / loss_scale
        # the head takes (series, steps, Q) and (series, steps): the observed targets as one series
        chosen = observed.permute(0, 2, 1).reshape(-1)
        outputs = unit.permute(0, 2, 1, 3).reshape(-1, unit.shape[-1])[chosen]
        targets = target.permute(0, 2, 1).reshape(-1)[chosen]
        if not targets.numel():
            return {"loss": unit.sum() * 0.0}
        return self.head.loss(outputs[None], targets[None])

    def output(self, predictions: dict[str, torch.Tensor], embedded: Embedded, losses: dict[str, torch.Tensor] | None) -> ForecastingOutput:
        forecasts = predictions["forecasts"]
        if forecasts.shape[-1] > 1:
            forecasts = forecasts.sort(dim=-1).values  # quantiles never cross
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
        past_observed_mask: torch.Tensor | None = None,
        past_time_features: torch.Tensor | None = None,
        future_time_features: torch.Tensor | None = None,
        static_categorical_features: torch.Tensor | None = None,
        future_values: torch.Tensor | None = None,
        future_observed_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ForecastingOutput | tuple:
        """Forecast the next ``horizon`` steps.

        Args:
            past_values: ``(B, L, C)`` history, ``L = context_length``; a shorter history is
                left-padded (any value) and masked.
            past_observed_mask: ``(B, L, C)``, true (1) at observed steps; default: the finite values.
            past_time_features: ``(B, L, F)`` calendar features then known covariates (models
                with ``time_features`` / ``covariate_columns`` only).
            future_time_features: ``(B, H, F)`` the same features over the horizon.
            static_categorical_features: ``(B, S)`` category ids of the static columns (0: unseen).
            future_values: ``(B, H, C)`` targets (transformers' time-series name for the labels);
                when given, ``loss`` is computed over the observed ones.
            future_observed_mask: ``(B, H, C)``, true at observed targets; default: the finite values.
            output_attentions / output_hidden_states / return_dict: transformers' output switches
                (see :meth:`polyhead.modeling.PolyheadModel.run`); ``return_dict=False`` gives a tuple.
        """
        inputs = {"past_values": past_values, "past_observed_mask": past_observed_mask, "past_time_features": past_time_features,
                  "future_time_features": future_time_features, "static_categorical_features": static_categorical_features}
        labels = {"future_values": future_values, "future_observed_mask": future_observed_mask} if future_values is not None else {}
        return self.run(inputs, labels, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=return_dict)
