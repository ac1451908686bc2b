"""What the ranking models learn from and how their lists are scored.

Every ranking model reads a users x items CSR matrix (:func:`implicit_matrix`: which items
each user rated, optionally weighted by the rating) and scores a batch of users' rows at once
as a dense ``n_batch x n_items`` float32 array. :func:`evaluate_scores` scores ranked lists
with the protocol of :func:`autorec.evaluate.ranking_report`, on a validation part (model
selection) and on a test part (reporting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch

from ..data.ratings import Ratings
from ..metrics import ranking_metrics_from_hits

__all__ = ["SCORE_BLOCK", "Weighting", "evaluate_scores", "implicit_matrix", "relevance_threshold",
           "top_k"]

#: Scores held at once while ranking (users in a block x items): 2**24 float32, 64 MiB.
SCORE_BLOCK = 1 << 24

#: ``"binary"``: every rated item counts 1; ``"rating"``: the rating divided by the top of the
#: training scale (ratings at or below 0 are dropped); ``"positive"``: only ratings at or above
#: the relevance threshold, each counting 1.
Weighting = Literal["binary", "rating", "positive"]
WEIGHTINGS: tuple[str, ...] = ("binary", "rating", "positive")


def relevance_threshold(rating_scale: tuple[float, float]) -> float:
    """``low + 0.75 (high - low)``: the upper quarter of the scale (4 on 1-5), the default
    relevance threshold of :func:`autorec.evaluate.ranking_report` too."""
    low, high = rating_scale
    return low + 0.75 * (high - low)


def implicit_matrix(ratings: Ratings, weighting: Weighting = "binary",
                    rating_scale: tuple[float, float] | None = None) -> sp.csr_matrix:
    """Users x items float32 CSR of ``ratings`` over their dense indices.

    Parameters
    ----------
    ratings
        Ratings with unique (user, item) pairs; the matrix has ``ratings.n_users`` rows and
        ``ratings.n_items`` columns (users or items without a rating give empty rows or
        columns).
    weighting
        See :data:`Weighting`.
    rating_scale
        ``(low, high)`` of the training scale (default: ``ratings``' own); used by
        ``"rating"`` and ``"positive"``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    users = np.asarray(ratings.user_idx)
    items = np.asarray(ratings.item_idx)
    value = np.ones(len(ratings), dtype=np.float32)
    if weighting != "binary" and len(ratings):
        low, high = rating_scale if rating_scale is not None else ratings.rating_scale()
        if weighting == "rating":
            value = np.asarray(ratings.rating, dtype=np.float32) / np.float32(max(abs(high), 1e-9))
            keep = value > 0
        else:
            keep = np.asarray(ratings.rating) >= relevance_threshold((low, high))
        users, items, value = users[keep], items[keep], value[keep]
    # the COO-style constructor sums duplicates and sorts the indices
    return sp.csr_matrix((value, (users, items)), shape=(ratings.n_users, ratings.n_items),
                         dtype=np.float32)


def top_k(scores: np.ndarray, seen: sp.csr_matrix | None, k: int,
          candidates: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` best items of each row of ``scores``, best first (``-1`` where a row has
    fewer than ``k`` candidates left).

    Parameters
    ----------
    scores
        ``n x n_items`` scores (changed in place: left-out items become ``-inf``).
    seen
        ``n x n_items`` pattern of the items to leave out of each row (a user's training
        items), or ``None``.
    k
        List length.
    candidates
        Boolean mask over the items that may be recommended at all (default: every item).
    """
    scores_t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
    if candidates is not None:
        scores_t[:, torch.from_numpy(~np.asarray(candidates, dtype=bool))] = -torch.inf
    if seen is not None and seen.nnz:
        seen = seen.tocsr()
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        scores_t[torch.from_numpy(rows), torch.from_numpy(seen.indices.astype(np.int64))] = (
            -torch.inf)
    k_eff = min(int(k), scores_t.shape[1])
    values, columns = torch.topk(scores_t, k_eff, dim=1)
    picked = np.where(np.isfinite(values.numpy()), columns.numpy(), -1)
    if k_eff < k:
        picked = np.pad(picked, ((0, 0), (0, k - k_eff)), constant_values=-1)
    return picked


def evaluate_scores(
    score: Callable[[np.ndarray], np.ndarray],
    train: sp.csr_matrix,
    heldout: Ratings,
    k: int = 10,
    threshold: float | None = None,
    rating_scale: tuple[float, float] | None = None,
    max_users: int | None = 10_000,
    random_state: int = 0,
) -> dict[str, Any]:
    """Precision, recall, NDCG, MAP and hit rate at ``k`` of the lists ``score`` makes.

    A held-out rating is relevant when it is at least ``threshold`` on an item with a training
    rating; each user's training items, and items without any training rating, are left out
    of the candidates; users with a relevant held-out item count, each once. The metrics are
    :func:`autorec.metrics.ranking_metrics_from_hits`.

    Parameters
    ----------
    score
        Dense user indices -> ``len(users) x n_items`` scores (higher is better).
    train
        Users x items pattern of the training ratings (left out of each user's candidates;
        items with no training rating are never candidates).
    heldout
        The held-out ratings (validation or test part), over the same indices as ``train``.
    k
        List length.
    threshold
        Smallest relevant rating (default: :func:`relevance_threshold` of ``rating_scale``).
    rating_scale
        The training scale (needed when ``threshold`` is not given).
    max_users
        Score at most this many users, a seeded random sample when there are more.
    random_state
        Seed of that sample.

    Returns
    -------
    dict
        ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k``, ``n_users``,
        ``n_relevant``, ``k``, ``threshold``.
    """
    if threshold is None:
        if rating_scale is None:
            raise ValueError("give threshold or rating_scale")
        threshold = relevance_threshold(rating_scale)
    train = train.tocsr()
    n_items = train.shape[1]
    candidates = np.asarray(train.getnnz(axis=0) > 0)
    rating = np.asarray(heldout.rating)
    users = np.asarray(heldout.user_idx, dtype=np.int64)
    items = np.asarray(heldout.item_idx, dtype=np.int64)
    keep = (rating >= threshold) & candidates[items]
    users, items = users[keep], items[keep]
    present = np.unique(users)
    if max_users is not None and len(present) > max_users:
        present = np.sort(np.random.default_rng(random_state).choice(present, max_users,
                                                                     replace=False))
        keep = np.isin(users, present)
        users, items = users[keep], items[keep]
    relevant_keys = np.unique(users * n_items + items)
    row_of_user = np.searchsorted(present, relevant_keys // n_items)
    n_relevant = np.bincount(row_of_user, minlength=len(present))
    hits = np.zeros((len(present), k), dtype=bool)
    block = max(1, SCORE_BLOCK // max(n_items, 1))
    for start in range(0, len(present), block):
        batch = present[start:start + block]
        picked = top_k(score(batch), train[batch], k, candidates)
        keys = batch[:, None] * n_items + picked
        hits[start:start + len(batch)] = (picked >= 0) & np.isin(keys, relevant_keys)
    figures = ranking_metrics_from_hits(hits, n_relevant, k)
    return {**figures, "n_relevant": len(relevant_keys), "k": int(k),
            "threshold": float(threshold)}
