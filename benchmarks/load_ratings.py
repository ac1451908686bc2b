"""Seconds and peak memory to load a large ``::``-separated ratings file (ML-10M layout), or
with ``--format netflix`` the same ratings in the Netflix Prize's own layout.

Writes a synthetic ``ratings.dat`` shaped like MovieLens-10M (``--users`` x ``--items`` x
``--ratings``, seed ``--seed``, lines ``user::item::rating::timestamp``, half-star ratings)
into ``--dir/ml-10m/`` unless it is already there (the default ``--dir`` names the sizes and
the seed; a file in an explicit ``--dir`` is reused only if its line count fits them, and the
JSON says whether the file was written or reused), then times
``autorec.load_dataset("ml-10m", dir, download=False)`` in a fresh process and reports its
wall time (with the first access's lazy import of pandas and pyarrow, as a user sees it, and
that import's share), the CPU seconds of the load and the peak RSS of that process (its
``VmHWM``: ``ru_maxrss`` would keep the high-water mark of the parent it was forked from, which
had just written the file). Every
text file is read block by block (pyarrow's CSV reader, the one reading path).

``--format netflix`` writes the ratings as ``--dir/netflix/combined_data_1.txt`` instead
(``MOVIE:`` lines, then ``user,rating,date`` lines, movies in order, whole stars) and times
``autorec.read_ratings`` of it.

Run::

    python benchmarks/load_ratings.py                      # 10,000,054 ratings, about 280 MB
    python benchmarks/load_ratings.py --format netflix     # the same in the Netflix layout
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import count_lines, fmt_bytes, make_synthetic, write_json

_CHILD = """
import json, resource, sys, time
import autorec
started = time.perf_counter()
load_dataset = autorec.load_dataset  # the lazy import of pandas and pyarrow
imported = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF)
ratings = (autorec.read_ratings(sys.argv[1]) if sys.argv[2] == "netflix"
           else load_dataset("ml-10m", sys.argv[1], download=False))
finished = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
peak = usage.ru_maxrss * 1024
try:  # this process's own high-water mark: ru_maxrss keeps the parent's from before exec
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": finished - started, "import_seconds": imported - started,
                  "load_seconds": finished - imported,
                  "load_cpu_seconds": usage.ru_utime + usage.ru_stime - before.ru_utime
                  - before.ru_stime,
                  "n_ratings": len(ratings), "n_users": ratings.n_users,
                  "n_items": ratings.n_items, "peak_rss_bytes": peak}))
"""


def write_file(path: Path, args: argparse.Namespace) -> None:
    user, item, rating = make_synthetic(args.users, args.items, args.ratings, args.seed)
    rng = np.random.default_rng(args.seed)
    half = rng.random(len(rating)) < 0.2  # some half stars, as ML-10M has
    rating = np.clip(rating - 0.5 * half, 0.5, 5.0)
    stamps = rng.integers(789_652_009, 1_231_131_736, len(rating))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame = pd.DataFrame({"user": user + 1, "item": item + 1, "rating": rating, "t": stamps})
    text = frame.to_csv(sep="\t", header=False, index=False)
    tmp.write_text(text.replace("\t", "::"))
    tmp.replace(path)


def write_netflix(path: Path, args: argparse.Namespace) -> None:
    """The same ratings as :func:`write_file` (whole stars), in the Netflix Prize layout."""
    user, item, rating = make_synthetic(args.users, args.items, args.ratings, args.seed)
    rng = np.random.default_rng(args.seed)
    days = pd.to_datetime(rng.integers(10_957, 13_149, len(rating)), unit="D")
    frame = pd.DataFrame({"user": user + 1, "rating": np.rint(rating).astype(int),
                          "date": days.strftime("%Y-%m-%d"), "item": item + 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for movie, block in frame.sort_values("item", kind="stable").groupby("item", sort=True):
            out.write(f"{movie}:\n")
            out.write(block[["user", "rating", "date"]].to_csv(header=False, index=False))
    tmp.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=69_878)
    parser.add_argument("--items", type=int, default=10_677)
    parser.add_argument("--ratings", type=int, default=10_000_054)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None,
                        help="folder for the synthetic ml-10m/ratings.dat (default "
                        "/tmp/autorec-bench/load/UxIxR-sS, from the options above)")
    parser.add_argument("--format", choices=("ml-10m", "netflix"), default="ml-10m")
    parser.add_argument("--out", default=None,
                        help="default /tmp/autorec-bench/load_ratings[_netflix].json")
    args = parser.parse_args()
    netflix = args.format == "netflix"
    if args.out is None:
        args.out = f"/tmp/autorec-bench/load_ratings{'_netflix' if netflix else ''}.json"

    explicit = args.dir is not None
    if not explicit:
        args.dir = (f"/tmp/autorec-bench/load/{args.users}x{args.items}x{args.ratings}"
                    f"-s{args.seed}")
    path = Path(args.dir) / ("netflix/combined_data_1.txt" if netflix else "ml-10m/ratings.dat")
    reused = path.is_file()
    if reused and explicit:
        # one line a rating, and in the Netflix layout a "MOVIE:" line for each item
        expected = args.ratings + (args.items if netflix else 0)
        lines = count_lines(path)
        if lines != expected:
            parser.error(f"{path} exists with {lines:,} lines, not the {expected:,} of --users "
                         f"--items --ratings; remove it or give another --dir")
    if reused:
        print(f"reusing {path}")
    else:
        started = time.perf_counter()
        (write_netflix if netflix else write_file)(path, args)
        print(f"wrote {path} in {time.perf_counter() - started:.1f}s")
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path) if netflix else args.dir,
                            args.format], capture_output=True, text=True, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["file_bytes"] = path.stat().st_size
    result["reused_file"] = reused
    print(f"loaded {result['n_ratings']:,} ratings ({result['n_users']:,} users, "
          f"{result['n_items']:,} items) from {fmt_bytes(result['file_bytes'])} in "
          f"{result['seconds']:.1f}s ({result['import_seconds']:.1f}s of it importing pandas; "
          f"loading {result['load_cpu_seconds']:.1f} CPU-s); peak RSS of the loading process "
          f"{fmt_bytes(result['peak_rss_bytes'])}")
    write_json(args.out, args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
