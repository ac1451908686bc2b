"""Helpers shared by the benchmark scripts: machine description, memory probes, synthetic data.

Not a benchmark itself. The scripts in this folder import it as ``_common`` (they are run as
``python benchmarks/NAME.py``, which puts this folder first on ``sys.path``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# The shared data sets: name -> file under --data-dir (None: the builtin ML-100K loader).
DATASETS: dict[str, str | None] = {
    "ml-100k": None,
    "filmtrust": "filmtrust/ratings.csv",
    "ciaodvd": "ciaodvd/ratings.csv",
    "jester5k": "jester5k/ratings.csv.gz",
    "epinions-tang": "epinions-tang/ratings.csv.gz",
}


def load(name: str, data_dir: str) -> Any:
    """A shared data set (:data:`DATASETS`) as ``autorec.Ratings``, repeated (user, item) pairs
    merged into their mean rating."""
    import autorec

    relative = DATASETS[name]
    if relative is None:
        return autorec.load_dataset(name, data_dir, download=False)
    return autorec.read_ratings(Path(data_dir) / relative, duplicates="mean")
GB = 1e9
GIB = float(1 << 30)


# -- machine ----------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model name as ``lscpu`` reports it (falls back to /proc/cpuinfo)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_describe() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        # Only src/ matters to the figures: uncommitted changes there make them unreproducible.
        return {"commit": git("rev-parse", "HEAD"),
                "src_dirty": bool(git("status", "--porcelain", "--", "src"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "src_dirty": None}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import scipy
    import torch

    import autorec

    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "autorec_version": autorec.__version__,
        "git": _git_describe(),
        "transparent_hugepage": _read_first_line("/sys/kernel/mm/transparent_hugepage/enabled"),
        "env": {name: value for name, value in os.environ.items()
                if name in _ENV_OF_NOTE or name.startswith("MALLOC_")},
    }


# Settings that change the figures: thread counts and the allocator.
_ENV_OF_NOTE = ("GLIBC_TUNABLES", "LD_PRELOAD", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "AUTOREC_DATA_DIR")


def _read_first_line(path: str) -> str | None:
    try:
        return Path(path).read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def write_json(path: str | os.PathLike[str], args: Any, results: dict[str, Any]) -> Path:
    """Write ``{benchmark, argv, args, started, machine, results}`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": Path(sys.argv[0]).stem,
        "argv": sys.argv,
        "args": vars(args),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def default_data_dir() -> str:
    """``AUTOREC_DATA_DIR`` when set, else ``../shared/data`` next to the repository root."""
    return os.environ.get("AUTOREC_DATA_DIR") or str((REPO_ROOT / ".." / "shared" / "data")
                                                      .resolve())


# -- memory -----------------------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int:
    """Resident set size now, from /proc/self/statm (0 where that does not exist)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Samples the current RSS in a background thread (torch kernels release the GIL).

    Use as a context manager; afterwards ``samples`` holds ``(seconds since start, bytes)``.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, current_rss_bytes()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def timeline(self, points: int = 200) -> list[tuple[float, int]]:
        """At most ``points`` samples, keeping the maximum of each stretch."""
        if len(self.samples) <= points:
            return list(self.samples)
        chunks = np.array_split(np.arange(len(self.samples)), points)
        return [max((self.samples[i] for i in chunk), key=lambda s: s[1]) for chunk in chunks]


# -- interference from other processes -------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall seconds, CPU-seconds busy machine-wide, CPU-seconds used by this process)."""
    wall = time.perf_counter()
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / _TICKS  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        busy = float("nan")
    times = os.times()
    return wall, busy, times.user + times.system


class CpuWatch:
    """How many cores *other* processes kept busy over an interval (from /proc/stat).

    Torch's CPU kernels run one OpenMP thread per core; on a 2-core machine a concurrent
    test run can slow them by an order of magnitude, so every timed interval records this.
    ``lap()`` returns the figures since the previous lap (or since creation).
    """

    def __init__(self) -> None:
        self._last = _cpu_snapshot()

    def lap(self) -> dict[str, float]:
        now = _cpu_snapshot()
        wall = max(now[0] - self._last[0], 1e-9)
        own = now[2] - self._last[2]
        others = max((now[1] - self._last[1]) - own, 0.0)
        self._last = now
        return {"wall_seconds": wall, "own_cores": own / wall, "other_cores": others / wall}


def wait_for_quiet(max_wait: float, threshold: float = 0.2, window: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``max_wait`` seconds) until others use under ``threshold`` cores."""
    started = time.perf_counter()
    watch = CpuWatch()
    while True:
        time.sleep(window)
        other = watch.lap()["other_cores"]
        waited = time.perf_counter() - started
        if other < threshold or waited >= max_wait:
            return {"waited_seconds": waited, "other_cores": other, "quiet": other < threshold}


def fmt_bytes(n: float) -> str:
    return f"{n / GB:.3f} GB ({n / GIB:.3f} GiB)"


# -- synthetic ratings ------------------------------------------------------------------------
def make_synthetic(
    n_users: int,
    n_items: int,
    n_ratings: int,
    seed: int = 0,
    *,
    rank: int = 8,
    user_sigma: float = 1.0,
    item_sigma: float = 1.5,
    interaction: float = 0.6,
    noise: float = 0.6,
    chunk: int = 1 << 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic explicit-ratings set shaped like MovieLens, from ``default_rng(seed)``.

    * Activity and popularity are skewed: user and item weights are lognormal (``sigma``
      1.0 and 1.5), and each rating's user and item are drawn independently in proportion to
      them.
    * Every user and every item has at least one rating, so the id maps have exactly
      ``n_users`` and ``n_items`` entries.
    * There are exactly ``n_ratings`` distinct (user, item) pairs: pairs are drawn in rounds,
      de-duplicated on the flat key ``user * n_items + item``, and the last round is thinned
      at random to hit the count. Nothing of size ``n_users * n_items`` is ever allocated.
    * Ratings are integers 1..5: ``round(3.3 + b_u + b_i + interaction * <p_u, q_i> + e)``
      clipped, with rank-``rank`` unit-variance factors, item biases that grow with popularity and
      Gaussian noise ``e`` (sd ``noise``). The defaults (``interaction`` 0.6, ``noise`` 0.6) are
      the ones every figure in BENCHMARKS.md was measured with unless it says otherwise; with
      them the user and item biases explain most of what can be learnt, so a benchmark about
      the network's accuracy (``netflix_scale.py``) raises ``interaction`` and lowers ``noise``.

    Returns
    -------
    user, item, rating
        ``int64``, ``int64`` and ``float32`` arrays of length ``n_ratings``, in random order.
    """
    if n_ratings > n_users * n_items:
        raise ValueError("more ratings than cells")
    if n_ratings < n_users + n_items:
        raise ValueError("need at least n_users + n_items ratings to cover every id")
    rng = np.random.default_rng(seed)
    user_w = rng.lognormal(0.0, user_sigma, n_users)
    item_w = rng.lognormal(0.0, item_sigma, n_items)
    user_p = user_w / user_w.sum()
    item_p = item_w / item_w.sum()
    width = np.int64(n_items)

    # Cover every user and every item once, then top up with popularity-weighted pairs.
    # (np.unique, np.isin and np.union1d on sorted arrays, done by sorting, binary search
    # and merging: the same arrays, without numpy's hash-based unique or a 2n-key argsort,
    # which take minutes and several GB at 10^8 ratings.)
    cover = np.arange(n_users, dtype=np.int64) * width
    cover += rng.choice(n_items, n_users, p=item_p)
    cover_items = rng.choice(n_users, n_items, p=user_p).astype(np.int64) * width
    cover_items += np.arange(n_items, dtype=np.int64)
    keys = _sorted_unique(np.concatenate([cover, cover_items]))
    del cover, cover_items
    while len(keys) < n_ratings:
        need = n_ratings - len(keys)
        draw = int(need * 1.05) + 1024
        candidates = rng.choice(n_users, draw, p=user_p).astype(np.int64, copy=False)
        candidates *= width
        candidates += rng.choice(n_items, draw, p=item_p)
        candidates = _sorted_unique(candidates)
        candidates = candidates[~_sorted_contains(keys, candidates)]
        if len(candidates) > need:
            candidates = rng.choice(candidates, need, replace=False)
        keys = np.concatenate([keys, candidates])  # disjoint: a merge gives their union
        del candidates
        keys.sort(kind="stable")  # two sorted runs (or a sorted run and a short one)
    if len(keys) > n_ratings:  # only possible when the cover alone exceeds the count
        raise ValueError("n_ratings too small for the cover")
    keys = keys[rng.permutation(len(keys))]
    user = keys // width
    item = keys % width
    del keys

    scale = rank ** -0.25  # <p_u, q_i> has unit variance
    user_f = (rng.standard_normal((n_users, rank)) * scale).astype(np.float32)
    item_f = (rng.standard_normal((n_items, rank)) * scale).astype(np.float32)
    log_pop = np.log(item_w)
    user_b = rng.normal(0.0, 0.35, n_users)
    item_b = rng.normal(0.0, 0.35, n_items) + 0.25 * (log_pop - log_pop.mean()) / item_sigma
    rating = np.empty(n_ratings, dtype=np.float32)
    for start in range(0, n_ratings, chunk):
        u = user[start:start + chunk]
        i = item[start:start + chunk]
        score = (3.3 + user_b[u] + item_b[i]
                 + interaction * np.einsum("kr,kr->k", user_f[u], item_f[i],
                                           dtype=np.float64)
                 + rng.normal(0.0, noise, len(u)))
        rating[start:start + chunk] = np.clip(np.rint(score), 1, 5)
    return user, item, rating


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for integers, by sorting ``values`` in place."""
    values.sort()
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _sorted_contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_keys)`` for a sorted ``sorted_keys``, by binary search."""
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    position = np.searchsorted(sorted_keys, values)
    np.minimum(position, len(sorted_keys) - 1, out=position)
    return sorted_keys[position] == values


def describe_synthetic(user: np.ndarray, item: np.ndarray, rating: np.ndarray) -> dict[str, Any]:
    """Shape and skew of a ratings set (for the JSON)."""
    per_user = np.bincount(user)
    per_item = np.bincount(item)
    values, counts = np.unique(rating, return_counts=True)
    return {
        "n_users": int(np.count_nonzero(per_user)),
        "n_items": int(np.count_nonzero(per_item)),
        "n_ratings": len(rating),
        "ratings_per_user": {"min": int(per_user.min()), "median": float(np.median(per_user)),
                             "max": int(per_user.max())},
        "ratings_per_item": {"min": int(per_item.min()), "median": float(np.median(per_item)),
                             "max": int(per_item.max())},
        "rating_mean": float(rating.mean(dtype=np.float64)),
        "rating_std": float(rating.std(dtype=np.float64)),
        "rating_histogram": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
    }


def add_machine_options(parser: Any, *, wait_quiet: float) -> None:
    """The options every timed benchmark shares: ``--device``, ``--threads``, ``--wait-quiet``."""
    parser.add_argument("--device", default="cpu",
                        help="where to train: cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (None: leave torch's default)")
    parser.add_argument("--wait-quiet", type=float, default=wait_quiet,
                        help="first wait up to this many seconds for other processes to leave "
                             "the CPUs idle; affects timing only")


def count_lines(path: Path) -> int:
    """Newlines in ``path``, read in 16 MiB blocks."""
    lines = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
    return lines
