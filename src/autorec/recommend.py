"""Top-N recommendation: every candidate item scored for a batch of users at once.

A fitted model's prediction for a known pair is ``offset + intercept + sum_k w_k s_k h_k(u, i)``
(``offset`` the baseline ``mu + b_u + b_i`` or 0, ``w_k`` the blend weights, ``s_k`` each
network's scale, ``h_k`` its reconstruction), clipped to the rating scale. Here the network
part is computed for a block of users against all candidate items with one dense matrix
product per network:

* I-AutoRec (rows are items): the hidden codes of every item row are computed once and
  cached per network; the block's scores are ``W_dec[users] @ codes[items].T + b_dec[users]``.
* U-AutoRec (rows are users): the block's users are encoded, and the scores are
  ``codes @ W_dec[items].T + b_dec[items]``.

Blocks are computed in ``float32`` (the networks' precision), so that a score agrees with
``model.predict`` for the same pair to about ``1e-6`` (the products sum in another order).
Items are ranked by the *unclipped* score (so that items above the top of the scale keep
their order), or by the model's ranking model when it holds one (:func:`top_n`); items a
user rated in training get ``-inf`` before :func:`torch.topk` (``exclude_seen``).

Users the model does not know get the documented fallback, flagged: the items ranked by the
baseline ``mu + b_i`` (the items rated above average by many users), with the score that
``predict`` gives such a pair (the ``cold`` policy). Nothing is excluded for them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .data.ids import query_ids
from .fitted import FittedModel, as_fitted

__all__ = ["rating_rows", "recommend", "score_matrix", "seen_matrix", "top_n"]

#: Scores held at once (users in a block x candidate items): 2**24 float32 values, 64 MiB.
SCORE_BLOCK = 1 << 24

#: fitted model -> (the first network's input matrix it was derived from, users x items
#: pattern)
_seen_cache: weakref.WeakKeyDictionary[FittedModel, tuple[Any, sp.csr_matrix]] = (
    weakref.WeakKeyDictionary())


# -- scoring -----------------------------------------------------------------------------------
def _unclipped_block(model: FittedModel, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """Unclipped predictions (``float32``, ``len(users) x len(items)``) for known users and
    items: the offsets and the intercept (:meth:`FittedModel.block_offsets`), then each
    network's weighted scores added in place (:meth:`ScoringNetwork.score_block`)."""
    out = model.block_offsets(users, items)
    for weight, member in zip(model.blend[:-1], model.members, strict=False):
        if weight != 0.0:
            member.score_block(users, items, out, float(weight))
    return out


def score_matrix(model: Any, user_idx: np.ndarray, item_idx: np.ndarray | None = None
                 ) -> np.ndarray:
    """Predictions for every (user, item) pair of ``user_idx x item_idx`` as a dense array.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` or a fitted estimator.
    user_idx
        Dense user indices; ``-1`` for a user the model does not know (cold fallback).
    item_idx
        Dense item indices (default: every item).

    Returns
    -------
    numpy.ndarray
        ``len(user_idx) x len(item_idx)`` float64 predictions, clipped to the rating scale:
        ``model.predict`` on the same pairs, up to float32 rounding (about ``1e-6``).
    """
    model = as_fitted(model)
    users = np.asarray(user_idx, dtype=np.int64)
    items = _candidates(model, item_idx)
    low, high = model.rating_scale
    out = np.empty((len(users), len(items)), dtype=np.float64)
    known = users >= 0
    if (~known).any():
        out[~known] = _cold_scores(model, items)
    rows, step = np.flatnonzero(known), _block_rows(len(items))
    for start in range(0, len(rows), step):
        block = rows[start:start + step]
        scores = _unclipped_block(model, users[block], items)
        out[block] = scores.clamp_(low, high).cpu().numpy()  # float32 -> float64
    return out


def _cold_scores(model: FittedModel, items: np.ndarray) -> np.ndarray:
    """What ``predict`` gives an unknown user with each of ``items``."""
    return model.predict_index(np.full(len(items), -1, dtype=np.int64), items)[0]


