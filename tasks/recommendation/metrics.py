"""Recommendation metrics and baselines.

Next-item: each held-out item is ranked against ALL items of the catalogue (not a
sample of 100 negatives), with the user's other history items masked. With one
relevant item per user, HR@K = 1[rank <= K], NDCG@K = 1[rank <= K] / log2(rank + 1)
and MRR = 1 / rank, averaged over users (the closed forms of torchmetrics'
retrieval metrics for one relevant document; computing ranks avoids gathering
``(users, items)`` score matrices). Ties count against the target (pessimistic rank).

CTR: AUC (torchmetrics ``BinaryAUROC``, exact) and LogLoss (mean binary cross-entropy).

Baselines, fitted on the same split: most-popular and BPR matrix factorisation
(Rendle et al., UAI 2009) for next-item; logistic regression for CTR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAUROC

__all__ = [
    "NextItemMetrics",
    "CTRMetrics",
    "ranks_of_targets",
    "mask_items",
    "most_popular_scores",
    "bpr_matrix_factorisation",
    "logistic_regression",
]


def mask_items(scores: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
    """Set ``scores[b, items[b, j]]`` to ``-inf``; ``items`` values ``>= N`` (padding) are ignored."""
    if items is None:
        return scores
    num_items = scores.shape[1]
    padded = torch.cat((scores, scores.new_zeros(scores.shape[0], 1)), dim=1)
    padded = padded.scatter(1, items.clamp(0, num_items).long(), float("-inf"))
    return padded[:, :num_items]


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of ``targets: (B,)`` among ``scores: (B, N)`` (ties count as better)."""
    target_scores = scores.gather(1, targets.long()[:, None])
    return (scores >= target_scores).sum(dim=1)


class NextItemMetrics:
    """HR@K, NDCG@K and MRR of the held-out items, ranked against all items."""

    def __init__(self, *, k: int = 10) -> None:
        self.k = k
        self.reset()

    def names(self) -> list[str]:
        return [f"hr@{self.k}", f"ndcg@{self.k}", "mrr"]

    def reset(self) -> None:
        self._ranks: list[torch.Tensor] = []

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = mask_items(outputs.scores.detach().float(), batch.get("exclude_items"))
        return {"rank": ranks_of_targets(scores, batch["labels"])}

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        self._ranks.append(gathered["rank"].detach().cpu().reshape(-1))

    def compute(self) -> dict[str, float]:
        if not self._ranks:
            return {}
        ranks = torch.cat(self._ranks).double()
        hit = ranks <= self.k
        return {
            f"hr@{self.k}": float(hit.double().mean()),
            f"ndcg@{self.k}": float((hit.double() / torch.log2(ranks + 1)).mean()),
            "mrr": float((1.0 / ranks).mean()),
        }

    @classmethod
    def of_scores(cls, scores: torch.Tensor, targets: torch.Tensor, exclude: Sequence[Sequence[int]], *, k: int = 10) -> dict[str, float]:
        """Metrics of a fixed score matrix ``(B, N)`` (a baseline), masking each row's ``exclude``."""
        metrics = cls(k=k)
        scores = scores.clone().float()
        for row, items in enumerate(exclude):
            keep = [i for i in items if i != int(targets[row])]
            if keep:
                scores[row, keep] = float("-inf")
        metrics.update({"rank": ranks_of_targets(scores, targets)})
        return metrics.compute()


class CTRMetrics:
    """AUC and LogLoss of click probabilities."""

    def names(self) -> list[str]:
        return ["auc", "logloss"]

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._auc = BinaryAUROC()
        self._bce_sum = 0.0
        self._count = 0

    @staticmethod
    def select(outputs, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"probabilities": outputs.probabilities.detach().float(), "labels": batch["labels"].float()}

    def update(self, gathered: dict[str, torch.Tensor]) -> None:
        p = gathered["probabilities"].detach().cpu().double().clamp(1e-7, 1 - 1e-7)
        y = gathered["labels"].detach().cpu().double()
        self._auc.update(p, y.long())
        self._bce_sum += float(F.binary_cross_entropy(p, y, reduction="sum"))
        self._count += y.numel()

    def compute(self) -> dict[str, float]:
        if not self._count:
            return {}
        return {"auc": float(self._auc.compute()), "logloss": self._bce_sum / self._count}


