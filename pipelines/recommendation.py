"""``recommendation`` pipeline: a history in, the top-k next items out; or a CTR row in, a click probability out.

Example:
    >>> import polyhead
    >>> rec = polyhead.pipeline("recommendation")              # the embedded next-item default (MovieLens-100k)
    >>> rec({"history": [50, 172, 133]}, top_k=3)
    [{"item_id": 174, "score": 7.1, "title": "Raiders of the Lost Ark"}, ...]
    >>> ctr = polyhead.pipeline("recommendation", model="runs/ctr/best")
    >>> ctr({"user_id": 12, "item_id": 50, "age": 24, "gender": "M", "occupation": "student", "genre": "Comedy"})
    {"click_probability": 0.73}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from polyhead.errors import InputError
from polyhead.tasks.recommendation.metrics import mask_items

__all__ = ["RecommendationPipeline"]


class RecommendationPipeline(Pipeline):
    """Next-item retrieval (a ``polyhead-next-item`` model) or CTR scoring (a ``polyhead-ctr`` model).

    Inputs: one dict or a list of dicts. Next-item: ``{"history": [item ids, oldest
    first]}``; the output is a list of ``{"item_id", "score", "title"}`` (title when
    the catalogue has titles), best first, with the history's items excluded unless
    ``exclude_history=False``. CTR: ``{field: value}`` with every schema field; the
    output is ``{"click_probability": float}``.

    Parameters: ``top_k`` (next-item, default 10), ``exclude_history`` (default
    ``True``), ``on_unknown`` (``"error"``, default, or ``"skip"``: drop unknown item
    ids / use the unseen-category id).
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, Mapping):
            return super().__call__([inputs], **kwargs)[0]
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise InputError("Got an empty batch of inputs.")
            bad = [type(x).__name__ for x in inputs if not isinstance(x, Mapping)]
            if bad:
                raise InputError(f"A batch is a list of dicts; got element type(s) {sorted(set(bad))}.")
            return super().__call__(list(inputs), **kwargs)
        raise InputError(
            "Expected a dict ({'history': [item ids]} for next-item, {field: value} for CTR) or a list of them, "
            f"got {type(inputs).__name__}."
        )

    def _sanitize_parameters(self, top_k: int | None = None, exclude_history: bool | None = None, on_unknown: str | None = None, **kwargs: Any):
        if kwargs:
            raise InputError(f"Unknown pipeline argument(s) {sorted(kwargs)}; this pipeline takes top_k, exclude_history, on_unknown.")
        preprocess, postprocess = {}, {}
        if on_unknown is not None:
            if not isinstance(on_unknown, str) or on_unknown not in ("error", "skip"):
                raise InputError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}.")
            preprocess["on_unknown"] = on_unknown
        given = [name for name, value in (("top_k", top_k), ("exclude_history", exclude_history)) if value is not None]
        if given and self.feature_extractor.objective != "next_item":
            raise InputError(f"{' and '.join(given)} apply to next-item models; this is a CTR model (its output is one click probability).")
        if top_k is not None:
            if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
                raise InputError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess["top_k"] = int(top_k)
        if exclude_history is not None:
            if not isinstance(exclude_history, (bool, np.bool_)):
                raise InputError(f"exclude_history must be True or False, got {exclude_history!r}.")
            postprocess["exclude_history"] = bool(exclude_history)
        return preprocess, {}, postprocess

    def preprocess(self, inputs: Any, on_unknown: str = "error") -> dict[str, Any]:
        processor = self.feature_extractor
        if processor.objective == "next_item":
            history = processor.encode_history(inputs, on_unknown=on_unknown, truncate=False)  # all of it is excluded
            return {"input_ids": torch.tensor([processor.pad(history)]), "history": history}  # pad() keeps the last max_length
        return {"features": torch.from_numpy(processor.encode_rows([inputs], on_unknown=on_unknown))}  # training's encoder

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        history = model_inputs.pop("history", None)
        outputs = self.model(**model_inputs)
        if history is not None:
            return {"scores": outputs.scores, "history": history}
        return {"probabilities": outputs.probabilities}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int = 10, exclude_history: bool = True) -> Any:
        if "probabilities" in model_outputs:
            return {"click_probability": float(model_outputs["probabilities"].reshape(-1)[0])}
        processor = self.feature_extractor
        scores = model_outputs["scores"].float().reshape(1, -1)
        if exclude_history:
            scores = mask_items(scores, torch.tensor([model_outputs["history"]]))
        available = int(torch.isfinite(scores).sum())
        values, indices = scores[0].topk(min(top_k, available))
        results = []
        for value, index in zip(values.tolist(), indices.tolist()):
            row: dict[str, Any] = {"item_id": processor.item_id(index), "score": float(value)}
            if processor.item_titles:
                row["title"] = processor.item_titles[index]
            results.append(row)
        return results
