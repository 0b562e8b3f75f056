"""Trajectory datasets for the Decision Transformer: loading, checks, split by episode, windows.

A trajectory dataset is a ``datasets.Dataset`` saved with ``save_to_disk`` (what
``polyhead collect`` writes): one row per episode with ``observations``, ``actions``,
``rewards``, ``terminations`` and ``truncations``; its ``info.description`` holds the
environment id and spaces as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from polyhead.errors import DataError

from .rollout import TRAJECTORY_COLUMNS

__all__ = ["Episode", "load_trajectories", "split_episodes", "TrajectoryWindows"]


class Episode:
    """One checked episode as arrays: ``observations (L, D)``, ``actions (L,)|(L, A)``, ``rewards (L,)``."""

    def __init__(self, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, behaviour: str = "") -> None:
        self.observations, self.actions, self.rewards, self.behaviour = observations, actions, rewards, behaviour
        self.returns_to_go = np.cumsum(rewards[::-1])[::-1].astype(np.float32).copy()

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


def load_trajectories(sources: str | Sequence[str]) -> tuple[list[Episode], dict[str, Any]]:
    """Load and check one or more trajectory datasets (folders written by ``polyhead collect``).

    Returns the episodes and the metadata (env id and spaces) they share.

    Raises:
        DataError: a missing folder, an empty dataset, missing columns, episodes whose
            columns have different lengths, non-finite values, or datasets of different environments.
    """
    import datasets

    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise DataError("data.source must name at least one trajectory dataset folder (written by `polyhead collect`).")
    episodes: list[Episode] = []
    meta: dict[str, Any] | None = None
    for source in sources:
        if not Path(source).is_dir():
            raise DataError(f"Trajectory dataset {source} does not exist; create it with `polyhead collect MODEL_DIR|random --env ID --out {source}`.")
        try:
            dataset = datasets.load_from_disk(str(source))
        except Exception as err:  # datasets raises several types for a folder that is not a dataset
            raise DataError(f"{source} is not a datasets folder (save_to_disk): {err}") from None
        if isinstance(dataset, datasets.DatasetDict):
            raise DataError(f"{source} is a DatasetDict; expected one Dataset of episodes.")
        missing = [c for c in TRAJECTORY_COLUMNS[:3] if c not in dataset.column_names]
        if missing:
            raise DataError(f"Trajectory dataset {source} lacks column(s) {missing}; it has {dataset.column_names}.")
        if len(dataset) == 0:
            raise DataError(f"Trajectory dataset {source} has no episodes.")
        try:
            this_meta = json.loads(dataset.info.description or "{}")
        except json.JSONDecodeError:
            this_meta = {}
        if meta is None:
            meta = this_meta
        elif this_meta.get("env_id") and meta.get("env_id") and this_meta.get("env_id") != meta.get("env_id"):
            raise DataError(f"{source} holds {this_meta['env_id']} episodes, the other sources {meta['env_id']}.")
        behaviours = dataset["behaviour"] if "behaviour" in dataset.column_names else [""] * len(dataset)
        for i, row in enumerate(dataset.select_columns(list(TRAJECTORY_COLUMNS[:3]))):
            obs = np.asarray(row["observations"], dtype=np.float32)
            actions = np.asarray(row["actions"])
            rewards = np.asarray(row["rewards"], dtype=np.float32)
            n = len(rewards)
            if n == 0 or obs.ndim != 2 or len(obs) != n or len(actions) != n:
                raise DataError(
                    f"Episode {i} of {source} is malformed: {len(obs)} observations, {len(actions)} actions and "
                    f"{n} rewards (expected the same, non-zero number, and 2-D observations)."
                )
            if not (np.isfinite(obs).all() and np.isfinite(rewards).all()):
                raise DataError(f"Episode {i} of {source} has NaN or infinite observations or rewards.")
            episodes.append(Episode(obs, actions, rewards, behaviours[i]))
    dims = {e.observations.shape[1] for e in episodes}
    if len(dims) > 1:
        raise DataError(f"Episodes have observations of different sizes {sorted(dims)}.")
    return episodes, meta or {}


def split_episodes(episodes: list[Episode], *, val_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, list[Episode]]:
    """Shuffle episodes (seeded) and split them; validation and test get at least one episode each."""
    if len(episodes) < 3:
        raise DataError(f"Need at least 3 episodes to split into train/validation/test, got {len(episodes)}.")
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_test = max(1, round(len(episodes) * test_fraction))
    n_val = max(1, round(len(episodes) * val_fraction))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    if not len(train):
        raise DataError(f"No training episodes left after the validation/test split of {len(episodes)} episodes.")
    return {name: [episodes[i] for i in idx] for name, idx in (("train", train), ("validation", val), ("test", test))}


class TrajectoryWindows(Dataset):
    """Every window of ``K`` steps ending at a step of an episode, left-padded at the episode start.

    An item is what :class:`~polyhead.tasks.rl.PolyheadForDecisionTransformer` takes: ``observations (K, D)``,
    ``actions``, ``returns_to_go (K, 1)``, ``timesteps (K,)``, ``attention_mask (K,)`` and
    ``labels`` (the actions again: each is predicted from the tokens before it).
    """

    def __init__(self, episodes: list[Episode], *, context_length: int, discrete: bool, action_dim: int, stride: int = 1) -> None:
        self.episodes, self.k, self.discrete, self.action_dim = episodes, context_length, discrete, action_dim
        self.index = [(e, t) for e, ep in enumerate(episodes) for t in range(0, len(ep), stride)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, end = self.index[i]
        ep, k = self.episodes[e], self.k
        start = max(0, end - k + 1)
        n = end - start + 1
        pad = k - n
        obs = np.zeros((k, ep.observations.shape[1]), dtype=np.float32)
        obs[pad:] = ep.observations[start:end + 1]
        rtg = np.zeros((k, 1), dtype=np.float32)
        rtg[pad:, 0] = ep.returns_to_go[start:end + 1]
        steps = np.zeros(k, dtype=np.int64)
        steps[pad:] = np.arange(start, end + 1)
        mask = np.zeros(k, dtype=np.int64)
        mask[pad:] = 1
        if self.discrete:
            actions = np.zeros(k, dtype=np.int64)
            actions[pad:] = ep.actions[start:end + 1].astype(np.int64).reshape(-1)
        else:
            actions = np.zeros((k, self.action_dim), dtype=np.float32)
            actions[pad:] = ep.actions[start:end + 1].reshape(n, self.action_dim)
        actions_t = torch.from_numpy(actions)
        return {"observations": torch.from_numpy(obs), "actions": actions_t, "returns_to_go": torch.from_numpy(rtg),
                "timesteps": torch.from_numpy(steps), "attention_mask": torch.from_numpy(mask), "labels": actions_t.clone()}
