"""Where an epoch's time goes: batch building, forward, backward, optimizer step, validation.

Trains one network of ``autorec.AutoRec`` (I-AutoRec by default) on a synthetic set of the
given shape for ``--epochs`` epochs, timing each phase of every step with
``time.perf_counter`` (with ``torch.cuda.synchronize`` on a GPU), and prints the median
seconds per epoch of each phase. ``--params`` passes estimator parameters as JSON, so the
same script profiles the reference recipe and the default::

    python benchmarks/profile_epoch.py --shape ml-10m --params '{"optimizer": "adam"}'
    python benchmarks/profile_epoch.py --shape ml-10m            # the library defaults
    python benchmarks/profile_epoch.py --shape ml-1m --epochs 4 --torch-profile

``--torch-profile`` also runs the last epoch under ``torch.profiler`` (CPU) and prints its
operations by self CPU time: the autograd functions of ``autorec.sparse`` hold the compiled
kernels' calls, so their rows are the kernels plus their wrappers (the profiler slows that
epoch, whose phases then count in the medians too). Figures go to BENCHMARKS.md ("Where an
epoch goes").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import torch
from _common import add_machine_options, make_synthetic, wait_for_quiet, write_json

import autorec
from autorec import fitting as fitting_module
from autorec import member as member_module
from autorec import train as train_module

SHAPES = {"ml-1m": (6_040, 3_706, 1_000_209), "ml-10m": (69_878, 10_677, 10_000_054),
          "netflix": (480_189, 17_770, 100_480_507)}


class PhaseTimer:
    """Accumulates seconds per phase for the current epoch."""

    def __init__(self, device: torch.device, clock: Any = time.perf_counter) -> None:
        self.device = device
        self.clock = clock
        self.current: dict[str, float] = defaultdict(float)
        self.epochs: list[dict[str, float]] = []
        self.once: dict[str, float] = defaultdict(float)  # phases outside the epochs

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            started = self.clock()
            result = fn(*args, **kwargs)
            self.sync()
            self.current[name] += self.clock() - started
            return result
        return timed

    def end_epoch(self) -> None:
        self.epochs.append(dict(self.current))
        self.current = defaultdict(float)


def instrument(timer: PhaseTimer) -> None:
    """Time the trainer's phases by wrapping its methods (the library is not changed)."""
    trainer_cls = train_module.Trainer
    original_batches = trainer_cls.batches

    def batches(self: Any, rows: Any) -> Any:
        iterator = original_batches(self, rows)
        while True:
            timer.sync()
            started = timer.clock()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            timer.current["batch building"] += timer.clock() - started
            yield batch

    trainer_cls.batches = batches  # type: ignore[method-assign]

    def timed_pass(original: Any) -> Any:
        """A batch's pass (``_backward``, or ``_backward_and_step``, which every one-process
        Adam and lazy-Adam epoch takes) with its forward products, backward pass and penalty
        timed; the optimizer step is timed by the wrapped ``_step``."""
        def run(self: Any, batch: Any) -> Any:
            net, penalty = self.net, self.penalty
            patched = [(net, name) for name in ("forward", "code", "decode_batch")]
            patched += [(penalty, name) for name in ("fold", "add")]
            for owner, name in patched:
                setattr(owner, name, timer.wrap("penalty" if owner is penalty else "forward",
                                                getattr(owner, name)))
            loss_backward = torch.Tensor.backward
            torch.Tensor.backward = timer.wrap("backward", loss_backward)  # type: ignore[method-assign]
            try:
                return original(self, batch)
            finally:
                torch.Tensor.backward = loss_backward  # type: ignore[method-assign]
                for owner, name in patched:
                    owner.__dict__.pop(name, None)
        return run

    trainer_cls._backward = timed_pass(trainer_cls._backward)  # type: ignore[method-assign]
    trainer_cls._backward_and_step = timed_pass(  # type: ignore[method-assign]
        trainer_cls._backward_and_step)
    trainer_cls._step = timer.wrap("optimizer step", trainer_cls._step)  # type: ignore[method-assign]
    trainer_cls._zero_grad = timer.wrap("zero grad", trainer_cls._zero_grad)  # type: ignore[method-assign]
    original_epoch = trainer_cls.train_epoch

    def train_epoch(self: Any) -> Any:
        started, cpu = timer.clock(), time.process_time()
        stats = original_epoch(self)
        timer.current["epoch total"] = timer.clock() - started
        timer.current["epoch CPU seconds"] = time.process_time() - cpu
        return stats

    trainer_cls.train_epoch = train_epoch  # type: ignore[method-assign]
    original_fit = member_module.train_with_early_stopping

    def fit_loop(trainer: Any, *args: Any, score: Any = None, on_epoch_end: Any = None,
                 **kwargs: Any) -> Any:
        timed_score = timer.wrap("validation", score) if score is not None else None

        def chained(entry: dict[str, Any]) -> None:
            timer.end_epoch()
            if on_epoch_end is not None:
                on_epoch_end(entry)

        return original_fit(trainer, *args, score=timed_score, on_epoch_end=chained, **kwargs)

    member_module.train_with_early_stopping = fit_loop
    select = fitting_module.select_biases

    def select_biases(*args: Any, **kwargs: Any) -> Any:
        started = timer.clock()
        try:
            return select(*args, **kwargs)
        finally:
            timer.once["bias selection"] += timer.clock() - started

    fitting_module.select_biases = select_biases


