"""``time-series-forecasting`` pipeline: a history in, a forecast (and quantiles) out.

Example:
    >>> import polyhead
    >>> fc = polyhead.pipeline("time-series-forecasting")
    >>> out = fc(history_series)            # pandas Series with a weekly DatetimeIndex
    >>> out["forecast"]["co2"][:3], out["timestamps"][:3]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from polyhead.errors import InputError
from polyhead.tasks.forecasting.processing import is_single_series

__all__ = ["TimeSeriesForecastingPipeline"]


class TimeSeriesForecastingPipeline(Pipeline):
    """Forecast ``horizon`` steps after each history.

    Inputs: one history (pandas Series/DataFrame, 1-D/2-D numpy array, list of
    numbers or of rows, torch tensor) or a list of histories. Output per history:
    ``{"target_columns", "forecast": {column: [H floats]}, "quantiles": {column:
    {level: [H floats]}} (quantile heads only), "timestamps": [H ISO dates] (when
    the history had a time index)}``.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim > 3:
            raise InputError(
                f"Expected one history (steps,) / (steps, channels) or a batch (batch, steps, channels), "
                f"got a {inputs.ndim}-D array of shape {tuple(inputs.shape)}."
            )
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 3:
            batch = list(inputs)
        elif is_single_series(inputs):
            if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
                raise InputError("Got an empty history.")
            return super().__call__([inputs], **kwargs)[0]
        elif isinstance(inputs, (list, tuple)):
            batch = list(inputs)
        else:
            batch = [inputs]  # an unsupported type: preprocess says what was expected
        if not batch:
            raise InputError("Got an empty batch of histories.")
        return super().__call__(batch, **kwargs)

    def _sanitize_parameters(self, **kwargs: Any):
        if kwargs:
            raise InputError(f"Unknown pipeline argument(s) {sorted(kwargs)}; this pipeline takes none.")
        return {}, {}, {}

    def preprocess(self, history: Any) -> dict[str, Any]:
        series = self.feature_extractor.to_series(history)
        return {"past_values": torch.from_numpy(series.values)[None], "index": series.index}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        index = model_inputs.pop("index")
        outputs = self.model(past_values=model_inputs["past_values"])
        return {"prediction": outputs.prediction, "quantile_predictions": outputs.quantile_predictions, "index": index}

    def postprocess(self, model_outputs: dict[str, Any]) -> dict[str, Any]:
        config = self.model.config
        columns = list(config.target_columns)
        prediction = model_outputs["prediction"][0].float().cpu().numpy()  # (H, C)
        result: dict[str, Any] = {
            "target_columns": columns,
            "forecast": {c: prediction[:, i].tolist() for i, c in enumerate(columns)},
        }
        quantiles = model_outputs["quantile_predictions"]
        if quantiles is not None:
            levels = [float(q) for q in config.head.get("quantiles", [])]
            q = quantiles[0].float().cpu().numpy()  # (H, C, Q)
            result["quantiles"] = {
                c: {str(level): q[:, i, j].tolist() for j, level in enumerate(levels)} for i, c in enumerate(columns)
            }
        future = self.feature_extractor.future_index(model_outputs["index"], config.horizon)
        if future is not None:
            result["timestamps"] = [ts.isoformat() for ts in future]
        return result
