"""Top-10 lists of the ranking models (issue 14) beside most-popular, EASE and the rating network.

For each data set (repeated pairs merged by their mean, as ``accuracy.py``): random 90/10
splits (``autorec.random_split``, seeds ``--seeds``) and, on ML-100K, the canonical ``u1``
split. Every model sees the same training part; the test part is only scored. Rows:

``popular``
    the most-rated training items the user has not rated.
``EASE``
    EASE on the binary pattern (the issue's peer), lambda chosen on a validation part of the
    training ratings (10 %, seeded) by NDCG@10, then refitted on all of them. Past
    ``--ease-items`` rated items, EASE models only that many of the most-rated ones; with
    ``--peer-select-items``, lambda is chosen with EASE over that many (Epinions: each value
    of lambda at 20,000 items is minutes of inversion).
``autorec default (integrated)``
    ``autorec.AutoRec(random_state=seed)`` fitted on the training part, as ``autorec train``
    fits it: the rating network and, beside it, the default ranking model
    (``ranking="auto"``: EASE, its input weighting and lambda chosen on the rating network's
    validation part, blended with the rating network's predictions fitted on the fit part;
    no extra network fit). Lists from ``autorec.ranking_report``. ``fit s`` is the whole
    fit; ``ranking s`` (in the JSON) the ranking model's share.
``rating network's own lists``
    The same fitted model with its ranking model set aside (``fitted_.ranking = None``): its
    lists ranked by predicted rating, as ``ranking="none"`` gives (the same network).
``Mult-DAE`` (not run by default)
    :class:`autorec.ranking.vae.MultVAE` with the default options of
    :func:`autorec.ranking.select.fit_ranking` (epoch chosen on validation).
``standalone blend`` (not run by default)
    :func:`autorec.ranking.select.fit_ranking` with the rating network as a component, the
    way the ranking package was first measured: its own 10 % validation part, for which a
    second ``AutoRec`` is fitted on the fit part.

Metrics: :func:`autorec.ranking.protocol.evaluate_scores`, i.e. the protocol of
``autorec.ranking_report`` (relevant: test rating >= low + 0.75 (high - low) of the training
scale, on an item with a training rating; training items left out; at most 10,000 test users,
a seeded sample), through ``autorec.metrics.ranking_metrics_from_hits``.

Run::

    python benchmarks/ranking.py --out runs/ranking.json
    python benchmarks/ranking.py --datasets ml-100k --splits seed0 --out runs/r0.json
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import DATASETS, CpuWatch, default_data_dir, load, write_json

import autorec
from autorec.ranking.ease import EASE, EASE_ITEM_LIMIT
from autorec.ranking.protocol import evaluate_scores, implicit_matrix, relevance_threshold
from autorec.ranking.select import EASE_LAMBDAS, _tune_ease, _validation_users, fit_ranking
from autorec.recommend import score_matrix
from autorec.selection import validation_split

MODELS = ("popular", "EASE", "autorec default (integrated)", "rating network's own lists",
          "Mult-DAE", "standalone blend")
DEFAULT_MODELS = MODELS[:4]
METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10")


def splits_for(name: str, ratings: autorec.Ratings, seeds: list[int], data_dir: str
               ) -> dict[str, tuple[autorec.Ratings, autorec.Ratings]]:
    out = {f"seed{s}": autorec.random_split(ratings, 0.1, random_state=s) for s in seeds}
    if name == "ml-100k":
        out["u1"] = autorec.canonical_split("u1", data_dir, download=False)
    return out


def rating_scorer_of(model: autorec.AutoRec, ratings: autorec.Ratings
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """Dense user indices of ``ratings`` -> predicted ratings over ``ratings``' items (NaN
    for items the model does not know)."""
    user_of = model.users_.to_index(ratings.users.raw_ids)
    item_of = model.items_.to_index(ratings.items.raw_ids)
    known = np.flatnonzero(item_of >= 0)

    def score(users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), ratings.n_items), np.nan, dtype=np.float32)
        out[:, known] = score_matrix(model, user_of[users], item_of[known])
        return out

    return score


def ease_peer(train: autorec.Ratings, seed: int, max_items: int, select_items: int | None = None
              ) -> tuple[EASE, dict[str, Any]]:
    """EASE on the binary pattern, lambda chosen on a validation part of ``train`` (the walk
    of :func:`autorec.ranking.select.fit_ranking`) with EASE over ``max_items`` (or, with
    ``select_items``, over that many) most-rated items, refitted on all of ``train``."""
    scale = train.rating_scale()
    fit, val = validation_split(train, 0.1, seed)
    fit_seen = implicit_matrix(fit, "binary", scale)
    val = _validation_users(val, fit_seen, relevance_threshold(scale), 5_000, seed)
    report: dict[str, Any] = {}
    n_rated = len(np.unique(fit.item_idx))
    subset = select_items if select_items is not None and n_rated > select_items else None
    _, lam, _, _ = _tune_ease(fit, val, fit_seen, scale, ["binary"], EASE_LAMBDAS, 10, report,
                              subset or (max_items if n_rated > max_items else None))
    model = EASE(lam, max_items).fit(implicit_matrix(train, "binary", scale))
    return model, {"lam": lam, "validation_ndcg": report["ease_validation"]["binary"],
                   "selection_items": subset}


def run_split(name: str, split: str, train: autorec.Ratings, test: autorec.Ratings, seed: int,
              models: list[str], ease_items: int, peer_select_items: int | None = None
              ) -> dict[str, Any]:
    scale = train.rating_scale()
    seen = implicit_matrix(train, "binary", scale)
    rows = train.to_csr("user")
    out: dict[str, Any] = {}

    def record(model: str, score: Callable[[np.ndarray], np.ndarray], seconds: float,
               **extra: Any) -> None:
        figures = evaluate_scores(score, seen, test, rating_scale=scale)
        out[model] = {**figures, "fit_seconds": seconds, **extra}
        print(f"  {name} {split} {model}: ndcg@10 {figures['ndcg@10']:.4f} "
              f"precision@10 {figures['precision@10']:.4f} ({seconds:.1f}s)", flush=True)

    if "popular" in models:
        popularity = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float32)
        record("popular", lambda u: np.tile(popularity, (len(u), 1)), 0.0)
    if "EASE" in models:
        t0, c0 = time.perf_counter(), time.process_time()
        ease, info = ease_peer(train, seed, ease_items, peer_select_items)
        record("EASE", lambda u: ease.score(seen[u]), time.perf_counter() - t0, **info,
               fit_cpu_seconds=time.process_time() - c0,
               n_items_modelled=len(ease.items_))
        del ease
    network = None
    if {"autorec default (integrated)", "rating network's own lists",
            "standalone blend"} & set(models):
        t0, c0 = time.perf_counter(), time.process_time()
        network = autorec.AutoRec(random_state=seed).fit(train)
        network_seconds = time.perf_counter() - t0
        network_cpu = time.process_time() - c0
        full_scorer = rating_scorer_of(network, train)
        ranking = network.fitted_.ranking
        for row in ("autorec default (integrated)", "rating network's own lists"):
            if row not in models:
                continue
            network.fitted_.ranking = ranking if row.startswith("autorec default") else None
            report = autorec.ranking_report(network, train, test, k=10)
            extra = {}
            if ranking is not None and row.startswith("autorec default"):
                extra = {"ranking_seconds": ranking.report.get("seconds"),
                         "ranking": ranking.describe(),
                         "ranking_choice": {key: ranking.report.get(key) for key in
                                            ("ease", "ease_validation", "rating", "blend")},
                         "train_seconds": sum(e["seconds"] for e in network.history_)}
            out[row] = {**{m: report[m] for m in METRICS}, "n_users": report["n_users"],
                        "fit_seconds": network_seconds, "fit_cpu_seconds": network_cpu,
                        "via": "autorec.ranking_report",
                        "test_rmse": network.evaluate(test)["rmse"], **extra}
            print(f"  {name} {split} {row}: ndcg@10 {report['ndcg@10']:.4f} "
                  f"({network_seconds:.1f}s)", flush=True)
        network.fitted_.ranking = ranking
    if "Mult-DAE" in models:
        t0 = time.perf_counter()
        vae_model, report = fit_ranking(train, components=["vae"], random_state=seed,
                                        item_limit=ease_items)
        record("Mult-DAE", lambda u: vae_model.score(rows[u]), time.perf_counter() - t0,
               best_epoch=report["vae"]["best_epoch"])
    if "standalone blend" in models:
        t0 = time.perf_counter()

        def scorer(part: autorec.Ratings) -> Callable[[np.ndarray], np.ndarray]:
            return rating_scorer_of(autorec.AutoRec(random_state=seed).fit(part), part)

        model, report = fit_ranking(train, rating_scorer=scorer, random_state=seed,
                                    item_limit=ease_items)
        seconds = time.perf_counter() - t0
        needs = model.needs_rating_scores
        record("standalone blend",
               lambda u: model.score(rows[u], full_scorer(u) if needs else None), seconds,
               choice={k: v for k, v in report.items() if k != "blend"},
               weights=report["blend"]["weights"],
               blend_validation_ndcg=report["blend"].get("validation_ndcg"))
    return out


def table(name: str, results: dict[str, dict[str, Any]], models: list[str]) -> str:
    splits = list(results)
    lines = [f"**{name}** ({', '.join(splits)}; mean over the splits)", "",
             "| model | precision@10 | recall@10 | NDCG@10 | MAP@10 | hit rate@10 | fit s | "
             + " | ".join(f"NDCG {s}" for s in splits) + " |",
             "|---" * (7 + len(splits)) + "|"]
    for model in models:
        rows = [results[s][model] for s in splits if model in results[s]]
        if not rows:
            continue
        means = [statistics.fmean(r[m] for r in rows) for m in METRICS]
        seconds = statistics.fmean(r["fit_seconds"] for r in rows)
        per = [f"{results[s][model]['ndcg@10']:.4f}" if model in results[s] else ""
               for s in splits]
        lines.append(f"| {model} | " + " | ".join(f"{v:.4f}" for v in means)
                     + f" | {seconds:.1f} | " + " | ".join(per) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=None,
                        help="only these split names (seed0, seed1, ..., u1)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        choices=list(MODELS))
    parser.add_argument("--ease-items", type=int, default=EASE_ITEM_LIMIT,
                        help="most items EASE models (the most-rated ones)")
    parser.add_argument("--peer-select-items", type=int, default=None,
                        help="choose the EASE peer's lambda with EASE over this many most-rated "
                        "items (default: over all it models)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    valid = [f"seed{s}" for s in args.seeds] + (["u1"] if "ml-100k" in args.datasets else [])
    unknown = [split for split in args.splits or [] if split not in valid]
    if unknown:
        parser.error(f"--splits {' '.join(unknown)}: unknown; with these --datasets and --seeds "
                     f"the splits are {', '.join(valid)}")
    if os.path.exists(args.out) and not os.path.isfile(args.out):
        sys.exit(f"--out {args.out} exists and is not a file")
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {}
    watch = CpuWatch()
    started = time.perf_counter()
    for name in args.datasets:
        ratings = load(name, args.data_dir)
        results[name] = {}
        for split, (train, test) in splits_for(name, ratings, args.seeds, args.data_dir).items():
            if args.splits and split not in args.splits:
                continue
            seed = int(split[4:]) if split.startswith("seed") else 0
            results[name][split] = run_split(name, split, train, test, seed, args.models,
                                             args.ease_items, args.peer_select_items)
            write_json(args.out, args, {"datasets": results, "cpu": watch.lap(),
                                        "seconds": time.perf_counter() - started})
        print(table(name, results[name], args.models), flush=True)
    write_json(args.out, args, {"datasets": results, "cpu": watch.lap(),
                                "seconds": time.perf_counter() - started})
    print(f"wall time {time.perf_counter() - started:.0f}s; wrote {args.out}")


if __name__ == "__main__":
    main()
