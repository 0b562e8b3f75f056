"""``ForecastingConfig``: the architecture of a forecasting model."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive

__all__ = ["ForecastingConfig", "TIME_FEATURES"]

#: Calendar features a model can compute from timestamps, each scaled to [-0.5, 0.5] (GluonTS's
#: ``time_feature`` convention): name -> (timestamp attribute, largest value).
TIME_FEATURES: dict[str, tuple[str, int]] = {
    "minute_of_hour": ("minute", 59),
    "hour_of_day": ("hour", 23),
    "day_of_week": ("dayofweek", 6),
    "day_of_month": ("day", 30),
    "day_of_year": ("dayofyear", 365),
    "week_of_year": ("week", 52),
    "month_of_year": ("month", 11),
}


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 4, "position": "sinusoidal", "max_length": 128}


def _default_head() -> dict:
    return {"type": "forecast", "quantiles": [0.1, 0.5, 0.9]}


class ForecastingConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForForecasting`.

    Attributes:
        backbone: sequence backbone, ``{"type": "transformer", ...}``.
        head: forecasting head, ``{"type": "forecast", "quantiles": [...]}``.
        context_length: history steps the model reads, ``L``; shorter histories are left-padded and masked.
        horizon: future steps it predicts, ``H`` (the most a pipeline call can ask for).
        num_channels: number of target series, ``C`` (channel-independent model).
        patch_length: steps per patch token.
        patch_stride: steps between patch starts.
        revin: reversible instance normalisation of each window (Kim et al., ICLR 2022), over its observed steps.
        revin_affine: learn a per-channel affine map after normalising.
        patch_mask: also feed each patch's observed-values mask to the patch embedding (as
            Chronos-Bolt and TimesFM do), so a missing value is not read as the window's mean.
            Missing values are zeroed and patches with none observed are padding tokens either way.
        trend_skip: add to the head's output the extrapolation of a least-squares line through the
            window's observed (normalised) steps, weighted per horizon step by learned weights: the head
            forecasts the deviation from the trend (the linear-trend part of DLinear, Zeng et al., AAAI 2023,
            and of N-BEATS' trend basis), so short trending histories are extrapolated.
        target_columns: names of the target columns of the training data, in channel order.
        time_column: name of the time column in the training data, if any.
        id_column: name of the series-id column of the training data (long format), if any.
        freq: pandas frequency alias of the training data (``"W-SAT"``), or a list of them for
            a panel of several frequencies; the pipeline warns for a history of another frequency.
        seasonal_period: season length in steps for MASE and the baselines; ``None``: from each
            series' frequency (GluonTS's seasonality: ``M`` 12, ``Q`` 4, ``W`` 1, ``D`` 7, ``h`` 24, ...).
        time_features: calendar features computed from the timestamps (:data:`TIME_FEATURES`),
            known in the future: the first channels of ``past_time_features`` / ``future_time_features``.
        covariate_columns: known-future real covariates of the data (prices, holidays), the
            following channels of ``past_time_features`` / ``future_time_features``.
        static_categories: static categorical features of each series (store, region): column ->
            its known categories, in id order from 1 (id 0: a category the training data did not have).
    """

    model_type = "polyhead-forecasting"
    task = "forecasting"

    backbone: dict = dataclasses.field(default_factory=_default_backbone)
    head: dict = dataclasses.field(default_factory=_default_head)
    context_length: int = 104
    horizon: int = 52
    num_channels: int = 1
    patch_length: int = 8
    patch_stride: int = 8
    revin: bool = True
    revin_affine: bool = True
    patch_mask: bool = False
    trend_skip: bool = False
    target_columns: list = dataclasses.field(default_factory=lambda: ["value"])
    time_column: str | None = None
    id_column: str | None = None
    freq: str | list | None = None
    seasonal_period: int | None = 1
    time_features: list = dataclasses.field(default_factory=list)
    covariate_columns: list = dataclasses.field(default_factory=list)
    static_categories: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self, **kwargs) -> None:
        for name in ("context_length", "horizon", "num_channels", "patch_length", "patch_stride"):
            check_positive(name, getattr(self, name))
        if self.seasonal_period is not None:
            check_positive("seasonal_period", self.seasonal_period)
        if self.patch_length > self.context_length:
            raise ConfigError(
                f"patch_length ({self.patch_length}) must not exceed context_length ({self.context_length})."
            )
        self.target_columns = [str(c) for c in self.target_columns]
        if len(self.target_columns) != self.num_channels:
            raise ConfigError(
                f"target_columns {self.target_columns} has {len(self.target_columns)} names, "
                f"but num_channels is {self.num_channels}."
            )
        unknown = [f for f in self.time_features if f not in TIME_FEATURES]
        if unknown:
            raise ConfigError(f"Unknown time feature(s) {unknown}; known: {', '.join(TIME_FEATURES)}.")
        self.time_features = [str(f) for f in self.time_features]
        self.covariate_columns = [str(c) for c in self.covariate_columns]
        if not all(isinstance(v, (list, tuple)) for v in self.static_categories.values()):
            raise ConfigError(f"static_categories must map each static column to a list of its categories, got {self.static_categories!r}.")
        self.static_categories = {str(k): [str(c) for c in v] for k, v in self.static_categories.items()}
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        """Patch tokens per series: ``(L - patch_length) // patch_stride + 1``."""
        return (self.context_length - self.patch_length) // self.patch_stride + 1

    @property
    def static_columns(self) -> list[str]:
        """The static categorical columns, in the order of ``static_categorical_features``."""
        return list(self.static_categories)

    @property
    def cardinality(self) -> list[int]:
        """Embedding rows per static column: its categories + the unseen one."""
        return [len(v) + 1 for v in self.static_categories.values()]

    @property
    def num_time_features(self) -> int:
        """Channels of ``past_time_features`` / ``future_time_features``: calendar features, then covariates."""
        return len(self.time_features) + len(self.covariate_columns)

    @property
    def num_future_patches(self) -> int:
        """Tokens that carry the future covariates: ``ceil(H / patch_length)`` (0 without covariates)."""
        return -(-self.horizon // self.patch_length) if self.num_time_features else 0

    @property
    def num_tokens(self) -> int:
        """Tokens per series the backbone reads: the static token, the patches, the future-covariate tokens."""
        return (1 if self.static_columns else 0) + self.num_patches + self.num_future_patches

    @property
    def training_freqs(self) -> list[str]:
        """``freq`` as a list (empty when unknown)."""
        if self.freq is None:
            return []
        return [self.freq] if isinstance(self.freq, str) else [str(f) for f in self.freq]
