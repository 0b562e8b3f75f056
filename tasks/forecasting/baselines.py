"""The baselines users compare a forecaster with: seasonal naive, ETS, Theta and AutoARIMA.

ETS and Theta are statsmodels' (``ETSModel``, ``ThetaModel``), AutoARIMA is pmdarima's
``auto_arima`` (statsforecast would be faster, but its wheels require ``pandas<3``, which
polyhead's environment does not hold). Each is fit on one series' history and forecasts
``h`` steps with quantiles from its Gaussian prediction intervals:

* ``seasonal_naive``: repeat the last season; quantiles from the in-sample seasonal
  differences (``sigma * sqrt(k + 1)`` after ``k`` full seasons, Hyndman & Athanasopoulos' FPP);
* ``ets``: additive-error exponential smoothing, trend none / additive / damped, seasonality
  none / additive (when ``1 < m <= 24`` and two seasons are seen), chosen by AICc
  (R's ``ets`` and statsforecast's AutoETS refuse seasons longer than 24 the same way);
* ``theta``: the Theta method of Assimakopoulos & Nikolopoulos (2000) with statsmodels'
  deseasonalising (multiplicative for positive series) when two seasons are seen;
* ``auto_arima``: stepwise (S)ARIMA order search by AICc; for seasons longer than 24 a
  non-seasonal ARIMA with 4 Fourier pairs as regressors (dynamic harmonic regression,
  Hyndman's advice for long seasons).

A fit that fails (too short, singular) falls back to the seasonal-naive forecast and is
counted. Gaps inside a history are interpolated linearly for the statistical models (they
take complete series); leading missing steps are dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import norm

from polyhead.log import logger

__all__ = ["BASELINES", "forecast", "forecast_many"]

_INTERVAL = 0.8  # the prediction interval every model reports; quantiles are Gaussian around the point forecast


def _gaussian(point: np.ndarray, lower: np.ndarray, upper: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """``(h, Q)`` quantiles of a Gaussian whose 80% interval is ``[lower, upper]``."""
    sigma = np.maximum((np.asarray(upper) - np.asarray(lower)) / (2 * norm.ppf(0.5 + _INTERVAL / 2)), 0.0)
    return np.asarray(point)[:, None] + sigma[:, None] * norm.ppf(np.asarray(levels))[None, :]


def seasonal_naive(y: np.ndarray, h: int, m: int, levels: Sequence[float]) -> np.ndarray:
    m = m if len(y) >= m else 1
    point = y[len(y) - m + np.arange(h) % m]
    residuals = y[m:] - y[:-m] if len(y) > m else np.zeros(1)
    sigma = np.sqrt(np.mean(residuals**2)) * np.sqrt(np.arange(h) // m + 1)
    z = norm.ppf(0.5 + _INTERVAL / 2)
    return _gaussian(point, point - z * sigma, point + z * sigma, levels)


def ets(y: np.ndarray, h: int, m: int, levels: Sequence[float]) -> np.ndarray:
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    series = pd.Series(y)
    seasons = [None, "add"] if 1 < m <= 24 and len(y) >= 2 * m + 2 else [None]
    trends = [(None, False), ("add", False), ("add", True)] if len(y) >= 8 else [(None, False)]
    best = None
    for trend, damped in trends:
        for seasonal in seasons:
            try:
                fit = ETSModel(series, error="add", trend=trend, damped_trend=damped, seasonal=seasonal,
                               seasonal_periods=m if seasonal else None).fit(disp=False)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fit.aicc) and (best is None or fit.aicc < best.aicc):
                best = fit
    if best is None:
        raise ValueError("no ETS model could be fit")
    frame = best.get_prediction(start=len(y), end=len(y) + h - 1).summary_frame(alpha=1 - _INTERVAL)
    return _gaussian(frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy(), levels)


def theta(y: np.ndarray, h: int, m: int, levels: Sequence[float]) -> np.ndarray:
    import pandas as pd
    from statsmodels.tsa.forecasting.theta import ThetaModel

    seasonal = m > 1 and len(y) >= 2 * m
    model = ThetaModel(pd.Series(y), period=m if seasonal else 1, deseasonalize=seasonal,
                       method="auto" if np.all(y > 0) else "additive")
    fit = model.fit()
    point = np.asarray(fit.forecast(h))
    interval = fit.prediction_intervals(h, alpha=1 - _INTERVAL)
    return _gaussian(point, interval["lower"].to_numpy(), interval["upper"].to_numpy(), levels)


def auto_arima(y: np.ndarray, h: int, m: int, levels: Sequence[float]) -> np.ndarray:
    import pmdarima as pm

    search = dict(stepwise=True, max_p=3, max_q=3, max_P=1, max_Q=1, max_d=2, max_D=1, maxiter=50,
                  suppress_warnings=True, error_action="ignore", information_criterion="aicc")
    regressors = future = None
    if m > 24 and len(y) >= 2 * m:
        fourier = pm.preprocessing.FourierFeaturizer(m=m, k=min(4, m // 2))
        _, regressors = fourier.fit_transform(y)
        _, future = fourier.transform(None, None, n_periods=h)
        model = pm.auto_arima(y, X=regressors, seasonal=False, **search)
    else:
        seasonal = 1 < m <= 24 and len(y) >= 2 * m + 2
        model = pm.auto_arima(y, m=m if seasonal else 1, seasonal=seasonal, **search)
    point, interval = model.predict(n_periods=h, X=future, return_conf_int=True, alpha=1 - _INTERVAL)
    return _gaussian(np.asarray(point), interval[:, 0], interval[:, 1], levels)


#: name -> ``f(history (T,), h, season length, quantile levels) -> (h, Q)`` forecasts per level.
BASELINES: dict[str, Callable[[np.ndarray, int, int, Sequence[float]], np.ndarray]] = {
    "seasonal_naive": seasonal_naive,
    "ets": ets,
    "theta": theta,
    "auto_arima": auto_arima,
}


def _complete(history: np.ndarray) -> np.ndarray:
    """Drop leading missing steps; interpolate the gaps inside."""
    finite = np.isfinite(history)
    if not finite.any():
        return np.zeros(1)
    history = history[np.argmax(finite):]
    finite = np.isfinite(history)
    if not finite.all():
        steps = np.arange(len(history))
        history = np.interp(steps, steps[finite], history[finite])
    return history.astype(np.float64)


@contextlib.contextmanager
def _one_thread():
    """BLAS in one thread: many small fits on several threads are much slower (and the machine is shared)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (pmdarima) brings it
        yield
        return
    with threadpool_limits(1):
        yield


