"""Draw the embedded forecaster's forecasts for a small panel: the README's picture.

    python scripts/draw_forecast.py        # writes docs/forecast.png

Two daily series the default never saw (seeded: a weekly season on a trend, and a noisier level with
a monthly season), forecast 28 days ahead; the picture is what ``fc(panel, plot="out.png")`` writes:
each series' history, median and 10-90% band.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import polyhead

ROOT = Path(__file__).resolve().parents[1]


def example_panel(seed: int = 0, length: int = 180) -> pd.DataFrame:
    """A long table (item_id, timestamp, target) of two daily series."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    store = 40 + 0.05 * t + 8 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1.5, length)
    visits = 200 + 25 * np.sin(2 * np.pi * t / 30.5) + rng.normal(0, 6, length)
    days = pd.date_range("2024-01-01", periods=length, freq="D")
    return pd.concat([pd.DataFrame({"item_id": name, "timestamp": days, "target": values})
                      for name, values in (("store_sales", store), ("site_visits", visits))], ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "forecast.png")
    args = parser.parse_args()
    polyhead.pipeline("time-series-forecasting")(example_panel(), prediction_length=28, plot=args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
