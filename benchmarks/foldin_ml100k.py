"""Fold-in accuracy on MovieLens-100K u1: users (and items) held out of training entirely.

New users: a fixed share (``--holdout``, 10 %) of the users of ``u1.base`` is drawn with
``--seed`` and all their ratings are removed from training; the estimator with its defaults
(``variant`` from ``--variants``) is trained on the rest of ``u1.base``. Each held-out user is
then folded in (``AutoRec.fold_in_user``, no retraining) and scored on its ``u1.test``
ratings, in two protocols:

* ``base -> test``: folded in from all of its ``u1.base`` ratings, RMSE on its ``u1.test``
  ratings (about 80/20);
* ``half -> half``: its ``u1.base`` and ``u1.test`` ratings pooled and cut in two random halves
  (``--seed``), folded in from one, RMSE on the other (the issue's wording).

Beside them: the known users' RMSE on ``u1.test`` (same model), the held-out users' RMSE when
they get only a folded-in bias (``mu + b_u + b_i``), when they get the cold fallback (no
ratings used), and when the model is trained on all of ``u1.base`` (``retrained``: the same
estimator, same seed, that saw their ``u1.base`` ratings: what fold-in approximates). A sweep
of the ridge penalty (multiples of the default ``l2_ / 2``) shows how much the choice matters;
it is measured on the test ratings, so read it as sensitivity, not as a tuned value.

New items: the same with a share of the items of ``u1.base`` held out
(``AutoRec.fold_in_item``), against the known items' RMSE on ``u1.test``.

RMSE over all test ratings of the group, pooled, predictions clipped to the training scale.
Test pairs whose other side (item for a new user) the model does not know get the cold
fallback (counted in ``n_cold``).

Run (several minutes per variant on 2 cores: three trainings)::

    nice -n 10 python benchmarks/foldin_ml100k.py
    python benchmarks/foldin_ml100k.py --variants item user --out /tmp/foldin.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import default_data_dir, write_json

import autorec
from autorec import AutoRec, Ratings
from autorec.foldin import default_reg

REG_MULTIPLIERS = (0.1, 0.3, 1.0, 3.0, 10.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fold-in RMSE of held-out users and items on MovieLens-100K u1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--variants", nargs="+", choices=("item", "user", "both"),
                        default=["item"], help="AutoRec variants to run")
    parser.add_argument("--sides", nargs="+", choices=("user", "item"), default=["user", "item"],
                        help="fold in new users, new items or both")
    parser.add_argument("--holdout", type=float, default=0.1,
                        help="share of u1.base users (items) held out entirely")
    parser.add_argument("--seed", type=int, default=0,
                        help="draws the held-out users/items and the halves; random_state")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the estimator's default number of epochs")
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help="folder holding ml-100k/u1.base and u1.test")
    parser.add_argument("--device", default="cpu", help="training device")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--out", default="/tmp/autorec-bench/foldin_ml100k.json",
                        help="where to write the JSON results")
    return parser.parse_args(argv)


def rmse_of(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(truth, np.float64) - predicted) ** 2)))


def fit(ratings: Ratings, variant: str, args: argparse.Namespace) -> tuple[AutoRec, float]:
    params: dict[str, Any] = {"variant": variant, "random_state": args.seed,
                              "device": args.device}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    started = time.perf_counter()
    model = AutoRec(**params).fit(ratings)
    return model, time.perf_counter() - started


def fold_in_group(model: AutoRec, side: str, fold_parts: dict[Any, tuple], test: Ratings,
                  reg: float | None = None) -> dict[str, Any]:
    """Fold every newcomer of ``fold_parts`` (raw id -> (other ids, ratings)) into a copy of
    ``model`` and score the group's ``test`` ratings through ``predict``."""
    grown = copy.deepcopy(model)
    biases = {}
    for raw_id, (other_ids, values) in fold_parts.items():
        if side == "user":
            result = grown.fold_in_user((other_ids, values), n=10, add=True, user_id=raw_id,
                                        reg=reg)
        else:
            result = grown.fold_in_item((other_ids, values), add=True, item_id=raw_id, reg=reg)
        biases[raw_id] = result.bias
    predicted, cold = grown.predict(test.user_ids, test.item_ids, return_cold=True)
    return {"rmse": rmse_of(test.rating, predicted), "n": len(test), "n_cold": int(cold.sum()),
            "biases": biases, "reg": default_reg(model) if reg is None else reg}


def fold_in_seconds(model: AutoRec, side: str, fold_parts: dict[Any, tuple]) -> float:
    """Median seconds of one fold-in (scores and top 10, not added), the model's caches warm."""
    fold = model.fold_in_user if side == "user" else model.fold_in_item
    fold(next(iter(fold_parts.values())))  # warm the cached hidden codes
    seconds = []
    for other_ids, values in fold_parts.values():
        started = time.perf_counter()
        fold((other_ids, values))
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def bias_only(model: AutoRec, side: str, biases: dict[Any, float], test: Ratings) -> float:
    """RMSE of ``mu + b_new + b_other`` for the newcomers (their folded-in biases)."""
    mean = model.biases_.mean
    own = np.array([biases[x] for x in (test.user_ids if side == "user" else test.item_ids)])
    if side == "user":
        index = model.items_.to_index(test.item_ids)
        other = np.where(index >= 0, model.biases_.item[index], 0.0)
    else:
        index = model.users_.to_index(test.user_ids)
        other = np.where(index >= 0, model.biases_.user[index], 0.0)
    return rmse_of(test.rating, np.clip(mean + own + other, *model.rating_scale_))


