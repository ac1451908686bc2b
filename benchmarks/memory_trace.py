"""Where a command's memory rises: runs ``autorec ARGS`` in this process while a thread samples
the RSS every 10 ms and, at each change of at least ``--step`` MB after ``--after`` seconds,
records the main thread's innermost frames; prints those at or above ``--show-above`` GB.

Found the Netflix-shape run's peaks (BENCHMARKS.md, "Netflix shape to early stopping")::

    python benchmarks/memory_trace.py --after 300 --show-above 9.75 -- -v train \\
        --data /tmp/autorec-bench/netflix/ratings-480189x17770x100480507-s0-i1-n0.4.csv \\
        --no-refit --ranking none --out /tmp/autorec-bench/trace --epochs 2

A diagnostic: the sampler costs little, but the frames are those running when the sample was
taken, not necessarily the allocation's.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback

from _common import current_rss_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=float, default=0.0, help="seconds before recording")
    parser.add_argument("--step", type=float, default=8.0, help="MB of change to record")
    parser.add_argument("--show-above", type=float, default=0.0, help="GB to print from")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="autorec's arguments, after --")
    args = parser.parse_args()
    command = args.args[1:] if args.args[:1] == ["--"] else args.args
    records: list[tuple[float, int, str]] = []
    main_thread = threading.get_ident()
    started = time.perf_counter()

    def watch() -> None:
        last = 0
        while True:
            rss = current_rss_bytes()
            elapsed = time.perf_counter() - started
            if abs(rss - last) >= args.step * 1e6:
                last = rss
                frame = sys._current_frames().get(main_thread)
                if elapsed >= args.after and frame is not None:
                    frames = traceback.extract_stack(frame)[-args.frames:]
                    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}"
                                        for f in reversed(frames))
                    records.append((elapsed, rss, where))
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    from autorec.cli.main import main as autorec_main

    try:
        status = autorec_main(command)
    finally:
        peak = max(records, key=lambda r: r[1], default=None)
        for elapsed, rss, where in records:
            if rss >= args.show_above * 1e9:
                print(f"{elapsed:8.2f}s {rss / 1e9:7.3f} GB  {where}")
        if peak is not None:
            print(f"highest recorded: {peak[1] / 1e9:.3f} GB at {peak[0]:.1f}s  {peak[2]}")
    return status


if __name__ == "__main__":
    sys.exit(main())
