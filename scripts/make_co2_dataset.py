"""Rebuild polyhead/assets/co2_weekly.csv from statsmodels' copy of the Mauna Loa series.

    pip install statsmodels && python scripts/make_co2_dataset.py

The data are public domain (Keeling & Whorf, 2004; see co2_weekly.LICENSE.md).
Missing weeks are kept as empty cells; polyhead's loader fills them
(``data.fill_missing``).
"""

from __future__ import annotations

from pathlib import Path

from statsmodels.datasets import co2

OUT = Path(__file__).resolve().parents[1] / "polyhead" / "assets" / "co2_weekly.csv"


def main() -> None:
    frame = co2.load_pandas().data
    frame.index.name = "date"
    frame = frame.reset_index()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT, index=False, float_format="%.1f")
    print(f"wrote {OUT} ({len(frame)} weeks, {int(frame['co2'].isna().sum())} missing)")


if __name__ == "__main__":
    main()
