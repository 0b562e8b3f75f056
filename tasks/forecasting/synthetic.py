"""Synthetic training series, drawn on the fly: KernelSynth and trend + season + noise compositions.

KernelSynth (Ansari et al., "Chronos: Learning the Language of Time Series", TMLR 2024,
Algorithm 2): sample 1-5 kernels from a bank (linear, RBF, rational quadratic, periodic at
the periods of yearly to hourly data, white noise, constant), combine them with random
``+`` and ``*``, and draw one path of the Gaussian process with that kernel. The other half
are explicit compositions of a trend (linear, exponential, piecewise, random walk), one or two
seasonal profiles (additive or multiplicative) and noise (Gaussian, AR(1), heavy-tailed),
sometimes with a level shift, spikes, or as counts. Both are drawn at a random frequency
(yearly to hourly) whose typical periods set the seasons, and at a random level and scale:
the model normalises each window, so magnitudes do not matter, shapes do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

_BLAS = None


def _one_blas_thread():
    """Small matrices: one BLAS thread (several are ten times slower on a busy machine)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


__all__ = ["kernel_synth", "composed_series", "synthetic_series", "synthetic_window"]

#: typical periods (in steps) of each frequency, for seasonal kernels and profiles
PERIODS: dict[str, list[float]] = {
    "Y": [4.0, 6.0, 10.0],  # business / solar cycles, rarely seasonal
    "Q": [4.0],
    "M": [12.0, 6.0, 3.0],
    "W": [52.18, 13.0, 4.35],
    "D": [7.0, 30.44, 365.25],
    "h": [24.0, 168.0, 12.0],
}


def _kernel(rng: np.random.Generator, t: np.ndarray, periods: list[float], length: int) -> np.ndarray:
    """One kernel matrix from the bank, on inputs ``t`` in [0, 1]."""
    d = t[:, None] - t[None, :]
    kind = rng.choice(["linear", "rbf", "rq", "periodic", "periodic", "white", "constant"])
    if kind == "linear":
        c = rng.uniform(-0.5, 1.5)
        return rng.choice([0.0, 1.0, 10.0]) * 0.1 + (t[:, None] - c) * (t[None, :] - c)
    if kind == "rbf":
        scale = rng.choice([0.02, 0.1, 1.0])
        return np.exp(-0.5 * (d / scale) ** 2)
    if kind == "rq":
        alpha, scale = rng.choice([0.1, 1.0, 10.0]), rng.choice([0.05, 0.2, 1.0])
        return (1 + d**2 / (2 * alpha * scale**2)) ** (-alpha)
    if kind == "periodic":
        period = rng.choice(periods) / length
        scale = rng.choice([0.5, 1.0, 3.0])
        return np.exp(-2 * np.sin(np.pi * np.abs(d) / period) ** 2 / scale**2)
    if kind == "white":
        return np.eye(len(t)) * rng.choice([0.01, 0.1, 1.0])
    return np.full(d.shape, rng.uniform(0.1, 1.0))


def kernel_synth(rng: np.random.Generator, length: int, freq: str) -> np.ndarray:
    """One KernelSynth path of ``length`` steps (Ansari et al., 2024)."""
    t = np.linspace(0.0, 1.0, length)
    periods = PERIODS[freq]
    kernel = _kernel(rng, t, periods, length)
    for _ in range(int(rng.integers(0, 4))):
        other = _kernel(rng, t, periods, length)
        kernel = kernel + other if rng.random() < 0.5 else kernel * other
    kernel = kernel + 1e-6 * np.eye(length)
    with _one_blas_thread():
        try:
            factor = np.linalg.cholesky(kernel)
        except np.linalg.LinAlgError:
            eigenvalues, vectors = np.linalg.eigh(kernel)
            factor = vectors * np.sqrt(np.clip(eigenvalues, 0, None))
        return factor @ rng.standard_normal(length)