def group_parts(ratings: Ratings, side: str) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Raw id -> (raw ids of the other side, ratings), per user (or item) of ``ratings``."""
    own = ratings.user_idx if side == "user" else ratings.item_idx
    own_map = ratings.users if side == "user" else ratings.items
    other_ids = ratings.item_ids if side == "user" else ratings.user_ids
    order = np.argsort(own, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(own[order]) != 0])
    parts = {}
    for chunk in np.split(order, starts[1:]):
        raw = own_map.to_raw([own[chunk[0]]])[0]
        parts[raw] = (other_ids[chunk], ratings.rating[chunk])
    return parts


def run_side(side: str, variant: str, base: Ratings, test: Ratings, full: AutoRec,
             args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    own_base = base.user_idx if side == "user" else base.item_idx
    own_test = test.user_idx if side == "user" else test.item_idx
    present = np.unique(own_base)
    held = np.sort(rng.choice(present, size=round(args.holdout * len(present)), replace=False))
    held_base, held_test = np.isin(own_base, held), np.isin(own_test, held)
    print(f"  new {side}s: {len(held)} of {len(present)} held out "
          f"({int(held_base.sum())} u1.base and {int(held_test.sum())} u1.test ratings)",
          flush=True)
    model, seconds = fit(base.subset(~held_base), variant, args)
    known_test = test.subset(~held_test)
    newcomers_test = test.subset(held_test)
    known = model.evaluate(known_test)
    out: dict[str, Any] = {
        "n_held": len(held), "n_present": len(present), "train_seconds": seconds,
        "l2": model.l2_, "default_reg": default_reg(model),
        "known": {"rmse": known["rmse"], "n": known["n"], "n_cold": known["n_cold"]},
    }
    # base -> test
    parts = group_parts(base.subset(held_base), side)
    folded = fold_in_group(model, side, parts, newcomers_test)
    out["base_to_test"] = {k: v for k, v in folded.items() if k != "biases"}
    out["base_to_test"]["ms_per_fold_in"] = 1e3 * fold_in_seconds(model, side, parts)
    out["bias_only"] = bias_only(model, side, folded["biases"], newcomers_test)
    cold, cold_mask = model.predict(newcomers_test.user_ids, newcomers_test.item_ids,
                                    return_cold=True)
    out["cold"] = {"rmse": rmse_of(newcomers_test.rating, cold), "n_cold": int(cold_mask.sum())}
    retrained, _ = full.predict(newcomers_test.user_ids, newcomers_test.item_ids,
                                return_cold=True)
    out["retrained"] = rmse_of(newcomers_test.rating, retrained)
    out["retrained_known"] = full.evaluate(known_test)["rmse"]
    out["reg_sweep"] = {
        m: fold_in_group(model, side, parts, newcomers_test, reg=m * default_reg(model))["rmse"]
        for m in REG_MULTIPLIERS}
    # half -> half
    held_part = base.subset(held_base)  # base and test share their id maps (align)
    pooled_all = Ratings(np.r_[held_part.user_idx, newcomers_test.user_idx],
                         np.r_[held_part.item_idx, newcomers_test.item_idx],
                         np.r_[held_part.rating, newcomers_test.rating],
                         base.users, base.items)
    own_pooled = pooled_all.user_idx if side == "user" else pooled_all.item_idx
    first_half = np.zeros(len(pooled_all), dtype=bool)
    for index in np.unique(own_pooled):
        rows = np.flatnonzero(own_pooled == index)
        first_half[rng.permutation(rows)[: len(rows) // 2]] = True
    halves = fold_in_group(model, side, group_parts(pooled_all.subset(first_half), side),
                           pooled_all.subset(~first_half))
    out["half_to_half"] = {k: v for k, v in halves.items() if k != "biases"}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base, test = autorec.canonical_split("u1", args.data_dir, download=False)
    results: dict[str, Any] = {}
    for variant in args.variants:
        print(f"variant {variant}: training on all of u1.base (the retrained reference)",
              flush=True)
        full, full_seconds = fit(base, variant, args)
        results[variant] = {"full": {"rmse": full.evaluate(test)["rmse"],
                                     "train_seconds": full_seconds,
                                     "params": full.get_params()}}
        for side in args.sides:
            results[variant][side] = run_side(side, variant, base, test, full, args)
            report(variant, side, results[variant][side])
    path = write_json(args.out, args, results)
    print(f"wrote {path}")
    return 0


def report(variant: str, side: str, r: dict[str, Any]) -> None:
    def line(label: str, value: float, extra: str = "") -> None:
        print(f"    {label:<42} RMSE {value:.4f}{extra}")

    print(f"  {variant}-AutoRec, new {side}s ({r['n_held']} of {r['n_present']}), "
          f"l2_ {r['l2']:g}, default reg {r['default_reg']:g}:")
    line(f"known {side}s on u1.test", r["known"]["rmse"], f" (n {r['known']['n']})")
    line(f"known {side}s, retrained with the new ones", r["retrained_known"])
    b2t, h2h = r["base_to_test"], r["half_to_half"]
    line("new, fold-in base -> test", b2t["rmse"], f" (n {b2t['n']}, cold {b2t['n_cold']}, "
         f"{b2t['ms_per_fold_in']:.1f} ms each, median)")
    line("new, fold-in half -> half", h2h["rmse"], f" (n {h2h['n']})")
    line("new, bias only, base -> test", r["bias_only"])
    line("new, cold (no rating used)", r["cold"]["rmse"])
    line("new, retrained with their u1.base", r["retrained"])
    sweep = ", ".join(f"x{m:g} {v:.4f}" for m, v in r["reg_sweep"].items())
    print(f"    reg sweep (x default): {sweep}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
