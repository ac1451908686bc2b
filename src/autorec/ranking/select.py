"""Choosing and fitting the default ranking model on the training ratings alone.

:func:`fit_ranking` carves a validation part out of the *training* ratings
(:func:`autorec.selection.validation_split`, 10 % by default, seeded), fits each component on
the rest (the fit part) and chooses by validation NDCG@k with the protocol of
:func:`autorec.ranking.protocol.evaluate_scores`:

* EASE: the input weighting (``binary`` or ``rating``) and ``lambda`` (a walk along
  :data:`EASE_LAMBDAS` from 250 towards the better neighbour until it stops improving), made
  past :data:`SELECT_ITEMS` rated items with EASE over that many of the most-rated (smaller
  inversions); then EASE is inverted at full size (up to ``item_limit``, the others not
  recommended) on the fit part for the blend, when there is one, and on all training ratings.
  With a given ``split`` (the rating network's 5 % validation part) EASE's two choices are
  still made on a 10 % carve-out of their own: EASE needs no network, and the smaller part
  chose a worse lambda on CiaoDVD (BENCHMARKS.md).
* Mult-VAE (:mod:`autorec.ranking.vae`): the epoch. Not refitted: it scores users by
  encoding their full training rows, over every training item.
* The rating network's predicted ratings, when a ``rating_scorer`` is given.
* The blend (:mod:`autorec.ranking.blend`): convex weights on the standardised scores,
  chosen a block of validation users at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..data.ratings import Ratings
from ..selection import validation_split
from .blend import Block, choose_weights_in_blocks, standardise
from .ease import EASE, EASE_ITEM_LIMIT, gram_matrix, modelled_items
from .model import RankingModel, modelled_by
from .protocol import SCORE_BLOCK, evaluate_scores, implicit_matrix, relevance_threshold
from .vae import MultVAE

__all__ = ["EASE_LAMBDAS", "SELECT_ITEMS", "check_enough_to_hold_out", "fit_ranking"]

log = logging.getLogger(__name__)

#: The values of EASE's lambda tried on validation (a walk from 250 along this list).
EASE_LAMBDAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 250.0, 500.0, 1000.0, 3000.0,
                                   10000.0)

#: Most items EASE's input weighting and lambda are chosen on: past it, on the most-rated ones
#: only, and EASE is inverted at full size only with the chosen lambda (BENCHMARKS.md,
#: "Ranking").
SELECT_ITEMS = 5_000

#: ``user indices -> len(users) x n_items`` predicted ratings (``nan`` or ``-inf`` where none).
RatingScorer = Callable[[np.ndarray], np.ndarray]


def _relevant(val: Ratings, fit_matrix: sp.csr_matrix, threshold: float) -> np.ndarray:
    """Which validation ratings are relevant: at least ``threshold``, on a fit-part item."""
    return (val.rating >= threshold) & np.asarray(fit_matrix.getnnz(axis=0) > 0)[val.item_idx]


def _validation_users(val: Ratings, fit_matrix: sp.csr_matrix, threshold: float,
                      max_users: int | None, random_state: int) -> Ratings:
    """The validation ratings of at most ``max_users`` users with a relevant one."""
    users = np.unique(val.user_idx[_relevant(val, fit_matrix, threshold)])
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
        at: int | None = min(range(len(lams)), key=lambda i: abs(np.log(lams[i] / 250.0)))
        while at is not None:
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
            # on from the best so far to an untried neighbour (the next in lams first): the
            # tried values are contiguous, so the walk stops once a step no longer improves
            at = next((n for n in (kept[0] + 1, kept[0] - 1)
                       if 0 <= n < len(lams) and n not in scores), None)
        del gram
        report.setdefault("ease_validation", {})[weighting] = {
            str(lams[i]): v for i, v in sorted(scores.items())}
        assert kept is not None
        if best is None or scores[kept[0]] > best[2]:
            best = (weighting, float(lams[kept[0]]), scores[kept[0]], kept[1])
    assert best is not None
    return best


def _blend_blocks(scorers: Sequence[tuple[Callable[[np.ndarray], np.ndarray],
                                          np.ndarray | None]],
                  val: Ratings, fit_seen: sp.csr_matrix, threshold: float
                  ) -> Iterator[Block]:
    """The validation users a :data:`Block` at a time, over the items every scorer models that
    have a fit-part rating (as :meth:`RankingModel.score` offers them)."""
    n_items = fit_seen.shape[1]
    columns = np.flatnonzero(modelled_by([items for _, items in scorers], n_items)
                             & np.asarray(fit_seen.getnnz(axis=0) > 0))
    users = np.unique(val.user_idx)
    relevant = _relevant(val, fit_seen, threshold)
    rel = sp.csr_matrix((np.ones(int(relevant.sum()), dtype=np.float32),
                         (np.searchsorted(users, val.user_idx[relevant]),
                          val.item_idx[relevant])), shape=(len(users), n_items))
    # a block's scores are n_items wide while a scorer makes them: SCORE_BLOCK values each
    step = max(1, SCORE_BLOCK // max(n_items, 1))
    for start in range(0, len(users), step):
        batch = users[start:start + step]
        seen = fit_seen[batch][:, columns]
        parts = [standardise(np.asarray(score(batch), dtype=np.float32)[:, columns], seen)
                 for score, _ in scorers]
        yield parts, seen, rel[start:start + step], columns


def check_enough_to_hold_out(n_ratings: int) -> None:
    """Refuse fewer than 2 training ratings, of which the ranking model would hold some out
    to choose its settings (``fit`` asks before the networks train)."""
    if n_ratings < 2:
        raise ValueError(f"need at least 2 training ratings for the ranking model to hold "
                         f"some out, got {n_ratings} (ranking='none' needs none: "
                         "--ranking none on the command line)")


def fit_ranking(
    train: Ratings,
    *,
    rating_scorer: Callable[[Ratings], RatingScorer] | None = None,
    components: Sequence[str] | None = None,
    validation: float = 0.1,
    split: tuple[Ratings, Ratings] | None = None,
    k: int = 10,
    item_limit: int = EASE_ITEM_LIMIT,
    select_items: int | None = SELECT_ITEMS,
    weightings: Sequence[str] = ("binary", "rating"),
    lams: Sequence[float] = EASE_LAMBDAS,
    vae_params: dict[str, Any] | None = None,
    max_validation_users: int | None = 5_000,
    resolution: int = 10,
    random_state: int = 0,
    rating_scale: tuple[float, float] | None = None,
) -> tuple[RankingModel, dict[str, Any]]:
    """Choose and fit the ranking model on ``train`` (never a test set).

    Parameters
    ----------
    train
        The training ratings (unique pairs).
    rating_scorer
        ``fit part -> (user indices -> predicted ratings over train's items)``, the rating
        model fitted on the fit part (or already held, for ``split``'s); ``None`` leaves the
        rating network out of the blend.
    components
        Which of ``"ease"``, ``"vae"``, ``"rating"`` to consider (default: ``"ease"``, and
        ``"rating"`` when a ``rating_scorer`` is given).
    validation
        Share of ``train`` held out for the choices (unless ``split`` is given).
    split
        ``(fit, validation)``: a partition of ``train`` (same indices) to make the choices
        on instead of carving one (:func:`autorec.fitting.fit` passes its rating networks',
        so that no extra network is fitted).
    k
        NDCG cut-off of the choices.
    item_limit
        Most items EASE models (the most-rated ones; the others are not recommended).
    select_items
        With more rated items than this, EASE's input weighting and lambda are chosen with
        EASE over this many of the most-rated items (module docstring). ``None``: choose at
        full size.
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
    rating_scale
        The ratings' scale (the estimator's ``rating_scale``; default: ``train``'s range):
        the ``rating`` weighting's top and the relevance threshold.

    Returns
    -------
    model, report
        The fitted :class:`RankingModel` and what was chosen (validation NDCG of every
        candidate, blend weights, seconds).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    scale = train.rating_scale() if rating_scale is None else tuple(rating_scale)
    threshold = relevance_threshold(scale)
    n_rated_items = int(np.count_nonzero(np.bincount(train.item_idx, minlength=train.n_items)))
    if components is None:
        components = ["ease"]
        if rating_scorer is not None:
            components.append("rating")
    if "ease" in components and n_rated_items > item_limit:
        log.info("ranking: %d rated items > the EASE limit %d; EASE models the %d most-rated "
                 "(the others are not recommended)", n_rated_items, item_limit, item_limit)
    components = list(components)
    for name in components:
        if name not in ("ease", "vae", "rating"):
            raise ValueError(f"components must be among 'ease', 'vae', 'rating', got {name!r}")
    if "rating" in components and rating_scorer is None:
        raise ValueError("the 'rating' component needs a rating_scorer")
    if split is None:
        check_enough_to_hold_out(len(train))

    def validation_part(parts: tuple[Ratings, Ratings] | None
                        ) -> tuple[Ratings, Ratings, sp.csr_matrix]:
        fit, val = validation_split(train, validation, random_state) if parts is None else parts
        seen = implicit_matrix(fit, "binary", scale)
        return fit, _validation_users(val, seen, threshold, max_validation_users,
                                      random_state), seen

    fit, val, fit_seen = validation_part(split)
    report: dict[str, Any] = {"components": components, "n_validation_users":
                              len(np.unique(val.user_idx))}

    def validation_ndcg(score: Callable[[np.ndarray], np.ndarray]) -> float:
        return evaluate_scores(score, fit_seen, val, k=k, rating_scale=scale,
                               max_users=None)[f"ndcg@{k}"]

    fitted: dict[str, tuple[str, str, EASE | MultVAE | None]] = {}
    # each validation scorer, with the items it models (None: every item)
    val_scorers: list[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray | None]] = []
    if "ease" in components:
        t0 = time.perf_counter()
        cap = item_limit if n_rated_items > item_limit else None
        subset = (select_items if select_items is not None and n_rated_items > select_items
                  and (cap is None or select_items < cap) else cap)
        if subset is not None and subset != cap:
            log.info("EASE: input weighting and lambda chosen on the %d most-rated of %d rated "
                     "items", subset, n_rated_items)
        # with a split, EASE's choices on a part of their own (module docstring)
        own = (fit, val, fit_seen) if split is None else validation_part(None)
        weighting, lam, value, ease_fit = _tune_ease(*own, scale, weightings, lams, k, report,
                                                     subset)
        del own
        selection_seconds = time.perf_counter() - t0
        selection_cpu = time.process_time() - cpu_started
        fit_matrix = implicit_matrix(fit, weighting, scale)
        if (subset != cap or split is not None) and len(components) > 1:
            # the blend is chosen over the items it will rank (the network's standardised
            # scores can lift items past the selection subset that EASE scores near zero),
            # with EASE fitted on the part the network was fitted on
            del ease_fit
            ease_fit = EASE(lam, cap).fit(fit_matrix)
        val_scorers.append((lambda u, m=ease_fit, x=fit_matrix: m.score(x[u]), ease_fit.items_))
        fitted["ease"] = ("ease", weighting, None)  # refitted once the blend is chosen
        ease_choice = (weighting, lam, cap)
        report["ease"] = {"weighting": weighting, "lam": lam, "validation_ndcg": value,
                          "selection_items": subset or n_rated_items,
                          "selection_seconds": selection_seconds,
                          "selection_cpu_seconds": selection_cpu,
                          "seconds": time.perf_counter() - t0}
        log.info("EASE: %s rows, lambda %g (validation NDCG@%d %.4f on %d items, %.1fs)",
                 weighting, lam, k, value, subset or n_rated_items, selection_seconds)
        del ease_fit
    if "vae" in components:
        t0 = time.perf_counter()
        options = {"hidden": 0, "latent": 200, "variational": False, "epochs": 100,
                   "patience": 10, "max_items": item_limit, "random_state": random_state,
                   **(vae_params or {})}
        weighting = "binary"
        fit_matrix = implicit_matrix(fit, weighting, scale)
        # every training item modelled: one rated only in the validation part would
        # otherwise be in no list (the network is not refitted)
        vae = MultVAE(**options).fit(
            fit_matrix, validation=lambda m: validation_ndcg(lambda u: m.score(fit_matrix[u])),
            items_from=implicit_matrix(train, weighting, scale))
        val_scorers.append((lambda u, m=vae, x=fit_matrix: m.score(x[u]), vae.items_))
        fitted["vae"] = ("vae", weighting, vae)
        report["vae"] = {"weighting": weighting, "best_epoch": vae.best_epoch_,
                         "validation_ndcg": max((h.get("validation_ndcg", -1.0)
                                                 for h in vae.history_), default=None),
                         "seconds": time.perf_counter() - t0, "params": vae.params}
    if "rating" in components:
        assert rating_scorer is not None
        t0 = time.perf_counter()
        scorer = rating_scorer(fit)

        def rating_scores(u: np.ndarray) -> np.ndarray:
            raw = np.asarray(scorer(u), dtype=np.float32)
            return np.where(np.isnan(raw), -np.inf, raw)

        val_scorers.append((rating_scores, None))
        fitted["rating"] = ("rating", "rating", None)
        report["rating"] = {"validation_ndcg": validation_ndcg(rating_scores),
                            "seconds": time.perf_counter() - t0}
    if len(val_scorers) == 1:
        weights: tuple[float, ...] = (1.0,)
        report["blend"] = {"weights": [1.0]}
    else:
        t0 = time.perf_counter()
        weights, value, tried, gate = choose_weights_in_blocks(
            _blend_blocks(val_scorers, val, fit_seen, threshold), len(val_scorers), k,
            resolution)
        if gate is not None:
            log.info("blend %s: validation NDCG@%d gain %.4f over %s alone, paired standard "
                     "error %.4f: %s", gate["blend"], k, gate["gain"], gate["single"],
                     gate["standard_error"], "kept" if gate["kept"] else "not kept")
        report["blend"] = {"weights": list(weights), "validation_ndcg": value, "gate": gate,
                           "tried": [[list(p), v] for p, v in tried],
                           "seconds": time.perf_counter() - t0}
    if "ease" in components:  # refit on every training rating (a full-size inversion)
        t0 = time.perf_counter()
        val_scorers.clear()  # lets the fit part's EASE go before the refit's is made
        weighting, lam, cap = ease_choice
        ease = EASE(lam, cap).fit(implicit_matrix(train, weighting, scale))
        fitted["ease"] = ("ease", weighting, ease)
        report["ease"]["n_items"] = len(ease.items_)
        report["ease"]["refit_seconds"] = time.perf_counter() - t0
        report["ease"]["seconds"] += report["ease"]["refit_seconds"]
        log.info("EASE refitted on all training ratings over %d items (%.1fs)",
                 len(ease.items_), report["ease"]["refit_seconds"])
    popularity = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float32)
    model = RankingModel(fitted, weights, scale, popularity)
    report["seconds"] = time.perf_counter() - started
    report["cpu_seconds"] = time.process_time() - cpu_started  # this process, all threads
    log.info("ranking model: %s", {name: w for name, w in zip(fitted, weights, strict=True)})
    return model, report
