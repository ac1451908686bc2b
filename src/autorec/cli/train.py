"""``autorec train``: load, split, train, evaluate, report (and write DIR/metrics.json)."""

from __future__ import annotations

import argparse
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data import DATASETS, load_dataset, read_ratings
from ..data.ratings import Ratings
from ..data.readers import DUPLICATE_POLICIES
from ..estimator import COLD_POLICIES, VARIANTS, AutoRec
from ..model import ACTIVATIONS
from ..split import CANONICAL_SPLITS, align, canonical_split, kfold_split, random_split
from ..train import resolve_device
from ._common import (
    check_output_dir,
    fraction,
    nonnegative_float,
    output_dir,
    positive_float,
    positive_int,
    seed,
    separator,
    unit_interval,
    write_json_atomic,
)

DEFAULT_DATASET = "ml-100k"
SPLITS = ("random", "kfold", *CANONICAL_SPLITS)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train I-AutoRec or U-AutoRec and report test RMSE/MAE",
        description="Train an AutoRec model and report RMSE and MAE over all test ratings. "
        "Defaults reproduce the d2l.ai reference recipe on MovieLens-100K.",
    )
    source = parser.add_argument_group("data (one of --dataset, --data, --train/--test)")
    source.add_argument("--dataset", choices=tuple(DATASETS), metavar="NAME",
                        help=f"builtin data set: {', '.join(DATASETS)} (default {DEFAULT_DATASET}"
                        " when no file is given)")
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="one ratings file (CSV/TSV/'::'/Parquet) to split")
    source.add_argument("--train", type=Path, metavar="FILE", help="training ratings file")
    source.add_argument("--test", type=Path, metavar="FILE", help="test ratings file")
    source.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="folder holding builtin data sets as DIR/<name>/... "
                        "(default: $AUTOREC_DATA_DIR)")
    source.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                        help="download a builtin data set (default: only when no local copy)")
    source.add_argument("--sep", type=separator, metavar="SEP",
                        help="field separator of --data/--train/--test: one character, '::' or "
                        "'tab' (default: from extension)")
    source.add_argument("--no-header", action="store_true",
                        help="the ratings files have no header line")
    source.add_argument("--columns", default="user_id,item_id,rating", metavar="U,I,R",
                        help="user, item and rating column names (default: %(default)s)")
    source.add_argument("--duplicates", choices=DUPLICATE_POLICIES, default="error",
                        help="repeated (user, item) ratings: error (default), keep last, or mean")

    split = parser.add_argument_group("split")
    split.add_argument("--split", choices=SPLITS, default="random",
                       help="random holdout (default), k-fold over all ratings (--folds), or a "
                       "canonical ML-100K split")
    split.add_argument("--folds", type=_at_least_two, default=5, metavar="K",
                       help="folds of --split kfold (default: %(default)s)")
    split.add_argument("--test-ratio", type=fraction, default=0.1, metavar="F",
                       help="test fraction of a random split (default: %(default)s)")
    split.add_argument("--seed", type=seed, default=0, metavar="N",
                       help="seed of the split and of training (default: %(default)s)")

    model = parser.add_argument_group("model and training")
    model.add_argument("--variant", choices=VARIANTS, default="item",
                       help="item: I-AutoRec (default); user: U-AutoRec")
    model.add_argument("--hidden", type=positive_int, default=500, metavar="N")
    model.add_argument("--activation", choices=tuple(ACTIVATIONS), default="sigmoid")
    model.add_argument("--dropout", type=unit_interval, default=0.05, metavar="F")
    model.add_argument("--lr", type=positive_float, default=0.002, metavar="F")
    model.add_argument("--weight-decay", type=nonnegative_float, default=1e-5, metavar="F")
    model.add_argument("--epochs", type=positive_int, default=25, metavar="N")
    model.add_argument("--batch-size", type=positive_int, default=256, metavar="N")
    model.add_argument("--device", default="auto", metavar="DEV",
                       help="auto (CUDA when available), cpu, cuda, cuda:N (default: auto)")
    model.add_argument("--cold", choices=COLD_POLICIES, default="mean",
                       help="prediction for test pairs with an unseen user or item: global "
                       "training mean (default) or the rating scale's midpoint")

    output = parser.add_argument_group("output")
    output.add_argument("--out", type=output_dir, metavar="DIR", help="write DIR/metrics.json")
    output.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    parser.set_defaults(handler=run, parser_error=parser.error)


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def _check_args(args: argparse.Namespace, parser_error: Any) -> None:
    files = [name for name in ("data", "train", "test") if getattr(args, name) is not None]
    if args.dataset is not None and files:
        parser_error("give either --dataset or ratings files, not both")
    if args.data is not None and (args.train is not None or args.test is not None):
        parser_error("give either --data or --train/--test, not both")
    if (args.train is None) != (args.test is None):
        parser_error("--train and --test go together")
    if args.train is not None and args.split != "random":
        parser_error("--train/--test already split the data; drop --split")
    canonical = args.split in CANONICAL_SPLITS
    if canonical and files:
        parser_error(f"--split {args.split} is a canonical MovieLens-100K split; "
                     "it needs --dataset ml-100k")
    if canonical and args.dataset not in (None, "ml-100k"):
        parser_error(f"--split {args.split} exists only for ml-100k, not {args.dataset}")
    columns = args.columns.split(",")
    if len(columns) != 3 or not all(columns):
        parser_error(f"--columns needs three names separated by commas, got {args.columns!r}")
    args.columns = tuple(columns)
    if not files and args.dataset is None:
        args.dataset = DEFAULT_DATASET


def _read(path: Path, args: argparse.Namespace) -> Ratings:
    return read_ratings(path, sep=args.sep, header=not args.no_header, columns=args.columns,
                        duplicates=args.duplicates)


