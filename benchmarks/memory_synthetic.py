"""Peak memory of training AutoRec on a large synthetic ratings set (the 4 GB contract).

The contract: peak memory while training I-AutoRec (hidden 500) for one epoch on a synthetic
100,000 users x 20,000 items x 2,000,000 ratings set stays under 4 GB, where the dense
users x items float32 input matrix alone would take 8 GB.

What it does
    1. Generates the ratings with ``numpy.random.default_rng(--seed)`` (see
       ``_common.make_synthetic``): lognormal user activity and item popularity, integer
       ratings 1..5 from a low-rank model plus noise, exactly ``--ratings`` distinct pairs,
       every user and item rated at least once. Nothing dense is ever allocated.
    2. Builds :class:`autorec.data.Ratings` with ``Ratings.from_arrays``.
    3. Trains ``autorec.AutoRec(variant, hidden, epochs, device, random_state=0, **params)``
       (``--device``, default ``cpu``; on CUDA it also reports torch's peak GPU memory); the
       library's defaults otherwise (a validation part, the bias baseline, lazy Adam).

What it reports
    * Peak RSS of the whole process (``getrusage(RUSAGE_SELF).ru_maxrss``) after the imports,
      after data generation, after building ``Ratings`` and after training; ``ru_maxrss``
      never goes down, so the last figure is the peak of the whole run, and the contract is
      checked against it (``--limit-gb``, decimal GB, default 4).
    * The RSS sampled every 20 ms during ``fit`` (peak and a coarse timeline), to see which
      phase holds the memory.
    * Seconds per epoch (``history_``) and the size of the dense float32 matrix it avoids.

Run (under a minute on 2 idle cores; the epoch itself is ~30 s)::

    python benchmarks/memory_synthetic.py                       # the contract's defaults
    python benchmarks/memory_synthetic.py --variant user --out /tmp/mem_user.json

Exit status is 0 when the peak is under the limit, 1 otherwise.

On Linux/glibc most of the epoch's system time is page faults: every step allocates
gradient-sized (n_inputs x hidden float32, 200 MB here) buffers that glibc maps fresh and
unmaps on free. ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc >= 2.35, transparent huge
pages in ``madvise`` or ``always`` mode) maps them with huge pages: same peak, far fewer
faults, a faster epoch. The JSON records ``GLIBC_TUNABLES`` when set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

# Run as a script: this folder is on sys.path, so the shared helpers import directly.
from _common import (
    GB,
    CpuWatch,
    RssSampler,
    add_machine_options,
    current_rss_bytes,
    describe_synthetic,
    fmt_bytes,
    make_synthetic,
    peak_rss_bytes,
    wait_for_quiet,
    write_json,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Peak RSS of one AutoRec training run on a synthetic ratings set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=100_000, help="number of users")
    parser.add_argument("--items", type=int, default=20_000, help="number of items")
    parser.add_argument("--ratings", type=int, default=2_000_000,
                        help="number of distinct (user, item) ratings")
    parser.add_argument("--hidden", type=int, default=500, help="hidden units")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs")
    parser.add_argument("--variant", choices=("item", "user"), default="item",
                        help="item = I-AutoRec, user = U-AutoRec")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--params", default="{}",
                        help="other estimator parameters as JSON, e.g. '{\"optimizer\": \"adam\"}'")
    parser.add_argument("--limit-gb", type=float, default=4.0,
                        help="contract limit on the peak RSS, in GB (1e9 bytes)")
    add_machine_options(parser, wait_quiet=0.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/memory_synthetic.json",
                        help="where to write the JSON results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    import autorec
    from autorec.data import Ratings

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    stages: dict[str, dict[str, int]] = {}

    def stage(name: str) -> None:
        stages[name] = {"peak_rss_bytes": peak_rss_bytes(), "rss_bytes": current_rss_bytes()}

    stage("after_imports")

    started = time.perf_counter()
    user, item, rating = make_synthetic(args.users, args.items, args.ratings, args.seed)
    generate_seconds = time.perf_counter() - started
    shape = describe_synthetic(user, item, rating)
    stage("after_generation")

    ratings = Ratings.from_arrays(user, item, rating, source="synthetic")
    del user, item, rating
    stage("after_ratings")

    params = json.loads(args.params)
    model = autorec.AutoRec(**{"variant": args.variant, "hidden": args.hidden,
                               "epochs": args.epochs, "device": args.device,
                               "random_state": 0, **params})
    on_cuda = args.device.startswith("cuda")
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    quiet = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    watch = CpuWatch()
    started = time.perf_counter()
    with RssSampler() as sampler:
        model.fit(ratings)
    fit_seconds = time.perf_counter() - started
    cpu = watch.lap()
    stage("after_training")

    n_rows, n_inputs = model.members_[0].matrix.shape
    params = sum(p.numel() for m in model.members_ for p in m.net.parameters())
    dense_bytes = args.users * args.items * 4
    peak = stages["after_training"]["peak_rss_bytes"]
    limit = args.limit_gb * GB
    results = {
        "data": shape,
        "generate_seconds": generate_seconds,
        "dense_float32_matrix_bytes": dense_bytes,
        "stages": stages,
        "fit_seconds": fit_seconds,
        "fit_cpu": cpu,
        "wait_quiet": quiet,
        "epochs": model.history_,
        "training_matrix_shape": [n_rows, n_inputs],
        "n_parameters": params,
        "parameter_bytes": params * 4,
        "fit_rss_sampled_peak_bytes": sampler.peak,
        "fit_rss_timeline": sampler.timeline(),
        "peak_rss_bytes": peak,
        "limit_bytes": limit,
        "passed": peak < limit,
        "cuda_max_memory_allocated_bytes": torch.cuda.max_memory_allocated() if on_cuda else None,
    }

    print(f"synthetic set: {shape['n_users']:,} users x {shape['n_items']:,} items x "
          f"{shape['n_ratings']:,} ratings (seed {args.seed}), generated in "
          f"{generate_seconds:.1f}s; rating mean {shape['rating_mean']:.2f}, "
          f"max ratings per item {shape['ratings_per_item']['max']:,}, per user "
          f"{shape['ratings_per_user']['max']:,}")
    print(f"dense users x items float32 matrix would take {fmt_bytes(dense_bytes)}")
    print(f"{args.variant}-AutoRec hidden {args.hidden}: training matrix {n_rows:,} x "
          f"{n_inputs:,}, {params:,} parameters ({fmt_bytes(params * 4)}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, values in stages.items():
        print(f"  {name:<17} peak RSS {fmt_bytes(values['peak_rss_bytes'])}, "
              f"RSS now {fmt_bytes(values['rss_bytes'])}")
    print(f"  during fit (sampled every 20 ms): max RSS {fmt_bytes(sampler.peak)}")
    for entry in model.history_:
        print(f"  epoch {entry['epoch']}: {entry['seconds']:.1f}s, "
              f"train loss {entry['train_loss']:.4f}")
    if cpu["other_cores"] > 0.2:
        print(f"  WARNING: other processes kept {cpu['other_cores']:.2f} cores busy during fit; "
              "the epoch time is inflated (the memory figures are not affected)")
    if on_cuda:
        print(f"  GPU: max memory allocated by torch "
              f"{fmt_bytes(results['cuda_max_memory_allocated_bytes'])}")
    verdict = "PASS" if results["passed"] else "FAIL"
    print(f"{verdict}: peak RSS {fmt_bytes(peak)} vs limit {args.limit_gb:g} GB")
    path = write_json(args.out, args, results)
    print(f"wrote {path}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
