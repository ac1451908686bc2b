"""Rating-prediction and ranking metrics as plain functions.

RMSE and MAE are taken over all test ratings pooled together (not averaged per user).

Ranking metrics at ``k`` (:func:`ranking_metrics`, :func:`ranking_metrics_from_hits`) score
each user's ranked list against the set of that user's relevant items and average over the
users, each user counting once. Conventions (binary relevance: an item is relevant or not):

* precision@k = hits in the top ``k`` / ``k`` (also when the list is shorter than ``k``);
* recall@k = hits / number of relevant items;
* hit rate@k = 1 when at least one of the top ``k`` is relevant, else 0;
* NDCG@k = DCG / ideal DCG, with ``DCG = sum over hit positions p (1-based) of 1 / log2(p + 1)``
  and the ideal DCG that of ``min(k, n_relevant)`` hits at the top;
* MAP@k = the sum of precision@p over the hit positions ``p <= k``, divided by
  ``min(k, n_relevant)``.

Users without any relevant item are left out (every metric would be 0 or undefined for them).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["RANKING_METRICS", "mae", "ndcg_per_user", "ranking_metrics",
           "ranking_metrics_from_hits", "rmse"]

#: Names of the ranking metrics, as they appear (with ``@k``) in the reports.
RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate")


def _errors(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {true.shape} vs {pred.shape}")
    if true.size == 0:
        raise ValueError("cannot score zero ratings")
    return pred - true


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error, ``sqrt(mean((y_pred - y_true)**2))``."""
    return float(np.sqrt(np.mean(np.square(_errors(y_true, y_pred)))))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error, ``mean(|y_pred - y_true|)``."""
    return float(np.mean(np.abs(_errors(y_true, y_pred))))


def _at_most(relevant: np.ndarray, k: int) -> np.ndarray:
    """``min(relevant, k)`` per user, for any ``k`` (numpy cannot hold a ``k`` of 1e20)."""
    return np.minimum(relevant, min(k, int(relevant.max(initial=0))))


def _ndcg(hit: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k of ``hit`` (at most ``k`` columns: the positions past a list's end
    are misses, so nothing is ``k`` wide) for users with ``relevant > 0``."""
    ideal = _at_most(relevant, k)
    discount = 1.0 / np.log2(np.arange(2, max(hit.shape[1], int(ideal.max(initial=1))) + 2))
    return (hit @ discount[:hit.shape[1]]) / np.cumsum(discount)[ideal - 1]


def ndcg_per_user(hits: ArrayLike, n_relevant: ArrayLike, k: int) -> np.ndarray:
    """NDCG@k of each user with at least one relevant item (the values whose mean
    :func:`ranking_metrics_from_hits` reports; ``hits`` at least ``k`` wide)."""
    hit, relevant, k = _checked(hits, n_relevant, k)
    scored = relevant > 0
    return _ndcg(hit[scored], relevant[scored], k)


def _checked(hits: ArrayLike, n_relevant: ArrayLike, k: Any
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """``hits`` cut to ``k`` positions (default: its width), ``n_relevant`` as integers and
    ``k``, each checked: a float or boolean ``k`` or count was taken as its integer part."""
    hit = np.asarray(hits, dtype=bool)
    if hit.ndim != 2:
        raise ValueError(f"hits must be a 2-d array (users x positions), got shape {hit.shape}")
    counts = np.asarray(n_relevant)
    if counts.shape != (hit.shape[0],):
        raise ValueError(f"n_relevant must have one count per user ({hit.shape[0]}), got "
                         f"shape {counts.shape}")
    if counts.size and (counts.dtype.kind not in "iu" or (counts < 0).any()):
        raise ValueError("n_relevant must hold counts (integers from 0)")
    k = hit.shape[1] if k is None else k
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    hit = hit[:, :k]  # positions past a shorter list's end are misses: no padding to k
    relevant = counts.astype(np.int64)
    if (hit.sum(axis=1) > relevant).any():
        raise ValueError("a user has more hits than relevant items (repeated items in a list?)")
    return hit, relevant, int(k)


def ranking_metrics_from_hits(hits: ArrayLike, n_relevant: ArrayLike, k: int | None = None
                              ) -> dict[str, Any]:
    """Ranking metrics from which positions of each user's list are relevant.

    Parameters
    ----------
    hits
        ``n_users x n`` booleans: ``hits[u, p]`` is whether the item at position ``p``
        (0-based) of user ``u``'s list is relevant (``False`` for padding).
    n_relevant
        Relevant items of each user (all of them, found in the list or not).
    k
        Cut-off; default ``n`` (the width of ``hits``). Positions from ``k`` on are ignored.

    Returns
    -------
    dict
        ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k`` (means over the
        users with at least one relevant item; see the module docstring) and ``n_users``
        (those users).
    """
    hit, relevant, k = _checked(hits, n_relevant, k)
    scored = relevant > 0
    hit, relevant = hit[scored], relevant[scored]
    names = [f"{name}@{k}" for name in RANKING_METRICS]
    if not len(relevant):
        return {**dict.fromkeys(names, float("nan")), "n_users": 0}
    n_hits = hit.sum(axis=1)
    precision_at = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    average_precision = (precision_at * hit).sum(axis=1) / _at_most(relevant, k)
    values = (n_hits / k, n_hits / relevant, _ndcg(hit, relevant, k), average_precision,
              n_hits > 0)
    return {**{name: float(np.mean(v)) for name, v in zip(names, values, strict=True)},
            "n_users": len(relevant)}


def ranking_metrics(recommended: Sequence[Sequence[Any]] | np.ndarray,
                    relevant: Sequence[Collection[Any]], k: int = 10) -> dict[str, Any]:
    """Precision, recall, NDCG, MAP and hit rate at ``k`` of ranked lists.

    Parameters
    ----------
    recommended
        One ranked list of items per user, best first (items the user rated in training
        already left out). Lists may be shorter than ``k``; an item repeated within the
        first ``k`` is an error (past them a list is not read).
    relevant
        The relevant items of each user (e.g. the test items rated at least 4 of 5).
    k
        Cut-off.

    Returns
    -------
    dict
        See :func:`ranking_metrics_from_hits`; users without relevant items are left out.

    Examples
    --------
    >>> figures = ranking_metrics([[3, 1, 2]], [{1, 7}], k=3)
    >>> figures["precision@3"], figures["recall@3"], figures["hit_rate@3"]
    (0.3333333333333333, 0.5, 1.0)
    """
    if len(recommended) != len(relevant):
        raise ValueError(f"recommended and relevant differ in length: {len(recommended)} vs "
                         f"{len(relevant)}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    longest = max((len(items) for items in recommended), default=0)
    hits = np.zeros((len(recommended), min(k, longest)), dtype=bool)
    n_relevant = np.zeros(len(recommended), dtype=np.int64)
    for user, (items, wanted) in enumerate(zip(recommended, relevant, strict=True)):
        wanted_set = set(wanted)
        top = list(items)[:k]
        if len(set(top)) != len(top):
            raise ValueError(f"recommended list {user} repeats an item")
        hits[user, :len(top)] = [item in wanted_set for item in top]
        n_relevant[user] = len(wanted_set)
    return ranking_metrics_from_hits(hits, n_relevant, k)
