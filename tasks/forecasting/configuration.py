"""``ForecastingConfig``: the architecture of a forecasting model."""

from __future__ import annotations

import dataclasses

from polyhead.configuration import PolyheadConfig
from polyhead.errors import ConfigError
from polyhead.validation import check_positive

__all__ = ["ForecastingConfig"]


def _default_backbone() -> dict:
    return {"type": "transformer", "dim": 64, "depth": 2, "num_heads": 4, "position": "sinusoidal", "max_length": 128}


def _default_head() -> dict:
    return {"type": "forecast", "quantiles": [0.1, 0.5, 0.9]}


class ForecastingConfig(PolyheadConfig):
    """Configuration of :class:`PolyheadForForecasting`.

    Attributes:
        backbone: sequence backbone, ``{"type": "transformer", ...}``.
        head: forecasting head, ``{"type": "forecast", "quantiles": [...]}``.
        context_length: history steps the model reads, ``L``.
        horizon: future steps it predicts, ``H``.
        num_channels: number of target series, ``C`` (channel-independent model).
        patch_length: steps per patch token.
        patch_stride: steps between patch starts.
        revin: reversible instance normalisation of each window (Kim et al., ICLR 2022).
        revin_affine: learn a per-channel affine map after normalising.
        target_columns: names of the target columns, in channel order.
        time_column: name of the time column in the training data, if any.
        freq: pandas frequency alias of the training data (``"W-SAT"``), if known.
        seasonal_period: season length in steps, for MASE and the seasonal-naive baseline.
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
    target_columns: list = dataclasses.field(default_factory=lambda: ["value"])
    time_column: str | None = None
    freq: str | None = None
    seasonal_period: int = 1

    def __post_init__(self, **kwargs) -> None:
        for name in ("context_length", "horizon", "num_channels", "patch_length", "patch_stride", "seasonal_period"):
            check_positive(name, getattr(self, name))
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
        super().__post_init__(**kwargs)

    @property
    def num_patches(self) -> int:
        """Patch tokens per series: ``(L - patch_length) // patch_stride + 1``."""
        return (self.context_length - self.patch_length) // self.patch_stride + 1
