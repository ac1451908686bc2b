"""Seconds per epoch and test RMSE of ``autorec train`` on 1 and 2 processes (issue 8).

Each configuration is one ``python -m autorec train ... --nproc P`` command with
``OMP_NUM_THREADS=T`` (``PxT``: ``1x2`` is the usual single process with torch's 2 threads,
``1x1`` one process with one thread, ``2x1`` two data-parallel processes with one thread each,
which is what ``--nproc 2`` gives on 2 cores). Every configuration trains exactly
``--epochs`` epochs (``--patience`` as large) with the default settings otherwise, on the same
split (seed 0), and reports:

* ``s/epoch``: the median over epochs 2.. of rank 0's ``train_epoch`` seconds (batches,
  forward, backward, the gradient all-reduce, the optimizer; without the per-epoch validation
  and test scoring), from ``metrics.json``'s history;
* ``fit s``: ``wall_seconds`` of the fit (all epochs with their scoring, the blend);
* ``command s``: the whole command, process start, imports and data loading included;
* ``test RMSE`` (all test ratings pooled; with 2 processes reduced as sums over the ranks);
* ``other cores``: how many cores processes other than this benchmark's kept busy meanwhile
  (the machine is shared; over 0.2 the times are not to be trusted).

Data (``--shapes``): ``ml-100k`` (the real set, ``--data-dir``) and ``ml-1m``, a synthetic set
of the ML-1M shape (6,040 users x 3,706 items x 1,000,209 ratings, ``_common.make_synthetic``
seed 0), written once as CSV under ``--work``.

``--exchange`` also times the gradient exchange alone (``World.reduce_gradients`` on 2 gloo
processes started by torchrun): the lazy optimizer's row-sparse gradients of I-AutoRec
(encoder and decoder weights, ``touched`` of ``n_inputs`` rows each, hidden 500, plus the
dense encoder bias), median over 30 exchanges, for every touched count of each shape's
batches (ML-100K: 943 users, a batch of 256 items touches about 900; ML-1M shape: 6,040
users, about 5,900).

Run::

    nice -n 10 python benchmarks/distributed_scaling.py --exchange \
        --out runs/distributed_scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO_ROOT, default_data_dir, make_synthetic, wait_for_quiet, write_json

SHAPES = {"ml-1m": (6040, 3706, 1_000_209)}


def _busy_cores_seconds() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / ticks


def data_options(shape: str, args: argparse.Namespace) -> list[str]:
    if shape == "ml-100k":
        return ["--dataset", "ml-100k", "--data-dir", args.data_dir, "--no-download"]
    path = Path(args.work) / f"{shape}-synthetic.csv"
    if not path.exists():
        n_users, n_items, n_ratings = SHAPES[shape]
        user, item, rating = make_synthetic(n_users, n_items, n_ratings, seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            handle.write("user_id,item_id,rating\n")
            np.savetxt(handle, np.column_stack([user, item, rating.astype(np.int64)]),
                       fmt="%d", delimiter=",")
    return ["--data", str(path)]


def run_one(shape: str, nproc: int, threads: int, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"dist-{shape}-{nproc}x{threads}-", dir=args.work))
    epochs = args.epochs[shape]
    command = [sys.executable, "-m", "autorec", "train", *data_options(shape, args),
               "--epochs", str(epochs), "--patience", str(epochs), "--seed", "0", "--quiet",
               "--device", "cpu", "--nproc", str(nproc), "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    busy, wall = _busy_cores_seconds(), time.perf_counter()
    before = os.times()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    after = os.times()
    wall = time.perf_counter() - wall
    own = (after.children_user + after.children_system
           - before.children_user - before.children_system)
    other = max(_busy_cores_seconds() - busy - own, 0.0) / wall
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = [entry["seconds"] for entry in metrics["history"]]
    return {
        "shape": shape, "nproc": nproc, "threads": threads, "epochs": len(seconds),
        "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
        "epoch_seconds": seconds, "fit_seconds": metrics["wall_seconds"],
        "command_seconds": wall, "test_rmse": metrics["rmse"],
        "validation_rmse": metrics["validation_rmse"], "world_size": metrics["world_size"],
        "other_cores": other, "own_cores": own / wall,
        "command": f"OMP_NUM_THREADS={threads} " + " ".join(
            ["autorec", *command[3:-2]]),
    }


EXCHANGES = {"ml-100k": (943, 900), "ml-1m": (6040, 5900)}


def exchange_worker(hidden: int, repeats: int) -> None:
    """Run under torchrun: time World.reduce_gradients; rank 0 prints JSON."""
    import torch

    from autorec import distributed

    with distributed.process_group("cpu", timeout=120) as group:
        rng = torch.Generator().manual_seed(group.rank)
        figures = {}
        for shape, (n_inputs, touched) in EXCHANGES.items():
            params = [torch.nn.Parameter(torch.zeros(n_inputs, hidden)),
                      torch.nn.Parameter(torch.zeros(hidden)),
                      torch.nn.Parameter(torch.zeros(n_inputs, hidden))]
            times = []
            for _ in range(repeats):
                rows = torch.randperm(n_inputs, generator=rng)[:touched].sort().values
                for param in params:
                    if param.dim() == 2:
                        param.grad = torch.sparse_coo_tensor(
                            rows.unsqueeze(0), torch.randn(touched, hidden, generator=rng),
                            param.shape, is_coalesced=True)
                    else:
                        param.grad = torch.randn(hidden, generator=rng)
                torch.distributed.barrier()  # time the exchange, not the ranks' skew
                started = time.perf_counter()
                group.reduce_gradients(params, torch.zeros(()))
                times.append(time.perf_counter() - started)
            figures[shape] = {"n_inputs": n_inputs, "touched_per_rank": touched,
                              "union_rows": int(params[0].grad._nnz()),
                              "median_ms": 1e3 * statistics.median(times)}
        if group.is_main:
            print(json.dumps(figures))


def time_exchange(hidden: int = 500, repeats: int = 30) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--max-restarts", "0", __file__, "--exchange-worker", str(hidden), str(repeats)],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
        cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"exchange timing failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--exchange-worker":
        exchange_worker(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["ml-100k", "ml-1m"],
                        choices=["ml-100k", *SHAPES])
    parser.add_argument("--configs", nargs="+", default=["1x2", "1x1", "2x1"],
                        help="PxT: P processes with T threads each")
    parser.add_argument("--epochs-100k", type=int, default=10)
    parser.add_argument("--epochs-1m", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data-dir", default=default_data_dir())
    parser.add_argument("--work", default="/tmp/autorec-bench",
                        help="folder (created) for the runs' outputs and the synthetic CSV")
    parser.add_argument("--wait-quiet", type=float, default=0.0,
                        help="first wait up to this many seconds for idle CPUs")
    parser.add_argument("--exchange", action="store_true",
                        help="also time the gradient exchange alone (2 gloo processes)")
    parser.add_argument("--out", default="/tmp/autorec-bench/distributed_scaling.json")
    args = parser.parse_args()
    configs = []
    for config in args.configs:
        try:
            nproc, threads = (int(v) for v in config.split("x"))
        except ValueError:
            nproc = threads = 0
        if nproc < 1 or threads < 1:
            parser.error(f"--configs {config!r}: give PxT, P processes and T threads, e.g. 2x1")
        configs.append((nproc, threads))
    # The commands run in the repository root: make every path they are given absolute.
    args.work = str(Path(args.work).resolve())
    args.data_dir = str(Path(args.data_dir).resolve())
    if os.environ.get("AUTOREC_DATA_DIR"):
        os.environ["AUTOREC_DATA_DIR"] = str(Path(os.environ["AUTOREC_DATA_DIR"]).resolve())
    Path(args.work).mkdir(parents=True, exist_ok=True)
    exchange: dict[str, Any] = {}
    if args.exchange:
        exchange = time_exchange()
        for shape, figures in exchange.items():
            print(f"exchange {shape}: {figures['union_rows']} of {figures['n_inputs']} rows x "
                  f"500, 2 weights: {figures['median_ms']:.1f} ms per step")
    args.epochs = {"ml-100k": args.epochs_100k, "ml-1m": args.epochs_1m}
    results: list[dict[str, Any]] = []
    print("| data | processes x threads | s/epoch | fit s | command s | test RMSE | "
          "other cores |")
    print("|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        for _ in range(args.repeats):
            for nproc, threads in configs:
                if args.wait_quiet:
                    wait_for_quiet(args.wait_quiet)
                row = run_one(shape, nproc, threads, args)
                results.append(row)
                print(f"| {shape} | {nproc} x {threads} | {row['seconds_per_epoch']:.3f} | "
                      f"{row['fit_seconds']:.1f} | {row['command_seconds']:.1f} | "
                      f"{row['test_rmse']:.4f} | {row['other_cores']:.1f} |", flush=True)
                write_json(args.out, argparse.Namespace(**{k: v for k, v in vars(args).items()
                                                           if k != "epochs"}),
                           {"runs": results, "exchange": exchange})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
