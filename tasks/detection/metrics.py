"""Detection metrics: COCO mAP with torchmetrics' ``MeanAveragePrecision`` (pycocotools backend).

Reports ``map`` (IoU 0.50:0.95), ``map_50``, ``map_75`` and ``map_<class>`` per class, on
boxes in the network's input pixels (the post-processing the pipeline uses, clipped to each image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .modeling import labels_from_padded

__all__ = ["DetectionMetrics"]


class DetectionMetrics:
    """Accumulates gathered raw outputs, post-processes them and computes COCO mAP.

    Args:
        class_names: names in class-index order (per-class metrics are ``map_<name>``).
        postprocess: ``(outputs, image_sizes) -> [{"scores", "labels", "boxes"}]``, the processor's.
    """

    def __init__(self, *, class_names: Sequence[str], postprocess: Any) -> None:
        self.class_names = [str(n) for n in class_names]
        self.postprocess = postprocess
        self.reset()

    def names(self) -> list[str]:
        return ["map", "map_50", "map_75"] + [f"map_{n}" for n in self.class_names]

    def reset(self) -> None:
        from torchmetrics.detection import MeanAveragePrecision  # here, not at import: torchmetrics takes seconds

        self._map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools")
        self._count = 0

    @staticmethod
    def select(outputs: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The tensors to gather across processes for :meth:`update` (all fixed-size per batch)."""
        return {
            "logits": outputs.logits, "box_regression": outputs.box_regression, "centerness": outputs.centerness,
            "anchors": outputs.anchors, "labels": batch["labels"], "image_sizes": batch["image_sizes"],
        }

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        gathered = {k: v.detach().cpu() for k, v in gathered.items()}
        sizes = [tuple(int(v) for v in s) for s in gathered["image_sizes"]]
        predictions = self.postprocess(gathered, sizes)
        targets = [{"boxes": t["boxes"], "labels": t["class_labels"]} for t in labels_from_padded(gathered["labels"])]
        self._map.update(predictions, targets)
        self._count += len(targets)

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        result = self._map.compute()
        metrics = {"map": float(result["map"]), "map_50": float(result["map_50"]), "map_75": float(result["map_75"])}
        per_class = dict(zip(result["classes"].reshape(-1).tolist(), result["map_per_class"].reshape(-1).tolist()))
        for i, name in enumerate(self.class_names):
            metrics[f"map_{name}"] = float(per_class.get(i, -1.0))
        return metrics