def most_popular_scores(histories: Sequence[Sequence[int]], num_items: int) -> torch.Tensor:
    """``(N,)`` interaction counts over ``histories`` (the most-popular recommender's scores)."""
    counts = np.bincount(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]), minlength=num_items)
    return torch.tensor(counts[:num_items], dtype=torch.float32)


def bpr_matrix_factorisation(
    histories: Sequence[Sequence[int]],
    num_items: int,
    *,
    dim: int = 64,
    epochs: int = 30,
    lr: float = 5e-3,
    weight_decay: float = 1e-5,
    batch_size: int = 1024,
    seed: int = 0,
) -> torch.Tensor:
    """Fit BPR-MF on the users' histories and return the ``(U, N)`` score matrix.

    One uniformly drawn negative per positive per epoch (Rendle et al., UAI 2009), Adam.
    """
    generator = torch.Generator().manual_seed(seed)
    users = torch.cat([torch.full((len(h),), u, dtype=torch.long) for u, h in enumerate(histories)])
    items = torch.cat([torch.as_tensor(list(h), dtype=torch.long) for h in histories])
    user_emb = torch.nn.Embedding(len(histories), dim)
    item_emb = torch.nn.Embedding(num_items, dim)
    torch.nn.init.normal_(user_emb.weight, std=0.1, generator=generator)
    torch.nn.init.normal_(item_emb.weight, std=0.1, generator=generator)
    optimizer = torch.optim.Adam([user_emb.weight, item_emb.weight], lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(users), generator=generator)
        negatives = torch.randint(0, num_items, (len(users),), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            u, i, j = user_emb(users[idx]), item_emb(items[idx]), item_emb(negatives[idx])
            loss = -F.logsigmoid((u * (i - j)).sum(-1)).mean()
            loss = loss + weight_decay * (u.pow(2).sum() + i.pow(2).sum() + j.pow(2).sum()) / len(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return user_emb.weight @ item_emb.weight.T


def logistic_regression(
    train: tuple[torch.Tensor, torch.Tensor],
    test: torch.Tensor,
    *,
    kinds: Sequence[str],
    sizes: Sequence[int],
    epochs: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-6,
    seed: int = 0,
) -> torch.Tensor:
    """One-hot logistic regression on CTR rows; returns click probabilities of ``test``.

    Args:
        train: ``(features (R, F), labels (R,))`` as fed to the model.
        test: ``features`` of the rows to score.
        kinds: each field's kind; ``"numeric"`` columns enter linearly, the others one-hot.
        sizes: ids per categorical / bucketized field, in order.
    """
    torch.manual_seed(seed)
    cat = [i for i, k in enumerate(kinds) if k != "numeric"]
    num = [i for i, k in enumerate(kinds) if k == "numeric"]
    offsets = torch.tensor([0] + list(np.cumsum(sizes)[:-1]), dtype=torch.long)
    weights = torch.nn.Embedding(max(int(sum(sizes)), 1), 1)
    torch.nn.init.zeros_(weights.weight)
    linear = torch.nn.Linear(len(num), 1) if num else None
    params = list(weights.parameters()) + (list(linear.parameters()) if linear else [])
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def logits(features: torch.Tensor) -> torch.Tensor:
        out = weights(features[:, cat].round().long() + offsets).sum(dim=(1, 2)) if cat else features.new_zeros(len(features))
        return out + linear(features[:, num]).squeeze(-1) if linear is not None else out

    for _ in range(epochs):  # full batch: tens of thousands of rows
        loss = F.binary_cross_entropy_with_logits(logits(train[0]), train[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return torch.sigmoid(logits(test))
