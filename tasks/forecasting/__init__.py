"""Time-series forecasting: PatchTST-style patching + RevIN on the shared backbone, for panels of series."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import AutoFeatureExtractor, AutoModel

from polyhead.configuration import register_auto_config
from polyhead.errors import ConfigError, DataError
from polyhead.export import ExportSpec
from polyhead.registry import register_task
from polyhead.streaming import StreamRows
from polyhead.validation import dataclass_from_section

from .._base import Task, TaskData
from .baselines import BASELINES, forecast_many
from .configuration import ForecastingConfig
from .data import (
    MIN_OBSERVED,
    SOURCE_LAYOUTS,
    DataSettings,
    ForecastingWindows,
    SampledWindows,
    WindowSpec,
    describe_range,
    example_series,
    load_frame,
    origins,
    prediction_length_for,
    prepare_panel,
    split_by_time,
    split_last,
)
from .metrics import ForecastingMetrics, seasonal_naive
from .modeling import ForecastingOutput, PolyheadForForecasting
from .processing import ForecastingFeatureExtractor

__all__ = [
    "ForecastingConfig",
    "ForecastingFeatureExtractor",
    "ForecastingMetrics",
    "ForecastingOutput",
    "ForecastingTask",
    "MIN_OBSERVED",
    "example_series",
    "PolyheadForForecasting",
    "seasonal_naive",
]

register_auto_config(ForecastingConfig)
AutoModel.register(ForecastingConfig, PolyheadForForecasting)
AutoFeatureExtractor.register(ForecastingConfig, ForecastingFeatureExtractor)


@register_task("forecasting")
class ForecastingTask(Task):
    """Forecast the next ``horizon`` steps of one or more series, or of a panel of them."""

    name = "forecasting"
    pipeline_task = "time-series-forecasting"
    domain = "time-series"
    models = (PolyheadForForecasting,)
    processor_class = ForecastingFeatureExtractor
    default_config = "forecasting/patchtst_co2.py"
    best_metric = "loss"
    greater_is_better = False
    data_options = tuple(DataSettings.__dataclass_fields__)
    prediction_files = "a .csv / .parquet / .json table of one history (or a panel: id, time and target columns)"

    def prediction_input(self, path: str) -> Any:
        """``polyhead predict MODEL history.csv``: the table as a DataFrame (``#`` note lines above a CSV header skipped)."""
        return load_frame(super().prediction_input(path))

    # -- config and data ---------------------------------------------------------------------------------------------
    def settings(self, data_section: Mapping[str, Any]) -> DataSettings:
        """The data section with the named source's column layout filled in (the section's own keys win)."""
        self.check_data_section(data_section)
        section = dict(data_section)
        source = section.get("source", DataSettings.source)
        if isinstance(source, str) and source in SOURCE_LAYOUTS:
            for key, value in SOURCE_LAYOUTS[source].items():
                section.setdefault(key, value)
        settings = dataclass_from_section(DataSettings, section, "a forecasting data option")
        if not settings.target_columns:
            raise ConfigError("data.target_columns must name the column(s) to forecast.")
        if settings.baselines and any(b not in BASELINES for b in settings.baselines):
            raise ConfigError(f"data.baselines {settings.baselines}: known baselines are {', '.join(BASELINES)}.")
        return settings

    #: data options that say how to evaluate (kept by ``polyhead evaluate --data``); the others describe the training source
    EVALUATION_OPTIONS = ("fill_missing", "prediction_length", "val_windows", "test_windows", "val_fraction", "test_fraction",
                          "eval_stride", "seed", "baselines", "baseline_history")

    def data_section_for(self, data_section: Mapping[str, Any], source: Any, config: ForecastingConfig) -> dict[str, Any]:
        """``polyhead evaluate MODEL --data TABLE``: the training run's evaluation options, and TABLE's own layout.

        The id, time and target columns are read from TABLE as the pipeline reads a history: the columns the
        model was trained on when TABLE has them, else a datetime column (or a usual name such as ``date``), an id
        column of a usual name (``item_id``, ``unique_id``, ...) and the one numeric column left per channel.
        """
        section = {k: v for k, v in data_section.items() if k in self.EVALUATION_OPTIONS}
        section["source"] = source
        if isinstance(source, str) and source in SOURCE_LAYOUTS:
            return section
        frame = load_frame(source)
        processor = self.build_processor(config)
        time_column = processor.find_time_column(frame)
        id_column = processor.find_id_column(frame)
        if all(c in frame.columns for c in config.target_columns):
            targets = list(config.target_columns)
        else:
            skip = {time_column, id_column, *config.covariate_columns, *config.static_columns}
            targets = [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])
                       and not pd.api.types.is_bool_dtype(frame[c])]
            if len(targets) != config.num_channels:
                raise ConfigError(
                    f"The model forecasts {config.num_channels} channel(s) {config.target_columns}; {source} has the numeric "
                    f"column(s) {targets}; give a table with the model's target columns, or exactly one numeric column per "
                    "channel besides the time and id columns."
                )
        return {**section, "time_column": time_column, "id_column": id_column, "target_columns": targets,
                "covariate_columns": list(config.covariate_columns), "static_columns": list(config.static_columns)}

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> ForecastingConfig:
        data = self.settings(data_section)
        section = dict(model_section)
        targets = [str(c) for c in data.target_columns]
        section.setdefault("target_columns", targets)
        section.setdefault("num_channels", len(targets))
        section.setdefault("time_column", data.time_column)
        section.setdefault("id_column", data.id_column)
        section.setdefault("covariate_columns", list(data.covariate_columns))
        section.setdefault("static_categories", {c: [] for c in data.static_columns})  # filled from the data
        return ForecastingConfig.from_model_section(section)

    def build_processor(self, config: ForecastingConfig) -> ForecastingFeatureExtractor:
        return ForecastingFeatureExtractor.from_config(config)

    def build_data(self, data_section: Mapping[str, Any], config: ForecastingConfig) -> TaskData:
        s = self.settings(data_section)
        if len(s.target_columns) != config.num_channels:
            raise ConfigError(f"The model forecasts {config.num_channels} channel(s); data.target_columns names {len(s.target_columns)}.")
        if list(s.covariate_columns) != list(config.covariate_columns):
            raise ConfigError(f"The model takes the covariates {config.covariate_columns}; data.covariate_columns is {list(s.covariate_columns)}.")
        if list(s.static_columns) != config.static_columns:
            raise ConfigError(f"The model takes the static columns {config.static_columns}; data.static_columns is {list(s.static_columns)}.")
        known = config.static_categories if all(config.static_categories.values()) else None
        panel = prepare_panel(
            load_frame(s.source), target_columns=s.target_columns, time_column=s.time_column, id_column=s.id_column,
            covariate_columns=s.covariate_columns, static_columns=s.static_columns, static_categories=known,
            holdout_column=s.holdout_column, freq=s.freq, fill_missing=s.fill_missing,
        )
        if config.freq is None and panel.freqs:
            config.freq = panel.freqs[0] if len(panel.freqs) == 1 else list(panel.freqs)
        if known is None and s.static_columns:
            config.static_categories = panel.static_categories
        if config.time_features and not all(it.timestamps is not None and it.freq for it in panel.items):
            raise DataError(f"The model's time_features {config.time_features} need a time column with a regular frequency.")
        if s.synthetic and (config.num_channels != 1 or config.num_time_features or config.static_columns):
            raise ConfigError("data.synthetic draws univariate series without covariates; this model has more inputs.")

        H = config.horizon
        fractions = s.val_fraction is not None or s.test_fraction is not None
        rows: dict[str, list[tuple[int, int, int]]] = {"train": [], "validation": [], "test": []}
        skipped = 0
        for index, item in enumerate(panel.items):
            if s.prediction_length in (None, "auto"):
                h = prediction_length_for(item.freq, H) if s.prediction_length == "auto" else H
            else:
                h = int(s.prediction_length)
                if not 0 < h <= H:
                    raise ConfigError(f"data.prediction_length ({h}) must be in 1..{H} (the model's horizon).")
            stride = int(s.eval_stride or h)
            length = len(item.values)
            if fractions:
                try:
                    split = split_by_time(length, context_length=config.context_length, horizon=h,
                                          val_fraction=s.val_fraction or 0.1, test_fraction=s.test_fraction or 0.2)
                except DataError:
                    if len(panel.items) == 1:
                        raise
                    skipped += 1
                    continue
            elif item.heldout:
                split = split_last(length, prediction_length=h, val_windows=0, test_windows=s.test_windows)
            else:
                split = split_last(length, prediction_length=h, val_windows=s.val_windows,
                                   test_windows=0 if s.holdout_column else s.test_windows)
            found = {
                "test": origins(item, *split.test, prediction_length=h, stride=stride, from_end=True),
                "validation": [] if item.heldout else origins(item, *split.validation, prediction_length=h, stride=stride, from_end=True),
                "train": [] if item.heldout else origins(item, *split.train, prediction_length=h, stride=int(s.train_stride), from_end=False),
            }
            if not any(found.values()):
                skipped += 1
            for name, pairs in found.items():
                rows[name].extend((index, t, end) for t, end in pairs)
        spec = WindowSpec(context_length=config.context_length, horizon=H, time_features=list(config.time_features),
                          num_covariates=len(config.covariate_columns), num_static=len(config.static_columns),
                          seasonal_period=config.seasonal_period)
        empty = [name for name in ("validation", "test") if not rows[name]]
        if empty or not (rows["train"] or s.synthetic):
            missing = empty or ["train"]
            raise DataError(
                f"No {' or '.join(missing)} window fits the data: a window needs {MIN_OBSERVED} observed context steps and its "
                f"targets ({'prediction_length' if s.prediction_length else 'the horizon'}); use longer series or fewer windows."
            )
        arrays = {name: np.asarray(value, dtype=np.int64).reshape(-1, 3) for name, value in rows.items()}
        if s.train_samples:
            train = SampledWindows(panel.items, arrays["train"], spec, num_samples=s.train_samples, seed=s.seed,
                                   truncate=float(s.augment.get("truncate", 0.0)), missing=float(s.augment.get("missing", 0.0)),
                                   synthetic=s.synthetic)
        else:
            train = ForecastingWindows(panel.items, arrays["train"], spec)
        validation = ForecastingWindows(panel.items, arrays["validation"], spec)
        test = ForecastingWindows(panel.items, arrays["test"], spec)
        test.baselines = list(s.baselines)
        test.baseline_history = s.baseline_history
        description = {
            "source": str(s.source) if not hasattr(s.source, "shape") else "DataFrame",
            "target_columns": panel.target_columns,
            "series": len(panel.items),
            "heldout_series": sum(it.heldout for it in panel.items),
            "skipped_series": skipped,
            "steps": int(sum(len(it.values) for it in panel.items)),
            "missing_values": panel.missing_values,
            "filled_values": panel.filled_values,
            "freq": config.freq,
            "splits": {},
        }
        for name, windows in (("train", arrays["train"]), ("validation", arrays["validation"]), ("test", arrays["test"])):
            info: dict[str, Any] = {"windows": len(windows), "series": int(len(np.unique(windows[:, 0]))) if len(windows) else 0}
            if len(panel.items) == 1 and len(windows):
                item = panel.items[0]
                last = int(windows[:, 2].max()) if name != "train" else int(windows[:, 2].max())
                info = {**describe_range(item, int(windows[:, 1].min()), min(last, len(item.values))), **info}
            if name == "train" and s.train_samples:
                info["drawn"] = int(s.train_samples)
            description["splits"][name] = info
        # data.streaming: the training windows as a stream (the panel itself is read whole: splits are by time per series)
        return TaskData(train=train, validation=validation, test=test, description=description, train_stream=StreamRows.of_indices(train))

    def build_metrics(self, config: ForecastingConfig) -> ForecastingMetrics:
        return ForecastingMetrics(seasonal_period=config.seasonal_period, quantiles=config.head.get("quantiles", ()))

    # -- export ------------------------------------------------------------------------------------------------------
    def export_spec(self, config: ForecastingConfig) -> ExportSpec:
        """Dynamic batch; the context length, horizon and channels are fixed by the flatten head.

        The graph takes ``past_values`` and ``past_observed_mask`` (short histories are
        left-padded and masked), plus the time features and static ids when the model has them.
        """
        outputs = ["prediction"] + (["quantile_predictions"] if config.head.get("quantiles") else [])
        names = ["past_values", "past_observed_mask"]
        if config.num_time_features:
            names += ["past_time_features", "future_time_features"]
        if config.static_columns:
            names.append("static_categorical_features")
        L, H, C, F = config.context_length, config.horizon, config.num_channels, config.num_time_features

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            batch = sizes["batch"]
            level = torch.randn(batch, 1, C) * 10
            mask = torch.ones(batch, L, C, dtype=torch.bool)
            for b in range(batch):  # some histories shorter than the context, some gaps
                mask[b, : (b * 7) % max(L - MIN_OBSERVED, 1)] = False
                mask[b, torch.randperm(L)[: L // 10]] = False
                mask[b, -1] = True
            values = torch.where(mask, level + torch.randn(batch, L, C), torch.zeros(()))
            inputs = {"past_values": values, "past_observed_mask": mask}
            if F:
                inputs["past_time_features"] = torch.rand(batch, L, F) - 0.5
                inputs["future_time_features"] = torch.rand(batch, H, F) - 0.5
            if config.static_columns:
                inputs["static_categorical_features"] = torch.stack(
                    [torch.randint(0, c, (batch,)) for c in config.cardinality], dim=1)
            return inputs

        axes = {name: {0: "batch"} for name in names}
        return ExportSpec(input_names=names, output_names=outputs, output_class=ForecastingOutput, make_inputs=make_inputs, dynamic_axes=axes)

    @classmethod
    def example_configs(cls) -> list[ForecastingConfig]:
        """Two channels with masks; the same with calendar features, a known covariate and a static column."""
        base = dict(context_length=32, horizon=8, num_channels=2, target_columns=["a", "b"], patch_length=8, patch_stride=4,
                    backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16},
                    head={"type": "forecast", "quantiles": [0.1, 0.5, 0.9]}, patch_mask=True)
        return [
            ForecastingConfig(**base),
            ForecastingConfig(**base, time_features=["day_of_week"], covariate_columns=["price"], static_categories={"store": ["a", "b"]}),
        ]

    # -- baselines ---------------------------------------------------------------------------------------------------
    def baselines(self, data: TaskData, config: ForecastingConfig) -> dict[str, dict[str, float]]:
        """Seasonal naive, ETS, Theta and AutoARIMA (``data.baselines``) on the test windows, with the model's metrics.

        Each is fit per window and channel on the history before the forecast origin (the last
        ``baseline_history`` steps: by default ``max(context_length, 10 seasons)``) and scored by
        :class:`ForecastingMetrics` exactly as the model is (same targets, MASE scaled within the
        same context); ``failed_fits`` counts fits that fell back to the seasonal-naive forecast.
        """
        test = data.test
        names = getattr(test, "baselines", ["seasonal_naive"]) or []
        if not names or not len(test):
            return {}
        levels = [float(q) for q in config.head.get("quantiles", [])] or [0.5]
        histories, horizons, periods, where = [], [], [], []
        for i in range(len(test)):
            history, h, period = test.history(i)
            keep = _history_length(getattr(test, "baseline_history", "auto"), config.context_length, period)
            for c in range(history.shape[1]):
                histories.append(history[-keep:, c] if keep else history[:, c])
                horizons.append(h)
                periods.append(period)
                where.append((i, c))
        batch = [test[i] for i in range(len(test))]
        stacked = {key: torch.stack([b[key] for b in batch]) for key in ("future_values", "future_observed_mask", "past_values", "past_observed_mask")}
        targets = stacked["future_values"]
        results = {}
        for name in names:
            forecasts, failed = forecast_many(name, histories, horizons, periods, levels)
            quantiles = torch.zeros(*targets.shape, len(levels))
            for (i, c), values in zip(where, forecasts):
                quantiles[i, : len(values), c] = torch.as_tensor(values, dtype=torch.float32)
            metrics = ForecastingMetrics(seasonal_period=config.seasonal_period, quantiles=levels if len(levels) > 1 else ())
            median = levels.index(0.5) if 0.5 in levels else len(levels) // 2
            gathered = {"prediction": quantiles[..., median], "target": targets, "target_mask": stacked["future_observed_mask"],
                        "history": stacked["past_values"], "history_mask": stacked["past_observed_mask"]}
            if len(levels) > 1:
                gathered["quantile_predictions"] = quantiles
            metrics.update(gathered)
            results[name] = {**metrics.compute(), **({"failed_fits": failed} if name != "seasonal_naive" else {})}
        return results


def _history_length(setting: Any, context_length: int, period: int) -> int | None:
    if setting is None:
        return None
    if setting == "auto":
        return max(context_length, 10 * period)
    return int(setting)
