"""``time-series-forecasting`` pipeline: a history (or a panel of them) in, a forecast (and quantiles) out.

Example:
    >>> import polyhead
    >>> fc = polyhead.pipeline("time-series-forecasting")   # the zero-shot default
    >>> out = fc(sales)                      # a daily pandas Series named "sales"
    >>> out["forecast"]["sales"][:3], out["timestamps"][:3]   # daily timestamps after the history's end
    >>> fc(sales, prediction_length=7)       # any horizon up to the model's
    >>> fc(panel)                            # a long table item_id, timestamp, target -> one result per series
    >>> fc(sales, plot=True)                 # a matplotlib Figure: history, median, 10-90% band
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import Pipeline

from polyhead.errors import InputError
from polyhead.tasks.forecasting.processing import SeriesInput, is_single_series

__all__ = ["TimeSeriesForecastingPipeline", "plot_forecasts"]

_PLOT_SERIES = 6  # a panel's plot shows its first this many series


@dataclass
class _PanelItem:
    """One series of a long table, as the pipeline hands it to ``preprocess``."""

    item_id: str
    frame: pd.DataFrame


class TimeSeriesForecastingPipeline(Pipeline):
    """Forecast up to ``horizon`` steps after each history.

    Inputs: one history (pandas Series/DataFrame, 1-D/2-D numpy array, list of numbers or
    of rows, torch tensor), a list of histories, or a long DataFrame with a series-id column
    (``item_id``, ``unique_id`` or the model's ``id_column``; a panel). Output per history:
    ``{"target_columns", "forecast": {column: [h floats]}, "quantiles": {column: {level: [h
    floats]}} (quantile heads), "timestamps": [h ISO dates] (when the history had a regular
    time index), "item_id" (panels)}``; the column names are the input's own.

    Call arguments:
        prediction_length: steps to forecast, 1..the model's horizon (default: the horizon).
        future_covariates: a DataFrame of the model's known covariates for the next steps
            (with the id column for a panel).
        time_column / id_column / target_columns: name the DataFrame's columns when they are
            not the model's or the usual ones.
        plot: ``True`` returns a matplotlib Figure of the history, the median and the
            quantile band (a panel's first six series) instead of the forecasts; a file path
            saves that figure there and returns the forecasts.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        plot = kwargs.pop("plot", False)
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim > 3:
            raise InputError(
                f"Expected one history (steps,) / (steps, channels) or a batch (batch, steps, channels), "
                f"got a {inputs.ndim}-D array of shape {tuple(inputs.shape)}."
            )
        single = False
        if isinstance(inputs, pd.DataFrame) and self.feature_extractor.find_id_column(inputs, kwargs.get("id_column")) is not None:
            column = self.feature_extractor.find_id_column(inputs, kwargs.get("id_column"))
            batch = [_PanelItem(str(key), part.drop(columns=[column])) for key, part in inputs.groupby(column, sort=False)]
        elif isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim == 3:
            batch = list(inputs)
        elif is_single_series(inputs):
            if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
                raise InputError("Got an empty history.")
            batch, single = [inputs], True
        elif isinstance(inputs, (list, tuple)):
            batch = list(inputs)
        else:
            batch, single = [inputs], True  # an unsupported type: preprocess says what was expected
        if not batch:
            raise InputError("Got an empty batch of histories.")
        kwargs.pop("id_column", None)
        outputs = super().__call__(batch, **kwargs)
        if plot is not False and plot is not None:
            figure = plot_forecasts(outputs)
            if plot is True:
                return figure
            figure.savefig(os.fspath(plot), dpi=120, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(figure)
        for out in outputs:
            out.pop("_history", None)
        return outputs[0] if single else outputs

    def _sanitize_parameters(self, prediction_length: int | None = None, future_covariates: Any = None, time_column: str | None = None,
                             target_columns: Any = None, **kwargs: Any):
        if kwargs:
            raise InputError(
                f"Unknown pipeline argument(s) {sorted(kwargs)}; this pipeline takes prediction_length, future_covariates, "
                "time_column, id_column, target_columns and plot."
            )
        horizon = self.model.config.horizon
        if prediction_length is not None:
            if isinstance(prediction_length, bool) or not isinstance(prediction_length, (int, np.integer)) or not 0 < prediction_length <= horizon:
                raise InputError(f"prediction_length must be an integer in 1..{horizon} (this model's horizon), got {prediction_length!r}.")
        if isinstance(target_columns, str):
            target_columns = [target_columns]
        pre = {"future_covariates": future_covariates, "time_column": time_column, "target_columns": target_columns,
               "prediction_length": prediction_length}
        return pre, {}, {"prediction_length": prediction_length}

    def preprocess(self, history: Any, future_covariates: Any = None, time_column: str | None = None, target_columns: Any = None,
                   prediction_length: int | None = None) -> dict[str, Any]:
        item_id = None
        if isinstance(history, _PanelItem):
            item_id, history = history.item_id, history.frame
        series = self.feature_extractor.to_series(
            history, time_column=time_column, target_columns=target_columns, future_covariates=future_covariates,
            prediction_length=prediction_length, item_id=item_id,
        )
        return {**self.feature_extractor.tensors([series]), "series": series}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        series = model_inputs.pop("series")
        outputs = self.model(**model_inputs)
        return {"prediction": outputs.prediction, "quantile_predictions": outputs.quantile_predictions, "series": series}

    def postprocess(self, model_outputs: dict[str, Any], prediction_length: int | None = None) -> dict[str, Any]:
        config = self.model.config
        series: SeriesInput = model_outputs["series"]
        steps = prediction_length or config.horizon
        columns = list(series.names)
        prediction = model_outputs["prediction"][0].float().cpu().numpy()[:steps]  # (h, C)
        result: dict[str, Any] = {}
        if series.item_id is not None:
            result["item_id"] = series.item_id
        result["target_columns"] = columns
        result["forecast"] = {c: prediction[:, i].tolist() for i, c in enumerate(columns)}
        quantiles = model_outputs["quantile_predictions"]
        if quantiles is not None:
            levels = [float(q) for q in config.head.get("quantiles", [])]
            q = quantiles[0].float().cpu().numpy()[:steps]  # (h, C, Q)
            result["quantiles"] = {
                c: {str(level): q[:, i, j].tolist() for j, level in enumerate(levels)} for i, c in enumerate(columns)
            }
        future = self.feature_extractor.future_index(series.index, steps, series.freq)
        if future is not None:
            result["timestamps"] = [ts.isoformat() for ts in future]
        result["_history"] = series
        return result


def plot_forecasts(results: list[dict[str, Any]], *, max_series: int = _PLOT_SERIES):
    """A matplotlib Figure of each result's history, median and outer quantile band (the first ``max_series``).

    ``results`` are the pipeline's outputs while they still carry their history (``plot=True``).
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline") and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r, c) for r in results for c in r["target_columns"]][:max_series]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels)), squeeze=False)
    for ax, (result, column) in zip(axes[:, 0], panels):
        series: SeriesInput = result["_history"]
        channel = result["target_columns"].index(column)
        history = series.history[:, channel]
        shown = history[-min(len(history), 4 * len(result["forecast"][column]) + 60):]
        forecast = np.asarray(result["forecast"][column])
        if "timestamps" in result and series.index is not None:
            past_x = series.index[-len(shown):]
            future_x = pd.DatetimeIndex(result["timestamps"])
        else:
            past_x = np.arange(-len(shown), 0)
            future_x = np.arange(len(forecast))
        ax.plot(past_x, shown, color="0.25", linewidth=1.0, label="history")
        ax.plot(future_x, forecast, color="tab:blue", linewidth=1.5, label="median")
        levels = sorted(result.get("quantiles", {}).get(column, {}), key=float)
        if len(levels) >= 2:
            low, high = np.asarray(result["quantiles"][column][levels[0]]), np.asarray(result["quantiles"][column][levels[-1]])
            ax.fill_between(future_x, low, high, color="tab:blue", alpha=0.25, linewidth=0, label=f"{float(levels[0]):g}-{float(levels[-1]):g} quantiles")
        title = f"{result['item_id']}: {column}" if "item_id" in result else column
        ax.set_title(title, fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure
