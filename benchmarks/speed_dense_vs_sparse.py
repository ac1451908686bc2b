"""Seconds per training epoch: the dense d2l AutoRec versus autorec's sparse AutoRec.

(a) dense: a small re-implementation of the d2l.ai chapter's I-AutoRec (see
    ``../shared/seed/autorec-d2l.md``): the full dense items x users training matrix,
    ``nn.Linear`` encoder and decoder, sigmoid hidden layer with dropout, the output masked
    with ``pred * sign(input)``, ``MSELoss(reduction="sum")`` against the input, Adam. As in
    the chapter, batches are shuffled item rows with ``drop_last=True``; rows are gathered
    by index from the in-memory tensor (no DataLoader, which only helps the dense side).
(b) sparse: ``autorec.AutoRec(**PRESETS["reference"])`` (``--preset reference``): the same
    recipe, no validation part, no baseline.

Both use 500 sigmoid hidden units, dropout 0.05, Adam lr 0.002 and weight decay 1e-5,
batch 256, ``random_state``/``torch.manual_seed`` = ``--seed``, on a random split
(``autorec.random_split``, test ratio 0.1, seed ``--seed``). An epoch's time covers batch
assembly, forward, backward and the optimizer step, not evaluation. Test RMSE is taken once
after the last epoch: for the dense model over the test pairs of its reconstruction of the
training matrix (the chapter's evaluator, unclipped; the clipped-to-[1, 5] figure too), for
autorec through ``AutoRec.evaluate`` (clipped, cold pairs get the global mean).

Data (``--shape``)
    ``ml-100k``  MovieLens-100K from ``--data-dir`` (default ``AUTOREC_DATA_DIR``, else
                 ``../shared/data`` next to the repository root).
    ``ml-1m``    synthetic, 6,040 users x 3,706 items x 1,000,209 ratings.
    ``ml-10m``   synthetic, 69,878 users x 10,677 items x 10,000,054 ratings; one epoch by
                 default.
    ``UxIxR``    any other synthetic shape, e.g. ``20000x5000x500000``.
Synthetic sets come from ``_common.make_synthetic`` (seed ``--data-seed``). Dense training
is skipped when the dense float32 matrix exceeds ``--dense-limit-gb`` (its size is still
reported).

Run::

    python benchmarks/speed_dense_vs_sparse.py                     # ML-100K, 10 epochs each
    python benchmarks/speed_dense_vs_sparse.py --shape ml-1m --out /tmp/speed_ml1m.json
    python benchmarks/speed_dense_vs_sparse.py --shape ml-10m      # 1 epoch, slow

Threads: torch's default (``torch.get_num_threads()``), recorded in the JSON. Nothing else
runs in the process while timing: on a 2-core machine even a Python thread waking every 20 ms
(as an RSS sampler would) slows torch's OpenMP kernels by an order of magnitude.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import (
    GB,
    CpuWatch,
    add_machine_options,
    default_data_dir,
    describe_synthetic,
    fmt_bytes,
    make_synthetic,
    wait_for_quiet,
    write_json,
)
from torch import nn

import autorec
from autorec.config import PRESETS
from autorec.data import Ratings

SHAPES: dict[str, tuple[int, int, int]] = {
    "ml-1m": (6040, 3706, 1_000_209),
    "ml-10m": (69878, 10677, 10_000_054),
}


# -- (a) the reference dense formulation -----------------------------------------------------
class DenseAutoRec(nn.Module):
    """The d2l chapter's AutoRec: dense input, masked output while training."""

    def __init__(self, num_hidden: int, num_users: int, dropout: float = 0.05) -> None:
        super().__init__()
        self.encoder = nn.Linear(num_users, num_hidden)
        self.decoder = nn.Linear(num_hidden, num_users)
        self.dropout = nn.Dropout(dropout)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(torch.sigmoid(self.encoder(values)))
        pred = self.decoder(hidden)
        if self.training:  # mask the gradient during training
            return pred * torch.sign(values)
        return pred


def dense_matrix(ratings: Ratings) -> torch.Tensor:
    """The items x users float32 matrix of ``ratings`` over their full id maps, 0 = missing."""
    matrix = torch.zeros((ratings.n_items, ratings.n_users), dtype=torch.float32)
    matrix[torch.from_numpy(ratings.item_idx), torch.from_numpy(ratings.user_idx)] = (
        torch.from_numpy(ratings.rating))
    return matrix