def _profile(rng: np.random.Generator, length: int, period: float) -> np.ndarray:
    """A seasonal profile: a few random harmonics of ``period``."""
    t = np.arange(length)
    out = np.zeros(length)
    for k in range(1, int(rng.integers(1, 4)) + 1):
        out += rng.normal(0, 1.0 / k) * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
    return out / (np.abs(out).max() + 1e-9)


def composed_series(rng: np.random.Generator, length: int, freq: str) -> np.ndarray:
    """Trend + season(s) + noise, with random shapes, strengths and occasional breaks."""
    t = np.arange(length) / length
    kind = rng.choice(["linear", "exp", "piecewise", "walk", "flat"])
    if kind == "linear":
        trend = rng.normal(0, 1.0) * t
    elif kind == "exp":
        trend = np.expm1(rng.normal(0, 1.5) * t)
    elif kind == "piecewise":
        knot = rng.uniform(0.2, 0.9)
        trend = rng.normal(0, 1) * t + rng.normal(0, 1.5) * np.clip(t - knot, 0, None)
    elif kind == "walk":
        trend = np.cumsum(rng.normal(0, 1, length)) / np.sqrt(length)
    else:
        trend = np.zeros(length)
    season = np.zeros(length)
    periods = [p for p in PERIODS[freq] if p < length / 1.5]
    for period in rng.choice(periods, size=min(len(periods), int(rng.integers(0, 3))), replace=False) if periods else []:
        season += rng.uniform(0.2, 1.5) * _profile(rng, length, float(period))
    noise_level = rng.choice([0.02, 0.1, 0.3, 0.8])
    noise = rng.standard_normal(length)
    if rng.random() < 0.4:  # AR(1) noise
        phi = rng.uniform(0.3, 0.95)
        for i in range(1, length):
            noise[i] += phi * noise[i - 1]
        noise *= np.sqrt(1 - phi**2)
    elif rng.random() < 0.2:
        noise = rng.standard_t(3, length) / 1.7
    if rng.random() < 0.3:  # multiplicative season on a positive level
        level = 3.0 + np.abs(trend).max()
        series = (level + trend) * (1 + 0.3 * season) + noise_level * noise
    else:
        series = trend + season + noise_level * noise
    if rng.random() < 0.1:
        series[int(rng.integers(length // 4, length)) :] += rng.normal(0, 1.5)
    if rng.random() < 0.05:
        spikes = rng.random(length) < 0.02
        series[spikes] += rng.normal(0, 3, spikes.sum())
    if rng.random() < 0.1:  # counts
        rate = np.exp(np.clip(series - series.mean(), -3, 3)) * rng.uniform(0.3, 20)
        series = rng.poisson(rate).astype(np.float64)
    return series


def synthetic_series(rng: np.random.Generator, length: int) -> np.ndarray:
    """A synthetic series at a random frequency, level and scale."""
    freq = str(rng.choice(list(PERIODS)))
    series = kernel_synth(rng, length, freq) if rng.random() < 0.5 else composed_series(rng, length, freq)
    scale = 10 ** rng.uniform(-2, 4)
    return series * scale + rng.normal(0, 3) * scale


def synthetic_window(rng: np.random.Generator, spec: Any, options: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """One training window ``{past_values, past_observed_mask, future_values, future_observed_mask}`` of a synthetic series.

    ``options["truncate"]``: probability of keeping only the last 8..L context steps.
    """
    L, H = spec.context_length, spec.horizon
    series = synthetic_series(rng, L + H).astype(np.float32)
    past, future = series[:L].copy(), series[L:]
    mask = np.ones(L, dtype=bool)
    if rng.random() < float(options.get("truncate", 0.0)):
        mask[: L - int(rng.integers(8, L + 1))] = False
    past[~mask] = 0.0
    return {
        "past_values": torch.from_numpy(past[:, None]),
        "past_observed_mask": torch.from_numpy(mask[:, None]),
        "future_values": torch.from_numpy(future[:, None].copy()),
        "future_observed_mask": torch.ones(H, 1, dtype=torch.bool),
    }
