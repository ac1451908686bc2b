"""Test RMSE/MAE and fit seconds of autorec beside Surprise baselines on every shared data set.

Issue #6, "Targets": one script that runs in one go. For each data set:

* random 90/10 splits, ``autorec.random_split(ratings, 0.1, random_state=seed)``, seeds
  ``--seeds`` (default 0 1 2);
* on ML-100K also the canonical ``u1.base``/``u1.test`` split and the chapter protocol
  (the same random 90/10 split, seeds ``--chapter-seeds``, default 0-4; seeds 0-2 are shared
  with the list above and trained once).

Every model sees exactly the same train/test ratings: the split is made once with autorec's
split functions and each model is built from the train part (Surprise through
``train.to_dataframe()`` -> ``Dataset.load_from_df`` -> ``build_full_trainset()``). Models:

``mean``
    the global training mean for every pair.
``BaselineOnly``, ``SVD``, ``SVD++``
    scikit-surprise with its default options (BaselineOnly: ALS; SVD/SVD++: SGD, with
    ``random_state=seed``). SVD++ is slow (its cost grows with the sum over users of the square of
    their rating counts): for each data set one epoch is timed first on the seed-0 training
    part and SVD++ is run only when 20 epochs are estimated under ``--svdpp-limit`` minutes;
    otherwise its rows say ``skipped: estimated N min per fit``.
``SVD tuned``
    Surprise SVD with ``n_factors`` x ``reg_all`` x ``n_epochs`` chosen from ``TUNED_SVD_GRID``
    (8 configurations, ``lr_all`` 0.005) on a validation part: 5 % of the seed-0 *training*
    part (``random_split(train, 0.05, random_state=0)``); the test parts are never looked
    at. The chosen configuration is then fitted on the full training part of every split.
``autorec default``, ``autorec reference``, ``autorec best``
    from :func:`autorec_models`.

Surprise predicts each test pair by raw id and clips to the training rating scale (its
``Reader(rating_scale=(min, max of train))``); a pair whose user or item has no training rating
gets Surprise's own fallback (the global mean plus whichever bias is known, for the
baselines and SVD; the global mean where the algorithm says the prediction is impossible).
Every split records how many test pairs are cold (``n_cold``); Surprise models also record
``n_impossible``. RMSE and MAE are ``autorec.metrics.rmse/mae`` over all test ratings pooled.

Repeated (user, item) pairs (FilmTrust 3, CiaoDVD 303, Epinions 6,886) are merged into their
mean rating before splitting, so two copies of a pair can never land on opposite sides.

``fit_seconds`` is the algorithm's fit alone (Surprise: ``algo.fit(trainset)``; autorec:
``AutoRec.fit(train)``); building the Surprise trainset from the train part is recorded
once per split as ``surprise_trainset_seconds``. Surprise is single-threaded; torch uses its
default threads. Each run records how many cores other processes kept busy (``other_cores``).

Run (Surprise and the mean only, then autorec alone reusing those rows for the tables)::

    nice -n 10 python benchmarks/accuracy.py --models mean BaselineOnly SVD SVD++ "SVD tuned" \\
        --out runs/baselines.json
    python benchmarks/accuracy.py --models "autorec default" "autorec reference" "autorec best" \\
        --reuse runs/baselines.json --out runs/accuracy.json

Each split's test part is fingerprinted (``info.splits[...].test_sha1``); ``--reuse`` takes
only runs made on the same split, so a change in the readers that reorders ratings cannot
mix rows from different splits in one table.

Output: a Markdown table per data set and protocol (mean RMSE/MAE/fit seconds over the seeds,
and the RMSE of each seed) on stdout, and everything in ``--out`` (JSON, written atomically
after every data set, so an interrupted run keeps what it finished).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import DATASETS, CpuWatch, default_data_dir, load, write_json

import autorec
from autorec.config import PRESETS

# -- data ---------------------------------------------------------------------------------------
CANONICAL = "ml-100k"  # the data set that also gets u1 and the chapter split


def splits_for(name: str, ratings: autorec.Ratings, seeds: list[int], chapter_seeds: list[int],
               data_dir: str) -> dict[str, tuple[autorec.Ratings, autorec.Ratings]]:
    """split name ("seed0", ..., "u1") -> (train, test)."""
    wanted = list(seeds) + ([s for s in chapter_seeds if s not in seeds]
                            if name == CANONICAL else [])
    out = {f"seed{seed}": autorec.random_split(ratings, test_ratio=0.1, random_state=seed)
           for seed in wanted}
    if name == CANONICAL:
        out["u1"] = autorec.canonical_split("u1", data_dir, download=False)
    return out


def protocols_for(name: str, seeds: list[int], chapter_seeds: list[int]) -> dict[str, list[str]]:
    """Protocol title -> the split names it averages over (what one table shows)."""
    seed_list = ", ".join(str(s) for s in seeds)
    out = {f"random 90/10, seeds {seed_list}": [f"seed{s}" for s in seeds]}
    if name == CANONICAL:
        chapter = ", ".join(str(s) for s in chapter_seeds)
        out[f"chapter split (random 90/10), seeds {chapter}"] = [f"seed{s}" for s in chapter_seeds]
        out["canonical u1.base / u1.test"] = ["u1"]
    return out


def split_seed(split: str) -> int:
    """The seed a model trained on this split uses (u1: 0)."""
    return int(split[4:]) if split.startswith("seed") else 0


# -- models -------------------------------------------------------------------------------------
Factory = Callable[[autorec.Ratings], Any]  # train -> fitted model with predict(users, items)


def autorec_models(seed: int, device: str | None = None) -> dict[str, Factory]:
    """autorec's rows: name -> callable(train) -> fitted model with ``predict(users, items)``.

    ``seed`` is the split's seed (0 for u1); ``device`` is ``--device``. Each is the library's
    preset of that name (``autorec.config.PRESETS``), exactly what ``--preset NAME`` runs.
    """
    def preset(name: str, **changes: Any) -> Factory:
        def fit(train: autorec.Ratings) -> Any:
            return autorec.AutoRec(**{**PRESETS[name], **changes, "random_state": seed,
                                      "device": device}).fit(train)
        return fit

    models = {f"autorec {name}": preset(name) for name in ("default", "reference", "best",
                                                             "paper")}
    # the refit decision of issue 6, measured: the default with refit switched the other way
    refit = not autorec.AutoRec(**PRESETS["default"]).refit
    models[f"autorec default, refit {'on' if refit else 'off'}"] = preset("default", refit=refit)
    return models


AUTOREC_NAMES = ("autorec default", "autorec default, refit on", "autorec default, refit off",
                 "autorec reference", "autorec best", "autorec paper")
SURPRISE_NAMES = ("BaselineOnly", "SVD", "SVD++", "SVD tuned")
ALL_MODELS = ("mean", *SURPRISE_NAMES, *AUTOREC_NAMES)

# Candidates for "SVD tuned" (lr_all 0.005 for all): 8 configurations.
TUNED_SVD_GRID: list[dict[str, Any]] = [
    {"n_factors": f, "reg_all": r, "n_epochs": e, "lr_all": 0.005}
    for f, r, e in itertools.product((50, 150), (0.02, 0.1), (20, 50))
]
VALIDATION_RATIO = 0.05
SVDPP_EPOCHS = 20  # Surprise's default


class GlobalMean:
    """Predicts the mean training rating for every pair."""

    def __init__(self, train: autorec.Ratings) -> None:
        self.value = float(np.mean(train.rating, dtype=np.float64))

    def predict(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        return np.full(len(user_ids), self.value)


class SurpriseModel:
    """A fitted Surprise algorithm behind ``predict(user_ids, item_ids)`` on raw ids."""

    def __init__(self, algo: Any, trainset: Any) -> None:
        started = time.perf_counter()
        algo.fit(trainset)
        self.fit_seconds = time.perf_counter() - started
        self.algo = algo
        self.n_impossible = 0

    def predict(self, user_ids: Iterable[Any], item_ids: Iterable[Any]) -> np.ndarray:
        predictions = [self.algo.predict(u, i, clip=True)
                       for u, i in zip(user_ids, item_ids, strict=True)]
        self.n_impossible = sum(bool(p.details.get("was_impossible")) for p in predictions)
        return np.array([p.est for p in predictions], dtype=np.float64)


def surprise_trainset(train: autorec.Ratings) -> Any:
    """A Surprise trainset with exactly the ratings of ``train`` (raw ids kept)."""
    from surprise import Dataset, Reader

    frame = train.to_dataframe()[["user_id", "item_id", "rating"]]
    frame["rating"] = frame["rating"].astype(np.float64)
    reader = Reader(rating_scale=train.rating_scale())
    return Dataset.load_from_df(frame, reader).build_full_trainset()


def surprise_algo(name: str, seed: int, tuned: dict[str, Any] | None,
                  n_epochs: int | None = None) -> Any:
    from surprise import SVD, BaselineOnly, SVDpp

    if name == "BaselineOnly":
        return BaselineOnly(verbose=False)
    if name == "SVD":
        return SVD(random_state=seed)
    if name == "SVD++":
        return SVDpp(random_state=seed, **({} if n_epochs is None else {"n_epochs": n_epochs}))
    if name == "SVD tuned":
        assert tuned is not None
        return SVD(random_state=seed, **tuned)
    raise ValueError(name)


def tune_svd(ratings: autorec.Ratings) -> dict[str, Any]:
    """Pick the ``TUNED_SVD_GRID`` entry with the lowest validation RMSE.

    Validation: 5 % of the seed-0 training part; the seed-0 test part is never touched.
    """
    train, _test = autorec.random_split(ratings, test_ratio=0.1, random_state=0)
    fit_part, validation = autorec.random_split(train, test_ratio=VALIDATION_RATIO,
                                                random_state=0)
    trainset = surprise_trainset(fit_part)
    trials = []
    started = time.perf_counter()
    for config in TUNED_SVD_GRID:
        model = SurpriseModel(surprise_algo("SVD tuned", 0, config), trainset)
        predicted = model.predict(validation.user_ids, validation.item_ids)
        score = autorec.rmse(validation.rating, predicted)
        trials.append({"config": config, "validation_rmse": score,
                       "fit_seconds": model.fit_seconds})
        print(f"    SVD {config}: validation RMSE {score:.4f} ({model.fit_seconds:.1f} s)",
              flush=True)
    best = min(trials, key=lambda t: t["validation_rmse"])
    return {"chosen": best["config"], "validation_rmse": best["validation_rmse"],
            "n_fit": len(fit_part), "n_validation": len(validation), "trials": trials,
            "seconds": time.perf_counter() - started}


def probe_svdpp(ratings: autorec.Ratings, limit_minutes: float) -> dict[str, Any]:
    """Time one SVD++ epoch on the seed-0 training part; estimate a default fit (20 epochs)."""
    train, _test = autorec.random_split(ratings, test_ratio=0.1, random_state=0)
    trainset = surprise_trainset(train)
    model = SurpriseModel(surprise_algo("SVD++", 0, None, n_epochs=1), trainset)
    estimate = model.fit_seconds * SVDPP_EPOCHS
    run = estimate <= limit_minutes * 60
    return {"one_epoch_seconds": model.fit_seconds, "estimated_fit_seconds": estimate,
            "limit_minutes": limit_minutes, "run": run,
            "reason": None if run else f"skipped: estimated {estimate / 60:.0f} min per fit"}


# -- running ------------------------------------------------------------------------------------
def evaluate(model: Any, test: autorec.Ratings) -> dict[str, Any]:
    started = time.perf_counter()
    predicted = np.asarray(model.predict(test.user_ids, test.item_ids), dtype=np.float64)
    out: dict[str, Any] = {"rmse": autorec.rmse(test.rating, predicted),
                           "mae": autorec.mae(test.rating, predicted),
                           "predict_seconds": time.perf_counter() - started}
    if isinstance(model, SurpriseModel):
        out["n_impossible"] = model.n_impossible
    return out


def fingerprint(part: autorec.Ratings) -> str:
    """SHA-1 of the (user id, item id, rating) triples of ``part``, sorted; ids as text.

    Two runs (or two versions of the readers) made the same split exactly when the test
    parts (and so the train parts) have the same fingerprint; ``--reuse`` checks it.
    """
    frame = part.to_dataframe().astype({"user_id": str, "item_id": str, "rating": np.float64})
    frame = frame.sort_values(["user_id", "item_id"], kind="stable")
    hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False)
    return hashlib.sha1(hashed.to_numpy().tobytes()).hexdigest()


def n_cold(train: autorec.Ratings, test: autorec.Ratings) -> int:
    """Test pairs whose user or item has no training rating."""
    known_users = np.zeros(train.n_users, dtype=bool)
    known_items = np.zeros(train.n_items, dtype=bool)
    known_users[train.user_idx] = True
    known_items[train.item_idx] = True
    return int((~known_users[test.user_idx] | ~known_items[test.item_idx]).sum())


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    ratings = load(name, args.data_dir)
    info: dict[str, Any] = {"n_ratings": len(ratings), "n_users": ratings.n_users,
                            "n_items": ratings.n_items, "rating_scale": ratings.rating_scale(),
                            "duplicates": "merged by mean rating before splitting"}
    print(f"\n== {name}: {len(ratings):,} ratings (repeated pairs merged), {ratings.n_users:,} "
          f"users, {ratings.n_items:,} items, scale {info['rating_scale'][0]:g}.."
          f"{info['rating_scale'][1]:g}", flush=True)
    models = [m for m in args.models if m in ALL_MODELS]
    splits = splits_for(name, ratings, args.seeds, args.chapter_seeds, args.data_dir)

    tuned = None
    if "SVD tuned" in models:
        print("  choosing SVD tuned on a 5 % validation part of the seed-0 training part")
        info["svd_tuning"] = tune_svd(ratings)
        tuned = info["svd_tuning"]["chosen"]
        print(f"  chosen: {tuned} (validation RMSE {info['svd_tuning']['validation_rmse']:.4f})")
    svdpp_skip: str | None = None
    if "SVD++" in models:
        if args.skip_svdpp:
            svdpp_skip = "skipped: --skip-svdpp"
        else:
            info["svdpp_probe"] = probe_svdpp(ratings, args.svdpp_limit)
            probe = info["svdpp_probe"]
            print(f"  SVD++ one epoch {probe['one_epoch_seconds']:.1f} s -> estimated "
                  f"{probe['estimated_fit_seconds'] / 60:.1f} min per fit "
                  f"({'run' if probe['run'] else 'skip'})", flush=True)
            svdpp_skip = probe["reason"]

    runs: list[dict[str, Any]] = []
    info["splits"] = {}
    for split, (train, test) in splits.items():
        seed = split_seed(split)
        cold = n_cold(train, test)
        info["splits"][split] = {"n_train": len(train), "n_test": len(test), "n_cold": cold,
                                 "test_sha1": fingerprint(test)}
        print(f"  {split}: {len(train):,} train / {len(test):,} test, {cold} cold", flush=True)
        trainset = None
        trainset_seconds = None
        factories: dict[str, Factory] = {}
        if any(m.startswith("autorec") for m in models):
            factories.update(autorec_models(seed, args.device))
        for model_name in models:
            base = {"dataset": name, "split": split, "seed": seed, "model": model_name,
                    "n_train": len(train), "n_test": len(test), "n_cold": cold}
            if model_name == "SVD++" and svdpp_skip:
                runs.append({**base, "skipped": svdpp_skip})
                continue
            if model_name.startswith("autorec") and model_name not in factories:
                runs.append({**base, "skipped": "not defined yet in autorec_models()"})
                continue
            watch = CpuWatch()
            wall = time.perf_counter()
            if model_name == "mean":
                model = GlobalMean(train)
            elif model_name in SURPRISE_NAMES:
                if trainset is None:
                    t0 = time.perf_counter()
                    trainset = surprise_trainset(train)
                    trainset_seconds = time.perf_counter() - t0
                model = SurpriseModel(surprise_algo(model_name, seed, tuned), trainset)
            else:
                model = factories[model_name](train)
            wall = time.perf_counter() - wall
            cpu = watch.lap()
            fit_seconds = getattr(model, "fit_seconds", wall)
            run = {**base, "fit_seconds": fit_seconds, **evaluate(model, test),
                   "other_cores": cpu["other_cores"]}
            if model_name in SURPRISE_NAMES:
                run["surprise_trainset_seconds"] = trainset_seconds
            if model_name == "SVD tuned":
                run["config"] = tuned
            runs.append(run)
            print(f"    {model_name:<18} RMSE {run['rmse']:.4f}  MAE {run['mae']:.4f}  "
                  f"fit {fit_seconds:7.1f} s", flush=True)
    info["seconds"] = time.perf_counter() - started
    return {"info": info, "runs": runs}


# -- reporting ----------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def summarise(runs: list[dict[str, Any]], split_names: list[str]) -> dict[str, Any]:
    """Per model: mean RMSE/MAE/fit seconds over the splits (only when all of them ran)."""
    out: dict[str, Any] = {}
    models = list(dict.fromkeys(r["model"] for r in runs))
    for model in models:
        mine = {r["split"]: r for r in runs if r["model"] == model and r["split"] in split_names}
        done = [mine[s] for s in split_names if s in mine and "rmse" in mine[s]]
        skipped = [mine[s]["skipped"] for s in split_names if s in mine and "skipped" in mine[s]]
        entry: dict[str, Any] = {"splits": len(done),
                                 "per_split_rmse": {s: mine[s].get("rmse") for s in split_names
                                                    if s in mine}}
        if skipped and not done:
            entry["skipped"] = skipped[0]
        if done:
            for key in ("rmse", "mae", "fit_seconds"):
                values = [r[key] for r in done]
                entry[key] = statistics.fmean(values)
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            entry["complete"] = len(done) == len(split_names)
        out[model] = entry
    return out


def markdown(name: str, title: str, split_names: list[str], runs: list[dict[str, Any]],
             info: dict[str, Any]) -> str:
    summary = summarise(runs, split_names)
    cold = {r["split"]: r["n_cold"] for r in runs if r["split"] in split_names}
    head = " | ".join(s.replace("seed", "seed ") for s in split_names)
    lines = [f"**{name}**, {title}: {info['n_ratings']:,} ratings, scale "
             f"{info['rating_scale'][0]:g}..{info['rating_scale'][1]:g}; cold test pairs "
             + ", ".join(f"{cold.get(s, '?')}" for s in split_names),
             "",
             f"| model | RMSE | MAE | fit s | {head} |" if len(split_names) > 1
             else "| model | RMSE | MAE | fit s |",
             "|---|---|---|---|" + "---|" * (len(split_names) if len(split_names) > 1 else 0)]
    order = [m for m in ALL_MODELS if m in summary] + [m for m in summary if m not in ALL_MODELS]
    for model in order:
        entry = summary[model]
        if "rmse" not in entry:
            cells = [entry.get("skipped", "not run"), "", ""]
        else:
            mark = "" if entry["complete"] else f" ({entry['splits']}/{len(split_names)} splits)"
            cells = [_fmt(entry["rmse"]) + mark, _fmt(entry["mae"]),
                     _fmt(entry["fit_seconds"], 1)]
        if len(split_names) > 1:
            cells += [_fmt(entry["per_split_rmse"].get(s)) for s in split_names]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    parts = []
    for name, data in results["datasets"].items():
        for title, split_names in protocols_for(name, args.seeds, args.chapter_seeds).items():
            parts.append(markdown(name, title, split_names, data["runs"], data["info"]))
        tuning = data["info"].get("svd_tuning")
        if tuning:
            parts.append(f"SVD tuned on {name}: {tuning['chosen']} (validation RMSE "
                         f"{tuning['validation_rmse']:.4f})")
    return "\n\n".join(parts)


def merge_reused(results: dict[str, Any], path: str) -> None:
    """Add runs from an earlier JSON of this script for (data set, split, model) not run now."""
    import json

    earlier = json.loads(Path(path).read_text())["results"]["datasets"]
    for name, data in results["datasets"].items():
        if name not in earlier:
            continue
        have = {(r["split"], r["model"]) for r in data["runs"]}
        now = data["info"].get("splits", {})
        then = earlier[name]["info"].get("splits", {})
        same = {s for s in now if s in then
                and now[s]["test_sha1"] == then[s].get("test_sha1")}
        for split in sorted(set(now) - same):
            print(f"  --reuse: {name} {split} differs from {path} (other test ratings); "
                  "its runs there are not reused", file=sys.stderr)
        reused = [dict(r, reused_from=path) for r in earlier[name]["runs"]
                  if (r["split"], r["model"]) not in have and r["split"] in same]
        data["runs"] = reused + data["runs"]
        for key in ("svd_tuning", "svdpp_probe"):  # both made on the seed-0 training part
            if key in earlier[name]["info"] and key not in data["info"] and "seed0" in same:
                data["info"][key] = earlier[name]["info"][key]


def save(path: str, args: argparse.Namespace, results: dict[str, Any]) -> Path:
    """``write_json`` to a temporary name next to ``path``, then rename (atomic)."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    write_json(tmp, args, results)
    os.replace(tmp, final)
    return final


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RMSE/MAE/fit seconds of autorec and Surprise baselines on the shared "
                    "data sets (issue #6).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="random 90/10 split seeds for every data set")
    parser.add_argument("--chapter-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="ML-100K chapter split seeds (random 90/10)")
    parser.add_argument("--models", nargs="+", choices=list(ALL_MODELS), default=list(ALL_MODELS),
                        metavar="MODEL", help=f"subset of: {', '.join(ALL_MODELS)}")
    parser.add_argument("--skip-svdpp", action="store_true", help="never run SVD++")
    parser.add_argument("--svdpp-limit", type=float, default=10.0,
                        help="run SVD++ only where one fit is estimated under this many minutes")
    parser.add_argument("--device", default="cpu", help="autorec's training device")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for autorec (default: torch's)")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--reuse", default=None, metavar="FILE.json",
                        help="take runs of models not run now from an earlier output")
    parser.add_argument("--out", default="runs/accuracy.json", help="JSON results")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="run nothing: print the report of these JSONs of this script, "
                        "merged (later files win)")
    parser.add_argument("--relabel", nargs="+", metavar="FILE:OLD=NEW", default=[],
                        help="with --merge: rename a model in one file")
    return parser.parse_args(argv)


