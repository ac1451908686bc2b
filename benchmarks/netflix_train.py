"""One epoch of I-AutoRec (hidden 500) on the Netflix-shaped CSV: seconds and peak memory.

Runs the command line itself, as a user would, on the file ``netflix_scale.py`` writes
(480,189 users x 17,770 items x 100,480,507 ratings)::

    autorec train --data ratings.csv --hidden 500 --epochs 1 --no-refit --optimizer adam \\
        --out DIR

in a child process, and reports its wall seconds and peak RSS (``getrusage`` of the
children), the phases from its progress lines, and from its ``metrics.json`` the validation
RMSE after the epoch beside the training-mean predictor's on the same validation part, and
the test RMSE. ``--args`` adds or changes options (e.g. ``--args "--optimizer lazy_adam"``).

    python benchmarks/netflix_scale.py --repeat 0     # writes the CSV once (minutes)
    python benchmarks/netflix_train.py
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import fmt_bytes, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default="/tmp/autorec-bench/netflix/ratings.csv")
    parser.add_argument("--args", default="", help="more options for autorec train")
    parser.add_argument("--limit-gb", type=float, default=12.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/netflix_train.json")
    args = parser.parse_args()
    path = Path(args.path)
    if not path.is_file():
        print(f"{path} is missing: run benchmarks/netflix_scale.py first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="autorec-netflix-") as folder:
        command = [sys.executable, "-m", "autorec", "train", "--data", str(path), "--hidden",
                   "500", "--epochs", "1", "--no-refit", "--optimizer", "adam", "--out", folder,
                   *shlex.split(args.args)]
        print("$", " ".join(command), flush=True)
        started = time.perf_counter()
        lines = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as child:
            assert child.stdout is not None
            for line in child.stdout:
                stamped = f"[{time.perf_counter() - started:7.1f}s] {line.rstrip()}"
                lines.append(stamped)
                print(stamped, flush=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if child.returncode != 0:
            print(f"autorec train failed with status {child.returncode}", file=sys.stderr)
            return 1
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
    below = metrics["validation_rmse"] < metrics["validation_mean_rmse"]
    print(f"wall {seconds:.0f} s, peak RSS {fmt_bytes(peak)} (limit {args.limit_gb:g} GB); "
          f"validation RMSE {metrics['validation_rmse']:.4f} after {metrics['epochs']} epoch, "
          f"training-mean predictor {metrics['validation_mean_rmse']:.4f} "
          f"({'below' if below else 'NOT below'}); test RMSE {metrics['rmse']:.4f} "
          f"(mean predictor {metrics['test_mean_rmse']:.4f}); epoch "
          f"{metrics['history'][-1]['seconds']:.0f} s")
    write_json(args.out, args, {"command": command, "seconds": seconds,
                                "peak_rss_bytes": peak, "lines": lines, "metrics": metrics})
    return 0 if below and peak < args.limit_gb * 1e9 else 1


if __name__ == "__main__":
    sys.exit(main())
