"""Forecasting heads: flatten the patch tokens and project them to the horizon.

Reference: Nie et al., "A Time Series is Worth 64 Words: Long-term Forecasting
with Transformers" (PatchTST, ICLR 2023), the "flatten head".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from polyhead.backbones._base import ComputedBuffers, FeatureInfo
from polyhead.errors import ConfigError
from polyhead.registry import register_head
from polyhead.validation import check_positive, check_probability, look_up_option

from ._base import Head

__all__ = ["ForecastHead", "pinball_loss"]

_POINT_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


def pinball_loss(predictions: torch.Tensor, targets: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Mean quantile (pinball) loss.

    Args:
        predictions: ``(..., Q)`` one forecast per quantile level.
        targets: ``(...)`` observed values.
        quantiles: ``(Q,)`` levels in ``(0, 1)``.
    """
    error = targets.unsqueeze(-1) - predictions
    return torch.maximum(quantiles * error, (quantiles - 1) * error).mean()


@register_head("forecast")
class ForecastHead(Head, ComputedBuffers):
    """Flatten-and-project forecasting head with point or quantile outputs.

    Args:
        feature_info: the backbone's ``feature_info`` (one sequence output).
        num_tokens: number of tokens (patches) per series, ``N``.
        horizon: number of future steps, ``H``.
        quantiles: quantile levels; empty for a point forecast. When given, they
            must be increasing, in ``(0, 1)``, and include ``0.5`` (the point forecast).
        point_loss: ``"mse"``, ``"mae"`` or ``"huber"``, used without quantiles.
        dropout: dropout before the projection.

    Shapes:
        ``forward(feature_maps)`` with ``feature_maps[0]: (S, N, D)`` (``S`` series)
        returns ``(S, H, Q)``, ``Q = len(quantiles)`` or 1.
    """

    accepted_kinds = frozenset({"sequence"})

    def __init__(
        self,
        *,
        feature_info: Sequence[FeatureInfo],
        num_tokens: int,
        horizon: int,
        quantiles: Sequence[float] = (),
        point_loss: str = "mse",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(feature_info=feature_info)
        if len(self.feature_info) != 1:
            raise ConfigError(
                f"ForecastHead reads one sequence feature map, but the backbone has {len(self.feature_info)} outputs."
            )
        check_positive("num_tokens", num_tokens)
        check_positive("horizon", horizon)
        check_probability("dropout", dropout)
        quantiles = [float(q) for q in quantiles]
        if quantiles:
            if any(not 0.0 < q < 1.0 for q in quantiles) or sorted(set(quantiles)) != quantiles or 0.5 not in quantiles:
                raise ConfigError(
                    f"quantiles must be increasing levels in (0, 1) that include 0.5, got {quantiles}."
                )
        self.point_loss_fn = look_up_option(point_loss, _POINT_LOSSES, "point loss")
        self.horizon = horizon
        self.num_outputs = max(len(quantiles), 1)
        self.median_index = quantiles.index(0.5) if quantiles else 0
        self.quantile_levels = quantiles
        self.register_buffer("quantiles", torch.empty(len(quantiles)), persistent=True)
        self.reset_computed_buffers()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(num_tokens * self.feature_info[0]["num_chs"], horizon * self.num_outputs)

    def reset_computed_buffers(self) -> None:
        """``quantiles``: the quantile levels of the constructor, ``(Q,)``."""
        init.copy_(self.quantiles, torch.tensor(self.quantile_levels, dtype=torch.float32))

    @classmethod
    def example_kwargs(cls, *, example_inputs: Mapping[str, torch.Tensor]) -> dict:
        return {"num_tokens": example_inputs["x"].shape[1], "horizon": 3, "quantiles": (0.1, 0.5, 0.9)}

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        tokens = feature_maps[0]
        flat = self.dropout(tokens.flatten(1))
        return self.projection(flat).reshape(tokens.shape[0], self.horizon, self.num_outputs)

    def point(self, outputs: torch.Tensor) -> torch.Tensor:
        """The point forecast ``(S, H)``: the median when quantiles are predicted."""
        return outputs[..., self.median_index]

    def example_targets(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.randn(outputs.shape[:-1])

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``outputs: (S, H, Q)``, ``targets: (S, H)`` -> ``{"loss"}``."""
        if self.quantiles.numel():
            return {"loss": pinball_loss(outputs, targets, self.quantiles.to(outputs.dtype))}
        return {"loss": self.point_loss_fn(self.point(outputs), targets)}
