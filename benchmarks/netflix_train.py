"""I-AutoRec with the default settings on the Netflix-shaped CSV, trained to early stopping:
epochs, seconds, peak memory and validation RMSE against the bias baseline.

Runs the command line itself, as a user would, on the file ``netflix_scale.py`` writes
(480,189 users x 17,770 items x 100,480,507 ratings, planted interaction 1.0, noise 0.4)::

    autorec -v train --data ratings-480189x17770x100480507-s0-i1-n0.4.csv --no-refit \\
        --ranking none --out DIR

in a child process: every training setting at its default (500 hidden units, ``optimizer``
``auto``, at most 200 epochs, patience 10), without the refit on all training ratings (it
would train the chosen number of epochs a second time) and without the ranking model (a
separate model: ``benchmarks/ease_scale.py`` and ``ranking.py`` measure it); ``--plain`` runs
``autorec -v train --data FILE --out DIR`` with nothing left out. It reports the wall seconds
and peak RSS (``getrusage`` of the children; ``/proc`` sampled every 0.2 s to say where the
peak falls), the child's lines time-stamped with the RSS at each, and from its
``metrics.json`` and log the epochs run, the epoch kept, its validation RMSE beside the bias
baseline's (epoch 0: the residual network starts at zero, so its predictions are the baseline
alone) and the training-mean predictor's, and the test RMSE. ``--args`` adds or changes
options (e.g. ``--args "--epochs 1"``).

    python benchmarks/netflix_scale.py --repeat 0     # writes the CSV once (minutes)
    python benchmarks/netflix_train.py                # an hour or more on 2 cores
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import fmt_bytes, write_json
from netflix_scale import default_path

_EPOCH_0 = re.compile(r"epoch 0 \(the untrained network\): validation RMSE ([0-9.]+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=default_path(1.0, 0.4),
                        help="the CSV netflix_scale.py wrote (default: its default file)")
    parser.add_argument("--args", default="", help="more options for autorec train")
    parser.add_argument("--plain", action="store_true",
                        help="keep the refit and the ranking model (autorec train's defaults)")
    parser.add_argument("--limit-gb", type=float, default=10.0)
    parser.add_argument("--out", default="/tmp/autorec-bench/netflix_train.json")
    args = parser.parse_args()
    path = Path(args.path)
    if not path.is_file():
        print(f"{path} is missing: run benchmarks/netflix_scale.py first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="autorec-netflix-") as folder:
        command = [sys.executable, "-m", "autorec", "-v", "train", "--data", str(path),
                   *([] if args.plain else ["--no-refit", "--ranking", "none"]),
                   "--out", folder, *shlex.split(args.args)]
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
    history = metrics["history"]
    found = [_EPOCH_0.search(line) for line in lines]
    baseline = next((float(m.group(1)) for m in found if m), float("nan"))
    kept = metrics["validation_rmse"]
    beats = kept < baseline
    epoch_seconds = sorted(entry["seconds"] for entry in history)
    print(f"sampled RSS high {fmt_bytes(high['rss'])} at {high['at']:.0f} s, after: "
          f"{high['after'][:100]}")
    print(f"wall {seconds:.0f} s (training epochs {sum(epoch_seconds):.0f} s, median epoch "
          f"{epoch_seconds[len(epoch_seconds) // 2]:.0f} s), peak RSS {fmt_bytes(peak)} "
          f"(limit {args.limit_gb:g} GB); {metrics['epochs_run']} epochs run, kept epoch "
          f"{metrics['best_epoch']}: validation RMSE {kept:.4f} against the bias baseline's "
          f"{baseline:.4f} ({'below' if beats else 'NOT below'}) and the training mean's "
          f"{metrics['validation_mean_rmse']:.4f}; test RMSE {metrics['rmse']:.4f} (training "
          f"mean {metrics['test_mean_rmse']:.4f})")
    write_json(args.out, args, {"command": command, "seconds": seconds,
                                "peak_rss_bytes": peak, "sampled_rss_high": high,
                                "baseline_validation_rmse": baseline,
                                "lines": lines, "metrics": metrics})
    return 0 if beats and peak < args.limit_gb * 1e9 else 1


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