def merged_report(paths: list[str], relabel: list[str], args: argparse.Namespace) -> str:
    """The report of several JSONs of this script; a later file's run replaces an earlier
    one's for the same (data set, split, model). ``relabel`` entries ``FILE:OLD=NEW`` rename a
    model in one file (runs recorded under an earlier default)."""
    import json

    renames: dict[str, dict[str, str]] = {}
    for entry in relabel:
        path, _, pair = entry.rpartition(":")
        old, _, new = pair.partition("=")
        if path not in paths or not old or not new:  # ignored without a word
            raise SystemExit(f"accuracy.py: --relabel {entry!r}: expected FILE:OLD=NEW with "
                             "FILE one of the --merge files")
        renames.setdefault(path, {})[old] = new
    merged: dict[str, Any] = {"datasets": {}}
    for path in paths:
        datasets = json.loads(Path(path).read_text())["results"]["datasets"]
        for name, data in datasets.items():
            for run in data["runs"]:
                run["model"] = renames.get(path, {}).get(run["model"], run["model"])
            if name not in merged["datasets"]:
                merged["datasets"][name] = data
                continue
            old = merged["datasets"][name]
            new_keys = {(r["split"], r["model"]) for r in data["runs"]}
            old["runs"] = [r for r in old["runs"]
                           if (r["split"], r["model"]) not in new_keys] + data["runs"]
            for key, value in data["info"].items():
                old["info"].setdefault(key, value)
    return report(merged, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # the first data set's save replaced the file the later ones reuse runs from
    if args.reuse and args.out and Path(args.reuse).resolve() == Path(args.out).resolve():
        raise SystemExit("accuracy.py: --reuse and --out name the same file; write the "
                         "new results to another one")
    if args.relabel and not args.merge:
        raise SystemExit("accuracy.py: --relabel renames models of --merge files")
    if args.merge:
        missing = [path for path in args.merge if not Path(path).is_file()]
        if missing:
            raise SystemExit(f"accuracy.py: --merge: no such file {missing[0]}")
        print(merged_report(args.merge, args.relabel, args))
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        import surprise
        surprise_version = surprise.__version__
    except ImportError:
        surprise_version = None
        if any(m in SURPRISE_NAMES for m in args.models):
            print("scikit-surprise is not installed: pip install -e '.[bench]'", file=sys.stderr)
            return 2
    results: dict[str, Any] = {"surprise_version": surprise_version,
                               "tuned_svd_grid": TUNED_SVD_GRID,
                               "validation_ratio": VALIDATION_RATIO, "datasets": {}}
    for name in args.datasets:
        results["datasets"][name] = run_dataset(name, args)
        if args.reuse:
            merge_reused({"datasets": {name: results["datasets"][name]}}, args.reuse)
        save(args.out, args, results)
    text = report(results, args)
    print("\n" + text)
    busy = [r["other_cores"] for d in results["datasets"].values() for r in d["runs"]
            if "other_cores" in r and "reused_from" not in r and r["fit_seconds"] >= 1.0]
    if busy and max(busy) > 0.2:
        print(f"\nWARNING: other processes kept up to {max(busy):.2f} cores busy during some "
              "fits; fit seconds are inflated (RMSE/MAE are not affected)")
    print(f"wrote {save(args.out, args, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