def _candidates(model: FittedModel, item_idx: np.ndarray | None) -> np.ndarray:
    n_items = len(model.items)
    if item_idx is None:
        return np.arange(n_items, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    if items.ndim != 1 or (len(items) and (items.min() < 0 or items.max() >= n_items)):
        raise ValueError(f"item indices must be a 1-d array of indices in [0, {n_items})")
    # an item given twice is one candidate (it was listed twice, and a seen item given twice
    # escaped exclude_seen); the first occurrence keeps its place
    _, first = np.unique(items, return_index=True)
    return items if len(first) == len(items) else items[np.sort(first)]


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int``; ``ValueError`` naming ``name`` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _block_rows(n_candidates: int) -> int:
    return max(1, SCORE_BLOCK // max(n_candidates, 1))


# -- seen items --------------------------------------------------------------------------------
def seen_matrix(model: Any) -> sp.csr_matrix:
    """The model's training ratings as a users x items CSR pattern (the items each user rated,
    which recommendations leave out by default: :meth:`ScoringNetwork.seen` of the first
    network). Cached per model, until that network's inputs change or a newcomer is added
    (for any family: a rating network's input matrix, else the id maps' sizes)."""
    model = as_fitted(model)
    member = model.members[0]
    key = (member, getattr(member, "matrix", None), len(model.users), len(model.items))
    cached = _seen_cache.get(model)
    if (cached is not None and cached[0][0] is key[0] and cached[0][1] is key[1]
            and cached[0][2:] == key[2:]):
        return cached[1]
    seen = member.seen()
    _seen_cache[model] = (key, seen)
    return seen


# -- top-N -------------------------------------------------------------------------------------
def top_n(
    model: Any,
    user_idx: np.ndarray,
    n: int = 10,
    *,
    exclude_seen: bool = True,
    item_idx: np.ndarray | None = None,
    seen: sp.csr_matrix | None = None,
    with_predictions: bool = False,
) -> tuple[np.ndarray, ...]:
    """The ``n`` best items for each user, on dense indices (the low-level API).

    A known user's items are ranked by the model's ranking model (:attr:`FittedModel.ranking
    <autorec.fitted.FittedModel>`, :class:`autorec.family.RankingScorer`) from the user's
    training ratings, when the model holds one, and by predicted rating otherwise.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` or a fitted estimator.
    user_idx
        Dense user indices; ``-1`` for a user the model does not know (fallback ranking, see
        the module docstring).
    n
        Items per user.
    exclude_seen
        Leave out the items each user rated in training (or in ``seen``).
    item_idx
        Candidate items (default: all).
    seen
        Users x items pattern of the items to leave out, over the model's indices (default:
        the training ratings, :func:`seen_matrix`).
    with_predictions
        Also return the predicted ratings of the items picked.

    Returns
    -------
    item_idx, scores[, predictions] : numpy.ndarray
        ``len(user_idx) x n``: item indices (``-1`` where a user has fewer than ``n``
        candidates left) and their scores, best first (``NaN`` for padding): the ranking
        model's score (``float32`` precision), or without one (and for a user the model does
        not know) the predicted rating. Predictions are ``model.predict`` for the same pairs,
        up to float32 rounding; without a ranking model items tied after clipping stay in the
        order of their unclipped scores.
    """
    model = as_fitted(model)
    n = positive_int(n, "n")
    if not isinstance(exclude_seen, bool | np.bool_):  # "no" would have been read as true
        raise ValueError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    users = np.asarray(user_idx, dtype=np.int64).reshape(-1)
    items = _candidates(model, item_idx)
    out_items = np.full((len(users), n), -1, dtype=np.int64)
    out_scores = np.full((len(users), n), np.nan, dtype=np.float64)
    out_predicted = out_scores.copy()
    done = (out_items, out_scores, out_predicted)[:3 if with_predictions else 2]
    k = min(n, len(items))
    if k == 0 or len(users) == 0:
        return done
    low, high = model.rating_scale
    if exclude_seen and seen is None:
        seen = seen_matrix(model)
    position = None
    if exclude_seen and item_idx is not None:  # item index -> column among the candidates
        position = np.full(len(model.items), -1, dtype=np.int64)
        position[items] = np.arange(len(items))

    unknown = np.flatnonzero(users < 0)
    if len(unknown):
        assert model.biases is not None
        key = model.biases.predict(np.full(len(items), -1, dtype=np.int64), items)
        order = np.argsort(-key, kind="stable")[:k]
        out_items[unknown, :k] = items[order]
        out_scores[unknown, :k] = out_predicted[unknown, :k] = _cold_scores(model, items)[order]

    known = np.flatnonzero(users >= 0)
    ranking = model.ranking
    rows_per_block = _block_rows(len(model.items) if ranking is not None else len(items))
    if ranking is not None:  # the ranking model holds a few float64 copies of its block
        rows_per_block = max(1, rows_per_block // 4)
    for start in range(0, len(known), rows_per_block):
        rows = known[start:start + rows_per_block]
        block_users = users[rows]
        if ranking is None:
            scores = _unclipped_block(model, block_users, items)
            predicted = None
        else:
            scores, predicted = _ranking_block(model, ranking, block_users, items)
        if exclude_seen:
            assert seen is not None
            sub = seen[block_users]
            row_of = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
            cols = sub.indices.astype(np.int64)
            if position is not None:
                cols = position[cols]
                row_of, cols = row_of[cols >= 0], cols[cols >= 0]
            if len(cols):
                device = scores.device
                scores[torch.from_numpy(row_of).to(device),
                       torch.from_numpy(cols).to(device)] = -math.inf
        values, columns = _top_k_in_index_order(scores, k)
        values_np = values.cpu().numpy()
        columns_np = columns.cpu().numpy()
        # -inf marks the excluded items; a NaN score (weights that are not finite) is kept
        # and returned, so that it is seen, not taken for an empty list
        valid = ~np.isneginf(values_np)
        picked = np.where(valid, items[columns_np], -1)
        out_items[rows, :k] = picked
        if predicted is None:
            out_scores[rows, :k] = np.where(valid, np.clip(values_np, low, high), np.nan)
            out_predicted[rows, :k] = out_scores[rows, :k]
        else:
            out_scores[rows, :k] = np.where(valid, values_np, np.nan)
            chosen = np.take_along_axis(predicted, columns_np, axis=1)
            out_predicted[rows, :k] = np.where(valid, chosen, np.nan)
    return done


def _top_k_in_index_order(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` of each row, equal scores in column order (``topk`` orders them as it
    goes, so a top 3 was not the start of the top 10, nor a fold-in's list): rows with a tie
    among or at the edge of their top ``k`` are sorted again, stably."""
    values, columns = torch.topk(scores, k, dim=1)
    edge = values[:, -1:]
    tied = ((values[:, 1:] == values[:, :-1]).any(dim=1)
            | ((scores == edge).sum(dim=1) > (values == edge).sum(dim=1)))
    if bool(tied.any()):
        rows = torch.nonzero(tied).squeeze(1)
        again, where = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows], columns[rows] = again[:, :k], where[:, :k]
    return values, columns


#: The model's training ratings as a users x items CSR (values the ratings; what a ranking
#: model scores a known user from): :func:`seen_matrix` itself, cached with it.
rating_rows = seen_matrix


def _ranking_block(model: FittedModel, ranking: Any, users: np.ndarray, items: np.ndarray
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """The ranking model's scores of ``users x items`` (a float32 tensor on the networks'
    device) and the predicted ratings of the same pairs (float64, clipped)."""
    low, high = model.rating_scale
    every = np.arange(len(model.items), dtype=np.int64)
    # every item's: for the blend, and for a user the ranking model knows nothing of
    predicted_t = _unclipped_block(model, users, every).clamp_(low, high)
    predicted = predicted_t.cpu().numpy()
    rows = rating_rows(model)[users]
    key = ranking.score_rows(rows, predicted)
    if len(items) != len(every) or not np.array_equal(items, every):
        key, predicted = key[:, items], predicted[:, items]
    # a prediction that is not a number (weights that are not finite) makes its item's score
    # NaN too: the blend would drop the item as one the network does not score
    key = np.where(np.isnan(predicted), np.float32(np.nan), key)
    device = predicted_t.device
    return (torch.from_numpy(np.ascontiguousarray(key, dtype=np.float32)).to(device),
            predicted.astype(np.float64))


def recommend(
    model: Any,
    user_ids: Iterable[Any] | Any,
    n: int = 10,
    *,
    exclude_seen: bool = True,
    items: Iterable[Any] | None = None,
) -> pd.DataFrame:
    """Top-``n`` items for each of ``user_ids`` (raw ids), as a table.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` or a fitted estimator.
    user_ids
        One raw user id or several; compared by text like every id. A missing id (``None``,
        NaN) or a value that cannot be an id (a float, even ``196.0``) raises ``ValueError``.
    n
        Items per user; more than the candidate items lists them all.
    exclude_seen
        Leave out the items each user rated in training (default).
    items
        Raw ids of the candidate items (default: every item the model knows); an id the
        model does not know raises ``ValueError``, an id given twice is one candidate.

    Returns
    -------
    pandas.DataFrame
        Columns ``user_id`` (as asked), ``rank`` (1 = best), ``item_id``, ``score`` (what
        the list is ranked by: the ranking model's score, or the predicted rating for a model
        without one), ``predicted_rating`` (``model.predict`` for the pair) and ``fallback``
        (``True`` for a user the model does not know, whose items are ranked by the baseline
        and scored by their predicted rating). Users in the order asked, best items first; a
        user with fewer than ``n`` candidates left has fewer rows.
    """
    model = as_fitted(model)
    if isinstance(user_ids, str | bytes) or not isinstance(user_ids, Iterable):
        user_ids = [user_ids]
    asked = list(user_ids)
    user_idx = model.users.to_index(query_ids(asked, "user_ids"))
    item_idx = None
    if items is not None:
        wanted = list([items] if isinstance(items, str | bytes) or not isinstance(
            items, Iterable) else items)  # one id, as user_ids takes one
        item_idx = model.items.to_index(query_ids(wanted, "items"))
        if (item_idx < 0).any():
            missing = [str(wanted[i]) for i in np.flatnonzero(item_idx < 0)[:5]]
            raise ValueError(f"items: {int((item_idx < 0).sum())} item id(s) the model does "
                             f"not know, e.g. {', '.join(missing)}")
    # more than there are candidates lists them all (top_n's arrays would have n columns)
    n = min(positive_int(n, "n"), len(model.items) if item_idx is None else max(len(item_idx), 1))
    picked, scores, predicted = top_n(model, user_idx, n, exclude_seen=exclude_seen,
                                      item_idx=item_idx, with_predictions=True)
    rows, ranks = np.nonzero(picked >= 0)
    user_column = np.empty(len(asked), dtype=object)
    user_column[:] = asked
    return pd.DataFrame({
        "user_id": user_column[rows],
        "rank": ranks.astype(np.int64) + 1,
        "item_id": model.items.to_raw(picked[rows, ranks]),
        "score": scores[rows, ranks],
        "predicted_rating": predicted[rows, ranks],
        "fallback": user_idx[rows] < 0,
    })
