"""Repeated (user, item) pairs: found by sorting a compact key, then refused or merged.

Both readers (the exact one behind :func:`autorec.data.from_dataframe` and the block reader
for large files) hand their dense indices here, so that a repeat is reported, or merged, the
same way whichever path read the file. The cost is one ``int64`` key per rating, sorted in
place; the rows of repeated pairs alone (usually few) go through pandas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

import numpy as np
import pandas as pd

__all__ = ["merge_repeats", "pair_keys"]

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
