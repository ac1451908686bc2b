"""Evaluation protocols: which (train, test) splits to score, and how to summarise them.

``holdout``
    One random split (``test_ratio``, seed ``seed``); ``repeats`` R > 1 gives R splits with
    seeds ``seed .. seed + R - 1``.
``paper``
    The AutoRec paper's protocol: a random 90/10 split repeated 5 times, seeds
    ``seed .. seed + 4`` (0-4 by default), each model choosing its epochs on a validation part
    carved from its own training part; mean RMSE with a 95 % confidence interval.
``kfold``
    K folds over all ratings (each rating tested once); ``repeats`` R > 1 reshuffles with
    seeds ``seed .. seed + R - 1``.
``u1`` .. ``u5``, ``ua``, ``ub``
    The MovieLens-100K canonical splits.

Every model gets ``random_state`` = the seed of its split, so the whole protocol is
reproducible from ``seed``.

:func:`ranking_report` scores a fitted model's top-N lists against a test set (precision,
recall, NDCG, MAP and hit rate at ``k``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data.ratings import Ratings
from .data.readers import as_ratings
from .fitted import FittedModel, as_fitted
from .metrics import ranking_metrics_from_hits
from .ranking.protocol import relevance_threshold as default_threshold
from .recommend import positive_int, top_n
from .split import CANONICAL_SPLITS, check_seed, kfold_split, random_split

__all__ = ["PAPER_REPEATS", "PROTOCOLS", "Split", "confidence_interval", "default_threshold",
           "ranking_report", "score_split", "splits", "summarise"]

PROTOCOLS: tuple[str, ...] = ("holdout", "paper", "kfold", *CANONICAL_SPLITS)
PAPER_REPEATS = 5


@dataclass(frozen=True)
class Split:
    """One (train, test) pair of a protocol."""

    label: str
    train: Ratings
    test: Ratings
    seed: int


def splits(
    protocol: str,
    ratings: Callable[[], Ratings] | None = None,
    canonical: Callable[[str], tuple[Ratings, Ratings]] | None = None,
    *,
    seed: int = 0,
    test_ratio: float = 0.1,
    folds: int = 5,
    repeats: int = 1,
) -> Iterator[Split]:
    """The splits of ``protocol``.

    Parameters
    ----------
    protocol
        One of :data:`PROTOCOLS`.
    ratings
        Returns all ratings (for ``holdout``, ``paper``, ``kfold``).
    canonical
        Returns a canonical split by name (for ``u1`` .. ``ub``).
    seed, test_ratio, folds, repeats
        See the module docstring.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    for name, value, least in (("repeats", repeats, 1), ("seed", seed, 0), ("folds", folds, 2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    # as the command line refuses --test-ratio and --folds where they do not apply
    if protocol != "holdout" and test_ratio != 0.1:
        raise ValueError(f"test_ratio applies to the holdout protocol, not {protocol}")
    if protocol != "kfold" and folds != 5:
        raise ValueError(f"folds applies to the kfold protocol, not {protocol}")
    if protocol in CANONICAL_SPLITS:
        if repeats != 1:
            raise ValueError(f"the canonical split {protocol} has no repeats")
        if canonical is None:
            raise ValueError(f"the canonical split {protocol} needs canonical (a function "
                             "that returns it by name)")
        yield Split(protocol, *canonical(protocol), seed)
        return
    if ratings is None:
        raise ValueError(f"the {protocol} protocol needs ratings (a function that returns "
                         "them)")
    data = ratings()
    if protocol == "kfold":
        for r in range(repeats):
            for k, (train, test) in enumerate(kfold_split(data, folds, seed + r), start=1):
                label = f"fold {k}/{folds}" + (f", repeat {r + 1}" if repeats > 1 else "")
                yield Split(label, train, test, seed + r)
        return
    if protocol == "paper":
        repeats, test_ratio = PAPER_REPEATS * repeats, 0.1
    for r in range(repeats):
        train, test = random_split(data, test_ratio, seed + r)
        yield Split(f"seed {seed + r}", train, test, seed + r)


def ranking_summary(model: Any) -> str | None:
    """``"ranking model ease 0.8 + rating 0.2"``: the ranking model's components and blend
    weights (``None`` without one)."""
    ranking = model.ranking_
    if ranking is None:
        return None
    parts = [f"{name} {entry['weight']:g}" for name, entry in ranking.describe().items()
             if isinstance(entry, dict) and entry.get("weight", 0) > 0]
    return "ranking model " + " + ".join(parts)


def split_threshold(split: Split, declared: Any = None) -> float:
    """The relevance threshold of ``split``'s ratings, training and test together: the data
    set's scale, so that every split of it has the same threshold (``declared``: the
    ``rating_scale`` parameter, when given)."""
    if declared is not None:  # the scale the user gave, whatever a test part holds
        return default_threshold((float(declared[0]), float(declared[1])))
    scales = [part.rating_scale() for part in (split.train, split.test) if len(part)]
    return default_threshold((min(low for low, _ in scales), max(high for _, high in scales)))


def score_split(model: Any, split: Split, *, k: int | None = None,
                **fit_options: Any) -> dict[str, Any]:
    """Fit ``model`` on ``split.train`` and score it on ``split.test``.

    With ``k``, the ranking metrics at ``k`` (:func:`ranking_report`) of the model's lists
    are added, the user's training items left out of their candidates.
    """
    started = time.perf_counter()
    model.fit(split.train, **fit_options)
    fit_seconds = time.perf_counter() - started
    report = model.evaluate(split.test)
    ranking = {} if k is None else ranking_report(model, split.train, split.test, k=k,
                                                  threshold=split_threshold(
                                                      split, model.get_params()["rating_scale"]))
    return {
        **ranking,
        "split": split.label,
        "seed": split.seed,
        "rmse": report["rmse"],
        "mae": report["mae"],
        "n_train": len(split.train),
        "n_test": report["n"],
        "n_cold": report["n_cold"],
        "ranking_model": ranking_summary(model),  # each split fits its own
        "validation_rmse": model.validation_rmse_,
        "best_epochs": [member.best_epoch for member in model.members_],
        "fit_seconds": fit_seconds,
    }


def confidence_interval(values: list[float] | np.ndarray, level: float = 0.95
                        ) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (``nan`` for fewer than 2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {values.shape}")
    if not 0.0 < level < 1.0:  # 95 (a percentage) gave (nan, nan), 1 (-inf, inf)
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    if len(values) < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean - half, mean + half


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean RMSE and MAE over splits with a 95 % interval, and pooled over all test ratings;
    the mean of each ranking metric (``mean_ndcg@10``...) with its 95 % interval
    (``ci95_ndcg@10``), over the splits that had a user to rank (``n_ranked_splits``)."""
    if not results:
        raise ValueError("no results to summarise")
    rmses = np.array([r["rmse"] for r in results])
    maes = np.array([r["mae"] for r in results])
    n_test = sum(r["n_test"] for r in results)
    ranking: dict[str, Any] = {}
    for key in (key for key in results[0] if "@" in key):  # the ranking model's lists
        values = [r[key] for r in results if math.isfinite(r[key])]
        ranking[f"mean_{key}"] = float(np.mean(values)) if values else math.nan
        ranking[f"ci95_{key}"] = list(confidence_interval(values)) if values else [math.nan] * 2
        ranking["n_ranked_splits"] = len(values)
    return {
        **ranking,
        "n_splits": len(results),
        "mean_rmse": float(rmses.mean()),
        # of one split there is none: nan (null in results.json), as its interval
        "std_rmse": float(rmses.std(ddof=1)) if len(results) > 1 else math.nan,
        "ci95_rmse": list(confidence_interval(rmses)),
        "mean_mae": float(maes.mean()),
        "ci95_mae": list(confidence_interval(maes)),
        "pooled_rmse": math.sqrt(sum(r["rmse"] ** 2 * r["n_test"] for r in results) / n_test),
        "pooled_mae": sum(r["mae"] * r["n_test"] for r in results) / n_test,
        "n_test": n_test,
        "n_cold": sum(r["n_cold"] for r in results),
        "fit_seconds": sum(r["fit_seconds"] for r in results),
    }


# -- ranking evaluation: default_threshold (low + 0.75 (high - low), 4 on 1-5) -------------
def ranking_report(
    model: Any,
    train: Ratings | pd.DataFrame | None,
    test: Ratings | pd.DataFrame,
    k: int = 10,
    threshold: float | None = None,
    max_users: int | None = 10_000,
    random_state: int = 0,
) -> dict[str, Any]:
    """Precision, recall, NDCG, MAP and hit rate at ``k`` of the model's top-``k`` lists (its
    ranking model's, when it holds one; by predicted rating otherwise).

    For every test user with at least one relevant test item (rating ``>= threshold``, on an
    item the model knows), the model recommends ``k`` items, leaving out the user's training
    items, and the list is scored against the relevant test items (see
    :func:`autorec.metrics.ranking_metrics` for the conventions). Users the model does not
    know get the fallback list and count like the others.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` or a fitted estimator.
    train
        The training ratings whose items are left out of each user's candidates; ``None``
        leaves out what the model was trained on.
    test
        Test ratings (raw ids).
    k
        List length.
    threshold
        Smallest relevant rating; default :func:`default_threshold` of the model's rating
        scale (4 on 1-5).
    max_users
        Score at most this many test users, a seeded random sample of them when there are
        more (``None``: all). Scoring every item for every user costs users x items x hidden
        operations: seconds for 10,000 users, hours for all of Netflix's 480,000.
    random_state
        Seed of that sample.

    Returns
    -------
    dict
        ``precision@k``, ``recall@k``, ``ndcg@k``, ``map@k``, ``hit_rate@k`` (means over the
        users scored), ``k``, ``threshold``, ``n_users`` (users scored), ``n_test_users``
        (test users with a relevant item, of whom at most ``max_users`` were scored),
        ``n_users_unknown`` (of them, users the model does not know), ``n_relevant``
        (relevant test ratings counted).
    """
    model = as_fitted(model)
    k = positive_int(k, "k")
    if max_users is not None:
        max_users = positive_int(max_users, "max_users")
    check_seed(random_state)
    if threshold is None:
        threshold = default_threshold(model.rating_scale)
    elif (isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number)
          or not math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    # a DataFrame is checked as fit and evaluate check it (float ids, 7 and "7", columns)
    frame = as_ratings(test).to_dataframe()
    rating = frame["rating"].to_numpy(dtype=np.float64)
    items = model.items.to_index(frame["item_id"].to_numpy())
    relevant = (rating >= threshold) & (items >= 0)
    user_codes, user_raw = pd.factorize(frame["user_id"].to_numpy())
    user_codes, items = user_codes[relevant], items[relevant]
    present = np.unique(user_codes)
    n_test_users = len(present)
    if max_users is not None and len(present) > max_users:
        present = np.sort(np.random.default_rng(random_state).choice(present, max_users,
                                                                     replace=False))
        keep = np.isin(user_codes, present)
        user_codes, items = user_codes[keep], items[keep]
    user_idx = model.users.to_index(np.asarray(user_raw, dtype=object)[present])
    seen = None if train is None else _seen_of(model, as_ratings(train))
    # no list is longer than the items: --k 3000000000 allocated users x k
    picked = top_n(model, user_idx, min(k, len(model.items)), exclude_seen=True, seen=seen)[0]
    row = np.searchsorted(present, user_codes)
    n_items = len(model.items)
    relevant_keys = np.unique(row * n_items + items)
    n_relevant = np.bincount(relevant_keys // n_items, minlength=len(present))
    keys = np.arange(len(present))[:, None] * n_items + picked
    hits = (picked >= 0) & np.isin(keys, relevant_keys)
    figures = ranking_metrics_from_hits(hits, n_relevant, k)
    return {
        **figures,
        "k": k,
        "threshold": float(threshold),
        "n_users_unknown": int((user_idx < 0).sum()),
        "n_relevant": len(relevant_keys),
        "n_test_users": int(n_test_users),
    }


def _seen_of(model: FittedModel, ratings: Ratings) -> sp.csr_matrix:
    """``ratings`` as a users x items pattern over the model's indices; pairs the model does
    not know are dropped."""
    # through the ids' maps: a raw id per rating would hold GBs at 100M ratings
    user_of = model.users.to_index(ratings.users.raw_ids).astype(np.int32)
    item_of = model.items.to_index(ratings.items.raw_ids).astype(np.int32)
    users, items = user_of[ratings.user_idx], item_of[ratings.item_idx]
    keep = (users >= 0) & (items >= 0)
    if not keep.all():
        users, items = users[keep], items[keep]
    return sp.csr_matrix((np.ones(len(users), dtype=np.int8), (users, items)),
                         shape=(len(model.users), len(model.items)))
