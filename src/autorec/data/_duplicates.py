"""Repeated (user, item) pairs, found the same way whatever the source: by sorting one
``int64`` key per rating in place; only the rows of repeated pairs go through pandas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

import numpy as np
import pandas as pd

from .ratings import Ratings

__all__ = ["merge_repeats", "pair_keys", "warn_shared_pairs"]

log = logging.getLogger(__name__)


def pair_keys(user_idx: np.ndarray, item_idx: np.ndarray, n_items: int) -> np.ndarray:
    """``user_idx * n_items + item_idx`` as ``int64``: one distinct key per (user, item)."""
    key = user_idx.astype(np.int64)  # a fresh array, whatever the input type
    key *= n_items
    key += item_idx
    return key


def merge_repeats(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray,
    n_items: int,
    *,
    duplicates: str,
    source: str,
    refuse: Callable[[int, int], NoReturn],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ratings with each (user, item) pair once.

    Without repeats the arrays come back as they are. With ``duplicates="error"``,
    ``refuse(position, first)`` is called with the 0-based row of the first repeat (in row
    order) and the row where its pair first appeared; it must raise. ``"last"`` keeps the
    last rating of each pair, ``"mean"`` their mean; either way a pair stays at the row where
    it first appeared and later rows are dropped (what ``groupby(sort=False)`` over the
    whole frame gives, computed on the repeated rows only).
    """
    key = pair_keys(user_idx, item_idx, n_items)
    key.sort()
    same = key[1:] == key[:-1]
    if not same.any():
        return user_idx, item_idx, rating
    repeated = np.unique(key[1:][same])
    del key, same
    key = pair_keys(user_idx, item_idx, n_items)
    rows = np.flatnonzero(pd.Series(key, copy=False).isin(repeated).to_numpy())
    del key
    sub = pair_keys(user_idx[rows], item_idx[rows], n_items)
    later = pd.Series(sub).duplicated(keep="first").to_numpy()
    if duplicates == "error":
        k = int(later.argmax())
        refuse(int(rows[k]), int(rows[int(np.flatnonzero(sub == sub[k])[0])]))
    log.info("%s: merging %d repeated (user, item) ratings with policy %r",
             source, int(later.sum()), duplicates)
    grouped = pd.DataFrame({"key": sub, "rating": rating[rows]}).groupby("key", sort=False)
    merged = grouped["rating"].last() if duplicates == "last" else grouped["rating"].mean()
    rating = rating.copy()
    rating[rows[~later]] = merged.to_numpy().astype(np.float32)
    keep = np.ones(len(rating), dtype=bool)
    keep[rows[later]] = False
    return user_idx[keep], item_idx[keep], rating[keep]


def warn_shared_pairs(train: Ratings, test: Ratings) -> int:
    """Log a warning when ratings of ``test`` are of (user, item) pairs that ``train`` holds
    too (both on the same id maps, as :func:`autorec.split.align` makes them): a test
    error on them measures what was memorised. Returns how many there are."""
    known = pair_keys(train.user_idx, train.item_idx, len(train.items))
    known.sort()
    keys = pair_keys(test.user_idx, test.item_idx, len(train.items))
    found = np.searchsorted(known, keys)
    shared = int((known[np.minimum(found, len(known) - 1)] == keys).sum()) if len(known) else 0
    if shared:
        log.warning("%s: %d of its %d ratings are of (user, item) pairs that the training "
                    "data %s also holds; their test error measures memory, not prediction",
                    test.source, shared, len(test), train.source)
    return shared
