"""EASE's cost at Netflix's item count: Gram matrix and inversion time, peak memory.

A synthetic ratings set (``_common.make_synthetic``: skewed activity and popularity) with
``--items`` items (default Netflix's 17,770), ``--users`` users and ``--ratings`` ratings is
turned into the users x items pattern; :func:`autorec.ranking.ease.gram_matrix` and one
:class:`autorec.ranking.ease.EASE` fit (float32, in place) are timed, with the peak RSS.

Run::

    python benchmarks/ease_scale.py --out runs/ease_scale.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from _common import CpuWatch, RssSampler, fmt_bytes, make_synthetic, peak_rss_bytes, write_json

from autorec.ranking.ease import ease_weights, gram_matrix, modelled_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=17_770)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--ratings", type=int, default=5_000_000)
    parser.add_argument("--lam", type=float, default=250.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    user, item, _ = make_synthetic(args.users, args.items, args.ratings, seed=0)
    matrix = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (user, item)),
                           shape=(args.users, args.items))
    del user, item
    watch = CpuWatch()
    results = {"n_users": args.users, "n_items": args.items, "n_ratings": args.ratings}
    with RssSampler() as rss:
        start = time.perf_counter()
        items = modelled_items(matrix)
        gram = gram_matrix(matrix, items)
        results["gram_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        weights = ease_weights(gram, args.lam, np.float32, overwrite=True)
        results["inversion_seconds"] = time.perf_counter() - start
    results["weights_bytes"] = int(weights.nbytes)
    results["peak_rss_during_fit"] = rss.peak
    results["peak_rss_process"] = peak_rss_bytes()
    results["cpu"] = watch.lap()
    for key, value in results.items():
        print(key, fmt_bytes(value) if "bytes" in key or "rss" in key else value)
    write_json(args.out, args, results)


if __name__ == "__main__":
    main()
