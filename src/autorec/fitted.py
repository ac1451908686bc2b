"""The fitted model: everything a fit learns, and how it predicts, apart from the estimator.

:func:`autorec.fitting.fit` returns a :class:`FittedModel`; :mod:`autorec.recommend`,
:mod:`autorec.foldin`, :mod:`autorec.persist`, :mod:`autorec.checkpoint` and
:mod:`autorec.serve` take one; :class:`~autorec.estimator.AutoRec` holds one (``fitted_``)
and shows its parts as its learned attributes (``users_``, ``biases_``, ``members_``...).

A prediction for a pair of known user and item is ``offset + intercept + sum_k w_k h_k(u, i)``:
``offset`` the baseline ``mu + b_u + b_i`` (``baseline="biases"``) or 0, ``w_k`` the blend
weights and ``h_k`` each network's output (:class:`autorec.family.ScoringNetwork`), clipped
to the training rating scale. A pair with an unknown user or item gets the cold policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .baseline import Biases
from .data.ids import IdMap, query_ids
from .data.ratings import Ratings
from .data.readers import as_ratings
from .exceptions import NotFittedError
from .family import ScoringNetwork
from .metrics import mae, rmse

__all__ = ["FittedModel", "as_fitted"]


@dataclass(eq=False)  # compared and hashed by identity: caches are keyed on it
class FittedModel:
    """What a fit learned.

    Attributes
    ----------
    params
        The estimator parameters it was fitted with (every one: :data:`autorec.params.DEFAULTS`
        completed); ``variant``, ``cold`` and ``baseline`` are read from them.
    users, items
        Raw ids of the users and items seen in training (:class:`~autorec.data.ids.IdMap`).
    global_mean
        Mean training rating.
    rating_scale
        The ``rating_scale`` parameter when given, else the smallest and largest training
        rating; predictions are clipped to it.
    biases
        Global mean and user and item biases over the indices of ``users`` and ``items``.
    members
        The trained networks (:class:`~autorec.family.ScoringNetwork`).
    blend
        Weight of each network's output, then the intercept.
    l2
        The L2 penalty used (``None``: unknown, a model folder that did not record it).
    history
        Per network and epoch, as ``AutoRec.history_``.
    epoch_seconds
        Seconds spent in this fit's training epochs: every network, every ``l2`` value tried
        and the refit (``history`` keeps the kept value's selection epochs only).
    validation_rmse, validation_mean_rmse
        Validation RMSE of the blended predictor and of the fit part's mean (``nan`` without
        a validation part; ``validation_mean_rmse`` is ``None`` for a loaded model).
    device
        Where the networks live.
    ranking
        The ranking model beside the rating networks (:class:`autorec.family.RankingScorer`),
        which orders top-N lists and never enters a prediction; ``None`` without one
        (``ranking="none"``, or a model folder saved before ranking models).
    dataset
        The builtin data set it was trained on, as its model folder records it (``None``:
        a file, or not recorded); saving again keeps it.
    """

    params: dict[str, Any]
    users: IdMap
    items: IdMap
    global_mean: float = math.nan
    rating_scale: tuple[float, float] = (math.nan, math.nan)
    biases: Biases | None = None
    members: list[ScoringNetwork] = field(default_factory=list)
    blend: np.ndarray = field(default_factory=lambda: np.zeros(1))
    l2: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_seconds: float = 0.0
    validation_rmse: float = math.nan
    validation_mean_rmse: float | None = None
    device: torch.device | None = None
    ranking: Any = None
    dataset: str | None = None

    # -- parameters read from ``params`` ----------------------------------------------------------
    @property
    def variant(self) -> str:
        return str(self.params["variant"])

    @property
    def cold(self) -> str:
        return str(self.params["cold"])

    @property
    def baseline(self) -> str:
        return str(self.params["baseline"])

    @property
    def best_epoch(self) -> int:
        """The epoch whose weights were kept for the first network."""
        return self.members[0].best_epoch

    # -- prediction on dense indices --------------------------------------------------------------
    def to_index(self, user_ids: Any, item_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Dense indices of pairs of (parsed) raw ids; ``-1`` for an id not seen in training."""
        user_idx = self.users.to_index(user_ids)
        item_idx = self.items.to_index(item_ids)
        if user_idx.shape != item_idx.shape:
            raise ValueError(f"user_ids and item_ids differ in length: {len(user_idx)} vs "
                             f"{len(item_idx)}")
        return user_idx, item_idx

    def cold_value(self) -> float:
        """The prediction given to pairs with neither user nor item known."""
        assert self.biases is not None
        if self.cold == "midpoint":
            low, high = self.rating_scale
            return (low + high) / 2.0
        if self.cold == "baseline":
            return self.biases.mean
        return self.global_mean

    def offsets(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """What the networks' outputs are added to: the baseline, or 0."""
        if self.baseline == "biases":
            assert self.biases is not None
            return self.biases.predict(user_idx, item_idx)
        return np.zeros(len(user_idx))

    def predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for index pairs (``-1`` = unknown) and the mask of cold pairs."""
        assert self.biases is not None
        cold = (user_idx < 0) | (item_idx < 0)
        predicted = np.full(len(user_idx), self.cold_value(), dtype=np.float64)
        if self.cold == "baseline" and cold.any():
            predicted[cold] = self.biases.predict(user_idx[cold], item_idx[cold])
        warm = np.flatnonzero(~cold)
        if len(warm):
            predicted[warm] = self.blended(user_idx[warm], item_idx[warm])
        low, high = self.rating_scale
        np.clip(predicted, low, high, out=predicted)
        return predicted, cold

    def blended(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Baseline (if any) plus the blended network outputs for known pairs, unclipped."""
        out = self.offsets(user_idx, item_idx) + self.blend[-1]
        for weight, member in zip(self.blend[:-1], self.members, strict=False):
            if weight != 0.0:
                out += weight * member.predict_pairs(user_idx, item_idx)
        return out

    def block_offsets(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
        """``float32`` ``len(users) x len(items)`` block of the offsets and the intercept (on
        the networks' device), to which each network adds its scores
        (:meth:`ScoringNetwork.score_block`). The terms of the user alone and of the item alone
        are summed in float64 and added once."""
        row = np.full(len(users), float(self.blend[-1]))
        column = np.zeros(len(items))
        if self.baseline == "biases":
            assert self.biases is not None
            row += self.biases.mean + self.biases.user[users]
            column += self.biases.item[items]
        device = self.members[0].device
        row_t = torch.from_numpy(row.astype(np.float32)).to(device)
        column_t = torch.from_numpy(column.astype(np.float32)).to(device)
        return row_t[:, None] + column_t[None, :]

    # -- prediction on raw ids --------------------------------------------------------------------
    def predict(self, user_ids: Iterable[Any], item_ids: Iterable[Any], *,
                return_cold: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted ratings for pairs of raw ids (:meth:`AutoRec.predict`)."""
        users = query_ids(user_ids, "user_ids")
        items = query_ids(item_ids, "item_ids")
        predicted, cold = self.predict_index(*self.to_index(users, items))
        return (predicted, cold) if return_cold else predicted

    def evaluate(self, test: Ratings | pd.DataFrame) -> dict[str, float | int]:
        """RMSE and MAE over all ``test`` ratings (:meth:`AutoRec.evaluate`)."""
        test = as_ratings(test)
        started = time.perf_counter()
        predicted, cold = self.predict_index(*self.to_index(test.user_ids, test.item_ids))
        return {
            "rmse": rmse(test.rating, predicted),
            "mae": mae(test.rating, predicted),
            "n": len(test),
            "n_cold": int(cold.sum()),
            "seconds": time.perf_counter() - started,
        }


def as_fitted(model: Any) -> FittedModel:
    """The :class:`FittedModel` of ``model``: itself, or what an estimator holds
    (``fitted_``).

    Raises
    ------
    NotFittedError
        ``model`` holds no fitted model yet.
    """
    if isinstance(model, FittedModel):
        return model
    fitted = getattr(model, "fitted_", None)
    if not isinstance(fitted, FittedModel):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit() first")
    return fitted
