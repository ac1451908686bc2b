"""Fold-in: scores for a user or an item that was not in the training data, without retraining.

Every AutoRec network has two sides. The side it **encodes** (the rows of its input matrix:
items for I-AutoRec, users for U-AutoRec) takes a newcomer as it takes any training row: the
newcomer's rating vector goes through the encoder and the decoder gives its output for every
known counterpart. The side it **decodes** (one decoder row, and decoder bias, per output:
users for I-AutoRec, items for U-AutoRec) has no row for a newcomer. Fold-in fits that row by
ridge regression of the newcomer's targets on the fixed hidden codes of the rows it rated, in
closed form, as ALS fold-in does (:func:`ridge_row`). So, per network:

============  ==========================  ==========================
newcomer      I-AutoRec (``"item"``)      U-AutoRec (``"user"``)
============  ==========================  ==========================
new user      ridge decoder row           encode its ratings
new item      encode its ratings          ridge decoder row
============  ==========================  ==========================

The whole prediction is then assembled as :class:`~autorec.fitted.FittedModel` assembles it:
the baseline ``mu + b_u + b_i`` (with ``baseline="biases"``), plus the blend intercept, plus
each network's output times its blend weight, clipped to the training rating scale.

* **Baseline bias of the newcomer**: its ridge estimate given the known side's biases, the
  update :func:`autorec.baseline.fit_biases` makes, with the model's own penalty
  (``biases_.reg_user`` for a new user, ``biases_.reg_item`` for a new item):
  ``b = sum(r - mu - b_other) / (reg + n)``. It is computed for any model (the ``"baseline"``
  cold policy uses it) and added to the predictions when ``baseline="biases"``.
* **Ridge targets**: ``(r - mu - b_new - b_other) / scale`` with a residual network (the
  deviation from the baseline, in the network's units, :attr:`Member.scale`), ``r`` with
  ``baseline="none"`` (whose decoder has a bias: it is fitted too, unpenalised).
* **Ridge penalty** ``reg``: by default the model's own. Training minimises ``sum of squared
  errors + (l2 / 2) * ||W||^2`` (:mod:`autorec.train`); with the encoder fixed, the best
  decoder row for one output under that objective is the ridge solution with
  ``reg = l2_ / 2`` (50 for the default ``l2=100``), in the network's units. A model trained
  without the penalty (``l2_ == 0``: the ``reference`` preset) gets :data:`DEFAULT_REG`
  instead, since an unpenalised row of ``hidden`` weights would interpolate a handful of
  ratings. Any ``reg >= 0`` can be passed (``0``: the minimum-norm least-squares row).
* **Ratings of ids the model does not know** are ignored and counted
  (:attr:`FoldIn.n_unknown`). With no rating of a known id the scores are the model's cold
  fallback, exactly what :meth:`AutoRec.predict` gives an unknown user (or item).
* **Adding** (``add=True``) makes the newcomer part of the model, so that ``predict`` knows
  it: its id is appended to ``users_`` / ``items_``, its bias to ``biases_``; in every network
  its ratings become a new input row (the encoded side) or column (the other side), the
  fitted decoder row (and bias) is appended, and the encoder gets a row of **zeros** for the
  new input, so that no existing hidden code changes: every earlier prediction stays exactly
  as it was and the newcomer's predictions are exactly the fold-in scores.
  ``global_mean_`` and ``rating_scale_`` are kept. An id the model already knows is refused,
  and so is a non-integer id for a model whose ids of that side are integers (an integer id
  map stays integer).

Example
-------
A new user of a model trained on MovieLens-100K, from three ratings::

    result = model.fold_in_user({50: 5, 172: 4, 181: 5}, n=5)
    result.recommendations      # user_id, rank, item_id, score, predicted_rating, fallback
    result.scores[[1, 2, 3]]    # predicted ratings of items 1, 2, 3
    model.fold_in_user({50: 5, 172: 4, 181: 5}, add=True, user_id=944)  # ids are integers
    model.recommend([944])      # now a user like any other
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import newcomer
from .fitted import FittedModel, as_fitted
from .networks import ridge_row

__all__ = ["DEFAULT_REG", "RECOMMENDATION_COLUMNS", "FoldIn", "default_reg", "fold_in",
           "ridge_row"]

log = logging.getLogger(__name__)

Side = Literal["user", "item"]

#: Ridge penalty of a fold-in decoder row when the model was trained without ``l2``, in the
#: network's units (ratings, or rating deviations over their standard deviation).
DEFAULT_REG = 1.0
#: Columns of :attr:`FoldIn.recommendations` (as ``recommend`` returns them).
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("user_id", "rank", "item_id", "score",
                                           "predicted_rating", "fallback")


@dataclass(frozen=True)
class FoldIn:
    """What folding one new user (or item) into a trained model gives.

    Attributes
    ----------
    side
        ``"user"`` or ``"item"``: what the newcomer is.
    id
        The newcomer's raw id (``None`` when none was given).
    scores
        The predicted rating of every known item (for a new user) or of every known user (for
        a new item), clipped to the rating scale; indexed by raw id (``item_id`` /
        ``user_id``) in the model's index order.
    recommendations
        For a new user with ``n`` given: the top ``n`` items (without those it rated unless
        ``exclude_rated=False``) in the columns of :func:`autorec.recommend.recommend`, ranked
        as it ranks a user: by the ranking model scoring the new user's row, else by
        unclipped predicted rating (ties in index order), and by the baseline ``mu + b_i``
        when no rating was usable (``fallback``). ``None`` for a new item.
    bias
        The newcomer's baseline bias (0 when it rated nothing known).
    n_ratings
        Ratings used: those of ids the model knows.
    n_unknown
        Ratings ignored because the model does not know their id.
    reg
        The ridge penalty the decoder rows were fitted with.
    added
        Whether the newcomer was added to the model.
    """

    side: str
    id: Any
    scores: pd.Series
    recommendations: pd.DataFrame | None
    bias: float
    n_ratings: int
    n_unknown: int
    reg: float
    added: bool

    @property
    def cold(self) -> bool:
        """Whether no rating was usable, so that the scores are the cold fallback."""
        return self.n_ratings == 0


def default_reg(model: Any) -> float:
    """The ridge penalty fold-in uses by default: ``l2_ / 2``, or :data:`DEFAULT_REG` when
    the model was trained without ``l2`` (see the module docstring)."""
    fitted = as_fitted(model)
    l2 = fitted.l2
    if l2 is None:
        given = fitted.params["l2"]
        l2 = given if not isinstance(given, list | tuple) else 0.0
    return float(l2) / 2.0 if l2 > 0 else DEFAULT_REG


# -- the fold-in --------------------------------------------------------------------------------
def fold_in(
    model: Any,
    side: Side,
    ratings: Any,
    *,
    new_id: Any = None,
    n: int | None = 10,
    exclude_rated: bool = True,
    add: bool = False,
    reg: float | None = None,
) -> FoldIn:
    """Scores (and, for a new user, recommendations) for a newcomer, without retraining.

    See the module docstring for the method. :meth:`AutoRec.fold_in_user` and
    :meth:`AutoRec.fold_in_item` call this.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` or a fitted estimator holding one; ``add``
        changes it.
    side
        ``"user"``: ``ratings`` are a new user's ratings of known items; ``"item"``: a new
        item's ratings by known users.
    ratings
        A mapping ``{id: rating}``, a Series indexed by id, a DataFrame with an ``item_id``
        (new user) or ``user_id`` (new item) column and a ``rating`` column, a pair
        ``(ids, ratings)`` of sequences, or a list of ``(id, rating)`` tuples (or lists;
        two lists of two are refused: either reading fits them). Ids are
        compared by text, as everywhere; ids the model does not know are ignored and
        counted; an id given twice is an error. Ratings are numbers (text such as ``"5"``,
        booleans and ``None`` are refused), finite, and within the model's
        ``rating_scale_`` (a 0 or a 6 on a 1-5 model is refused, not clipped).
    new_id
        The newcomer's raw id: needed with ``add=True``, else only a label
        (the ``user_id`` column of the recommendations).
    n
        Recommendations for a new user (``None``: none); ignored for a new item.
    exclude_rated
        Leave the items the new user rated out of the recommendations.
    add
        Add the newcomer to the model (module docstring); its id must be new.
    reg
        Ridge penalty of the fitted decoder rows; ``None``: :func:`default_reg`.

    Raises
    ------
    ValueError
        A bad argument or rating (naming it; a rating that is not a number, not finite or
        outside ``rating_scale_``), an id that is already known with ``add=True`` (or not an
        integer for a model whose ids of that side are), or ``add=True`` without a rating of
        a known id.
    """
    model = as_fitted(model)
    if side not in ("user", "item"):
        raise ValueError(f"side must be one of user, item, got {side!r}")
    for name, flag in (("add", add), ("exclude_rated", exclude_rated)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if reg is None:
        reg = default_reg(model)
    elif isinstance(reg, bool) or not isinstance(reg, int | float | np.number) \
            or not (math.isfinite(float(reg)) and reg >= 0):
        raise ValueError(f"reg must be a number >= 0 or None, got {reg!r}")
    reg = float(reg)

    own_map, other_map = (model.users, model.items) if side == "user" else (model.items,
                                                                            model.users)
    if add:
        new_id = newcomer.new_id(own_map, new_id, side)
    raw_ids, values = newcomer.rating_pairs(ratings, "item_id" if side == "user" else "user_id")
    newcomer.check_scale(values, model.rating_scale)
    index = other_map.to_index(raw_ids)
    known = index >= 0
    n_unknown = int(len(index) - known.sum())
    if n_unknown:
        log.info("fold-in of a new %s: %d of %d ratings name unknown ids and are ignored",
                 side, n_unknown, len(index))
    order = np.argsort(index[known], kind="stable")
    index, values = index[known][order], values[known][order]

    biases = model.biases
    assert biases is not None
    other_bias = biases.item if side == "user" else biases.user
    if len(index) == 0:
        if add:
            raise ValueError(f"cannot add a {side} without a rating of a known "
                             f"{'item' if side == 'user' else 'user'}")
        unknown = np.full(len(other_map), -1, dtype=np.int64)
        everyone = np.arange(len(other_map), dtype=np.int64)
        pairs = (unknown, everyone) if side == "user" else (everyone, unknown)
        scores, _ = model.predict_index(*pairs)
        # ranked as recommend ranks a user it does not know: by the baseline mu + b_i
        key = biases.predict(*pairs)
        return _result(model, side, new_id, scores, key, index, 0.0, n_unknown, reg, False,
                       n, exclude_rated)

    side_reg = biases.reg_user if side == "user" else biases.reg_item
    bias = float(np.sum((values - biases.mean) - other_bias[index])
                 / max(side_reg + len(values), 1e-12))
    if model.baseline == "biases":  # the operations of Biases.predict, in its order
        if side == "user":
            offsets_all = (biases.mean + bias) + other_bias
        else:
            offsets_all = (biases.mean + other_bias) + bias
    else:
        offsets_all = np.zeros(len(other_map))
    targets = values - offsets_all[index]

    scores = offsets_all + model.blend[-1]
    grown = []
    for weight, member in zip(model.blend[:-1], model.members, strict=True):
        output, growth = member.fold_in(side, index, values, targets, reg)
        grown.append(growth)
        if weight != 0.0:
            scores += weight * output
    unclipped = scores.copy()
    np.clip(scores, *model.rating_scale, out=scores)
    ranked = None
    if side == "user" and n is not None and model.ranking is not None:
        ranked = _ranking_scores(model, index, values, scores)
    if add:
        _add(model, side, new_id, index, bias, grown)
    return _result(model, side, new_id, scores, unclipped if ranked is None else ranked,
                   index, bias, n_unknown, reg, add, n, exclude_rated, ranked is not None)


def _ranking_scores(model: FittedModel, index: np.ndarray, values: np.ndarray,
                    predicted: np.ndarray) -> np.ndarray:
    """The ranking model's scores of a new user's row (its ratings of known items), given its
    predicted ratings (blended, or its order where the ranking model knows nothing of the
    user; ``-inf``: an item it cannot rank)."""
    assert model.ranking is not None
    row = sp.csr_matrix((values.astype(np.float32), index.astype(np.int64),
                         np.array([0, len(index)])), shape=(1, len(model.items)))
    return np.asarray(model.ranking.score_rows(row, predicted[None, :])[0], dtype=np.float64)


# -- adding the newcomer ------------------------------------------------------------------------
def _add(model: FittedModel, side: str, new_id: Any, index: np.ndarray, bias: float,
         grown: list[Any]) -> None:
    biases = model.biases
    assert biases is not None
    if side == "user":
        model.users = newcomer.extend_map(model.users, new_id)
        model.biases = replace(biases, user=np.append(biases.user, bias))
    else:
        model.items = newcomer.extend_map(model.items, new_id)
        model.biases = replace(biases, item=np.append(biases.item, bias))
    for member, growth in zip(model.members, grown, strict=True):
        member.grow(side, index, growth)


# -- output -------------------------------------------------------------------------------------
def _result(model: FittedModel, side: str, new_id: Any, scores: np.ndarray, key: np.ndarray,
            rated: np.ndarray, bias: float, n_unknown: int, reg: float, added: bool,
            n: int | None, exclude_rated: bool, ranked: bool = False) -> FoldIn:
    """The result; recommendations ranked by ``key``: the ranking model's scores
    (``ranked``), else the unclipped scores (so that items above the top of the scale keep
    their order, as :mod:`autorec.recommend` ranks). ``rated``: the known ids rated."""
    other_map, name = (model.items, "item_id") if side == "user" else (model.users, "user_id")
    series = pd.Series(scores, index=pd.Index(other_map.raw_ids, name=name), name="score")
    recommendations = None
    if side == "user" and n is not None:
        candidates = np.ones(len(scores), dtype=bool)
        if exclude_rated:
            candidates[rated] = False
        if ranked:  # items the ranking model cannot rank are left out, as recommend does
            candidates &= np.isfinite(key)
        pool = np.flatnonzero(candidates)
        top = pool[np.argsort(-key[pool], kind="stable")[:n]]
        recommendations = pd.DataFrame({
            "user_id": pd.Series([new_id] * len(top), dtype=object),
            "rank": np.arange(1, len(top) + 1, dtype=np.int64),
            "item_id": other_map.to_raw(top),
            "score": key[top] if ranked else scores[top],
            "predicted_rating": scores[top],
            "fallback": np.full(len(top), len(rated) == 0),
        }, columns=list(RECOMMENDATION_COLUMNS))
    return FoldIn(side=side, id=new_id, scores=series, recommendations=recommendations,
                  bias=bias, n_ratings=len(rated), n_unknown=n_unknown, reg=reg, added=added)
