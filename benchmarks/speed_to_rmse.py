"""Wall time to the same validation RMSE: the dense d2l AutoRec versus autorec's default.

Issue 8 asks for autorec to reach the dense formulation's validation RMSE at least 10x sooner
at ML-10M shape (4x at ML-1M shape, 3x on ML-100K), with any recipe. Both sides train on the
same ratings and are scored on the same validation part:

* the test part of a random 90/10 split (seed ``--seed``) is set aside and never used;
* the validation part is the one ``autorec.AutoRec(random_state=--seed)`` carves from the
  training part (5 %), reproduced here with ``autorec.selection.validation_split``;
* the dense side (``speed_dense_vs_sparse.DenseAutoRec``: the chapter's recipe, the dense
  items x users matrix of the fit part, Adam lr 0.002, weight decay 1e-5, batch 256, 500
  sigmoid units) trains ``--dense-epochs`` epochs and is scored on the validation pairs after
  each (predictions clipped to the rating scale, pairs it cannot know get the training mean);
  its *target* is the best validation RMSE it reached;
* autorec trains with its defaults (``--params`` to change them) and reports the validation
  RMSE after every epoch, as it does anyway for early stopping.

Times are wall-clock from the start of training (the dense matrix's construction, or
``fit``'s start: id maps, bias selection, batch structures) to the end of the first epoch
whose validation RMSE is at or below the target, validation scoring included on both sides.
autorec's fit is stopped there (``--full-fit`` lets it run on through early stopping and the
refit, which the comparison does not count).
The per-epoch comparison with identical recipes is ``speed_dense_vs_sparse.py``.

    python benchmarks/speed_to_rmse.py                           # ML-100K, 25 dense epochs
    python benchmarks/speed_to_rmse.py --shape ml-1m
    python benchmarks/speed_to_rmse.py --shape ml-10m --dense-epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import add_machine_options, default_data_dir, wait_for_quiet, write_json
from speed_dense_vs_sparse import SHAPES, DenseAutoRec, dense_matrix, dense_predict, load
from torch import nn

import autorec
from autorec.selection import validation_split
from autorec.train import seed_streams


def run_dense(fit: autorec.Ratings, val: autorec.Ratings, args: argparse.Namespace
              ) -> list[dict[str, Any]]:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    low, high = float(fit.rating.min()), float(fit.rating.max())
    mean = float(fit.rating.mean())
    known_users = np.zeros(fit.n_users, dtype=bool)
    known_users[fit.user_idx] = True
    known_items = np.zeros(fit.n_items, dtype=bool)
    known_items[fit.item_idx] = True
    cold = ~(known_users[val.user_idx] & known_items[val.item_idx])
    started = time.perf_counter()
    matrix = dense_matrix(fit).to(device)
    net = DenseAutoRec(500, fit.n_users, dropout=0.05)
    nn.init.normal_(net.encoder.weight, std=0.01)
    nn.init.normal_(net.decoder.weight, std=0.01)
    net.to(device)
    loss_fn = nn.MSELoss(reduction="sum")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.002, weight_decay=1e-5)
    history = []
    for epoch in range(1, args.dense_epochs + 1):
        net.train()
        order = torch.randperm(matrix.shape[0], device=device)
        for start in range(0, matrix.shape[0] - 256 + 1, 256):  # drop_last, as the chapter
            values = matrix[order[start:start + 256]]
            optimizer.zero_grad()
            loss = loss_fn(net(values), values * torch.sign(values))
            loss.backward()
            optimizer.step()
        predicted = np.clip(dense_predict(net, matrix, val), low, high)
        predicted[cold] = mean
        history.append({"epoch": epoch, "seconds": time.perf_counter() - started,
                        "validation_rmse": autorec.rmse(val.rating, predicted)})
        print(f"  dense   epoch {epoch:>3}: {history[-1]['seconds']:8.1f}s  validation RMSE "
              f"{history[-1]['validation_rmse']:.4f}", flush=True)
    return history


class _Reached(Exception):
    """The target validation RMSE was reached: the rest of the fit is not timed."""


def run_autorec(train: autorec.Ratings, args: argparse.Namespace, target: float
                ) -> list[dict[str, Any]]:
    params = {**json.loads(args.params), "random_state": args.seed, "device": args.device}
    history: list[dict[str, Any]] = []
    started = time.perf_counter()

    def on_epoch_end(entry: dict[str, Any]) -> None:
        history.append({"epoch": entry["epoch"], "member": entry.get("member", 1),
                        "seconds": time.perf_counter() - started,
                        "validation_rmse": entry["validation_rmse"]})
        print(f"  autorec epoch {entry['epoch']:>3}: {history[-1]['seconds']:8.1f}s  "
              f"validation RMSE {entry['validation_rmse']:.4f}", flush=True)
        if entry["validation_rmse"] <= target + 1e-12 and not args.full_fit:
            raise _Reached  # early stopping and the refit would come after: not timed

    model = autorec.AutoRec(**params)
    try:
        model.fit(train, on_epoch_end=on_epoch_end)
    except _Reached:
        pass
    return history


def first_at(history: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    return next((h for h in history if h["validation_rmse"] <= target + 1e-12), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ml-100k",
                        help=f"ml-100k (real), {', '.join(SHAPES)} (synthetic) or UxIxR")
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-epochs", type=int, default=None,
                        help="epochs of the dense model (default 25, 5 for ml-10m)")
    parser.add_argument("--params", default="{}", help="autorec parameters as JSON")
    parser.add_argument("--dense-from", default=None, metavar="JSON",
                        help="reuse the dense side of an earlier run's JSON (same shape, "
                        "seed and data: --data-seed, or --data-dir for ml-100k) instead of "
                        "training it again")
    parser.add_argument("--full-fit", action="store_true",
                        help="let autorec's fit run to its end (early stopping, refit) instead "
                        "of stopping it at the first epoch that reaches the target")
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    dense = None
    if args.dense_from:  # the dense side of an earlier run on the same data and seed
        try:
            earlier = json.loads(Path(args.dense_from).read_text())
            dense, earlier_args = earlier["results"]["dense"], dict(earlier["args"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--dense-from {args.dense_from}: not a speed_to_rmse JSON ({error})")
        keys = ["shape", "seed", "data_dir" if args.shape == "ml-100k" else "data_seed"]
        ours = {k: getattr(args, k) for k in keys}
        theirs = {k: earlier_args.get(k) for k in keys}
        if args.shape == "ml-100k" and theirs["data_dir"] is not None:
            ours["data_dir"] = str(Path(ours["data_dir"]).resolve())
            theirs["data_dir"] = str(Path(theirs["data_dir"]).resolve())
        if ours != theirs:
            parser.error(f"--dense-from {args.dense_from} was run on other data or seed: "
                         + ", ".join(f"{k} {theirs[k]} (here {ours[k]})" for k in keys
                                     if ours[k] != theirs[k]))
    if args.dense_epochs is None:
        args.dense_epochs = 5 if args.shape == "ml-10m" else 25
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.test_ratio, args.epochs = 0.1, None
    ratings, data = load(args)
    train, _ = autorec.random_split(ratings, 0.1, random_state=args.seed)
    validation = autorec.AutoRec().validation
    fit, val = validation_split(train, validation, seed_streams(args.seed, 1)[0])
    print(f"{data['source']}: {len(fit):,} ratings to fit, {len(val):,} to validate")
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    if dense is not None:
        print(f"  dense side from {args.dense_from}: {len(dense)} epochs")
    else:
        dense = run_dense(fit, val, args)
    target = min(h["validation_rmse"] for h in dense)
    dense_at = first_at(dense, target)
    sparse = run_autorec(train, args, target)
    sparse_at = first_at(sparse, target)
    result: dict[str, Any] = {"data": data, "target_validation_rmse": target,
                              "dense": dense, "autorec": sparse, "dense_at_target": dense_at,
                              "autorec_at_target": sparse_at}
    assert dense_at is not None
    print(f"target: the dense model's best validation RMSE, {target:.4f} (epoch "
          f"{dense_at['epoch']}, {dense_at['seconds']:.1f}s)")
    if sparse_at is None:
        best = min(h["validation_rmse"] for h in sparse)
        print(f"autorec did not reach it (best {best:.4f})")
    else:
        speedup = dense_at["seconds"] / sparse_at["seconds"]
        result["speedup"] = speedup
        print(f"autorec reached it at epoch {sparse_at['epoch']} after "
              f"{sparse_at['seconds']:.1f}s: " + (f"{speedup:.1f}x sooner" if speedup >= 1
                                                    else f"{1 / speedup:.1f}x later"))
    write_json(args.out or f"/tmp/autorec-bench/speed_to_rmse_{args.shape}.json", args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
