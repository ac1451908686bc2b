"""Seconds and peak memory to load a Netflix-shaped ratings CSV (100,480,507 ratings).

Writes a synthetic ``user_id,item_id,rating`` CSV shaped like the Netflix Prize data
(``--users`` 480,189 x ``--items`` 17,770, ``--ratings`` 100,480,507 integer ratings 1-5 from
the planted low-rank model of ``_common.make_synthetic``, seed ``--seed``, random row order,
ids 1-based) to ``--path`` unless it is already there (about 1.4 GB; outside the repository),
then loads it with ``autorec.read_ratings`` in a fresh process, ``--repeat`` times, and
reports each load's wall seconds, CPU seconds and peak RSS, with the reader's progress lines
on stderr.

The planted model's interaction term is ``--interaction`` 1.0 and its noise ``--noise`` 0.4
(``make_synthetic``'s defaults, 0.6 and 0.6, leave too little for a network to learn beyond
the user and item biases: BENCHMARKS.md, issue 15); the default ``--path`` names them with the
sizes and the seed, so a file written with other settings is never taken for this one. An
explicit ``--path`` that exists is loaded only if its line count is ``--ratings`` + 1 (the
header); the JSON says whether the file was written or reused.

Run::

    python benchmarks/netflix_scale.py                         # writes the file once (minutes)
    python benchmarks/netflix_scale.py --repeat 3
    rm /tmp/autorec-bench/netflix/ratings-480189x17770x100480507-s0-i1-n0.4.csv   # 1.4 GB
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO_ROOT,
    count_lines,
    fmt_bytes,
    make_synthetic,
    peak_rss_bytes,
    write_json,
)

_CHILD = """
import json, resource, sys, time
started = time.perf_counter()
import autorec
read_ratings = autorec.read_ratings  # the lazy import of pandas and pyarrow, not timed
imported = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF)
ratings = read_ratings(sys.argv[1], progress=lambda p: print(p, file=sys.stderr, flush=True))
finished = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": finished - imported, "import_seconds": imported - started,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime - before.ru_utime
                  - before.ru_stime,
                  "peak_rss_bytes": usage.ru_maxrss * 1024, "n_ratings": len(ratings),
                  "n_users": ratings.n_users, "n_items": ratings.n_items,
                  "user_id_dtype": str(ratings.users.raw_ids.dtype),
                  "rating_mean": float(ratings.rating.mean(dtype="float64"))}))
"""


def default_path(interaction: float = 1.0, noise: float = 0.4, users: int = 480_189,
                 items: int = 17_770, ratings: int = 100_480_507, seed: int = 0) -> str:
    """Where the CSV of these settings is written unless ``--path`` says otherwise."""
    return (f"/tmp/autorec-bench/netflix/ratings-{users}x{items}x{ratings}-s{seed}"
            f"-i{interaction:g}-n{noise:g}.csv")


def write_file(path: Path, args: argparse.Namespace) -> dict[str, float]:
    """Generate the ratings and write them as CSV (atomically); seconds and memory spent."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    user, item, rating = make_synthetic(args.users, args.items, args.ratings, args.seed,
                                        interaction=args.interaction, noise=args.noise)
    generated = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    chunk = 1 << 22
    with open(tmp, "wb") as handle:
        handle.write(b"user_id,item_id,rating\n")
        for start in range(0, len(rating), chunk):
            stop = start + chunk
            table = pa.table({"user_id": (user[start:stop] + 1).astype(np.int32),
                              "item_id": (item[start:stop] + 1).astype(np.int32),
                              "rating": rating[start:stop].astype(np.int8)})
            pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False))
    tmp.replace(path)
    return {"generate_seconds": generated - started,
            "write_seconds": time.perf_counter() - generated,
            "writer_peak_rss_bytes": peak_rss_bytes()}


def load_once(path: Path) -> dict[str, object]:
    """Load ``path`` in a fresh process: its figures, with the load average before."""
    load_average = os.getloadavg()[0]
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                           text=True, check=True, cwd=REPO_ROOT)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["load_average_before"] = load_average
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--items", type=int, default=17_770)
    parser.add_argument("--ratings", type=int, default=100_480_507)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interaction", type=float, default=1.0,
                        help="weight of the planted rank-8 term (make_synthetic)")
    parser.add_argument("--noise", type=float, default=0.4,
                        help="sd of the planted model's Gaussian noise (make_synthetic)")
    parser.add_argument("--path", default=None,
                        help="the CSV to write (once) and load; never inside the repository "
                        "(default: /tmp/autorec-bench/netflix/ratings-UxIxR-sS-iI-nN.csv, "
                        "from the options above); an existing file is loaded only if it has "
                        "--ratings lines and a header")
    parser.add_argument("--repeat", type=int, default=1, help="loads, each in a new process")
    parser.add_argument("--out", default="/tmp/autorec-bench/netflix_scale.json")
    args = parser.parse_args()

    explicit = args.path is not None
    if not explicit:
        args.path = default_path(args.interaction, args.noise, args.users, args.items,
                                 args.ratings, args.seed)
    path = Path(args.path).resolve()
    if path.is_relative_to(REPO_ROOT):
        parser.error(f"--path {path} is inside the repository; give one outside it")
    results: dict[str, object] = {"reused_file": path.is_file()}
    if path.is_file() and explicit:
        lines = count_lines(path)
        if lines != args.ratings + 1:
            parser.error(f"--path {path} exists with {max(lines - 1, 0):,} ratings, not --ratings "
                         f"{args.ratings:,}; remove it or give another --path")
    if path.is_file():
        print(f"reusing {path}")
    else:
        written = write_file(path, args)
        results["written"] = written
        print(f"wrote {path} ({fmt_bytes(path.stat().st_size)}): generated in "
              f"{written['generate_seconds']:.0f}s, written in {written['write_seconds']:.0f}s, "
              f"peak RSS {fmt_bytes(written['writer_peak_rss_bytes'])}")
    results["file_bytes"] = path.stat().st_size
    loads = []
    for _ in range(args.repeat):
        result = load_once(path)
        loads.append(result)
        print(f"loaded {result['n_ratings']:,} ratings ({result['n_users']:,} users, "
              f"{result['n_items']:,} items) in {result['seconds']:.1f}s "
              f"({result['cpu_seconds']:.0f} CPU-s, load average before "
              f"{result['load_average_before']:.1f}); peak RSS "
              f"{fmt_bytes(result['peak_rss_bytes'])}")
    results["loads"] = loads
    write_json(args.out, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