def profile_last_epoch(epochs: int, operations: list[dict[str, Any]]) -> None:
    """Run epoch ``epochs`` under ``torch.profiler``; print its 25 costliest operations by
    self CPU time and append every operation's totals to ``operations``."""
    trainer_cls = train_module.Trainer
    original_epoch = trainer_cls.train_epoch

    def train_epoch(self: Any) -> Any:
        if self.epoch != epochs - 1:
            return original_epoch(self)
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as profile:
            stats = original_epoch(self)
        averages = profile.key_averages()
        print(averages.table(sort_by="self_cpu_time_total", row_limit=25,
                             max_name_column_width=40))
        operations.extend({"name": a.key, "calls": a.count, "self_cpu_ms": a.self_cpu_time_total
                           / 1e3, "cpu_ms": a.cpu_time_total / 1e3} for a in averages)
        return stats

    trainer_cls.train_epoch = train_epoch  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="ml-10m",
                        help=f"{', '.join(SHAPES)} or USERSxITEMSxRATINGS")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--params", default="{}", help="estimator parameters as JSON")
    parser.add_argument("--data-seed", type=int, default=0)
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter; cpu: time.process_time, the CPU seconds "
                             "of this process (all its threads), less sensitive to other load")
    parser.add_argument("--torch-profile", action="store_true",
                        help="profile the last epoch's operations with torch.profiler")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n_users, n_items, n_ratings = (SHAPES.get(args.shape)
                                   or tuple(int(p) for p in args.shape.split("x")))
    user, item, rating = make_synthetic(n_users, n_items, n_ratings, args.data_seed)
    ratings = autorec.Ratings.from_arrays(user, item, rating, source="synthetic")
    train, _ = autorec.random_split(ratings, 0.1, random_state=0)
    params = {"epochs": args.epochs, "patience": args.epochs + 1, **json.loads(args.params),
              "device": args.device, "random_state": 0}
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    timer = PhaseTimer(torch.device(args.device),
                       time.process_time if args.clock == "cpu" else time.perf_counter)
    instrument(timer)
    operations: list[dict[str, Any]] = []
    if args.torch_profile:
        profile_last_epoch(args.epochs, operations)
    started = time.perf_counter()
    model = autorec.AutoRec(**params).fit(train)
    total = time.perf_counter() - started
    phases = sorted({name for epoch in timer.epochs for name in epoch})
    median = {name: statistics.median(epoch.get(name, 0.0) for epoch in timer.epochs)
              for name in phases}
    print(f"{args.shape}: {len(train):,} training ratings; params {json.dumps(params)}")
    for name in sorted(median, key=median.get, reverse=True):
        print(f"  {name:<16} {median[name]:8.3f} s/epoch")
    first = timer.epochs[0].get("epoch total", 0.0) if timer.epochs else 0.0
    print(f"  first epoch      {first:8.3f} s (with the process's first kernel calls)")
    print(f"  bias selection   {timer.once['bias selection']:8.3f} s (once a fit)")
    print(f"  fit total        {total:8.1f} s ({len(timer.epochs)} epochs, validation RMSE "
          f"{model.validation_rmse_:.4f})")
    out = args.out or f"/tmp/autorec-bench/profile_{args.shape}.json"
    write_json(out, args, {"median_seconds": median, "epochs": timer.epochs,
                           "once_seconds": dict(timer.once),
                           "fit_seconds": total, "validation_rmse": model.validation_rmse_,
                           "last_epoch_operations": operations})
    return 0


if __name__ == "__main__":
    sys.exit(main())
