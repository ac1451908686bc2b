"""Choosing and fitting the default ranking model on the training ratings alone.

:func:`fit_ranking` carves a validation part out of the *training* ratings
(:func:`autorec.selection.validation_split`, 10 % by default, seeded), fits each component on
the rest (the fit part) and scores the validation part with the protocol of
:func:`autorec.ranking.protocol.evaluate_scores` (relevant: rating at least ``low + 0.75 (high
- low)`` of the training scale; each user's fit-part items left out), choosing by NDCG@k:

* EASE: the input weighting (``binary`` or ``rating``) and ``lambda`` (a walk along
  :data:`EASE_LAMBDAS` from 250 towards the better neighbour until it stops improving); then
  refitted on all training ratings. Left out, with a log line, when the training ratings
  have more rated items than ``item_limit`` (:data:`autorec.ranking.ease.EASE_ITEM_LIMIT`).
* Mult-VAE (:mod:`autorec.ranking.vae`): the epoch. Not refitted: it scores users by
  encoding their full training rows.
* The rating network's predicted ratings, when a ``rating_scorer`` is given (the caller
  fits its rating model on the fit part and returns a scorer).
* The blend (:mod:`autorec.ranking.blend`): convex weights on the standardised scores.

The result is a :class:`RankingModel`: ``score(rows)`` for a batch of users' rating rows,
``to_arrays`` / ``params`` / ``from_arrays`` for saving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.ratings import Ratings
from ..selection import validation_split
from .blend import blend_scores, choose_weights, standardise
from .ease import EASE, EASE_ITEM_LIMIT, gram_matrix, modelled_items
from .protocol import WEIGHTINGS, evaluate_scores, implicit_matrix, relevance_threshold
from .vae import MultVAE

__all__ = ["EASE_LAMBDAS", "RankingModel", "fit_ranking", "weight_rows"]

log = logging.getLogger(__name__)

#: The values of EASE's lambda tried on validation (a walk from 250 along this list).
EASE_LAMBDAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 250.0, 500.0, 1000.0, 3000.0,
                                   10000.0)

#: ``user indices -> len(users) x n_items`` predicted ratings (``nan`` or ``-inf`` where none).
RatingScorer = Callable[[np.ndarray], np.ndarray]


def weight_rows(rows: sp.csr_matrix, weighting: str, rating_scale: tuple[float, float]
                ) -> sp.csr_matrix:
    """Users' rating rows (values = ratings) as a model's input rows (see
    :data:`autorec.ranking.protocol.Weighting`)."""
    rows = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    low, high = rating_scale
    if weighting == "binary":
        rows.data[:] = 1.0
    elif weighting == "rating":
        rows.data /= np.float32(max(abs(high), 1e-9))
        rows.data[rows.data < 0] = 0.0
    elif weighting == "positive":
        rows.data = (rows.data >= relevance_threshold((low, high))).astype(np.float32)
    else:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    rows.eliminate_zeros()
    return rows


class RankingModel:
    """A fitted ranking model: components, their input weightings, blend weights.

    Parameters
    ----------
    components
        ``name -> (kind, weighting, model)``; ``kind`` is ``"ease"``, ``"vae"`` or
        ``"rating"`` (the rating network's predictions, given at scoring time; ``model`` is
        ``None``).
    weights
        Blend weight of each component (same order).
    rating_scale
        The training scale (for the weightings).
    popularity
        Training ratings per item: the ranking of a user with an empty row.
    """

    def __init__(self, components: dict[str, tuple[str, str, EASE | MultVAE | None]],
                 weights: Sequence[float], rating_scale: tuple[float, float],
                 popularity: np.ndarray) -> None:
        self.components = components
        self.weights = tuple(float(w) for w in weights)
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        self.popularity = np.asarray(popularity, dtype=np.float32)
        if len(self.weights) != len(components):
            raise ValueError("one weight per component")

    @property
    def needs_rating_scores(self) -> bool:
        """Whether :meth:`score` needs the rating network's predictions."""
        return any(kind == "rating" and w > 0 for (kind, _, _), w in
                   zip(self.components.values(), self.weights, strict=True))

    @property
    def params(self) -> dict[str, Any]:
        """Everything but the arrays (JSON values)."""
        return {
            "rating_scale": list(self.rating_scale),
            "components": [{"name": name, "kind": kind, "weighting": weighting,
                            "params": None if model is None else model.params}
                           for name, (kind, weighting, model) in self.components.items()],
            "weights": list(self.weights),
        }

    def score(self, rows: sp.csr_matrix, rating_scores: np.ndarray | None = None) -> np.ndarray:
        """Blended scores of a batch of users (``n x n_items`` float32, higher is better).

        Parameters
        ----------
        rows
            ``n x n_items`` CSR of the users' ratings (values = ratings): their training
            rows, or a new user's ratings (fold-in). The rated items are not masked here.
        rating_scores
            ``n x n_items`` predicted ratings of the rating network, needed when its blend
            weight is not 0.

        Items no component with a positive weight can score get ``-inf``. A user with an
        empty row gets the items by training popularity.
        """
        rows = sp.csr_matrix(rows)
        parts, weights = [], []
        for (kind, weighting, model), w in zip(self.components.values(), self.weights,
                                               strict=True):
            if w <= 0:
                continue
            if kind == "rating":
                if rating_scores is None:
                    raise ValueError("rating_scores are needed: the blend weighs the rating "
                                     "network's predictions")
                raw = np.where(np.isnan(rating_scores), -np.inf, rating_scores)
            else:
                assert model is not None
                raw = model.score(weight_rows(rows, weighting, self.rating_scale))
            parts.append(standardise(raw, rows))
            weights.append(w)
        out = blend_scores(parts, weights)
        empty = np.diff(rows.indptr) == 0
        if empty.any():
            out[empty] = standardise(self.popularity[None, :])[0]
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (``<component>.<array>``, ``popularity``) for safetensors."""
        arrays = {"popularity": self.popularity}
        for name, (_, _, model) in self.components.items():
            if model is not None:
                arrays.update({f"{name}.{key}": value for key, value in
                               model.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]
                    ) -> RankingModel:
        """Rebuild from :meth:`to_arrays` and :attr:`params`."""
        components: dict[str, tuple[str, str, EASE | MultVAE | None]] = {}
        for entry in params["components"]:
            name, kind = entry["name"], entry["kind"]
            own = {key[len(name) + 1:]: value for key, value in arrays.items()
                   if key.startswith(f"{name}.")}
            model: EASE | MultVAE | None
            if kind == "ease":
                model = EASE.from_arrays(own, entry["params"])
            elif kind == "vae":
                model = MultVAE.from_arrays(own, entry["params"])
            elif kind == "rating":
                model = None
            else:
                raise ValueError(f"unknown ranking component kind {kind!r}")
            components[name] = (kind, entry["weighting"], model)
        return cls(components, params["weights"], tuple(params["rating_scale"]),
                   arrays["popularity"])


def _validation_users(val: Ratings, fit_matrix: sp.csr_matrix, threshold: float,
                      max_users: int | None, random_state: int) -> Ratings:
    """The validation ratings of at most ``max_users`` users with a relevant one."""
    candidates = np.asarray(fit_matrix.getnnz(axis=0) > 0)
    relevant = (val.rating >= threshold) & candidates[val.item_idx]
    users = np.unique(val.user_idx[relevant])
    if max_users is not None and len(users) > max_users:
        users = np.random.default_rng(random_state).choice(users, max_users, replace=False)
    return val.subset(np.isin(val.user_idx, users))


def _tune_ease(fit: Ratings, val: Ratings, fit_seen: sp.csr_matrix, scale: tuple[float, float],
               weightings: Sequence[str], lams: Sequence[float], k: int,
               report: dict[str, Any], max_items: int | None = None
               ) -> tuple[str, float, float, EASE]:
    """The best (weighting, lambda) on validation, its NDCG and its model (fit part).

    For each weighting, lambda walks along ``lams`` from the value nearest 250 towards the
    better neighbour while the validation NDCG improves. One Gram matrix per weighting and at
    most two items x items models are held at a time.
    """
    best: tuple[str, float, float, EASE] | None = None
    for weighting in weightings:
        matrix = implicit_matrix(fit, weighting, scale)
        items = modelled_items(matrix, max_items)
        gram = gram_matrix(matrix, items)
        scores: dict[int, float] = {}
        kept: tuple[int, EASE] | None = None
        index = min(range(len(lams)), key=lambda i: abs(np.log(lams[i] / 250.0)))
        pending = [index]
        while pending:
            at = pending.pop()
            started = time.perf_counter()
            model = EASE(lams[at], max_items).fit(matrix, gram, items)
            scores[at] = evaluate_scores(lambda u, m=model, x=matrix: m.score(x[u]), fit_seen,
                                         val, k=k, rating_scale=scale, max_users=None
                                         )[f"ndcg@{k}"]
            log.debug("EASE %s lambda %g: validation NDCG@%d %.4f (%.1fs)", weighting, lams[at],
                      k, scores[at], time.perf_counter() - started)
            if kept is None or scores[at] > scores[kept[0]]:
                kept = (at, model)
            del model
            top = kept[0]
            # walk on from the best so far, to an untried neighbour, while it keeps improving
            for step in (1, -1):
                nxt = top + step
                if 0 <= nxt < len(lams) and nxt not in scores and (
                        top == index or (top - step) in scores):
                    pending = [nxt]
                    break
        del gram
        report.setdefault("ease_validation", {})[weighting] = {
            str(lams[i]): v for i, v in sorted(scores.items())}
        assert kept is not None
        if best is None or scores[kept[0]] > best[2]:
            best = (weighting, float(lams[kept[0]]), scores[kept[0]], kept[1])
    assert best is not None
    return best


def fit_ranking(
    train: Ratings,
    *,
    rating_scorer: Callable[[Ratings], RatingScorer] | None = None,
    components: Sequence[str] | None = None,
    validation: float = 0.1,
    split: tuple[Ratings, Ratings] | None = None,
    k: int = 10,
    item_limit: int = EASE_ITEM_LIMIT,
    weightings: Sequence[str] = ("binary", "rating"),
    lams: Sequence[float] = EASE_LAMBDAS,
    vae_params: dict[str, Any] | None = None,
    max_validation_users: int | None = 5_000,
    resolution: int = 10,
    random_state: int = 0,
) -> tuple[RankingModel, dict[str, Any]]:
    """Choose and fit the ranking model on ``train`` (never a test set).

    Parameters
    ----------
    train
        The training ratings (unique pairs).
    rating_scorer
        ``ratings -> scorer``: fits the rating model on ``ratings`` (the fit part) and
        returns ``user indices -> predicted ratings`` over ``train``'s indices (a caller that
        already holds a rating model fitted on the fit part of ``split`` returns its scorer
        without fitting anything); ``None`` leaves the rating network out of the blend.
    components
        Which of ``"ease"``, ``"vae"``, ``"rating"`` to consider (default: EASE when the
        rated items are at most ``item_limit``, else the VAE; and ``"rating"`` when a
        ``rating_scorer`` is given).
    validation
        Share of ``train`` held out for the choices (unless ``split`` is given).
    split
        ``(fit, validation)``: a partition of ``train`` (same indices) to make the choices
        on, instead of carving one (:func:`autorec.fitting.fit` passes the validation part
        its rating networks were selected on, so that the rating network fitted on the fit
        part scores the validation part and no extra network is fitted).
    k
        NDCG cut-off of the choices.
    item_limit
        Most rated items EASE is fitted on by default.
    weightings, lams
        EASE's input weightings and values of lambda to choose from.
    vae_params
        :class:`MultVAE` options (its ``epochs`` is the most tried).
    max_validation_users
        Validation users scored (a seeded sample of those with a relevant rating).
    resolution
        Blend grid step ``1 / resolution``.
    random_state
        Seed of the validation part, the samples and the VAE.

    Returns
    -------
    model, report
        The fitted :class:`RankingModel` and what was chosen (validation NDCG of every
        candidate, blend weights, seconds).
    """
    started = time.perf_counter()
    scale = train.rating_scale()
    threshold = relevance_threshold(scale)
    n_rated_items = int(np.count_nonzero(np.bincount(train.item_idx, minlength=train.n_items)))
    if components is None:
        components = ["ease"] if n_rated_items <= item_limit else ["vae"]
        if n_rated_items > item_limit:
            log.info("ranking: %d rated items > the EASE limit %d; the ranking model is "
                     "Mult-VAE", n_rated_items, item_limit)
        if rating_scorer is not None:
            components.append("rating")
    components = list(components)
    for name in components:
        if name not in ("ease", "vae", "rating"):
            raise ValueError(f"components must be among 'ease', 'vae', 'rating', got {name!r}")
    if "rating" in components and rating_scorer is None:
        raise ValueError("the 'rating' component needs a rating_scorer")
    fit, val = (validation_split(train, validation, random_state) if split is None
                else split)
    fit_seen = implicit_matrix(fit, "binary", scale)
    val = _validation_users(val, fit_seen, threshold, max_validation_users, random_state)
    report: dict[str, Any] = {"components": components, "n_validation_users":
                              len(np.unique(val.user_idx))}

    def validation_ndcg(score: Callable[[np.ndarray], np.ndarray]) -> float:
        return evaluate_scores(score, fit_seen, val, k=k, rating_scale=scale,
                               max_users=None)[f"ndcg@{k}"]

    fitted: dict[str, tuple[str, str, EASE | MultVAE | None]] = {}
    val_scorers: list[Callable[[np.ndarray], np.ndarray]] = []
    if "ease" in components:
        t0 = time.perf_counter()
        cap = item_limit if n_rated_items > item_limit else None
        weighting, lam, value, ease_fit = _tune_ease(fit, val, fit_seen, scale, weightings,
                                                     lams, k, report, cap)
        fit_matrix = implicit_matrix(fit, weighting, scale)
        val_scorers.append(lambda u, m=ease_fit, x=fit_matrix: m.score(x[u]))
        full = implicit_matrix(train, weighting, scale)  # refit on every training rating
        ease = EASE(lam, cap).fit(full)
        fitted["ease"] = ("ease", weighting, ease)
        report["ease"] = {"weighting": weighting, "lam": lam, "validation_ndcg": value,
                          "seconds": time.perf_counter() - t0}
    if "vae" in components:
        t0 = time.perf_counter()
        options = {"hidden": 0, "latent": 200, "variational": False, "epochs": 100,
                   "patience": 10, "max_items": item_limit, "random_state": random_state,
                   **(vae_params or {})}
        weighting = "binary"
        fit_matrix = implicit_matrix(fit, weighting, scale)
        vae = MultVAE(**options).fit(
            fit_matrix, validation=lambda m: validation_ndcg(lambda u: m.score(fit_matrix[u])))
        val_scorers.append(lambda u, m=vae, x=fit_matrix: m.score(x[u]))
        fitted["vae"] = ("vae", weighting, vae)
        report["vae"] = {"weighting": weighting, "best_epoch": vae.best_epoch_,
                         "validation_ndcg": max((h.get("validation_ndcg", -1.0)
                                                 for h in vae.history_), default=None),
                         "seconds": time.perf_counter() - t0, "params": vae.params}
    if "rating" in components:
        assert rating_scorer is not None
        t0 = time.perf_counter()
        scorer = rating_scorer(fit)
        def rating_scores(u: np.ndarray, s: RatingScorer = scorer) -> np.ndarray:
            raw = np.asarray(s(u), dtype=np.float32)
            return np.where(np.isnan(raw), -np.inf, raw)

        val_scorers.append(rating_scores)
        fitted["rating"] = ("rating", "rating", None)
        report["rating"] = {"validation_ndcg": validation_ndcg(val_scorers[-1]),
                            "seconds": time.perf_counter() - t0}
    if len(val_scorers) == 1:
        weights: tuple[float, ...] = (1.0,)
        report["blend"] = {"weights": [1.0]}
    else:
        users = np.unique(val.user_idx)
        relevant_mask = (val.rating >= threshold) & np.asarray(
            fit_seen.getnnz(axis=0) > 0)[val.item_idx]
        rel = sp.csr_matrix((np.ones(int(relevant_mask.sum()), dtype=np.float32),
                             (np.searchsorted(users, val.user_idx[relevant_mask]),
                              val.item_idx[relevant_mask])),
                            shape=(len(users), train.n_items))
        seen = fit_seen[users]
        candidates = np.asarray(fit_seen.getnnz(axis=0) > 0)
        parts = []
        for scorer in val_scorers:
            raw = np.array(scorer(users), dtype=np.float32)
            raw[:, ~candidates] = -np.inf
            parts.append(standardise(raw, seen))
        weights, value, tried = choose_weights(parts, seen, rel, k, resolution)
        report["blend"] = {"weights": list(weights), "validation_ndcg": value,
                           "tried": [[list(p), v] for p, v in tried]}
    popularity = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float32)
    model = RankingModel(fitted, weights, scale, popularity)
    report["seconds"] = time.perf_counter() - started
    log.info("ranking model: %s", {name: w for name, w in zip(fitted, weights, strict=True)})
    return model, report
