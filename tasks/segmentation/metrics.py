"""Dice per label and HD95 (MONAI), accumulated over whole volumes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.metrics import compute_dice, compute_hausdorff_distance

__all__ = ["SegmentationMetrics"]


class SegmentationMetrics:
    """Dice and 95th-percentile Hausdorff distance (mm) per foreground label, and their means.

    Computed per volume in the network's grid (``target_spacing``) and averaged over
    volumes; a label absent from both prediction and reference in a volume is skipped
    for that volume (MONAI gives NaN there).
    """

    def __init__(self, *, labels: Sequence[str], spacing: Sequence[float]) -> None:
        self.labels = list(labels)
        self.spacing = [float(s) for s in spacing]
        self.reset()

    def names(self) -> list[str]:
        foreground = self.labels[1:]
        return ["dice", "hd95"] + [f"dice_{n}" for n in foreground] + [f"hd95_{n}" for n in foreground]

    def reset(self) -> None:
        self._dice: list[torch.Tensor] = []
        self._hd95: list[torch.Tensor] = []

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        return {"prediction": outputs.logits.argmax(1).to(torch.uint8), "labels": (labels[:, 0] if labels.dim() == 5 else labels).to(torch.uint8)}

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        num = len(self.labels)
        pred = F.one_hot(gathered["prediction"].long(), num).movedim(-1, 1)
        ref = F.one_hot(gathered["labels"].long(), num).movedim(-1, 1)
        self._dice.append(compute_dice(pred, ref, include_background=False, ignore_empty=True).cpu())
        with warnings.catch_warnings():  # MONAI 1.5 calls its own deprecated argument inside (always_return_as_numpy)
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
            hd95 = compute_hausdorff_distance(pred, ref, include_background=False, percentile=95, spacing=self.spacing)
        self._hd95.append(hd95.cpu())

    def compute(self) -> dict[str, float]:
        if not self._dice:
            return {}
        dice = torch.cat(self._dice).float()  # (volumes, labels - 1)
        hd95 = torch.cat(self._hd95).float()
        hd95 = torch.where(torch.isinf(hd95), torch.nan, hd95)  # a label predicted nowhere: no distance
        result = {"dice": _nanmean(dice), "hd95": _nanmean(hd95)}
        for i, name in enumerate(self.labels[1:]):
            result[f"dice_{name}"] = _nanmean(dice[:, i])
            result[f"hd95_{name}"] = _nanmean(hd95[:, i])
        return result


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else math.nan
