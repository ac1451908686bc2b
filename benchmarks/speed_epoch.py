"""Seconds per epoch of the default model and of the seed's dense formulation, in one run.

For each ``--shapes`` entry (ML-100K itself; synthetic ML-1M and ML-10M shapes from
``_common.make_synthetic``, seed ``--data-seed``), on a random 90/10 split (seed 0):

* **dense**: the seed's formulation (``speed_dense_vs_sparse.DenseAutoRec``: the whole items x
  users matrix, ``nn.Linear`` encoder and decoder, output masked by the input's sign, Adam,
  batch 256, 500 sigmoid units), what ``--preset reference`` computes densely;
* **default**: ``autorec.AutoRec()`` with its defaults (I-AutoRec, 500 units, bias baseline,
  L2 100, input dropout 0.25, ``optimizer="auto"``, batch 256), ``refit=False`` so that the
  run is only the epochs asked for; each phase of every step timed as in ``profile_epoch.py``.

The default's first epoch also loads the compiled kernels from Numba's disk cache (about 2 s
at ML-1M shape against a 0.4 s epoch), so it runs at least 3 epochs (5 below ML-10M shape)
and the median keeps the first out of the figure.

Printed and written to the JSON: median seconds per epoch of each side (the dense side's
epoch is batch gathering, forward, backward and Adam; the default's is ``Trainer.train_epoch``,
validation scoring not included, reported apart), the ratio, the default's epoch split by
phase, CPU seconds per epoch (this process, all threads), the other processes' load during
each epoch (the CPU-seconds ratio is the figure to read when other processes share the
cores: it counts the work of this process only), and the achieved GFLOP/s: useful work of
the default = 10 x ratings x hidden FLOP per epoch (5 multiply-adds per rating and hidden
unit: encoder, decoder at the observed positions, the decoder's two gradients, the
encoder's weight gradient), of the dense side 12 x rows fed x inputs x hidden (both
products, forward and two backward each).

Run (about 6 minutes on a quiet 2-core machine, most of it the dense ML-10M epoch)::

    python benchmarks/speed_epoch.py --out runs/speed_epoch.json
    python benchmarks/speed_epoch.py --shapes ml-1m --epochs 3      # while developing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import torch
from _common import CpuWatch, add_machine_options, make_synthetic, wait_for_quiet, write_json
from profile_epoch import PhaseTimer, instrument
from speed_dense_vs_sparse import run_dense

import autorec

SHAPES = {"ml-1m": (6_040, 3_706, 1_000_209), "ml-10m": (69_878, 10_677, 10_000_054)}
DEFAULT_EPOCHS = {"ml-100k": 5, "ml-1m": 5, "ml-10m": 3}
DENSE_EPOCHS = {"ml-100k": 5, "ml-1m": 3, "ml-10m": 1}


def load(shape: str, data_dir: str, data_seed: int) -> autorec.Ratings:
    if shape == "ml-100k":
        return autorec.load_dataset("ml-100k", data_dir, download=False)
    user, item, rating = make_synthetic(*SHAPES[shape], data_seed)
    return autorec.Ratings.from_arrays(user, item, rating, source=f"synthetic {shape}")


def run_default(train: autorec.Ratings, epochs: int, timer: PhaseTimer,
                device: str) -> dict[str, Any]:
    watch = CpuWatch()
    others: list[float] = []

    def on_epoch_end(entry: dict[str, Any]) -> None:
        others.append(watch.lap()["other_cores"])
        print(f"  default epoch {entry['epoch']}: {entry['seconds']:.3f}s (other processes "
              f"{others[-1]:.2f} cores)", flush=True)

    model = autorec.AutoRec(epochs=epochs, patience=epochs + 1, refit=False, random_state=0,
                            device=device)
    started = time.perf_counter()
    model.fit(train, on_epoch_end=on_epoch_end)
    fit_seconds = time.perf_counter() - started
    epochs_run = [e for e in timer.epochs if "epoch total" in e]
    phases = sorted({name for epoch in epochs_run for name in epoch})
    median = {name: statistics.median(e.get(name, 0.0) for e in epochs_run) for name in phases}
    member = model.members_[0]
    return {"median_epoch_seconds": median["epoch total"], "phases": median,
            "epochs": epochs_run,
            "median_epoch_cpu_seconds": median["epoch CPU seconds"],
            "median_other_cores": statistics.median(others) if others else None,
            "optimizer": member.optimizer, "fit_seconds": fit_seconds,
            "validation_rmse": model.validation_rmse_, "n_fit_ratings": int(member.matrix.nnz)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["ml-100k", "ml-1m", "ml-10m"],
                        choices=["ml-100k", *SHAPES])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the default model (default: 5, 5, 3 by shape)")
    parser.add_argument("--dense-epochs", type=int, default=None,
                        help="epochs of the dense model (default: 5, 3, 1 by shape)")
    parser.add_argument("--data-dir", default=os.environ.get("AUTOREC_DATA_DIR",
                                                             "/work/shared/data"))
    parser.add_argument("--data-seed", type=int, default=0)
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/speed_epoch.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    timer = PhaseTimer(torch.device(args.device))
    instrument(timer)
    results: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    print(f"{torch.get_num_threads()} threads; load average {os.getloadavg()}")
    for shape in args.shapes:
        ratings = load(shape, args.data_dir, args.data_seed)
        train, test = autorec.random_split(ratings, 0.1, random_state=0)
        print(f"== {shape}: {ratings.n_users:,} users x {ratings.n_items:,} items, "
              f"{len(train):,} training ratings", flush=True)
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        dense_args = argparse.Namespace(seed=0, device=args.device, hidden=500, batch_size=256,
                                        epochs=args.dense_epochs or DENSE_EPOCHS[shape])
        load_before = os.getloadavg()[0]
        dense = run_dense(train, test, dense_args)
        rows_fed = (train.n_items // 256) * 256
        dense["gflops"] = 12 * rows_fed * train.n_users * 500 / dense["median_epoch_seconds"] / 1e9
        timer.epochs.clear()
        default = run_default(train, args.epochs or DEFAULT_EPOCHS[shape], timer, args.device)
        default["gflops"] = (10 * default["n_fit_ratings"] * 500
                             / default["median_epoch_seconds"] / 1e9)
        ratio = dense["median_epoch_seconds"] / default["median_epoch_seconds"]
        cpu_ratio = dense["median_epoch_cpu_seconds"] / default["median_epoch_cpu_seconds"]
        results[shape] = {"dense": dense, "default": default, "ratio": ratio,
                          "cpu_ratio": cpu_ratio,
                          "loadavg_1min": [load_before, os.getloadavg()[0]]}
        print(f"  dense   {dense['median_epoch_seconds']:8.3f} s/epoch  "
              f"{dense['gflops']:6.1f} GFLOP/s (other processes {dense['median_other_cores']:.2f})")
        print(f"  default {default['median_epoch_seconds']:8.3f} s/epoch  "
              f"{default['gflops']:6.1f} GFLOP/s  optimizer {default['optimizer']}  "
              f"(other processes {default['median_other_cores']:.2f})")
        print(f"  ratio   {ratio:6.1f}x wall, {cpu_ratio:.1f}x CPU seconds (dense "
              f"{dense['median_epoch_cpu_seconds']:.3f}, default "
              f"{default['median_epoch_cpu_seconds']:.3f} per epoch)")
        for name, seconds in sorted(default["phases"].items(), key=lambda kv: -kv[1]):
            if name == "epoch CPU seconds":
                continue
            print(f"    {name:<16} {seconds:8.3f} s")
        del ratings, train, test
    results["loadavg_end"] = os.getloadavg()
    path = write_json(args.out, args, results)
    print(f"wrote {path}")
    print(json.dumps({shape: round(results[shape]["ratio"], 2) for shape in args.shapes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
