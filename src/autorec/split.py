"""Train/test splits of :class:`~autorec.data.Ratings`: random holdout, k-fold, canonical.

All random splits take ``random_state`` (an int or ``None``); the same value gives the same
split on any machine. Splits are by rating: a user or item may end up only in the test part,
which the estimator then treats as cold.
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike

import numpy as np
import pandas as pd

from .data._duplicates import warn_shared_pairs
from .data.builtin import dataset_path
from .data.ids import IdMap, common_ids
from .data.ratings import Ratings
from .data.readers import DuplicatePolicy, as_ratings, read_ratings

__all__ = ["CANONICAL_SPLITS", "align", "canonical_split", "kfold_split", "random_split"]

CANONICAL_SPLITS: tuple[str, ...] = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


def check_seed(random_state: object) -> None:
    """Refuse a ``random_state`` that is not an integer >= 0 or ``None``, naming it (numpy's
    own error did not)."""
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(
            random_state, int | np.integer) or random_state < 0):
        raise ValueError(f"random_state must be an integer >= 0 or None, got {random_state!r}")


def random_split(
    ratings: Ratings | pd.DataFrame, test_ratio: float = 0.1, random_state: int | None = None
) -> tuple[Ratings, Ratings]:
    """Hold out a random fraction of the ratings as the test part.

    Parameters
    ----------
    ratings
        The ratings to split (a DataFrame is read as :func:`~autorec.from_dataframe` reads
        it).
    test_ratio
        Fraction of ratings in the test part, strictly between 0 and 1; the test part has
        ``round(test_ratio * len(ratings))`` ratings (at least one, and one fewer than all).
    random_state
        Seed of the permutation.

    Returns
    -------
    train, test
        Disjoint subsets that together hold every rating, sharing ``ratings``' id maps.
    """
    if (isinstance(test_ratio, bool) or not isinstance(test_ratio, int | float | np.number)
            or not 0.0 < test_ratio < 1.0):
        raise ValueError(f"test_ratio must be strictly between 0 and 1, got {test_ratio!r}")
    check_seed(random_state)
    ratings = as_ratings(ratings)
    n = len(ratings)
    if n < 2:
        raise ValueError(f"{ratings.source}: need at least 2 ratings to split, got {n}")
    n_test = min(max(round(test_ratio * n), 1), n - 1)
    order = np.random.default_rng(random_state).permutation(n)
    return ratings.subset(np.sort(order[n_test:])), ratings.subset(np.sort(order[:n_test]))


def kfold_split(
    ratings: Ratings | pd.DataFrame, n_splits: int = 5, random_state: int | None = None
) -> Iterator[tuple[Ratings, Ratings]]:
    """Yield ``n_splits`` (train, test) pairs; each rating is in exactly one test fold.

    Fold sizes differ by at most one rating. A DataFrame is read as
    :func:`~autorec.from_dataframe` reads it.
    """
    if (isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer)
            or n_splits < 2):
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    check_seed(random_state)
    ratings = as_ratings(ratings)
    n = len(ratings)
    if n < n_splits:
        raise ValueError(f"{ratings.source}: cannot make {n_splits} folds of {n} ratings")
    order = np.random.default_rng(random_state).permutation(n)
    for fold in np.array_split(order, n_splits):
        in_test = np.zeros(n, dtype=bool)
        in_test[fold] = True
        yield ratings.subset(~in_test), ratings.subset(in_test)


def align(train: Ratings, test: Ratings) -> tuple[Ratings, Ratings]:
    """Re-index two separately read parts so that they share one pair of id maps.

    Ids match by their text (:mod:`autorec.data.ids`): when one part stores a column as
    integers and the other as text (``"x9"`` or ``"02"`` in one file only), the integers
    become their canonical text, so that ``1`` of the one file is ``"1"`` of the other.
    A test part that repeats (user, item) pairs of the training part gets a logged warning.
    """
    users = IdMap.from_values(np.concatenate(common_ids(train.user_ids, test.user_ids)))
    items = IdMap.from_values(np.concatenate(common_ids(train.item_ids, test.item_ids)))

    def reindex(part: Ratings) -> Ratings:
        return Ratings(users.to_index(part.user_ids), items.to_index(part.item_ids),
                       part.rating, users, items, part.source)

    train, test = reindex(train), reindex(test)
    warn_shared_pairs(train, test)
    return train, test


def canonical_split(
    name: str,
    data_dir: str | PathLike[str] | None = None,
    *,
    download: bool | None = None,
    duplicates: DuplicatePolicy = "error",
) -> tuple[Ratings, Ratings]:
    """The MovieLens-100K splits shipped with the data set: ``u1``..``u5``, ``ua``, ``ub``.

    ``u1``..``u5`` are the 80/20 five-fold splits; ``ua``/``ub`` hold out exactly ten ratings
    per user. Reads ``<name>.base`` and ``<name>.test`` from the ``ml-100k`` folder, each with
    ``duplicates`` (as :func:`~autorec.data.read_ratings`; the shipped files have none).
    """
    if name not in CANONICAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(CANONICAL_SPLITS)}, got {name!r}")
    folder = dataset_path("ml-100k", data_dir, download=download)
    names = ("user_id", "item_id", "rating", "timestamp")
    parts = [
        read_ratings(folder / f"{name}.{kind}", sep="\t", header=False, names=names,
                     duplicates=duplicates)
        for kind in ("base", "test")
    ]
    return align(parts[0], parts[1])
