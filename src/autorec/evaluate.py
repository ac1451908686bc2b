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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data.ratings import Ratings
from .split import CANONICAL_SPLITS, kfold_split, random_split

__all__ = ["PAPER_REPEATS", "PROTOCOLS", "Split", "confidence_interval", "score_split",
           "splits", "summarise"]

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
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    if protocol in CANONICAL_SPLITS:
        if repeats != 1:
            raise ValueError(f"the canonical split {protocol} has no repeats")
        assert canonical is not None
        train, test = canonical(protocol)
        yield Split(protocol, train, test, seed)
        return
    assert ratings is not None
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


def score_split(model: Any, split: Split, *, k: int | None = None,
                **fit_options: Any) -> dict[str, Any]:
    """Fit ``model`` on ``split.train`` and score it on ``split.test``.

    With ``k``, the ranking metrics at ``k`` (:func:`autorec.recommend.ranking_report`) of the
    model's lists (its ranking model's, or by predicted rating with ``ranking="none"``) are
    added, the user's training items left out of their candidates.
    """
    started = time.perf_counter()
    model.fit(split.train, **fit_options)
    fit_seconds = time.perf_counter() - started
    report = model.evaluate(split.test)
    ranking = {}
    if k is not None:
        from .recommend import ranking_report

        ranking = ranking_report(model, split.train, split.test, k=k)
    return {
        **ranking,
        "split": split.label,
        "seed": split.seed,
        "rmse": report["rmse"],
        "mae": report["mae"],
        "n_train": len(split.train),
        "n_test": report["n"],
        "n_cold": report["n_cold"],
        "validation_rmse": model.validation_rmse_,
        "best_epochs": [member.best_epoch for member in model.members_],
        "fit_seconds": fit_seconds,
    }


def confidence_interval(values: list[float] | np.ndarray, level: float = 0.95
                        ) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (``nan`` for fewer than 2)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1)
                 / math.sqrt(len(values)))
    return mean - half, mean + half


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean RMSE and MAE over splits with a 95 % interval, and pooled over all test ratings;
    the mean of each ranking metric (``mean_ndcg@10``...) with its 95 % interval
    (``ci95_ndcg@10``)."""
    rmses = np.array([r["rmse"] for r in results])
    maes = np.array([r["mae"] for r in results])
    n_test = sum(r["n_test"] for r in results)
    ranking: dict[str, Any] = {}
    for key in (key for key in results[0] if "@" in key):  # the ranking model's lists
        values = [r[key] for r in results]
        ranking[f"mean_{key}"] = float(np.mean(values))
        ranking[f"ci95_{key}"] = list(confidence_interval(values))
    return {
        **ranking,
        "n_splits": len(results),
        "mean_rmse": float(rmses.mean()),
        "std_rmse": float(rmses.std(ddof=1)) if len(results) > 1 else 0.0,
        "ci95_rmse": list(confidence_interval(rmses)),
        "mean_mae": float(maes.mean()),
        "ci95_mae": list(confidence_interval(maes)),
        "pooled_rmse": math.sqrt(sum(r["rmse"] ** 2 * r["n_test"] for r in results) / n_test),
        "pooled_mae": sum(r["mae"] * r["n_test"] for r in results) / n_test,
        "n_test": n_test,
        "n_cold": sum(r["n_cold"] for r in results),
        "fit_seconds": sum(r["fit_seconds"] for r in results),
    }