def load_parts(args: argparse.Namespace) -> tuple[list[tuple[Ratings, Ratings]], str]:
    """The (train, test) pairs the options ask for (one, or one per fold) and their origin."""
    if args.train is not None:
        return [align(_read(args.train, args), _read(args.test, args))], (
            f"{args.train} + {args.test}")
    if args.split in CANONICAL_SPLITS:
        parts = canonical_split(args.split, args.data_dir, download=args.download)
        return [parts], f"ml-100k split {args.split}"
    if args.data is not None:
        ratings, what = _read(args.data, args), str(args.data)
    else:
        ratings = load_dataset(args.dataset, args.data_dir, download=args.download,
                               duplicates=args.duplicates)
        what = args.dataset
    if args.split == "kfold":
        return list(kfold_split(ratings, args.folds, args.seed)), f"{what}, {args.folds}-fold"
    parts = random_split(ratings, args.test_ratio, args.seed)
    return [parts], f"{what}, random {1 - args.test_ratio:g}/{args.test_ratio:g} split"


def _make_model(args: argparse.Namespace) -> AutoRec:
    return AutoRec(
        variant=args.variant, hidden=args.hidden, activation=args.activation,
        dropout=args.dropout, lr=args.lr, weight_decay=args.weight_decay, epochs=args.epochs,
        batch_size=args.batch_size, cold=args.cold, random_state=args.seed,
        device=None if args.device == "auto" else args.device,
    )


def _train_one(args: argparse.Namespace, train: Ratings, test: Ratings, label: str
               ) -> dict[str, Any]:
    """Fit on ``train``, report on ``test``; returns the figures of this (train, test) pair."""
    prefix = f"{label} " if label else ""

    def progress(entry: dict[str, Any]) -> None:
        if not args.quiet:
            print(f"{prefix}epoch {entry['epoch']:3d}/{args.epochs}  train loss "
                  f"{entry['train_loss']:.4f}  test RMSE {entry['eval_rmse']:.4f}  "
                  f"{entry['seconds']:.2f}s", flush=True)

    model = _make_model(args)
    started = time.perf_counter()
    model.fit(train, eval_set=test, on_epoch_end=progress)
    wall = time.perf_counter() - started
    report = model.evaluate(test)
    return {
        "rmse": report["rmse"],
        "mae": report["mae"],
        "n_train": len(train),
        "n_test": report["n"],
        "n_cold": report["n_cold"],
        "cold_value": model.cold_value(),
        "train_seconds": sum(entry["seconds"] for entry in model.history_),
        "wall_seconds": wall,
        "n_users": len(model.users_),
        "n_items": len(model.items_),
        "rating_scale": list(model.rating_scale_),
        "device": str(model.device_),
        "history": model.history_,
    }


def _pool(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over all test ratings of all folds (each rating is in one test fold)."""
    n_test = sum(f["n_test"] for f in folds)
    sse = sum(f["rmse"] ** 2 * f["n_test"] for f in folds)
    rmses = np.array([f["rmse"] for f in folds])
    return {
        "rmse": math.sqrt(sse / n_test),
        "mae": sum(f["mae"] * f["n_test"] for f in folds) / n_test,
        "rmse_fold_mean": float(rmses.mean()),
        "rmse_fold_std": float(rmses.std(ddof=1)) if len(folds) > 1 else 0.0,
        "n_train": int(np.mean([f["n_train"] for f in folds])),
        "n_test": n_test,
        "n_cold": sum(f["n_cold"] for f in folds),
        "train_seconds": sum(f["train_seconds"] for f in folds),
        "wall_seconds": sum(f["wall_seconds"] for f in folds),
        "device": folds[0]["device"],
    }


def run(args: argparse.Namespace) -> int:
    _check_args(args, args.parser_error)
    template = _make_model(args)  # validates every option before any data is read
    template._validate_params()
    resolve_device(template.device)
    if args.out is not None:
        check_output_dir(args.out)

    parts, description = load_parts(args)
    first_train, first_test = parts[0]
    print(f"data: {description}: {len(first_train)} train / {len(first_test)} test ratings"
          f"{' per fold' if len(parts) > 1 else ''}, {first_train.n_users} users, "
          f"{first_train.n_items} items")

    results = []
    for k, (train, test) in enumerate(parts, start=1):
        label = f"fold {k}/{len(parts)}" if len(parts) > 1 else ""
        results.append(_train_one(args, train, test, label))
        if label:
            print(f"{label}: test RMSE {results[-1]['rmse']:.4f}, MAE {results[-1]['mae']:.4f}")
    summary = results[0] if len(results) == 1 else _pool(results)

    spread = (f" (folds {summary['rmse_fold_mean']:.4f} +- {summary['rmse_fold_std']:.4f})"
              if len(results) > 1 else "")
    print(f"{args.variant}-AutoRec on {description}: test RMSE {summary['rmse']:.4f}{spread}, "
          f"MAE {summary['mae']:.4f} over {summary['n_test']} ratings "
          f"({summary['n_cold']} cold, predicted by --cold {args.cold}); trained "
          f"{args.epochs} epochs in {summary['train_seconds']:.1f}s on {summary['device']}")

    if args.out is not None:
        config = {key: (str(value) if isinstance(value, Path) else value)
                  for key, value in vars(args).items() if key not in ("handler", "parser_error")}
        payload = {
            **summary,
            "epochs": args.epochs,
            "data": description,
            "config": config,
            "model_params": template.get_params(),
            **({"folds": results} if len(results) > 1 else {}),
            "versions": {"autorec": __version__, "torch": torch.__version__,
                         "python": platform.python_version()},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(args.out / "metrics.json", payload)
        print(f"wrote {args.out / 'metrics.json'}")
    return 0