def run_dense(train: Ratings, test: Ratings, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    started = time.perf_counter()
    matrix = dense_matrix(train).to(device)
    build_seconds = time.perf_counter() - started
    net = DenseAutoRec(args.hidden, train.n_users, dropout=0.05)
    nn.init.normal_(net.encoder.weight, std=0.01)
    nn.init.normal_(net.decoder.weight, std=0.01)
    net.to(device)
    loss_fn = nn.MSELoss(reduction="sum")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.002, weight_decay=1e-5)
    n_rows = matrix.shape[0]
    epochs: list[dict[str, float]] = []
    for epoch in range(1, args.epochs + 1):
        net.train()
        watch = CpuWatch()
        started = time.perf_counter()
        order = torch.randperm(n_rows, device=device)
        total = 0.0
        for start in range(0, n_rows - args.batch_size + 1, args.batch_size):  # drop_last
            values = matrix[order[start:start + args.batch_size]]
            optimizer.zero_grad()
            preds = net(values)
            loss = loss_fn(preds, values * torch.sign(values))
            loss.backward()
            optimizer.step()
            total += loss.item()
        seconds = time.perf_counter() - started
        lap = watch.lap()
        other = lap["other_cores"]
        epochs.append({"epoch": epoch, "seconds": seconds,
                       "train_loss": total / max(len(train), 1), "other_cores": other,
                       "cpu_seconds": lap["own_cores"] * lap["wall_seconds"]})
        print(f"  dense  epoch {epoch:>2}: {seconds:7.3f}s  (other processes: {other:.2f} "
              "cores)", flush=True)
    predicted = dense_predict(net, matrix, test)
    truth = test.rating.astype(np.float64)
    return {
        "dense_matrix_build_seconds": build_seconds,
        "epochs": epochs,
        "median_epoch_seconds": statistics.median(e["seconds"] for e in epochs),
        "min_epoch_seconds": min(e["seconds"] for e in epochs),
        "median_epoch_cpu_seconds": statistics.median(e["cpu_seconds"] for e in epochs),
        "median_other_cores": statistics.median(e["other_cores"] for e in epochs),
        "test_rmse": autorec.rmse(truth, predicted),
        "test_rmse_clipped": autorec.rmse(truth, np.clip(predicted, 1.0, 5.0)),
        "test_mae_clipped": autorec.mae(truth, np.clip(predicted, 1.0, 5.0)),
    }


@torch.no_grad()
def dense_predict(net: DenseAutoRec, matrix: torch.Tensor, test: Ratings,
                  chunk: int = 1024) -> np.ndarray:
    """The reconstruction of ``matrix`` at the test pairs, computed a chunk of items at a time."""
    net.eval()
    order = np.argsort(test.item_idx, kind="stable")
    items = test.item_idx[order]
    users = torch.from_numpy(test.user_idx[order]).to(matrix.device)
    predicted = np.empty(len(test), dtype=np.float64)
    for start in range(0, matrix.shape[0], chunk):
        lo, hi = np.searchsorted(items, [start, start + chunk])
        if lo == hi:
            continue
        recon = net(matrix[start:start + chunk])
        rows = torch.from_numpy(items[lo:hi] - start).to(matrix.device)
        predicted[order[lo:hi]] = recon[rows, users[lo:hi]].double().cpu().numpy()
    return predicted


# -- (b) autorec ----------------------------------------------------------------------------
def run_sparse(train: Ratings, test: Ratings, args: argparse.Namespace) -> dict[str, Any]:
    model = autorec.AutoRec(**{**PRESETS["reference"], "hidden": args.hidden,
                               "epochs": args.epochs, "batch_size": args.batch_size,
                               "random_state": args.seed, "device": args.device})
    watch = CpuWatch()

    def on_epoch_end(entry: dict[str, Any]) -> None:
        entry["other_cores"] = watch.lap()["other_cores"]
        print(f"  sparse epoch {entry['epoch']:>2}: {entry['seconds']:7.3f}s  (other "
              f"processes: {entry['other_cores']:.2f} cores)", flush=True)

    model.fit(train, on_epoch_end=on_epoch_end)
    scores = model.evaluate(test)
    return {
        "epochs": model.history_,
        "median_epoch_seconds": statistics.median(e["seconds"] for e in model.history_),
        "min_epoch_seconds": min(e["seconds"] for e in model.history_),
        "median_other_cores": statistics.median(e["other_cores"] for e in model.history_),
        "test_rmse": scores["rmse"],
        "test_mae": scores["mae"],
        "n_cold": scores["n_cold"],
    }


