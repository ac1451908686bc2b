"""A convex blend of ranking scores, each standardised per user, with weights chosen on a
validation part by NDCG@k.

Each component's scores of a user are standardised over the items that user may be offered
(the modelled items the user has not rated): ``(s - mean) / std``. The blend is
``sum_c w_c z_c`` with ``w_c >= 0`` and ``sum_c w_c = 1``; :func:`choose_weights_in_blocks`
tries every point of a grid on that simplex (step ``1 / resolution``), a block of validation
users at a time, and keeps the one with the best validation NDCG@k (ties: the first point, in
an order that favours fewer components). A blend can be required to beat the best single
component by ``standard_errors`` paired standard errors of the users' NDCG differences
(:data:`BLEND_STANDARD_ERRORS`, 0: at 1 it cost test NDCG on 2 of 11 benchmark splits and
helped on none, BENCHMARKS.md). Items that some component cannot score (``-inf``, e.g.
outside EASE's item limit) are left out of every list.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..metrics import ndcg_per_user

__all__ = ["BLEND_STANDARD_ERRORS", "blend_scores", "choose_weights_in_blocks", "simplex_grid",
           "standardise"]

#: How many paired standard errors of the per-user NDCG@k differences a blend's validation
#: gain over the best single component must exceed to be kept (module docstring).
BLEND_STANDARD_ERRORS = 0.0


def standardise(scores: np.ndarray, seen: sp.csr_matrix | None = None) -> np.ndarray:
    """Per-row ``(s - mean) / std``, the mean and spread taken over the finite scores of the
    items not in ``seen`` (the user's candidates); non-finite scores become ``-inf``. A row
    with no spread gets ``s - mean``."""
    out = np.array(scores, dtype=np.float64)
    finite = np.isfinite(out)
    counted = finite.copy()
    if seen is not None and seen.nnz:
        seen = sp.coo_matrix(seen)
        counted[seen.row, seen.col] = False
    count = np.maximum(counted.sum(axis=1, keepdims=True), 1)
    filled = np.where(finite, out, 0.0)
    mean = np.where(counted, filled, 0.0).sum(axis=1, keepdims=True) / count
    var = (np.where(counted, filled - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count
    std = np.sqrt(var)
    std[std == 0] = 1.0
    z = (filled - mean) / std
    z[~finite] = -np.inf
    return z.astype(np.float32)


def blend_scores(standardised: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_c w_c z_c`` (components with weight 0 still mask their ``-inf`` items)."""
    out = np.zeros_like(standardised[0], dtype=np.float32)
    for z, w in zip(standardised, weights, strict=True):
        out += np.where(np.isfinite(z), np.float32(w) * np.nan_to_num(z, neginf=0.0), -np.inf
                        ).astype(np.float32)
    return out


def simplex_grid(n_components: int, resolution: int = 10) -> list[tuple[float, ...]]:
    """Every weight vector with entries in ``{0, 1/r, ..., 1}`` summing to 1, those with fewer
    non-zero weights first (so that a tie keeps the simpler blend)."""
    points = [tuple(c / resolution for c in combo)
              for combo in itertools.product(range(resolution + 1), repeat=n_components)
              if sum(combo) == resolution]
    return sorted(points, key=lambda p: (sum(w > 0 for w in p), [-w for w in p]))


def _hits(picked: np.ndarray, relevant: sp.csr_matrix, columns: np.ndarray | None
          ) -> np.ndarray:
    """``picked[r, j]`` (a column, ``-1`` for none) is one of row ``r``'s relevant items
    (``relevant``'s columns are the items; ``columns`` maps a picked column to its item)."""
    items = picked
    if columns is not None:  # -1 stays -1 (taken through columns, it failed on none)
        items = np.full(picked.shape, -1, dtype=np.int64)
        items[picked >= 0] = columns[picked[picked >= 0]]
    rows = np.arange(len(picked))[:, None]
    wanted = np.repeat(np.arange(len(picked)), np.diff(relevant.indptr))
    return (items >= 0) & np.isin(rows * relevant.shape[1] + items,
                                  wanted * relevant.shape[1] + relevant.indices)


#: One block of validation users for :func:`choose_weights_in_blocks`: per component their
#: standardised scores (:func:`standardise`) over some columns, the pattern of their fit-part
#: items over the same columns (left out of the lists), their relevant held-out items over
#: *all* items, and the item of each column (``None``: the columns are the items).
Block = tuple[Sequence[np.ndarray], sp.csr_matrix | None, sp.csr_matrix, np.ndarray | None]


def choose_weights_in_blocks(blocks: Iterable[Block], n_components: int, k: int = 10,
                             resolution: int = 10,
                             standard_errors: float = BLEND_STANDARD_ERRORS
                             ) -> tuple[tuple[float, ...], float,
                                        list[tuple[tuple[float, ...], float]],
                                        dict[str, Any] | None]:
    """The simplex point with the best NDCG@k on validation, a block of users at a time.

    Every grid point ranks a block before the next block is made, so that only one block's
    scores are held (never validation users x items at once).

    Parameters
    ----------
    blocks
        The validation users a :data:`Block` at a time (every user has a relevant item).
    n_components
        Components per block.
    k, resolution
        Cut-off; grid step ``1 / resolution``.
    standard_errors
        How many paired standard errors a blend's gain over the best single component must
        exceed.

    Returns
    -------
    weights, ndcg, tried, gate
        The chosen weights, their validation NDCG@k, every (weights, NDCG@k) tried, and the
        gate between the best blend and the best single component (``None`` when a single
        component is best anyway): the blend, its gain, the gain's paired standard error,
        whether it was kept.
    """
    from .protocol import top_k

    grid = simplex_grid(n_components, resolution)
    hits: list[list[np.ndarray]] = [[] for _ in grid]
    n_relevant: list[np.ndarray] = []
    for parts, seen, relevant, columns in blocks:
        relevant = sp.csr_matrix(relevant)
        n_relevant.append(np.diff(relevant.indptr))
        for at, point in enumerate(grid):
            picked = top_k(blend_scores(parts, point), seen, k)
            hits[at].append(_hits(picked, relevant, columns))
    counts = np.concatenate(n_relevant) if n_relevant else np.zeros(0, dtype=np.int64)
    per_user = [ndcg_per_user(np.concatenate(h) if h else np.zeros((0, k), dtype=bool),
                              counts, k) for h in hits]
    means = [float(np.mean(v)) if len(v) else float("nan") for v in per_user]
    tried = list(zip(grid, means, strict=True))
    best = 0
    for at, value in enumerate(means):
        if value > means[best] + 1e-12:
            best = at
    if sum(w > 0 for w in grid[best]) == 1:
        return grid[best], means[best], tried, None
    single = max((at for at, p in enumerate(grid) if sum(w > 0 for w in p) == 1),
                 key=lambda at: (means[at], -at))
    difference = per_user[best] - per_user[single]
    error = (float(np.std(difference, ddof=1) / np.sqrt(len(difference)))
             if len(difference) > 1 else float("inf"))
    gain = float(np.mean(difference))
    kept = gain > standard_errors * error
    pick = best if kept else single
    gate = {"blend": list(grid[best]), "single": list(grid[single]), "gain": gain,
            "standard_error": error, "standard_errors": standard_errors, "kept": kept}
    return grid[pick], means[pick], tried, gate
