"""Forecasting metrics (torchmetrics) and the seasonal-naive baseline.

MAE, MSE and sMAPE come from torchmetrics (sMAPE as a fraction in [0, 2], not a percentage). MASE (Hyndman & Koehler, 2006) scales
each window's MAE by the in-sample MAE of the seasonal-naive forecast over that
window's context; the mean quantile loss is the pinball loss averaged over levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError, SymmetricMeanAbsolutePercentageError

__all__ = ["ForecastingMetrics", "seasonal_naive"]


def seasonal_naive(past_values: torch.Tensor, *, horizon: int, period: int) -> torch.Tensor:
    """Repeat the last season: ``(B, L, C)`` -> ``(B, H, C)``; needs ``L >= period``."""
    length = past_values.shape[1]
    period = min(period, length)
    index = length - period + torch.arange(horizon) % period
    return past_values[:, index]


class ForecastingMetrics:
    """Accumulates gathered predictions and computes the task's metrics.

    Args:
        seasonal_period: season length for MASE's scale.
        quantiles: quantile levels of ``quantile_predictions`` (empty for point forecasts).
    """

    def __init__(self, *, seasonal_period: int, quantiles: Sequence[float] = ()) -> None:
        self.seasonal_period = seasonal_period
        self.quantiles = torch.tensor(list(quantiles), dtype=torch.float32)
        self.reset()

    def names(self) -> list[str]:
        return ["mae", "mse", "mase", "smape"] + (["quantile_loss"] if self.quantiles.numel() else [])

    def reset(self) -> None:
        self._mae = MeanAbsoluteError()
        self._mse = MeanSquaredError()
        self._smape = SymmetricMeanAbsolutePercentageError()
        self._mase_sum = 0.0
        self._quantile_sum = 0.0
        self._quantile_seen = False
        self._count = 0

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors to gather across processes for :meth:`update`."""
        selected = {
            "prediction": outputs.prediction,
            "target": batch["future_values"],
            "history": batch["past_values"],
        }
        if outputs.quantile_predictions is not None:
            selected["quantile_predictions"] = outputs.quantile_predictions
        return selected

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        prediction = gathered["prediction"].detach().float().cpu()
        target = gathered["target"].detach().float().cpu()
        history = gathered["history"].detach().float().cpu()
        self._mae.update(prediction, target)
        self._mse.update(prediction, target)
        self._smape.update(prediction, target)
        period = min(self.seasonal_period, history.shape[1] - 1)
        scale = (history[:, period:] - history[:, :-period]).abs().mean(dim=1)  # (B, C)
        window_mae = (prediction - target).abs().mean(dim=1)  # (B, C)
        self._mase_sum += float((window_mae / scale.clamp_min(1e-8)).mean(dim=1).sum())
        if "quantile_predictions" in gathered and self.quantiles.numel():
            q = gathered["quantile_predictions"].detach().float().cpu()
            error = target.unsqueeze(-1) - q  # (B, H, C, Q)
            pinball = torch.maximum(self.quantiles * error, (self.quantiles - 1) * error)
            self._quantile_sum += float(pinball.mean(dim=(1, 2, 3)).sum())
            self._quantile_seen = True
        self._count += prediction.shape[0]

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        result = {
            "mae": float(self._mae.compute()),
            "mse": float(self._mse.compute()),
            "mase": self._mase_sum / self._count,
            "smape": float(self._smape.compute()),
        }
        if self._quantile_seen:
            result["quantile_loss"] = self._quantile_sum / self._count
        return result

    @classmethod
    def of_baseline(cls, windows, *, horizon: int, period: int) -> dict[str, float]:
        """Metrics of the seasonal-naive forecast over ``windows`` (a windows dataset)."""
        metrics = cls(seasonal_period=period)
        history = torch.stack([windows[i]["past_values"] for i in range(len(windows))])
        target = torch.stack([windows[i]["future_values"] for i in range(len(windows))])
        metrics.update({"prediction": seasonal_naive(history, horizon=horizon, period=period), "target": target, "history": history})
        return metrics.compute()
