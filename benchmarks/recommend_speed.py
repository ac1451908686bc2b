"""Seconds to recommend the top 10 items to every one of 10,000 users out of 10,000 items.

A synthetic set (``--users`` x ``--items`` x ``--ratings``, seed ``--seed``, popularity-skewed
as in ``_common.make_synthetic``) trains an AutoRec with ``--hidden`` units for ``--epochs``
epoch(s) (the weights' quality does not matter to the timing), then times
``model.recommend(all users, n=10)`` (items rated in training left out): the first call, which
also encodes every item row (I-AutoRec) and builds the seen-item pattern, and the best of
``--repeat`` calls after it. The model has the default ranking model (``ranking="auto"``),
which orders the lists, so the timing includes scoring it as well as the predicted ratings.
It also checks the ``predicted_rating`` of a sample of the returned rows (up to 10,000)
against ``model.predict``.

Run::

    python benchmarks/recommend_speed.py                     # I-AutoRec, hidden 500, CPU
    python benchmarks/recommend_speed.py --variant user
    python benchmarks/recommend_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import CpuWatch, add_machine_options, make_synthetic, wait_for_quiet, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--variant", choices=("item", "user"), default="item")
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n", type=int, default=10, help="items per user")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls after the first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/autorec-bench/recommend_speed.json")
    add_machine_options(parser, wait_quiet=0.0)
    args = parser.parse_args()

    import torch

    import autorec
    from autorec.data import Ratings

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    user, item, rating = make_synthetic(args.users, args.items, args.ratings, args.seed)
    ratings = Ratings.from_arrays(user, item, rating, source="synthetic")
    model = autorec.AutoRec(variant=args.variant, hidden=args.hidden, epochs=args.epochs,
                            validation=0.0, device=args.device, random_state=args.seed)
    started = time.perf_counter()
    model.fit(ratings)
    fit_seconds = time.perf_counter() - started
    users = model.users_.raw_ids

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    quiet = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    watch = CpuWatch()
    sync()
    started = time.perf_counter()
    table = model.recommend(users, n=args.n)
    sync()
    first = time.perf_counter() - started
    repeats = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        table = model.recommend(users, n=args.n)
        sync()
        repeats.append(time.perf_counter() - started)
    cpu = watch.lap()

    sample = table.sample(min(len(table), 10_000), random_state=0)
    predicted = model.predict(sample["user_id"].to_numpy(), sample["item_id"].to_numpy())
    max_error = float(np.max(np.abs(predicted - sample["predicted_rating"].to_numpy())))
    n_pairs = len(users) * len(model.items_)
    results = {
        "n_users": len(users), "n_items": len(model.items_), "n_ratings": len(ratings),
        "variant": args.variant, "hidden": args.hidden, "n": args.n, "device": args.device,
        "torch_threads": torch.get_num_threads(), "fit_seconds": fit_seconds,
        "first_call_seconds": first, "repeat_seconds": repeats,
        "best_seconds": min(repeats) if repeats else first,
        "pairs_scored": n_pairs, "rows_returned": len(table),
        "ranking": model.ranking, "ranking_model_fitted": model.ranking_ is not None,
        "rows_checked": len(sample), "max_abs_predicted_rating_minus_predict": max_error,
        "cpu": cpu, "wait_quiet": quiet,
    }
    best = results["best_seconds"]
    print(f"{args.variant}-AutoRec hidden {args.hidden} on {len(users):,} users x "
          f"{len(model.items_):,} items ({len(ratings):,} ratings), {args.device}, "
          f"{torch.get_num_threads()} threads; trained {args.epochs} epoch(s) in "
          f"{fit_seconds:.1f}s")
    print(f"recommend top {args.n} for every user (seen items excluded): first call "
          f"{first:.2f}s (item codes and seen pattern built), then best of {args.repeat} "
          f"{best:.2f}s = {n_pairs / best / 1e6:.0f} M scores/s; "
          f"max |predicted_rating - predict| on {len(sample):,} rows {max_error:.2e}")
    if cpu["other_cores"] > 0.2:
        print(f"  WARNING: other processes kept {cpu['other_cores']:.2f} cores busy; the times "
              "are inflated")
    path = write_json(args.out, args, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
