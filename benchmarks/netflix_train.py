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
import threading
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
        lines: list[str] = []
        high = {"rss": 0, "after": "", "at": 0.0}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1) as child:
            assert child.stdout is not None
            watcher = threading.Thread(target=_watch_rss, args=(child, high, lines, started),
                                       daemon=True)
            watcher.start()
            for line in child.stdout:
                now, rss = time.perf_counter() - started, _rss(child.pid) / 1e9
                stamped = f"[{now:7.1f}s {rss:5.2f} GB] {line.rstrip()}"
                lines.append(stamped)
                print(stamped, flush=True)
        watcher.join()
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if child.returncode != 0:
            print(f"autorec train failed with status {child.returncode}", file=sys.stderr)
            return 1
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
    epoch_rmse = metrics["history"][-1]["validation_rmse"]
    below = epoch_rmse < metrics["validation_mean_rmse"]
    print(f"sampled RSS high {fmt_bytes(high['rss'])} at {high['at']:.0f} s, after: "
          f"{high['after'][:100]}")
    print(f"wall {seconds:.0f} s, peak RSS {fmt_bytes(peak)} (limit {args.limit_gb:g} GB); "
          f"validation RMSE {epoch_rmse:.4f} after {metrics['epochs']} epoch (kept: epoch "
          f"{metrics['best_epoch']}, {metrics['validation_rmse']:.4f}; epoch 0 is the "
          "baseline alone), "
          f"training-mean predictor {metrics['validation_mean_rmse']:.4f} "
          f"({'below' if below else 'NOT below'}); test RMSE {metrics['rmse']:.4f} "
          f"(mean predictor {metrics['test_mean_rmse']:.4f}); epoch "
          f"{metrics['history'][-1]['seconds']:.0f} s")
    write_json(args.out, args, {"command": command, "seconds": seconds,
                                "peak_rss_bytes": peak, "sampled_rss_high": high,
                                "lines": lines, "metrics": metrics})
    return 0 if below and peak < args.limit_gb * 1e9 else 1


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid`` now (0 once it is gone)."""
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _watch_rss(child: subprocess.Popen, high: dict, lines: list[str], started: float) -> None:
    """Sample the child's resident memory every 0.2 s; keep the highest and the progress
    line printed before it (where in the run the peak falls)."""
    while child.poll() is None:
        rss = _rss(child.pid)
        if rss > high["rss"]:
            high.update(rss=rss, at=time.perf_counter() - started,
                        after=lines[-1] if lines else "")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
