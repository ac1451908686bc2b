"""Fitting: the steps between the estimator's parameters and a :class:`FittedModel`.

:func:`fit` is what :meth:`AutoRec.fit` runs: index the training ratings, hold out the
validation part (:mod:`autorec.selection`), choose the bias penalties on it and fit the
baseline (:mod:`autorec.baseline`), check the memory (:mod:`autorec.memory`), train one
network per variant and seed (:class:`autorec.networks.RatingNetwork`) for each ``l2`` value
and keep the best on validation, blend the networks by least squares on validation, and refit
on all training ratings when asked. Checkpoints (:mod:`autorec.checkpoint`) and data-parallel
runs (:mod:`autorec.distributed`) hook in here. It returns a
:class:`~autorec.fitted.FittedModel`; the estimator stays a facade over it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .baseline import DEFAULT_BIAS_REGULARISATION, fit_biases, select_biases
from .data.ids import IdMap, id_column
from .data.ratings import Ratings, sha256_of
from .data.readers import as_ratings
from .distributed import pooled_errors, world
from .fitted import FittedModel
from .member import NetworkSpec
from .metrics import rmse
from .networks import RatingNetwork
from .params import complete, network_specs, rating_scale, validate_params
from .selection import validation_mask
from .train import resolve_device, seed_streams

if TYPE_CHECKING:
    from .checkpoint import Session

__all__ = ["EpochCallback", "fit", "network_specs"]

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], None]

#: Validation ratings per blend coefficient (each network's weight, and the intercept)
#: below which the networks are averaged instead: with as many coefficients as ratings, the
#: intercept alone fitted a one-rating validation part and moved every prediction.
BLEND_MIN_RATINGS = 10


def fit(
    params: Mapping[str, Any],
    ratings: Ratings | pd.DataFrame,
    *,
    eval_set: Ratings | pd.DataFrame | None = None,
    on_epoch_end: EpochCallback | None = None,
    checkpoint_dir: str | PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_context: dict[str, Any] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
) -> FittedModel:
    """Fit a model with the estimator parameters ``params`` (missing ones at their defaults)
    on ``ratings``; :meth:`AutoRec.fit`'s docstring has the other parameters.

    Returns
    -------
    FittedModel
    """
    params = complete(params)
    validate_params(params)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir: the folder to resume from")
    opened: list[Any] = []  # the checkpoint session, if any
    options = dict(eval_set=eval_set, on_epoch_end=on_epoch_end, checkpoint_dir=checkpoint_dir,
                   resume=resume, checkpoint_context=checkpoint_context,
                   on_batch_end=on_batch_end, opened=opened)
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        if params["tf32"] and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
        return _fit(params, ratings, **options)
    except BaseException:  # the folder's lock goes now, not when a kept exception (Jupyter's
        for session in opened:  # sys.last_value) is collected
            session.release()
        raise
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _fit(
    params: dict[str, Any],
    ratings: Ratings | pd.DataFrame,
    *,
    eval_set: Ratings | pd.DataFrame | None,
    on_epoch_end: EpochCallback | None,
    checkpoint_dir: str | PathLike[str] | None,
    resume: bool,
    checkpoint_context: dict[str, Any] | None,
    on_batch_end: Callable[[int, int], None] | None,
    opened: list[Any],
) -> FittedModel:
    original = as_ratings(ratings)
    # before any training, and named: a bad one read as the training data's error
    eval_set = None if eval_set is None else as_ratings(eval_set, "<eval_set DataFrame>")
    if len(original) == 0:
        raise ValueError("cannot fit on zero ratings")
    finite = np.isfinite(original.rating)
    if not finite.all():  # Ratings.from_arrays takes them as valid
        bad = int(np.argmin(finite))
        raise ValueError(f"{original.source}: rating {bad} is {original.rating[bad]}, not a "
                         "finite number")
    device = resolve_device(params["device"])

    training = _TrainingRatings(original)
    users, items = training.users, training.items
    model = FittedModel(params=params, users=users, items=items, device=device)
    if world().size > 1:  # each machine's own copy of the data and command: the same?
        given = training.ratings()
        settings = repr(sorted((k, v) for k, v in params.items() if k != "device"))
        world().check_same(sha256_of(given.user_idx, given.item_idx, given.rating,
                                     users.raw_ids, items.raw_ids, np.array([settings])),
                           "training ratings or settings")
    session = None
    if checkpoint_dir is not None and world().size > 1:  # data parallel (issue 8)
        raise ValueError("checkpoint_dir is not supported in a data-parallel fit (several "
                         "processes) yet")
    if checkpoint_dir is not None:  # checkpoints and exact resume (issue 8)
        from .checkpoint import Session

        session = Session.open(checkpoint_dir, model, training.ratings(), device=device,
                               resume=resume, eval_set=eval_set, context=checkpoint_context)
        opened.append(session)
    specs = network_specs(params)
    seed = params["random_state"]
    seeds = seed_streams(None if seed is None else int(seed), 1 + 2 * len(specs))
    model.global_mean = float(np.mean(original.rating, dtype=np.float64))
    model.rating_scale = rating_scale(original.rating_scale(), params["rating_scale"],
                                      original.source)
    fit_part, val_part = _FitPart(training, None), None
    if params["validation"] > 0:
        if len(original) < 2:  # the validation part and the part to fit need one each
            raise ValueError(f"need at least 2 training ratings to hold some out for "
                             f"validation, got {len(original)} (validation=0 with "
                             "ranking='none' fits on all: --validation 0 --ranking none "
                             "on the command line)")
        held_out = validation_mask(len(original), params["validation"], seeds[0])
        fit_part, val_part = _FitPart(training, ~held_out), _FitPart(training, held_out).ratings()
    elif params["ranking"] != "none":  # the ranking model holds some out, after training
        from .ranking.select import check_enough_to_hold_out

        check_enough_to_hold_out(len(original))
    n_users, n_items = len(users), len(items)
    log.info("training %s-AutoRec (%d network%s): %d ratings (%d to fit, %d to validate), "
             "%d users, %d items, device %s", model.variant, len(specs),
             "s" if len(specs) > 1 else "", len(original), len(fit_part),
             0 if val_part is None else len(val_part), n_users, n_items, device)

    bias_reg = DEFAULT_BIAS_REGULARISATION
    model.validation_mean_rmse = math.nan
    if val_part is not None:
        model.validation_mean_rmse = rmse(
            val_part.rating, np.full(len(val_part), np.mean(fit_part.column("rating"),
                                                            dtype=np.float64)))
        chosen = select_biases(fit_part.triple(),
                               (val_part.user_idx, val_part.item_idx, val_part.rating),
                               n_users, n_items, scale=model.rating_scale)
        bias_reg = (chosen.reg_user, chosen.reg_item)
        log.info("bias penalties chosen on validation: users %g, items %g", *bias_reg)
    model.biases = fit_biases(*fit_part.triple(), n_users, n_items, reg_user=bias_reg[0],
                              reg_item=bias_reg[1])

    from .memory import check_fit_memory  # issue 5

    check_fit_memory(params["ranking"], specs, n_users, n_items, device,
                     fit_part.column,
                     several_l2=isinstance(params["l2"], list | tuple))

    eval_pairs = None
    if eval_set is not None:
        eval_pairs = (model.to_index(eval_set.user_ids, eval_set.item_ids), eval_set.rating)

    trying: dict[str, float] = {}  # the l2 value in training, when several are tried

    def count_seconds(entry: dict[str, Any]) -> None:
        model.epoch_seconds += entry["seconds"]

    def report(entry: dict[str, Any]) -> None:
        count_seconds(entry)
        entry.update(trying)
        if eval_pairs is not None:
            (user_idx, item_idx), truth = eval_pairs
            # each process of a data-parallel run scores its part (autorec.distributed)
            entry["eval_rmse"], entry["eval_mae"] = pooled_errors(
                truth, lambda part: model.predict_index(user_idx[part], item_idx[part])[0])
        if on_epoch_end is not None:
            on_epoch_end(entry)

    l2_param = params["l2"]
    l2_values = list(l2_param) if isinstance(l2_param, list | tuple) else [l2_param]
    chosen: tuple[float, list[Any], np.ndarray, list[dict[str, Any]], float] | None = None
    for candidate, l2 in enumerate(l2_values):
        if len(l2_values) > 1:
            log.info("trying l2 = %g", l2)
            trying["l2"] = l2  # each epoch's entry says which value it trained
        _fit_networks(model, [replace(spec, l2=l2) for spec in specs], seeds, fit_part,
                      val_part, report, session, candidate, on_batch_end)
        if chosen is None or model.validation_rmse < chosen[4]:
            chosen = (l2, model.members, model.blend, model.history, model.validation_rmse)
    assert chosen is not None
    model.l2, model.members, model.blend, model.history, model.validation_rmse = chosen
    if len(l2_values) > 1:
        log.info("l2 chosen on validation: %g (RMSE %.4f)", model.l2, model.validation_rmse)

    if params["ranking"] != "none":  # before the refit: the networks know the fit part only
        model.ranking = fit_ranking_model(model, training.ratings(),
                                          held_out if val_part is not None else None, seeds[0])

    every = _FitPart(training, None)
    if params["refit"] and val_part is not None:
        model.biases = fit_biases(*every.triple(), n_users, n_items,
                                  reg_user=bias_reg[0], reg_item=bias_reg[1])
        for k, member in enumerate(model.members):
            log.info("refitting network %d on all %d training ratings for %d epochs", k + 1,
                     len(original), member.best_epoch)
            best_epoch, history = member.best_epoch, member.history
            member.fit(every.triple, model.offsets, epochs=member.best_epoch,
                       on_epoch_end=count_seconds,
                       on_batch_end=on_batch_end, optimizer=member.optimizer,  # as chosen
                       init_seed=seeds[1 + 2 * k], train_seed=seeds[2 + 2 * k],
                       checkpoint=None if session is None
                       else session.network("refit", 0, k))
            member.best_epoch, member.history = best_epoch, history
    else:
        # predict from every training rating, the validation part included
        for member in model.members:
            member.set_inputs(*every.triple())
    if session is not None:
        session.finish()
    return model


def fit_ranking_model(model: FittedModel, ratings: Ratings, held_out: np.ndarray | None,
                      seed: int) -> Any:
    """The ranking model (:mod:`autorec.ranking`) that ``model.params["ranking"]`` asks for,
    fitted on ``ratings`` (the training ratings over the model's indices).

    Its choices are made by NDCG@10 on validation parts of the training ratings: EASE's input
    weighting and lambda on a 10 % carve-out of their own (:mod:`autorec.ranking.select`);
    Mult-DAE's epoch and the blend weights on the validation part ``held_out`` that the
    rating networks were selected on, while ``model``'s networks are still those fitted on
    the rest (no network is fitted for the ranking model). EASE is then refitted on every
    training rating. Without a validation part the ranking model carves its own 10 % and
    leaves the networks out of the blend. Every process of a data-parallel run fits the same.
    """
    from .ranking.ease import EASE_ITEM_LIMIT
    from .ranking.scorer import FittedRanking
    from .ranking.select import fit_ranking
    from .recommend import score_matrix

    choice = model.params["ranking"]
    n_rated = int(np.count_nonzero(np.bincount(ratings.item_idx, minlength=len(model.items))))
    # auto: EASE (past the limit on the most-rated items) blended with the networks
    # (BENCHMARKS.md, "Ranking"); blend: Mult-DAE too
    components = [choice] if choice in ("ease", "vae") else ["ease"]
    if choice == "blend" and n_rated <= EASE_ITEM_LIMIT:
        components.append("vae")
    if choice in ("auto", "blend") and held_out is not None:
        components.append("rating")
    split = None if held_out is None else (ratings.subset(~held_out), ratings.subset(held_out))

    def scorer(_: Ratings) -> Callable[[np.ndarray], np.ndarray]:
        # the networks fitted on the fit part, as they are now (before the refit)
        return lambda users: score_matrix(model, users).astype(np.float32)

    ranking, report = fit_ranking(ratings, components=components,
                                  rating_scorer=scorer if "rating" in components else None,
                                  split=split, random_state=int(seed) % (2**31 - 1),
                                  rating_scale=model.rating_scale)
    blend = report.pop("blend", {})  # last, without the weights tried
    report["blend"] = {key: value for key, value in blend.items() if key != "tried"}
    log.info("ranking model (%s) fitted in %.1fs: %s", choice, report["seconds"],
             ", ".join(f"{name} {w:g}" for name, w in zip(ranking.components, ranking.weights,
                                                          strict=True)))
    return FittedRanking(ranking, len(model.items), report)


def _fit_networks(model: FittedModel, specs: list[NetworkSpec], seeds: list[int],
                  fit_part: _FitPart, val_part: Ratings | None, report: EpochCallback,
                  session: Session | None = None, candidate: int = 0,
                  on_batch_end: Callable[[int, int], None] | None = None) -> None:
    """Train one network per spec on ``fit_part`` and blend them on ``val_part``."""
    n_users, n_items = len(model.users), len(model.items)
    score = None
    if val_part is not None:
        val_user, val_item, val_truth = val_part.user_idx, val_part.item_idx, val_part.rating
        # each process of a data-parallel run scores its part; all get the same RMSE
        score = lambda: pooled_errors(val_truth, lambda part: model.predict_index(  # noqa: E731
            val_user[part], val_item[part])[0])[0]
    assert model.device is not None
    model.members = []
    model.history = []
    val_outputs = []
    for k, spec in enumerate(specs):
        member = RatingNetwork(spec, n_users, n_items, model.device)
        model.members.append(member)
        model.blend = np.array([0.0] * k + [1.0, 0.0])  # this member alone while it trains

        def tagged(entry: dict[str, Any], k: int = k) -> None:
            entry["member"] = k + 1
            report(entry)

        member.fit(fit_part.triple, model.offsets, epochs=model.params["epochs"],
                   init_seed=seeds[1 + 2 * k], train_seed=seeds[2 + 2 * k], score=score,
                   on_epoch_end=tagged, on_batch_end=on_batch_end,
                   checkpoint=None if session is None
                   else session.network("select", candidate, k))
        model.history.extend(member.history)
        if val_part is not None:
            val_outputs.append(member.reconstruct(val_part.user_idx, val_part.item_idx))

    model.blend = np.array([1.0 / len(specs)] * len(specs) + [0.0])
    model.validation_rmse = math.nan
    if val_part is not None:
        target = val_part.rating - model.offsets(val_part.user_idx, val_part.item_idx)
        if len(specs) > 1 and len(target) >= BLEND_MIN_RATINGS * (len(specs) + 1):
            # least squares: the networks' weights, then the intercept
            design = np.column_stack([*val_outputs, np.ones(len(target))])
            model.blend = np.linalg.lstsq(design, target, rcond=None)[0]
        elif len(specs) > 1:
            log.info("%d validation ratings are too few to fit %d blend weights: the networks "
                     "are averaged", len(target), len(specs) + 1)
        assert score is not None
        model.validation_rmse = score()


class _TrainingRatings:
    """The training ratings on the model's id maps: the ids with a training rating, in their
    order. Where every id of a map has one, its index column is the caller's (no copy);
    otherwise the column is re-numbered when asked for and never held, so no copy sits beside
    the caller's while the networks train."""

    def __init__(self, original: Ratings) -> None:
        self.original = original
        self.lookups: dict[str, np.ndarray] = {}
        maps = []
        for name, ids in (("user_idx", original.users), ("item_idx", original.items)):
            present = np.flatnonzero(np.bincount(getattr(original, name), minlength=len(ids)))
            if len(present) == len(ids):
                maps.append(ids)
                continue
            # 32-bit where it fits
            lookup = np.full(len(ids), -1,
                             dtype=np.int32 if len(present) < 2**31 - 1 else np.int64)
            lookup[present] = np.arange(len(present))
            self.lookups[name] = lookup
            # stored as integers when every id left is one (the dropped ids may be text)
            maps.append(IdMap(id_column(ids.to_raw(present))))
        self.users, self.items = maps

    def column(self, name: str, mask: np.ndarray | None = None) -> np.ndarray:
        """Column ``name`` (at ``mask``), on the model's indices."""
        values = getattr(self.original, name)
        values = values if mask is None else values[mask]
        lookup = self.lookups.get(name)
        return values if lookup is None else lookup[values]

    def ratings(self, mask: np.ndarray | None = None) -> Ratings:
        """The ratings (at ``mask``) as :class:`Ratings` on the model's id maps."""
        return Ratings(self.column("user_idx", mask), self.column("item_idx", mask),
                       self.column("rating", mask), self.users, self.items,
                       self.original.source)


class _FitPart:
    """The ratings to fit: every training rating, or those outside the validation part.

    Their arrays are copied out when asked for and not held: they are most of the training
    ratings, and a network keeps what it needs of them.
    """

    def __init__(self, training: _TrainingRatings, mask: np.ndarray | None) -> None:
        self.training = training
        self.mask = mask
        self.n = len(training.original) if mask is None else int(np.count_nonzero(mask))

    def __len__(self) -> int:
        return self.n

    def column(self, name: str) -> np.ndarray:
        return self.training.column(name, self.mask)

    def triple(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.column("user_idx"), self.column("item_idx"), self.column("rating")

    def ratings(self) -> Ratings:
        return self.training.ratings(self.mask)

