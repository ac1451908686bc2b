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

The whole prediction is then assembled as :class:`~autorec.estimator.AutoRec` assembles it:
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
* **Ratings of ids the model does not know** are ignored; their count is reported
  (:attr:`FoldIn.n_unknown`). No rating of a known id: the scores are the model's cold
  fallback for an unknown user (or item), exactly what :meth:`AutoRec.predict` gives one.
* **Adding** (``add=True``) makes the newcomer part of the model, so that ``predict`` (and
  whatever reads the model's id maps, networks and input matrices) knows it: its id is
  appended to ``users_`` / ``items_``, its bias to ``biases_``; in every network its ratings
  (of known ids) become a new input row (the encoded side) or a new input column (the other
  side), the fitted decoder row (and bias) is appended, and the encoder gets a row of
  **zeros** for the new input: the newcomer's ratings then change no existing hidden code, so
  every earlier prediction stays exactly as it was and the newcomer's predictions are exactly
  the fold-in scores. ``global_mean_`` and ``rating_scale_`` are kept. An id the model
  already knows is refused.

Example
-------
A new user of a model trained on MovieLens-100K, from three ratings::

    result = model.fold_in_user({50: 5, 172: 4, 181: 5}, n=5)
    result.recommendations      # user_id, rank, item_id, score, fallback: the top 5 unrated
    result.scores[[1, 2, 3]]    # predicted ratings of items 1, 2, 3
    model.fold_in_user({50: 5, 172: 4, 181: 5}, add=True, user_id="new-1")
    model.recommend(["new-1"])  # now a user like any other
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from .data.ids import IdMap, id_column, ids_as_text
from .sparse import SparseBatch

if TYPE_CHECKING:
    from .estimator import AutoRec
    from .member import Member

__all__ = ["DEFAULT_REG", "RECOMMENDATION_COLUMNS", "FoldIn", "default_reg", "fold_in",
           "ridge_row"]

log = logging.getLogger(__name__)

Side = Literal["user", "item"]

#: Ridge penalty of a fold-in decoder row when the model was trained without ``l2``, in the
#: network's units (ratings, or rating deviations over their standard deviation).
DEFAULT_REG = 1.0
#: Columns of :attr:`FoldIn.recommendations` (as ``recommend`` returns them).
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("user_id", "rank", "item_id", "score", "fallback")

_DECODE_PAIRS = 1 << 16  # outputs decoded per step (as Member.reconstruct)


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
        For a new user with ``n`` given: the top ``n`` items by unclipped score (ties in index
        order), without the items it rated unless ``exclude_rated=False``; the columns of
        :func:`autorec.recommend.recommend`: ``user_id``, ``rank`` (1-based), ``item_id``,
        ``score`` (clipped, as in ``scores``) and ``fallback`` (``True`` when no rating was
        usable: the items are then ranked by the baseline ``mu + b_i``, as ``recommend``
        ranks a user it does not know). ``None`` for a new item.
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


def default_reg(model: AutoRec) -> float:
    """The ridge penalty fold-in uses by default: ``l2_ / 2``, or :data:`DEFAULT_REG` when
    the model was trained without ``l2`` (see the module docstring)."""
    l2 = getattr(model, "l2_", None)
    if l2 is None:
        l2 = model.l2 if not isinstance(model.l2, list | tuple) else 0.0
    return float(l2) / 2.0 if l2 > 0 else DEFAULT_REG


def ridge_row(codes: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, reg: float,
              *, intercept: bool = False) -> tuple[np.ndarray, float]:
    """The decoder row (and bias) that best reconstructs ``targets`` from fixed ``codes``.

    Minimises ``||targets - codes @ w - b||^2 + reg * ||w||^2`` in closed form: the solution
    of ``(X^T X + reg * D) x = X^T y`` with ``X = [codes, 1]`` and ``D`` the identity without
    its last diagonal entry, i.e. the bias ``b`` is not penalised. ``intercept=False`` fixes
    ``b = 0`` (a residual network's decoder has no bias). Computed in float64, as: ``b`` from
    the centred problem (``b = mean(y) - mean(codes) @ w``), and ``w`` from whichever normal
    equations are smaller, ``(C^T C + reg I) w = C^T y_c`` (``hidden x hidden``) or
    ``w = C^T (C C^T + reg I)^-1 y_c`` (``n x n``, for a newcomer with fewer ratings than
    hidden units), ``C`` and ``y_c`` the centred codes and targets, by Cholesky. Torch does
    the algebra, on the device of ``codes`` when it is a tensor, with torch's threads.

    Parameters
    ----------
    codes
        ``n x hidden`` hidden codes of the rows the newcomer rated.
    targets
        ``n`` values to reconstruct.
    reg
        Ridge penalty, ``>= 0``; with ``0`` the least-squares solution of smallest ``||w||``.
    intercept
        Fit the unpenalised bias ``b`` too.

    Returns
    -------
    (numpy.ndarray, float)
        ``w`` (``hidden``) and ``b`` (``0.0`` without ``intercept``).
    """
    codes_t = torch.as_tensor(codes).to(torch.float64)
    targets_t = torch.as_tensor(targets).to(device=codes_t.device, dtype=torch.float64)
    n, hidden = codes_t.shape
    if targets_t.shape != (n,):
        raise ValueError(f"targets must have one value per row of codes ({n}), got shape "
                         f"{tuple(targets_t.shape)}")
    if not (math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a number >= 0, got {reg!r}")
    centre = torch.zeros(hidden, dtype=torch.float64, device=codes_t.device)
    target_centre = torch.zeros((), dtype=torch.float64, device=codes_t.device)
    if intercept and n:
        centre, target_centre = codes_t.mean(dim=0), targets_t.mean()
    centred = codes_t - centre
    centred_targets = (targets_t - target_centre).unsqueeze(1)
    row = None
    if reg > 0:
        small = n < hidden
        gram = centred @ centred.T if small else centred.T @ centred
        gram.diagonal().add_(reg)
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info) == 0:
            if small:
                row = centred.T @ torch.cholesky_solve(centred_targets, factor)
            else:
                row = torch.cholesky_solve(centred.T @ centred_targets, factor)
    if row is None:  # reg == 0, or a system too ill-conditioned to factor: least squares
        design, rhs = centred, centred_targets
        if reg > 0:
            eye = torch.eye(hidden, dtype=torch.float64, device=codes_t.device)
            design = torch.cat([centred, math.sqrt(reg) * eye])
            rhs = torch.cat([centred_targets, torch.zeros((hidden, 1), dtype=torch.float64,
                                                          device=codes_t.device)])
        row = torch.linalg.pinv(design) @ rhs  # the minimum-norm solution
    row = row.squeeze(1)
    bias = float(target_centre - centre @ row) if intercept else 0.0
    return row.cpu().numpy(), bias


# -- the fold-in --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grown:
    """How one network grows when the newcomer is added."""

    encoded: bool  # True: a new input row; False: a new input column and decoder row
    inputs: np.ndarray  # float32 input values (ratings / scale) at ``index``
    decoder_row: torch.Tensor | None = None
    decoder_bias: torch.Tensor | None = None


def fold_in(
    model: AutoRec,
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
        A fitted :class:`~autorec.estimator.AutoRec`.
    side
        ``"user"``: ``ratings`` are a new user's ratings of known items; ``"item"``: a new
        item's ratings by known users.
    ratings
        A mapping ``{id: rating}``, a Series indexed by id, a DataFrame with an ``item_id``
        (new user) or ``user_id`` (new item) column and a ``rating`` column, or a pair
        ``(ids, ratings)`` of sequences. Ids are compared by text, as everywhere; ids the
        model does not know are ignored and counted; an id given twice is an error.
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
        A bad argument or rating (naming it), an id that is already known with ``add=True``,
        or ``add=True`` without a rating of a known id.
    """
    model._check_fitted()
    if side not in ("user", "item"):
        raise ValueError(f"side must be one of user, item, got {side!r}")
    if not isinstance(add, bool):
        raise ValueError(f"add must be True or False, got {add!r}")
    if not isinstance(exclude_rated, bool):
        raise ValueError(f"exclude_rated must be True or False, got {exclude_rated!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    if reg is None:
        reg = default_reg(model)
    elif isinstance(reg, bool) or not isinstance(reg, int | float | np.number) \
            or not (math.isfinite(float(reg)) and reg >= 0):
        raise ValueError(f"reg must be a number >= 0 or None, got {reg!r}")
    reg = float(reg)

    own_map, other_map = (model.users_, model.items_) if side == "user" else (model.items_,
                                                                              model.users_)
    if add:
        new_id = _new_id(own_map, new_id, side)
    raw_ids, values = _rating_pairs(ratings, "item_id" if side == "user" else "user_id")
    index = other_map.to_index(raw_ids)
    known = index >= 0
    n_unknown = int(len(index) - known.sum())
    if n_unknown:
        log.info("fold-in of a new %s: %d of %d ratings name unknown ids and are ignored",
                 side, n_unknown, len(index))
    order = np.argsort(index[known], kind="stable")
    index, values = index[known][order], values[known][order]

    biases = model.biases_
    other_bias = biases.item if side == "user" else biases.user
    if len(index) == 0:
        if add:
            raise ValueError(f"cannot add a {side} without a rating of a known "
                             f"{'item' if side == 'user' else 'user'}")
        unknown = np.full(len(other_map), -1, dtype=np.int64)
        everyone = np.arange(len(other_map), dtype=np.int64)
        pairs = (unknown, everyone) if side == "user" else (everyone, unknown)
        scores, _ = model._predict_index(*pairs)
        # ranked as recommend ranks a user it does not know: by the baseline mu + b_i
        key = biases.predict(*pairs)
        return _result(model, side, new_id, scores, key, index, 0.0, 0, n_unknown, reg, False,
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

    scores = offsets_all + model.blend_[-1]
    grown = []
    for weight, member in zip(model.blend_[:-1], model.members_, strict=True):
        if member.spec.variant == side:
            output, growth = _encode(member, index, values)
        else:
            output, growth = _ridge(member, index, values, targets, reg)
        grown.append(growth)
        if weight != 0.0:
            scores += weight * output
    unclipped = scores.copy()
    np.clip(scores, *model.rating_scale_, out=scores)
    if add:
        _add(model, side, new_id, index, bias, grown)
    return _result(model, side, new_id, scores, unclipped, index, bias, len(index), n_unknown,
                   reg, add, n, exclude_rated)


def _encode(member: Member, index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, _Grown]:
    """The encoded side: the newcomer's ratings through the encoder, decoded for all outputs."""
    net = member.net
    assert net is not None
    inputs = values.astype(np.float32) / member.scale  # as Member.set_inputs stores them
    batch = SparseBatch.from_arrays(np.array([0, len(index)], dtype=np.int64), index, inputs,
                                    member.n_inputs, member.device, transpose=False)
    n_out = member.n_inputs
    result = np.empty(n_out, dtype=np.float64)
    net.eval()
    with torch.no_grad():
        code = net.encode(batch)
        outputs = torch.arange(n_out, device=member.device)
        for start in range(0, n_out, _DECODE_PAIRS):
            chunk = outputs[start:start + _DECODE_PAIRS]
            rows = torch.zeros(len(chunk), dtype=torch.int64, device=member.device)
            result[start:start + len(chunk)] = net.decode_pairs(code, rows, chunk).double() \
                .cpu().numpy()
    return result * member.scale, _Grown(encoded=True, inputs=inputs)


def _ridge(member: Member, index: np.ndarray, values: np.ndarray, targets: np.ndarray,
           reg: float) -> tuple[np.ndarray, _Grown]:
    """The decoded side: a decoder row fitted on the codes of the rated rows, then applied to
    the codes of every row."""
    from .recommend import _row_codes  # the codes of every row, cached per network

    net, matrix = member.net, member.matrix
    assert net is not None and matrix is not None
    all_codes = _row_codes(member)
    codes = all_codes.index_select(0, torch.from_numpy(index).to(member.device))
    row, bias = ridge_row(codes, targets / member.scale, reg,
                          intercept=net.decoder_bias is not None)
    device = member.device
    row_t = torch.as_tensor(row, dtype=torch.float32, device=device).unsqueeze(0)
    bias_t = (torch.tensor([bias], dtype=torch.float32, device=device)
              if net.decoder_bias is not None else None)
    n_rows = matrix.shape[0]
    result = np.empty(n_rows, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, n_rows, _DECODE_PAIRS):
            rows = torch.arange(start, min(start + _DECODE_PAIRS, n_rows), device=device)
            new = torch.zeros(len(rows), dtype=torch.int64, device=device)
            result[start:start + len(rows)] = _decode_pairs(all_codes, rows, row_t, bias_t,
                                                            new).double().cpu().numpy()
    inputs = values.astype(np.float32) / member.scale
    return result * member.scale, _Grown(encoded=False, inputs=inputs, decoder_row=row_t,
                                         decoder_bias=bias_t)


def _decode_pairs(hidden: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, outputs: torch.Tensor) -> torch.Tensor:
    """:meth:`AutoRecNet.decode_pairs` with a decoder given as tensors: the same operations,
    so that a fitted row scores here exactly as it does once added to the network."""
    out = torch.einsum("kh,kh->k", hidden.index_select(0, rows),
                       weight.index_select(0, outputs))
    if bias is not None:
        out = out + bias.index_select(0, outputs)
    return out


# -- adding the newcomer ------------------------------------------------------------------------
def _new_id(id_map: IdMap, new_id: Any, side: str) -> Any:
    name = f"{side}_id"
    if new_id is None:
        raise ValueError(f"add=True needs the new {side}'s id ({name})")
    try:
        parsed = id_column([new_id], integers=False).iloc[0]
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if parsed in id_map:
        raise ValueError(f"{name} {new_id!r} is already known to the model; fold-in adds new "
                         f"{side}s only")
    return new_id


def _extend_map(id_map: IdMap, new_id: Any) -> IdMap:
    """``id_map`` with ``new_id`` appended; integer storage kept when the id is a canonical
    integer (ids are compared by text either way)."""
    raw = id_map.raw_ids
    parsed = id_column([new_id], integers=True)
    if raw.dtype.kind in "iu" and parsed.dtype.kind in "iu":
        return IdMap(np.append(raw, parsed.to_numpy()))
    return IdMap(np.append(ids_as_text(raw), ids_as_text(parsed.to_numpy())))


def _add(model: AutoRec, side: str, new_id: Any, index: np.ndarray, bias: float,
         grown: list[_Grown]) -> None:
    biases = model.biases_
    if side == "user":
        model.users_ = _extend_map(model.users_, new_id)
        model.biases_ = replace(biases, user=np.append(biases.user, bias))
    else:
        model.items_ = _extend_map(model.items_, new_id)
        model.biases_ = replace(biases, item=np.append(biases.item, bias))
    for member, growth in zip(model.members_, grown, strict=True):
        net, matrix = member.net, member.matrix
        assert net is not None and matrix is not None
        if side == "user":
            member.n_users += 1
        else:
            member.n_items += 1
        if growth.encoded:  # a new input row
            row = sp.csr_matrix((growth.inputs, index, np.array([0, len(index)])),
                                shape=(1, matrix.shape[1]))
            member.matrix = sp.vstack([matrix, row], format="csr")
            continue
        # a new input column (zero encoder row) and a new output (the fitted decoder row)
        column = sp.csr_matrix((growth.inputs, (index, np.zeros(len(index), dtype=np.int64))),
                               shape=(matrix.shape[0], 1))
        grown_matrix = sp.hstack([matrix, column], format="csr")
        grown_matrix.sort_indices()
        member.matrix = grown_matrix
        assert growth.decoder_row is not None
        with torch.no_grad():
            zeros = torch.zeros_like(net.encoder_weight[:1])
            net.encoder_weight = nn.Parameter(torch.cat([net.encoder_weight, zeros]))
            net.decoder_weight = nn.Parameter(torch.cat([net.decoder_weight,
                                                         growth.decoder_row]))
            if net.decoder_bias is not None:
                assert growth.decoder_bias is not None
                net.decoder_bias = nn.Parameter(torch.cat([net.decoder_bias,
                                                           growth.decoder_bias]))
        net.n_inputs += 1


# -- input and output ---------------------------------------------------------------------------
def _rating_pairs(ratings: Any, id_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, ratings)`` of a newcomer's ratings in any accepted form, validated; ratings as
    float32 values (the precision the model stores ratings in), held in float64."""
    if isinstance(ratings, pd.DataFrame):
        missing = [c for c in (id_name, "rating") if c not in ratings.columns]
        if missing:
            raise ValueError(f"ratings: the DataFrame needs columns {id_name} and rating; "
                             f"missing {', '.join(missing)}")
        ids, values = ratings[id_name].to_numpy(), ratings["rating"].to_numpy()
    elif isinstance(ratings, pd.Series):
        ids, values = ratings.index.to_numpy(), ratings.to_numpy()
    elif isinstance(ratings, Mapping):
        ids, values = list(ratings.keys()), list(ratings.values())
    elif isinstance(ratings, tuple | list) and len(ratings) == 2:
        ids, values = ratings
    else:
        raise TypeError(f"ratings must be a mapping {{{id_name}: rating}}, a Series, a DataFrame "
                        f"with columns {id_name} and rating, or a pair (ids, ratings); got "
                        f"{type(ratings).__name__}")
    try:
        id_series = id_column(ids, integers=False)
    except ValueError as exc:
        raise ValueError(f"ratings: {exc}") from None
    values = _rating_values(values)
    if len(values) != len(id_series):
        raise ValueError(f"ratings: {len(id_series)} ids but {len(values)} ratings")
    duplicated = pd.Index(ids_as_text(id_series.to_numpy())).duplicated()
    if duplicated.any():
        position = int(np.argmax(duplicated))
        raise ValueError(f"ratings: {id_name} {id_series.iloc[position]!r} is rated more than "
                         f"once (position {position})")
    return id_series.to_numpy(), values


def _rating_values(values: Any) -> np.ndarray:
    array = np.asarray(values if not isinstance(values, pd.Series) else values.to_numpy())
    if array.ndim != 1:
        raise ValueError("ratings: the ratings must be one-dimensional")
    if array.dtype.kind == "b" or (array.dtype.kind == "O"
                                   and any(isinstance(v, bool | np.bool_) for v in array)):
        raise ValueError("ratings: a rating is a boolean, not a number")
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            as_float = array.astype(np.float32).astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("ratings: a rating is not a number") from None
    bad = ~np.isfinite(as_float)
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(f"ratings: rating {array[position]!r} at position {position} is not a "
                         "finite float32 number")
    return as_float


def _result(model: AutoRec, side: str, new_id: Any, scores: np.ndarray, key: np.ndarray,
            rated: np.ndarray, bias: float, n_ratings: int, n_unknown: int, reg: float,
            added: bool, n: int | None, exclude_rated: bool) -> FoldIn:
    """The result; recommendations ranked by ``key`` (the unclipped scores, so that items
    above the top of the scale keep their order, as :mod:`autorec.recommend` ranks)."""
    other_map, name = (model.items_, "item_id") if side == "user" else (model.users_, "user_id")
    series = pd.Series(scores, index=pd.Index(other_map.raw_ids, name=name), name="score")
    recommendations = None
    if side == "user" and n is not None:
        candidates = np.ones(len(scores), dtype=bool)
        if exclude_rated:
            candidates[rated] = False
        pool = np.flatnonzero(candidates)
        top = pool[np.argsort(-key[pool], kind="stable")[:n]]
        recommendations = pd.DataFrame({
            "user_id": pd.Series([new_id] * len(top), dtype=object),
            "rank": np.arange(1, len(top) + 1, dtype=np.int64),
            "item_id": other_map.to_raw(top),
            "score": scores[top],
            "fallback": np.full(len(top), n_ratings == 0),
        }, columns=list(RECOMMENDATION_COLUMNS))
    return FoldIn(side=side, id=new_id, scores=series, recommendations=recommendations,
                  bias=bias, n_ratings=n_ratings, n_unknown=n_unknown, reg=reg, added=added)
