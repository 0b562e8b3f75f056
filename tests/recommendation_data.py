"""Small synthetic interaction tables for the recommendation unit tests (shapes only, no real signal claims)."""

from __future__ import annotations

import numpy as np
import pandas as pd

GENRES = ["Action", "Comedy", "Drama"]


def synthetic_interactions(num_users: int = 30, num_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Users walk the catalogue mostly in steps of +1 (a learnable sequential pattern).

    Columns: user_id, item_id (1-based ints), timestamp, rating, age, gender, genre, title.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        item = int(rng.integers(1, num_items + 1))
        age = int(rng.integers(18, 60))
        gender = "F" if user % 2 else "M"
        for step in range(int(rng.integers(8, 16))):
            genre = GENRES[item % 3]
            rating = 5 if (genre == "Comedy") == (age < 35) else int(rng.integers(1, 4))
            rows.append({"user_id": user, "item_id": item, "timestamp": 1000 * user + step, "rating": rating,
                         "age": age, "gender": gender, "genre": genre, "title": f"Movie {item}"})
            item = item % num_items + 1 if rng.random() < 0.8 else int(rng.integers(1, num_items + 1))
    return pd.DataFrame(rows)


#: Overrides for a tiny next-item run on a synthetic CSV (``data.source`` set by the test).
TINY_NEXT_ITEM = {
    "model.max_length": 8,
    "model.backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "learned", "max_length": 8, "dropout": 0.0},
    "model.head": {"type": "next_item", "loss": "full"},
    "train.epochs": 3,
    "train.batch_size": 16,
    "train.lr": 5e-3,
    "train.log_with": None,
    "train.progress_bar": False,
    "train.early_stopping_patience": None,
    "train.warmup_steps": 0,
    "train.best_metric": "ndcg@10",
    "train.greater_is_better": True,
    "data.bpr_epochs": 2,
}

#: Overrides for a tiny CTR run (the packaged Hiformer recipe's fields minus those the synthetic table lacks).
TINY_CTR = {
    "model.fields": [
        {"name": "user_id", "kind": "categorical"},
        {"name": "item_id", "kind": "categorical"},
        {"name": "gender", "kind": "categorical"},
        {"name": "genre", "kind": "categorical"},
        {"name": "age", "kind": "numeric"},
    ],
    "model.backbone": {"type": "transformer", "dim": 16, "depth": 1, "num_heads": 2, "position": "none", "dropout": 0.0},
    "model.head": {"type": "ctr", "interaction": "hiformer", "num_heads": 2, "hidden_dims": [16], "dropout": 0.0},
    "train.epochs": 2,
    "train.batch_size": 32,
    "train.lr": 5e-3,
    "train.log_with": None,
    "train.progress_bar": False,
    "train.early_stopping_patience": None,
    "train.warmup_steps": 0,
    "train.best_metric": "auc",
    "train.greater_is_better": True,
}
