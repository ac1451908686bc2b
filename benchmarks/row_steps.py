"""Lazy Adam's rows stepped inside the gradient kernels, against the touched rows' whole
gradient then the optimizer's step: seconds per epoch, the gradient buffer held, and the
validation RMSE (the same model to float32 rounding).

The default model (``optimizer`` ``auto``, which picks ``lazy_adam`` at the ML-10M shape) is
fitted twice on the same 90 % of a synthetic ML-10M-shaped set (``_common.make_synthetic``,
seed 0), first with ``autorec.sparse.STEP_IN_BACKWARD`` on (the default: each touched row
stepped by Adam inside the gradient kernel as soon as its gradient is summed), then off (the
whole gradient of the touched rows computed into one reused buffer, then stepped), or in the
order ``--order`` gives. The
buffer's size is read after every batch (``autorec.sparse._ROW_BUFFERS``).

    python benchmarks/row_steps.py                       # about 2 minutes on 2 cores
    python benchmarks/row_steps.py --shape ml-1m --epochs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import torch
from _common import CpuWatch, add_machine_options, make_synthetic, write_json

import autorec
from autorec import sparse

SHAPES = {"ml-1m": (6_040, 3_706, 1_000_209), "ml-10m": (69_878, 10_677, 10_000_054)}


def fit_once(train: autorec.Ratings, epochs: int, mode: str, device: str) -> dict[str, Any]:
    sparse.STEP_IN_BACKWARD = mode == "on"
    watch = CpuWatch()
    seconds: list[float] = []
    cpu: list[float] = []
    buffer_bytes = [0]

    def on_epoch_end(entry: dict[str, Any]) -> None:
        lap = watch.lap()
        seconds.append(entry["seconds"])
        cpu.append(lap["own_cores"] * lap["wall_seconds"])
        print(f"  stepping in backward {mode}: epoch {entry['epoch']} {entry['seconds']:.2f}s "
              f"(other processes {lap['other_cores']:.2f} cores)", flush=True)

    def on_batch_end(done: int, total: int) -> None:
        held = sum(b.nbytes for b in {id(b): b for b in sparse._ROW_BUFFERS.values()}.values())
        buffer_bytes[0] = max(buffer_bytes[0], held)

    model = autorec.AutoRec(epochs=epochs, patience=epochs + 1, refit=False, random_state=0,
                            ranking="none", device=device)
    started = time.perf_counter()
    model.fit(train, on_epoch_end=on_epoch_end, on_batch_end=on_batch_end)
    return {"step_in_backward": mode, "epoch_seconds": seconds,
            "median_epoch_seconds": statistics.median(seconds[1:] or seconds),
            "epoch_cpu_seconds_with_scoring": cpu, "fit_seconds": time.perf_counter() - started,
            "optimizer": model.members_[0].optimizer,
            "largest_gradient_buffer_bytes": buffer_bytes[0],
            "validation_rmse": model.validation_rmse_}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ml-10m")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--order", nargs="+", choices=["on", "off"], default=["on", "off"],
                        help="STEP_IN_BACKWARD on or off, one fit each (default: on off)")
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/row_steps.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    user, item, rating = make_synthetic(*SHAPES[args.shape], 0)
    ratings = autorec.Ratings.from_arrays(user, item, rating, source=f"synthetic {args.shape}")
    train, _ = autorec.random_split(ratings, 0.1, random_state=0)
    print(f"{args.shape}: {len(train):,} training ratings, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()}", flush=True)
    runs = [fit_once(train, args.epochs, mode, args.device) for mode in args.order]
    for run in runs:
        print(f"stepping in backward {run['step_in_backward']:>3}: "
              f"{run['median_epoch_seconds']:.2f} s/epoch "
              f"(median of epochs 2-), gradient buffer "
              f"{run['largest_gradient_buffer_bytes'] / 2**20:.0f} MiB, validation RMSE "
              f"{run['validation_rmse']:.5f}, {run['optimizer']}")
    write_json(args.out, args, {"shape": args.shape, "threads": torch.get_num_threads(),
                                "loadavg_end": os.getloadavg(), "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
