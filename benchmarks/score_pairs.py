"""Scoring (code row, output) pairs at Netflix shape: torch's per-pair gathers against the
compiled SDDMM kernel grouped by output (``autorec.member._score_pairs``), in one process.

    python benchmarks/score_pairs.py            # 4.5M pairs, 17,770 x 500 codes, 480,189 users

Random codes and decoder weights (seed 0); reports wall and CPU seconds of each (the second
of two calls) and the largest difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from autorec.member import _score_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--items", type=int, default=17_770)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=4_500_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    weight = torch.randn(args.users, args.hidden) * 0.01
    codes = torch.rand(args.items, args.hidden)
    users = rng.integers(0, args.users, args.pairs)
    items = rng.integers(0, args.items, args.pairs)

    def gathers() -> np.ndarray:
        out = np.empty(args.pairs)
        u, i = torch.from_numpy(users), torch.from_numpy(items)
        with torch.no_grad():
            for s in range(0, args.pairs, 1 << 16):
                part = slice(s, s + (1 << 16))
                out[part] = torch.einsum("kh,kh->k", codes.index_select(0, i[part]),
                                         weight.index_select(0, u[part])).double().numpy()
        return out

    def kernel() -> np.ndarray:
        return _score_pairs(codes, weight, items, users).astype(np.float64)

    results = {}
    for name, run in (("torch gathers", gathers), ("compiled kernel", kernel)):
        run()  # compiles the kernel; warms the caches
        wall, cpu = time.perf_counter(), time.process_time()
        results[name] = run()
        print(f"{name}: {time.perf_counter() - wall:.2f} s wall, "
              f"{time.process_time() - cpu:.2f} CPU s")
    difference = np.abs(results["torch gathers"] - results["compiled kernel"]).max()
    print(f"largest difference {difference:.2e}")


if __name__ == "__main__":
    main()
