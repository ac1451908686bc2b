"""Will training fit in memory? An estimate made before any weight is allocated.

:func:`check_training_memory` runs at the start of :meth:`autorec.AutoRec.fit`: when the
bytes training needs (:func:`training_bytes`: weights, gradients and Adam state, the largest
batch, the codes at evaluation, a margin; high by a few percent, never by a factor) exceed
the memory the process can still get (:func:`available_bytes`, or the CUDA device's free
memory), it raises :class:`~autorec.exceptions.ResourceError` with both figures and what to
change, instead of an allocator traceback minutes later.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ResourceError, first_line

__all__ = ["MemoryEstimate", "available_bytes", "check_training_memory",
           "memory_errors_as_resource_error", "training_bytes"]

_FLOAT = 4  # bytes of a float32
_INDEX = 8  # bytes of an int64 index
_DENSE_COPIES = 8  # batch_rows x hidden tensors alive at once: pre-activation, activation,
#                    dropout draw and mask, their gradients
_PER_RATING = 48  # bytes per observed rating of a batch: value, column, transpose (column,
#                   permutation), prediction, residual and its gradient, scipy's positions
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2**63

#: A training process at least this large returns its free heap pages at each epoch's start
#: (:func:`release_free_memory`); a smaller one keeps them for the next epoch's allocations.
EPOCH_TRIM_MIN_RESIDENT = 2 << 30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes training needs, by part."""

    parameters: int  # weights and biases, their gradients and Adam's two moments
    batch: int  # the largest batch: dense activations and its sparse structure
    evaluation: int  # the hidden code of every row, computed to predict
    margin: int
    ratings: int = 0  # the training ratings as the trainer holds them

    @property
    def total(self) -> int:
        return self.parameters + self.batch + self.evaluation + self.margin + self.ratings


def weight_bytes(n_inputs: int, hidden: int) -> int:
    """Bytes of one network's weights and biases (float32): what a trained network holds."""
    return (2 * n_inputs * hidden + hidden + n_inputs) * _FLOAT


def training_bytes(n_rows: int, n_inputs: int, hidden: int, batch_rows: int,
                   batch_nnz: int, dense_batches: bool = False, nnz: int = 0
                   ) -> MemoryEstimate:
    """Estimate the bytes training allocates.

    Parameters
    ----------
    n_rows
        Input vectors (items for I-AutoRec, users for U-AutoRec).
    n_inputs
        Length of an input vector (users for I-AutoRec, items for U-AutoRec).
    hidden
        Hidden units.
    batch_rows, batch_nnz
        Rows and observed ratings of the largest batch.
    dense_batches
        Each batch densified (``batch_rows x n_inputs``: the input, the reconstruction and
        its gradient).
    nnz
        Training ratings: the trainer's matrix holds an index, a value and a target each
        (they were left out, and the estimate came out 4x low on 2.7 million ratings).
    """
    parameters = 4 * weight_bytes(n_inputs, hidden)  # values, gradients, Adam's two moments
    batch = (_DENSE_COPIES * batch_rows * hidden * _FLOAT + batch_nnz * _PER_RATING
             + (batch_rows + n_inputs + 2) * _INDEX
             + (3 * batch_rows * n_inputs * _FLOAT if dense_batches else 0))
    evaluation = n_rows * hidden * _FLOAT
    margin = (parameters + batch + evaluation) // 20 + 64 * 2**20
    return MemoryEstimate(parameters, batch, evaluation, margin, nnz * (_INDEX + 2 * _FLOAT))


