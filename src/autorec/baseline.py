"""The baseline predictor ``mu + b_u + b_i``: global mean plus regularised user and item biases.

AutoRec models with ``baseline="biases"`` learn the deviation of each rating from this
baseline, so that a user or item with few ratings falls back to its bias instead of to noise.
The biases are fitted by alternating least squares on the training ratings (as Surprise's
``BaselineOnly`` and Koren's baseline estimates do), in a few vectorised passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Biases", "fit_biases"]


@dataclass(frozen=True)
class Biases:
    """Global mean and per-user, per-item offsets over dense indices.

    Attributes
    ----------
    mean
        Global mean rating.
    user
        ``n_users`` offsets (0 for a user without ratings).
    item
        ``n_items`` offsets (0 for an item without ratings).
    """

    mean: float
    user: np.ndarray
    item: np.ndarray

    def predict(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``mean + user[u] + item[i]`` per pair; an index of ``-1`` contributes no offset."""
        user_idx = np.asarray(user_idx)
        item_idx = np.asarray(item_idx)
        out = np.full(user_idx.shape, self.mean, dtype=np.float64)
        known_u = user_idx >= 0
        known_i = item_idx >= 0
        out[known_u] += self.user[user_idx[known_u]]
        out[known_i] += self.item[item_idx[known_i]]
        return out

    @classmethod
    def zeros(cls, n_users: int, n_items: int, mean: float = 0.0) -> Biases:
        """A baseline that predicts ``mean`` everywhere."""
        return cls(float(mean), np.zeros(n_users), np.zeros(n_items))


def fit_biases(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    reg_user: float = 15.0,
    reg_item: float = 10.0,
    n_iter: int = 10,
) -> Biases:
    """Fit ``r_ui ~ mu + b_u + b_i`` by alternating ridge regressions.

    Minimises ``sum (r_ui - mu - b_u - b_i)^2 + reg_user * sum b_u^2 + reg_item * sum b_i^2``
    with ``mu`` fixed at the mean rating. Each pass solves every item bias in closed form
    given the user biases, then every user bias given the item biases.

    Parameters
    ----------
    user_idx, item_idx, rating
        The training ratings.
    n_users, n_items
        Sizes of the index spaces.
    reg_user, reg_item
        Ridge penalties; larger values shrink the biases of users and items with few ratings
        more strongly towards 0.
    n_iter
        Alternating passes.
    """
    if reg_user < 0 or reg_item < 0:
        raise ValueError("bias regularisation must be >= 0")
    rating = np.asarray(rating, dtype=np.float64)
    mean = float(rating.mean()) if len(rating) else 0.0
    count_user = np.bincount(user_idx, minlength=n_users).astype(np.float64)
    count_item = np.bincount(item_idx, minlength=n_items).astype(np.float64)
    user = np.zeros(n_users)
    item = np.zeros(n_items)
    centred = rating - mean
    for _ in range(n_iter):
        item = np.bincount(item_idx, centred - user[user_idx], minlength=n_items)
        item /= np.maximum(reg_item + count_item, 1e-12)
        user = np.bincount(user_idx, centred - item[item_idx], minlength=n_users)
        user /= np.maximum(reg_user + count_user, 1e-12)
    return Biases(mean, user, item)
