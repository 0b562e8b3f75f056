"""Shared fixtures. Tests run offline and on the CPU, with small models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import pytest
import torch

import polyhead  # noqa: F401  (registers everything)
from polyhead.tasks.forecasting import ForecastingConfig

torch.set_num_threads(2)

#: A small, fast forecasting recipe on the embedded CO2 series (overrides of the packaged one).
TINY_FORECASTING = {
    "model.context_length": 32,
    "model.horizon": 8,
    "model.patch_length": 8,
    "model.patch_stride": 4,
    "model.seasonal_period": 4,
    "model.backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "dropout": 0.1, "position": "sinusoidal", "max_length": 16},
    "model.head": {"type": "forecast", "quantiles": [0.1, 0.5, 0.9], "dropout": 0.0},
    "train.epochs": 2,
    "train.batch_size": 64,
    "train.lr": 3e-3,
    "train.log_with": None,
    "train.progress_bar": False,
    "train.early_stopping_patience": None,
    "train.warmup_steps": 0,
}


def _flatten(prefix: str, value) -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flatten(f"{prefix}.{key}", sub).items()}
    return {prefix: value}


def cli_options(**overrides) -> list[str]:
    """The tiny recipe (plus ``overrides``) as mmengine ``--cfg-options`` strings; nested dicts become dotted keys."""
    pairs: dict = {}
    for key, value in {**TINY_FORECASTING, **overrides}.items():
        pairs.update(_flatten(key, value))
    return [f"{k}={str(v).replace(' ', '')}" for k, v in pairs.items()]


@pytest.fixture
def tiny_forecasting(tmp_path) -> dict:
    """Overrides for ``polyhead.train("forecasting", cfg_options=...)`` writing into ``tmp_path``."""
    return {**TINY_FORECASTING, "train.output_dir": str(tmp_path / "run")}


@pytest.fixture
def tiny_config() -> ForecastingConfig:
    return ForecastingConfig(
        context_length=32,
        horizon=8,
        num_channels=3,
        target_columns=["a", "b", "c"],
        patch_length=8,
        patch_stride=4,
        backbone={"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "sinusoidal", "max_length": 16},
        head={"type": "forecast", "quantiles": [0.1, 0.5, 0.9]},
    )


@pytest.fixture
def multivariate_frame() -> pd.DataFrame:
    """Three seasonal series with a weekly time column (synthetic shapes for unit tests only)."""
    steps = 300
    t = np.arange(steps)
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "when": pd.date_range("2020-01-04", periods=steps, freq="W-SAT"),
            "a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(steps),
            "b": 0.01 * t + np.cos(2 * np.pi * t / 6),
            "c": 5 + rng.standard_normal(steps),
        }
    )