def available_bytes(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")
                    ) -> tuple[int | None, str]:
    """Memory this process can still allocate, and what limits it.

    The smallest of: ``MemAvailable`` in ``/proc/meminfo``; the room left under the memory
    limit of the process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, the
    folder's and its parents'); the room left under ``RLIMIT_AS``. ``(None, "")`` where none
    of them can be read (not Linux).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    address_room = (max(soft - (_read_kib(proc / "self" / "status", "VmSize:") or 0), 0)
                    if soft != resource.RLIM_INFINITY and soft > 0 else None)
    found = [(room, limit) for room, limit in (
        (_read_kib(proc / "meminfo", "MemAvailable:"), "MemAvailable"),
        (_cgroup_room(proc, cgroup), "cgroup memory limit"),
        (address_room, "address-space limit, ulimit -v")) if room is not None]
    return min(found) if found else (None, "")


def check_training_memory(row_nnz: np.ndarray, n_inputs: int, *, hidden: int, batch_size: int,
                          variant: str, device: Any = "cpu",
                          dense_batches: bool = False, held: int = 0) -> MemoryEstimate:
    """Raise :class:`ResourceError` when training cannot fit in memory.

    Parameters
    ----------
    row_nnz
        Ratings in each row of the training matrix (one row per input vector: per item for
        I-AutoRec).
    n_inputs
        Length of an input vector (users for I-AutoRec).
    hidden, batch_size, variant, dense_batches
        The estimator's settings.
    device
        Where the weights will live: the CPU (host memory) or a CUDA device (its free
        memory).
    held
        Bytes of the fit's other networks, held while this one trains (``--ensemble``,
        ``--variant both``, a list of ``l2`` values).

    Returns
    -------
    MemoryEstimate
        The estimate, when it fits (or when the memory available cannot be known).
    """
    n_rows = len(row_nnz)
    batch_rows = min(batch_size, n_rows)
    if batch_rows >= n_rows:
        batch_nnz = int(row_nnz.sum())
    else:
        batch_nnz = int(np.partition(row_nnz, n_rows - batch_rows)[n_rows - batch_rows:].sum())
    # the trainer's ratings stay in host memory: counted against it, not a GPU's
    on_host = not str(device).startswith("cuda")
    estimate = training_bytes(n_rows, n_inputs, hidden, batch_rows, batch_nnz, dense_batches,
                              nnz=int(row_nnz.sum()) if on_host else 0)
    available, limit = _device_room(device)
    if available is None or estimate.total + held <= available:
        return estimate

    levers = []
    other = "user" if variant == "item" else "item"
    if n_rows < n_inputs:
        levers.append(f"--variant {other} ({n_rows:,} inputs per row instead of {n_inputs:,})")
    levers.append(f"a smaller --hidden (now {hidden:,})")
    if estimate.batch > estimate.total // 10:
        levers.append(f"a smaller --batch-size (now {batch_size:,})")
        if dense_batches:
            levers.append("--no-dense-batches (each batch densified to "
                          f"{batch_rows:,} x {n_inputs:,})")
    if held:
        levers.append("fewer networks (--ensemble, --variant both, a list of --l2 values: "
                      f"{_gb(held)} for the others)")
    raise ResourceError(
        f"not enough memory: training {variant}-AutoRec with {hidden:,} hidden units on "
        f"{n_inputs:,} inputs per row needs about {_gb(estimate.total + held)} "
        f"(weights, gradients and Adam state {_gb(estimate.parameters)}), but "
        f"{_gb(available)} is available ({limit}); try {_join(levers)}")


def check_ranking_memory(ranking: str, n_items: int) -> None:
    """Raise :class:`ResourceError` when the ranking model ``ranking`` asks for cannot fit, so
    that it is said before the networks train: EASE (in ``ease``, ``auto`` and ``blend``)
    holds two ``items x items`` float32 matrices at its peak (the Gram matrix and the
    factorisation's copy) over at most :data:`~autorec.ranking.ease.EASE_ITEM_LIMIT` items."""
    if ranking not in ("ease", "auto", "blend"):
        return
    from .ranking.ease import EASE_ITEM_LIMIT

    items = min(n_items, EASE_ITEM_LIMIT)
    need = 2 * items * items * 4
    available, limit = _host_room()  # every process of a data-parallel run fits its own
    if available is not None and need > available:
        raise ResourceError(
            f"not enough memory: the ranking model EASE (--ranking {ranking}) on {items:,} "
            f"items needs about {_gb(need)}, but {_gb(available)} is available ({limit}); "
            "try --ranking vae or --ranking none")


def check_fit_memory(ranking: str, specs: Sequence[Any], n_users: int, n_items: int,
                     device: Any, column: Callable[[str], np.ndarray], *,
                     several_l2: bool = False) -> None:
    """The checks a fit makes before it trains: the ranking model (every item of the maps is
    rated), then each network of ``specs`` (:class:`~autorec.member.NetworkSpec`) with the
    others' weights held meanwhile (with several ``l2`` values, the last value's too).
    ``column(name)`` gives the ratings' ``user_idx`` or ``item_idx`` to fit."""
    check_ranking_memory(ranking, n_items)
    held = [weight_bytes(n_users if s.variant == "item" else n_items, s.hidden) for s in specs]
    held_all = sum(held) * (2 if several_l2 else 1)
    for spec, own in zip(specs, held, strict=True):
        n_rows, n_inputs = (n_items, n_users) if spec.variant == "item" else (n_users, n_items)
        # ratings per input row (the copied column is freed at once)
        row_counts = np.bincount(column(f"{spec.variant}_idx"), minlength=n_rows)
        check_training_memory(row_counts, n_inputs, hidden=spec.hidden,
                              batch_size=spec.batch_size, variant=spec.variant, device=device,
                              dense_batches=bool(spec.dense_batches), held=held_all - own)


@contextlib.contextmanager
def memory_errors_as_resource_error() -> Iterator[None]:
    """Turn running out of memory inside (torch's or Python's, on the CPU or a GPU) into a
    :class:`~autorec.exceptions.ResourceError` that says what to change."""
    import torch

    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError) \
                and "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        raise ResourceError(
            f"ran out of memory while training ({first_line(exc, 120)}); use a smaller --hidden or "
            "--batch-size, or the other --variant") from None


