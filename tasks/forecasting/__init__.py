"""Time-series forecasting: PatchTST-style patching + RevIN on the shared backbone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from polyhead.errors import ConfigError
from polyhead.export import ExportSpec
from polyhead.registry import register_task

from .._base import Task, TaskData
from .configuration import ForecastingConfig
from .data import EMBEDDED_SERIES, ForecastingWindows, example_series, load_table, prepare_series, split_by_time
from .metrics import ForecastingMetrics, seasonal_naive
from .modeling import ForecastingOutput, PolyheadForForecasting
from .processing import ForecastingFeatureExtractor

__all__ = [
    "ForecastingConfig",
    "ForecastingFeatureExtractor",
    "ForecastingMetrics",
    "ForecastingOutput",
    "ForecastingTask",
    "example_series",
    "PolyheadForForecasting",
    "seasonal_naive",
]

AutoConfig.register(ForecastingConfig.model_type, ForecastingConfig)
AutoModel.register(ForecastingConfig, PolyheadForForecasting)
AutoFeatureExtractor.register(ForecastingConfig, ForecastingFeatureExtractor)


@register_task("forecasting")
class ForecastingTask(Task):
    """Forecast the next ``horizon`` steps of one or more series."""

    name = "forecasting"
    pipeline_task = "time-series-forecasting"
    domain = "time-series"
    models = (PolyheadForForecasting,)
    processor_class = ForecastingFeatureExtractor
    default_config = "forecasting/patchtst_co2.py"
    best_metric = "loss"
    greater_is_better = False
    data_options = ("source", "time_column", "target_columns", "fill_missing", "val_fraction", "test_fraction", "train_stride", "eval_stride")

    def build_config(self, model_section: Mapping[str, Any], data_section: Mapping[str, Any]) -> ForecastingConfig:
        self.check_data_section(data_section)
        section = dict(model_section)
        source = data_section.get("source", "co2_weekly")
        default_time, default_targets = (EMBEDDED_SERIES[source][1:] if isinstance(source, str) and source in EMBEDDED_SERIES else (None, None))
        targets = list(data_section.get("target_columns") or default_targets or section.get("target_columns") or [])
        if not targets:
            raise ConfigError("data.target_columns must name the column(s) to forecast.")
        section.setdefault("target_columns", targets)
        section.setdefault("num_channels", len(targets))
        section.setdefault("time_column", data_section.get("time_column", default_time))
        return ForecastingConfig.from_model_section(section)

    def build_processor(self, config: ForecastingConfig) -> ForecastingFeatureExtractor:
        return ForecastingFeatureExtractor.from_config(config)

    def build_data(self, data_section: Mapping[str, Any], config: ForecastingConfig) -> TaskData:
        self.check_data_section(data_section)
        source = data_section.get("source", "co2_weekly")
        series = prepare_series(
            load_table(source),
            time_column=config.time_column,
            target_columns=config.target_columns,
            fill_missing=data_section.get("fill_missing", "interpolate"),
        )
        if config.freq is None and series.freq is not None:
            config.freq = series.freq
        split = split_by_time(
            len(series.values),
            context_length=config.context_length,
            horizon=config.horizon,
            val_fraction=float(data_section.get("val_fraction", 0.1)),
            test_fraction=float(data_section.get("test_fraction", 0.2)),
        )
        windows = {
            name: ForecastingWindows(
                series.values,
                context_length=config.context_length,
                horizon=config.horizon,
                target_range=getattr(split, name),
                stride=int(data_section.get("train_stride" if name == "train" else "eval_stride", 1)),
            )
            for name in ("train", "validation", "test")
        }
        stamps = series.timestamps

        def when(step: int) -> str | int:
            return str(stamps[step].date()) if stamps is not None else step

        description = {
            "source": str(source),
            "target_columns": config.target_columns,
            "steps": len(series.values),
            "splits": {
                name: {"targets_from": when(start), "targets_to": when(end - 1), "windows": len(windows[name])}
                for name, (start, end) in (("train", split.train), ("validation", split.validation), ("test", split.test))
            },
        }
        return TaskData(**windows, description=description)

    def build_metrics(self, config: ForecastingConfig) -> ForecastingMetrics:
        return ForecastingMetrics(seasonal_period=config.seasonal_period, quantiles=config.head.get("quantiles", ()))

    def export_spec(self, config: ForecastingConfig) -> ExportSpec:
        """Dynamic batch; the context length and channels are fixed by the flatten head."""
        outputs = ["prediction"] + (["quantile_predictions"] if config.head.get("quantiles") else [])

        def make_inputs(sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
            level = torch.randn(sizes["batch"], 1, config.num_channels) * 10
            return {"past_values": level + torch.randn(sizes["batch"], config.context_length, config.num_channels)}

        return ExportSpec(
            input_names=["past_values"],
            output_names=outputs,
            output_class=ForecastingOutput,
            make_inputs=make_inputs,
            dynamic_axes={"past_values": {0: "batch"}},
        )

    @classmethod
    def example_configs(cls) -> list[ForecastingConfig]:
        return [ForecastingConfig(
            context_length=32, horizon=8, num_channels=2, target_columns=["a", "b"], patch_length=8, patch_stride=4,
            backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "max_length": 16},
            head={"type": "forecast", "quantiles": [0.1, 0.5, 0.9]},
        )]

    def baselines(self, data: TaskData, config: ForecastingConfig) -> dict[str, dict[str, float]]:
        return {
            "seasonal_naive": ForecastingMetrics.of_baseline(
                data.test, horizon=config.horizon, period=config.seasonal_period
            )
        }