# -- driver ---------------------------------------------------------------------------------
def parse_shape(text: str) -> str:
    if text == "ml-100k" or text in SHAPES:
        return text
    parts = text.lower().split("x")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return text.lower()
    raise argparse.ArgumentTypeError(
        f"expected ml-100k, {', '.join(SHAPES)} or USERSxITEMSxRATINGS, got {text!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Seconds per epoch of the dense d2l AutoRec versus autorec's sparse one.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--shape", type=parse_shape, default="ml-100k",
                        help="ml-100k (real data), ml-1m or ml-10m (synthetic shapes), or "
                             "USERSxITEMSxRATINGS")
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help="folder holding ml-100k/u.data")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per model (default 10; 1 for ml-10m)")
    parser.add_argument("--seed", type=int, default=0,
                        help="split seed, model random_state and torch.manual_seed")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of synthetic data")
    parser.add_argument("--test-ratio", type=float, default=0.1, help="held-out fraction")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    parser.add_argument("--dense-limit-gb", type=float, default=4.0,
                        help="skip dense training when its matrix exceeds this many GB")
    parser.add_argument("--skip-dense", action="store_true", help="time the sparse model only")
    add_machine_options(parser, wait_quiet=60.0)  # --device applies to both models
    parser.add_argument("--out", default=None,
                        help="JSON path (default /tmp/autorec-bench/speed_<shape>.json)")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.shape == "ml-10m" else 10
    if args.out is None:
        args.out = f"/tmp/autorec-bench/speed_{args.shape}.json"
    return args


def load(args: argparse.Namespace) -> tuple[Ratings, dict[str, Any]]:
    if args.shape == "ml-100k":
        ratings = autorec.load_dataset("ml-100k", args.data_dir, download=False)
        return ratings, {"source": "MovieLens-100K", "n_users": ratings.n_users,
                         "n_items": ratings.n_items, "n_ratings": len(ratings)}
    n_users, n_items, n_ratings = SHAPES.get(args.shape) or map(int, args.shape.split("x"))
    started = time.perf_counter()
    user, item, rating = make_synthetic(n_users, n_items, n_ratings, args.data_seed)
    info = {"source": f"synthetic {args.shape} (seed {args.data_seed})",
            "generate_seconds": time.perf_counter() - started,
            **describe_synthetic(user, item, rating)}
    return Ratings.from_arrays(user, item, rating, source="synthetic"), info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ratings, data = load(args)
    train, test = autorec.random_split(ratings, args.test_ratio, random_state=args.seed)
    dense_bytes = ratings.n_items * ratings.n_users * 4
    print(f"{data['source']}: {ratings.n_users:,} users x {ratings.n_items:,} items x "
          f"{len(ratings):,} ratings; train {len(train):,}, test {len(test):,}; "
          f"{args.epochs} epoch(s), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"dense items x users float32 matrix: {fmt_bytes(dense_bytes)}")

    results: dict[str, Any] = {"data": data, "n_train": len(train), "n_test": len(test),
                               "dense_matrix_bytes": dense_bytes}
    if args.wait_quiet > 0:
        results["wait_quiet"] = quiet = wait_for_quiet(args.wait_quiet)
        print(f"waited {quiet['waited_seconds']:.0f}s for quiet CPUs: other processes use "
              f"{quiet['other_cores']:.2f} cores")
    if args.skip_dense:
        results["dense"] = {"skipped": "--skip-dense"}
    elif dense_bytes > args.dense_limit_gb * GB:
        results["dense"] = {"skipped": f"dense matrix {dense_bytes / GB:.2f} GB > "
                                       f"{args.dense_limit_gb:g} GB"}
    else:
        results["dense"] = run_dense(train, test, args)
    results["sparse"] = run_sparse(train, test, args)

    sparse = results["sparse"]
    dense = results["dense"]
    print(f"sparse (autorec): median {sparse['median_epoch_seconds']:.3f} s/epoch, "
          f"test RMSE {sparse['test_rmse']:.4f} (MAE {sparse['test_mae']:.4f}, "
          f"{sparse['n_cold']} cold)")
    if "skipped" in dense:
        print(f"dense (d2l): skipped ({dense['skipped']})")
    else:
        speedup = dense["median_epoch_seconds"] / sparse["median_epoch_seconds"]
        results["speedup"] = speedup
        print(f"dense (d2l):       median {dense['median_epoch_seconds']:.3f} s/epoch, "
              f"test RMSE {dense['test_rmse']:.4f} (clipped {dense['test_rmse_clipped']:.4f})")
        print(f"speedup (dense / sparse seconds per epoch): {speedup:.2f}x")
    busy = max(sparse["median_other_cores"], dense.get("median_other_cores", 0.0))
    if busy > 0.2:
        print(f"WARNING: other processes kept {busy:.2f} cores busy during a typical epoch; "
              "the timings are inflated (see other_cores per epoch in the JSON)")
    path = write_json(args.out, args, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