def release_free_memory(min_resident: int = 0) -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; elsewhere
    nothing). Arrays under 32 MB live on that heap, and after reading or preparing a large
    data set its freed pages (hundreds of MB at 100M ratings) would otherwise stay counted in
    the process's memory while the model is allocated beside them.

    Parameters
    ----------
    min_resident
        Trim only when the process's resident memory is at least this many bytes (where it
        is not known: always): returned pages are faulted back in by the next allocations.
    """
    if not sys.platform.startswith("linux"):
        return
    if min_resident > 0:
        resident = _read_kib(Path("/proc/self/status"), "VmRSS:")
        if resident is not None and resident < min_resident:
            return
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
        pass


def _device_room(device: Any) -> tuple[int | None, str]:
    name = str(device)
    if name.startswith("cuda"):
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(name))
        except (RuntimeError, AssertionError, ValueError):  # no CUDA here: nothing to say
            return None, ""
        return int(free), f"free memory of {name}"
    return _host_room()


def _host_room() -> tuple[int | None, str]:
    """:func:`available_bytes`, shared by the processes of a data-parallel run on this
    machine (torchrun's, or ``train --nproc N``): each holds the whole model, and each passed
    the check against all of the memory."""
    room, limit = available_bytes()
    given = os.environ.get("LOCAL_WORLD_SIZE", "") if "RANK" in os.environ else ""
    shared = int(given) if given.isdigit() else 1
    if room is not None and shared > 1 and "ulimit" not in limit:  # a limit per process
        return room // shared, f"{limit}, shared by this machine's {shared} processes"
    return room, limit


def _gb(n_bytes: int) -> str:
    value = n_bytes / 1e9
    if value >= 1e6:
        return f"{value:.2g} GB"
    return f"{value:,.1f} GB" if value >= 0.1 else f"{math.ceil(n_bytes / 1e6):,} MB"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _read_kib(path: Path, key: str, unit: int = 1024) -> int | None:
    """The ``key: N kB`` field of a /proc file, in bytes (``unit``: 1 for a cgroup's
    ``memory.stat``, whose ``key N`` lines are in bytes)."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * unit
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: Path) -> int | None:
    """The integer a cgroup file holds; ``None`` for ``max`` (no limit) or none to read."""
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _cgroup_room(proc: Path, cgroup: Path) -> int | None:
    """Room under the tightest memory limit of this process's cgroup and its parents."""
    try:
        lines = (proc / "self" / "cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, relative = parts
        # usage counts the page cache, which the kernel reclaims: its inactive part is room
        if hierarchy == "0" and not controllers:
            base, files = cgroup, ("memory.max", "memory.current", "inactive_file ")
        elif "memory" in controllers.split(","):
            base, files = cgroup / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                              "total_inactive_file ")
        else:
            continue
        folder = base / relative.lstrip("/")
        folders = [folder, *folder.parents] if folder.is_dir() else [base]
        for candidate in folders:
            limit = _read_int(candidate / files[0])
            if limit is not None and limit < _UNLIMITED:
                used = (_read_int(candidate / files[1]) or 0) - (
                    _read_kib(candidate / "memory.stat", files[2], unit=1) or 0)
                rooms.append(max(limit - max(used, 0), 0))
            if candidate == base:
                break
    return min(rooms) if rooms else None