def forecast(name: str, history: np.ndarray, h: int, m: int, levels: Sequence[float]) -> tuple[np.ndarray, bool]:
    """``((h, Q) forecasts, failed)`` of baseline ``name`` for one series; a failed fit gives the seasonal-naive forecast."""
    y = _complete(np.asarray(history, dtype=np.float64))
    levels = list(levels) or [0.5]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = BASELINES[name](y, h, max(1, int(m)), levels)
        if np.all(np.isfinite(out)):
            return out, False
    except Exception:  # statsmodels / pmdarima raise many types for series they cannot fit
        pass
    return seasonal_naive(y, h, max(1, int(m)), levels), name != "seasonal_naive"


def _cache_dir() -> Path | None:
    root = os.environ.get("POLYHEAD_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "polyhead")
    if os.environ.get("POLYHEAD_NO_CACHE"):
        return None
    return Path(root) / "forecasting_baselines"


def _versions() -> dict[str, str]:
    import pmdarima
    import statsmodels

    return {"statsmodels": statsmodels.__version__, "pmdarima": pmdarima.__version__, "numpy": np.__version__}


def forecast_many(name: str, histories: Sequence[np.ndarray], horizons: Sequence[int], periods: Sequence[int],
                  levels: Sequence[float]) -> tuple[list[np.ndarray], int]:
    """Forecasts of ``name`` for many series, and how many fits failed.

    The statistical baselines are deterministic and slow (seconds per AutoARIMA fit), so their
    results are cached on disk, keyed by the histories, settings and library versions
    (``$POLYHEAD_CACHE_DIR``, default ``~/.cache/polyhead``; ``POLYHEAD_NO_CACHE=1`` turns it off).
    """
    digest = hashlib.sha256(json.dumps({"name": name, "h": list(map(int, horizons)), "m": list(map(int, periods)),
                                        "levels": list(map(float, levels)), "interval": _INTERVAL,
                                        "versions": _versions() if name != "seasonal_naive" else {}}).encode())
    for history in histories:
        digest.update(np.ascontiguousarray(history, dtype=np.float64).tobytes())
        digest.update(b"|")
    folder = _cache_dir() if name != "seasonal_naive" else None
    path = folder / f"{name}-{digest.hexdigest()[:32]}.npz" if folder else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as cached:
                flat, failed = cached["forecasts"], int(cached["failed"])
            offsets = np.cumsum([0, *horizons])
            return [flat[offsets[i] : offsets[i + 1]] for i in range(len(histories))], failed
        except (OSError, KeyError, ValueError):
            pass
    if name != "seasonal_naive" and len(histories) > 20:
        logger.info("fitting the %s baseline on %d series ...", name, len(histories))
    results, failed = [], 0
    with _one_thread():
        for history, h, m in zip(histories, horizons, periods):
            out, bad = forecast(name, history, int(h), int(m), levels)
            results.append(out)
            failed += bad
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, forecasts=np.concatenate(results) if results else np.zeros((0, len(levels))), failed=failed)
            os.replace(tmp, path)
        except OSError:
            pass
    return results, failed
