"""Test RMSE/MAE of autorec's defaults on MovieLens-100K over several random splits.

For every seed in ``--seeds`` and every variant in ``--variants`` (``item`` = I-AutoRec,
``user`` = U-AutoRec) it runs, through the Python API::

    train, test = autorec.random_split(ratings, test_ratio=0.1, random_state=seed)
    model = autorec.AutoRec(variant=variant, random_state=seed, device="cpu").fit(train)
    scores = model.evaluate(test)

with every other hyperparameter at the library default (500 sigmoid units, dropout 0.05,
Adam lr 0.002, weight decay 1e-5, 25 epochs, batch 256, cold pairs get the global mean).
It prints RMSE, MAE, the number of cold test pairs and the training seconds per run, then
the mean, standard deviation (n - 1) and maximum per variant, and writes all of it as JSON.

Data: ``--data-dir`` (default ``AUTOREC_DATA_DIR``, else ``../shared/data`` next to the
repository root) must hold ``ml-100k/u.data``; nothing is downloaded.

Run (a few seconds per run on 2 idle cores)::

    python benchmarks/accuracy_ml100k.py
    python benchmarks/accuracy_ml100k.py --seeds 0 1 --variants item --out /tmp/acc.json

Training seconds depend on what else runs on the machine; the JSON records, per run, how many
cores other processes kept busy (``other_cores``). RMSE and MAE do not depend on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch
from _common import CpuWatch, default_data_dir, write_json

import autorec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="RMSE/MAE of autorec's defaults on MovieLens-100K random splits.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="split seeds; each run uses random_state = seed")
    parser.add_argument("--variants", nargs="+", choices=("item", "user"),
                        default=["item", "user"], help="AutoRec variants to run")
    parser.add_argument("--test-ratio", type=float, default=0.1, help="held-out fraction")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the library's default number of epochs")
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help="folder holding ml-100k/u.data")
    parser.add_argument("--device", default="cpu", help="training device")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--out", default="/tmp/autorec-bench/accuracy_ml100k.json",
                        help="where to write the JSON results")
    return parser.parse_args(argv)


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ratings = autorec.load_dataset("ml-100k", args.data_dir, download=False)
    print(f"MovieLens-100K: {len(ratings):,} ratings, {ratings.n_users} users, "
          f"{ratings.n_items} items; test ratio {args.test_ratio}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    extra = {} if args.epochs is None else {"epochs": args.epochs}

    runs: list[dict[str, Any]] = []
    header = f"{'variant':<8}{'seed':>5}{'RMSE':>9}{'MAE':>9}{'cold':>6}{'train s':>9}"
    print(header)
    for variant in args.variants:
        for seed in args.seeds:
            train, test = autorec.random_split(ratings, args.test_ratio, random_state=seed)
            model = autorec.AutoRec(variant=variant, random_state=seed, device=args.device,
                                    **extra)
            watch = CpuWatch()
            started = time.perf_counter()
            model.fit(train)
            seconds = time.perf_counter() - started
            cpu = watch.lap()
            scores = model.evaluate(test)
            run = {"variant": variant, "seed": seed, "rmse": scores["rmse"],
                   "mae": scores["mae"], "n_test": scores["n"], "n_cold": scores["n_cold"],
                   "train_seconds": seconds, "epochs": len(model.history_),
                   "final_train_loss": model.history_[-1]["train_loss"],
                   "other_cores": cpu["other_cores"], "params": model.get_params()}
            runs.append(run)
            print(f"{variant:<8}{seed:>5}{run['rmse']:>9.4f}{run['mae']:>9.4f}"
                  f"{run['n_cold']:>6}{seconds:>9.1f}", flush=True)

    summary: dict[str, Any] = {}
    print()
    print(f"{'variant':<8}{'runs':>5}{'RMSE mean':>11}{'std':>8}{'max':>8}"
          f"{'MAE mean':>10}{'std':>8}{'max':>8}{'train s':>9}")
    for variant in args.variants:
        mine = [r for r in runs if r["variant"] == variant]
        summary[variant] = {
            "runs": len(mine),
            "rmse": summarise([r["rmse"] for r in mine]),
            "mae": summarise([r["mae"] for r in mine]),
            "train_seconds": summarise([r["train_seconds"] for r in mine]),
            "n_cold": summarise([float(r["n_cold"]) for r in mine]),
        }
        s = summary[variant]
        print(f"{variant:<8}{len(mine):>5}{s['rmse']['mean']:>11.4f}{s['rmse']['std']:>8.4f}"
              f"{s['rmse']['max']:>8.4f}{s['mae']['mean']:>10.4f}{s['mae']['std']:>8.4f}"
              f"{s['mae']['max']:>8.4f}{s['train_seconds']['mean']:>9.1f}")
    busy = max(r["other_cores"] for r in runs)
    if busy > 0.2:
        print(f"WARNING: other processes kept up to {busy:.2f} cores busy during training; "
              "train seconds are inflated (RMSE/MAE are not affected)")
    path = write_json(args.out, args, {"runs": runs, "summary": summary})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
