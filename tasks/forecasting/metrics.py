"""Forecasting metrics (torchmetrics), over the observed targets only.

MAE, MSE and sMAPE come from torchmetrics (sMAPE as a fraction in [0, 2], not a
percentage). MASE (Hyndman & Koehler, 2006) divides each window's MAE by the in-sample
MAE of the seasonal-naive forecast over the observed steps of that window's context and is
averaged over windows and channels (windows whose context has no scale are left out). With quantiles: ``quantile_loss`` is the pinball loss
averaged over levels, and ``wql`` the weighted quantile loss of GluonTS and the Chronos
benchmark, ``2 * sum(pinball) / sum(|target|)`` averaged over levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import MeanAbsoluteError, MeanSquaredError, SymmetricMeanAbsolutePercentageError

__all__ = ["ForecastingMetrics", "seasonal_naive", "window_scores"]


def seasonal_naive(past_values: torch.Tensor, *, horizon: int, period: int) -> torch.Tensor:
    """Repeat the last season: ``(B, L, C)`` -> ``(B, H, C)``; needs ``L >= period``."""
    length = past_values.shape[1]
    period = min(period, length)
    index = length - period + torch.arange(horizon) % period
    return past_values[:, index]


def _context_scale(history: torch.Tensor, mask: torch.Tensor, period: int) -> torch.Tensor:
    """``(B, C)`` mean |seasonal difference| of the observed context steps (lag ``period``, else 1)."""
    scales = torch.full(history.shape[::2], float("nan"))
    for lag in (period, 1):
        if history.shape[1] <= lag:
            continue
        both = mask[:, lag:] & mask[:, :-lag]
        diffs = (history[:, lag:] - history[:, :-lag]).abs() * both
        count = both.sum(dim=1)
        found = (count > 0) & torch.isnan(scales)
        scales = torch.where(found, diffs.sum(dim=1) / count.clamp_min(1), scales)
    return scales


def window_scores(prediction: np.ndarray, target: np.ndarray, scale: np.ndarray, quantiles: np.ndarray | None = None,
                  levels: Sequence[float] = ()) -> dict[str, float]:
    """Scores of one forecast of one series: ``prediction, target (h,)`` with NaN targets ignored.

    Returns ``mase`` (NaN when ``scale`` is 0 or NaN), ``abs_error`` (sum of |error|),
    ``abs_target`` (sum of |target|) and, with ``quantiles (h, Q)``, ``pinball`` (sum over
    steps of the pinball loss averaged over levels): what the benchmark aggregates.
    """
    seen = np.isfinite(target)
    error = np.abs(prediction[seen] - target[seen])
    out = {
        "mase": float(error.mean() / scale) if seen.any() and np.isfinite(scale) and scale > 0 else float("nan"),
        "abs_error": float(error.sum()),
        "abs_target": float(np.abs(target[seen]).sum()),
    }
    if quantiles is not None and len(levels):
        q = np.asarray(levels, dtype=np.float64)
        diff = target[seen, None] - quantiles[seen]
        out["pinball"] = float(np.maximum(q * diff, (q - 1) * diff).mean(axis=1).sum())
    return out


class ForecastingMetrics:
    """Accumulates gathered predictions and computes the task's metrics.

    Args:
        seasonal_period: season length for MASE's scale (``None``: 1).
        quantiles: quantile levels of ``quantile_predictions`` (empty for point forecasts).
    """

    def __init__(self, *, seasonal_period: int | None, quantiles: Sequence[float] = ()) -> None:
        self.seasonal_period = seasonal_period or 1
        self.quantiles = torch.tensor(list(quantiles), dtype=torch.float32)
        self.reset()

    def names(self) -> list[str]:
        return ["mae", "mse", "mase", "smape"] + (["quantile_loss", "wql"] if self.quantiles.numel() else [])

    def reset(self) -> None:
        self._mae = MeanAbsoluteError()
        self._mse = MeanSquaredError()
        self._smape = SymmetricMeanAbsolutePercentageError()
        self._mase_sum = 0.0
        self._mase_count = 0
        self._quantile_sum = 0.0
        self._quantile_count = 0
        self._pinball_sum = 0.0
        self._abs_target = 0.0
        self._count = 0

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors to gather across processes for :meth:`update`."""
        target = batch["future_values"]
        selected = {
            "prediction": outputs.prediction,
            "target": target,
            "target_mask": batch.get("future_observed_mask", torch.isfinite(target)),
            "history": batch["past_values"],
            "history_mask": batch.get("past_observed_mask", torch.isfinite(batch["past_values"])),
        }
        if outputs.quantile_predictions is not None:
            selected["quantile_predictions"] = outputs.quantile_predictions
        return selected

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        prediction = gathered["prediction"].detach().float().cpu()
        target = gathered["target"].detach().float().cpu()
        mask = gathered.get("target_mask", torch.isfinite(target)).detach().cpu().bool() & torch.isfinite(target)
        if mask.any():
            self._mae.update(prediction[mask], target[mask])
            self._mse.update(prediction[mask], target[mask])
            self._smape.update(prediction[mask], target[mask])
        if "mase_scale" in gathered:
            scale = gathered["mase_scale"].detach().float().cpu()
        else:
            history = gathered["history"].detach().float().cpu()
            history_mask = gathered.get("history_mask", torch.isfinite(history)).detach().cpu().bool()
            scale = _context_scale(torch.where(history_mask, history, 0.0), history_mask, self.seasonal_period)
        steps = mask.sum(dim=1)  # (B, C)
        window_mae = ((prediction - target).abs() * mask).nan_to_num().sum(dim=1) / steps.clamp_min(1)
        valid = (steps > 0) & torch.isfinite(scale) & (scale > 0)
        self._mase_sum += float((window_mae[valid] / scale[valid]).sum())
        self._mase_count += int(valid.sum())
        if "quantile_predictions" in gathered and self.quantiles.numel():
            q = gathered["quantile_predictions"].detach().float().cpu()
            error = torch.where(mask, target, 0.0).unsqueeze(-1) - q  # (B, H, C, Q)
            pinball = torch.maximum(self.quantiles * error, (self.quantiles - 1) * error).mean(dim=-1) * mask  # (B, H, C)
            self._quantile_sum += float(pinball.sum())
            self._quantile_count += int(mask.sum())
            self._pinball_sum += float(pinball.sum())
            self._abs_target += float((torch.where(mask, target, 0.0).abs()).sum())
        self._count += prediction.shape[0]

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        result = {
            "mae": float(self._mae.compute()),
            "mse": float(self._mse.compute()),
            "mase": self._mase_sum / self._mase_count if self._mase_count else float("nan"),
            "smape": float(self._smape.compute()),
        }
        if self._quantile_count:
            result["quantile_loss"] = self._quantile_sum / self._quantile_count
            result["wql"] = 2 * self._pinball_sum / self._abs_target if self._abs_target > 0 else float("nan")
        return result
