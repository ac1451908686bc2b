"""The baseline predictor ``mu + b_u + b_i``: global mean plus regularised user and item biases.

AutoRec models with ``baseline="biases"`` learn the deviation of each rating from this
baseline, so that a user or item with few ratings falls back to its bias instead of to noise.
The biases are fitted by alternating least squares on the training ratings (as Surprise's
``BaselineOnly`` and Koren's baseline estimates do), in a few vectorised passes (compiled on
large data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BIAS_REGULARISATION", "DEFAULT_BIAS_REGULARISATION", "Biases", "fit_biases",
           "select_biases"]

#: The ridge penalties tried by :func:`select_biases`, for users and items alike.
BIAS_REGULARISATION: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: ``(reg_user, reg_item)`` when no validation part is there to choose: near the values the
#: five benchmark data sets choose on validation (BENCHMARKS.md).
DEFAULT_BIAS_REGULARISATION: tuple[float, float] = (5.0, 3.0)


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
    reg_user, reg_item
        The ridge penalties they were fitted with.
    """

    mean: float
    user: np.ndarray
    item: np.ndarray
    reg_user: float = 0.0
    reg_item: float = 0.0

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


def fit_biases(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    rating: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    reg_user: float = DEFAULT_BIAS_REGULARISATION[0],
    reg_item: float = DEFAULT_BIAS_REGULARISATION[1],
    n_iter: int = 10,
    start: Biases | None = None,
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
    start
        Biases to start from (a neighbouring penalty's solution) instead of zeros.
    """
    if reg_user < 0 or reg_item < 0:
        raise ValueError("bias regularisation must be >= 0")
    rating = np.asarray(rating, dtype=np.float64)
    mean = float(rating.mean()) if len(rating) else 0.0
    count_user = np.bincount(user_idx, minlength=n_users).astype(np.float64)
    count_item = np.bincount(item_idx, minlength=n_items).astype(np.float64)
    user = np.zeros(n_users) if start is None else np.array(start.user, dtype=np.float64)
    item = np.zeros(n_items)
    centred = rating - mean
    item_div = np.maximum(reg_item + count_item, 1e-12)
    user_div = np.maximum(reg_user + count_user, 1e-12)
    kernels = _compiled_passes(len(rating))
    user_idx, item_idx = np.asarray(user_idx), np.asarray(item_idx)
    if (kernels is not None and len(user) == n_users  # the same passes, compiled (unchecked
            and _in_range(user_idx, n_users) and _in_range(item_idx, n_items)):  # indices)
        kernels.bias_passes(user_idx, item_idx, centred, user, item, user_div, item_div,
                            n_iter)
        return Biases(mean, user, item, reg_user, reg_item)
    for _ in range(n_iter):
        item = np.bincount(item_idx, centred - user[user_idx], minlength=n_items)
        item /= item_div
        user = np.bincount(user_idx, centred - item[item_idx], minlength=n_users)
        user /= user_div
    return Biases(mean, user, item, reg_user, reg_item)


#: Ratings from which :func:`fit_biases` runs its passes compiled (Numba, where the training
#: kernels can run): 2-3x faster, the same numbers; below it NumPy, which needs no Numba.
COMPILED_MIN_RATINGS = 300_000


def _in_range(index: np.ndarray, size: int) -> bool:
    """Whether every index lies in ``0 .. size - 1`` (NumPy's passes refuse the others)."""
    return len(index) == 0 or (int(index.min()) >= 0 and int(index.max()) < size)


def _compiled_passes(n_ratings: int) -> Any:
    """The compiled kernels for :func:`fit_biases`, or ``None`` (NumPy's passes)."""
    if n_ratings < COMPILED_MIN_RATINGS:
        return None
    from . import _kernels

    return _kernels._numba() if _kernels.available() else None


def select_biases(
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_users: int,
    n_items: int,
    *,
    scale: tuple[float, float] | None = None,
    grid: tuple[float, ...] = BIAS_REGULARISATION,
    large: int = 2_000_000,
) -> Biases:
    """Fit biases on ``fit`` with the penalties that predict ``validation`` best.

    A coordinate search over ``grid``: equal penalties for users and items first, then the
    item penalty and the user penalty in turn with the other one fixed (16 fits for the
    default grid instead of 36).

    Parameters
    ----------
    fit, validation
        ``(user_idx, item_idx, rating)`` arrays.
    n_users, n_items
        Sizes of the index spaces.
    scale
        Clip predictions to ``(low, high)`` before scoring, as predictions are.
    grid
        Penalties to try.
    large
        From this many ratings on, each candidate starts from the previous one's solution and
        takes 3 passes instead of 10 (the search then costs about 5 full fits, not 16); the
        chosen penalties are refitted in full by the caller. On a 9M-rating synthetic set
        of ML-10M's shape both searches chose the same penalties, in 6.8 s instead of 21.4 s.
    """
    from .metrics import rmse

    fitted: dict[tuple[float, float], tuple[float, Biases]] = {}
    warm = len(fit[2]) >= large
    previous: list[Biases] = []

    def score(reg_user: float, reg_item: float) -> float:
        if (reg_user, reg_item) not in fitted:
            options = {"n_iter": 3, "start": previous[-1] if previous else None} if warm else {}
            biases = fit_biases(*fit, n_users, n_items, reg_user=reg_user, reg_item=reg_item,
                                **options)  # type: ignore[arg-type]
            previous.append(biases)
            predicted = biases.predict(validation[0], validation[1])
            if scale is not None:
                np.clip(predicted, *scale, out=predicted)
            fitted[reg_user, reg_item] = (rmse(validation[2], predicted), biases)
        return fitted[reg_user, reg_item][0]

    best = min(((reg, reg) for reg in grid), key=lambda pair: score(*pair))
    best = min(((best[0], reg) for reg in grid), key=lambda pair: score(*pair))
    best = min(((reg, best[1]) for reg in grid), key=lambda pair: score(*pair))
    return fitted[best][1]
