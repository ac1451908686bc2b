"""Compiled CPU kernels for a training batch (Numba), iterating over the *touched* columns.

The torch kernels of :mod:`autorec.sparse` walk a batch row by row: every observed rating
reads one weight row (2 KB at 500 hidden units) from memory, so a batch of 256 items with
300k ratings reads 600 MB, and torch's CPU CSR products run at about 1 GFLOP/s. These
kernels walk the batch's compact transpose instead: each weight row a batch touches is loaded
once, and the small dense side (the batch's ``rows x hidden`` codes or their gradient, 512 KB)
stays in cache. The work per batch is the same multiply-adds, with a fraction of the memory
traffic (BENCHMARKS.md, "Kernel choices").

* :func:`spmm` -- the encoder ``X @ W`` (each thread sums its share of the touched columns
  into its own ``rows x hidden`` block; the blocks are added at the end);
* :func:`sddmm` -- the decoder at the observed positions, ``H[i] . W[u]``;
* :func:`decoder_backward` -- both gradients of :func:`sddmm` in one pass over ``W``'s
  touched rows;
* :func:`weight_grad` -- ``X^T @ G`` for the touched rows;
* :func:`adam_rows` -- Adam on the touched rows, in place, with an L2 term per row;
* :func:`weight_grad_stepped`, :func:`decoder_backward_stepped` -- the two gradient kernels
  a block of touched rows at a time, each block stepped as soon as it is computed (the
  touched rows' whole gradient is never held).

:func:`sddmm` also scores any (code row, output) pairs (`autorec.member.Member.reconstruct`).

Each function takes and returns torch CPU tensors (shared memory with NumPy, no copies). They
compute the same sums as the torch path in another order, so results agree to float32
rounding, not bitwise. The kernels are compiled on first use and cached on disk
(``cache=True``); :func:`available` says whether Numba is installed and allowed
(``AUTOREC_KERNELS=torch`` turns them off).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BlockStep", "adam_rows", "available", "decoder_backward", "decoder_backward_stepped",
           "sddmm", "spmm", "torch_threads_handed_over", "weight_grad", "weight_grad_stepped"]


@functools.cache
def _numba() -> Any:
    """The compiled kernels, or ``None`` where Numba is missing or turned off."""
    if os.environ.get("AUTOREC_KERNELS", "").lower() == "torch":
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; a broken install falls back
        return None
    return _compile(numba)


def available() -> bool:
    """Whether the compiled kernels can run (Numba importable, not turned off)."""
    return _numba() is not None


def _compile(numba: Any) -> Any:
    # Numba's own thread pool, not OpenMP: Numba's OpenMP layer loads the system's libgomp
    # (it names the file libgomp.so.1.0.0), a second runtime beside torch's, whose spinning
    # workers halved the speed of both on 2 cores (BENCHMARKS.md). torch's own workers are
    # kept from spinning by torch_threads_handed_over. The pool takes one parallel call at a
    # time, which _LOCK ensures. Only before Numba's first parallel call.
    if os.environ.get("NUMBA_THREADING_LAYER") is None:
        numba.config.THREADING_LAYER = "workqueue"
    njit = numba.njit
    prange = numba.prange
    options = {"parallel": True, "fastmath": True, "cache": True, "nogil": True}

    # Each loop over a column's ratings takes them two at a time: the touched weight row (or
    # gradient row) is then loaded and stored once per pair instead of once per rating (about
    # 10-20 % faster at ML-1M shape). Arrays are indexed in 2-D rather than through row
    # views, which cost Numba a reference count per rating.

    @njit(**options)
    def spmm_t(t_crow, t_col, vals_t, touched, weight, bounds, parts):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            parts[t] = 0.0
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    v0, v1 = vals_t[p], vals_t[p + 1]
                    for h in range(hidden):
                        w = weight[u, h]
                        parts[t, i0, h] += v0 * w
                        parts[t, i1, h] += v1 * w
                    p += 2
                if p < end:
                    i0, v0 = t_col[p], vals_t[p]
                    for h in range(hidden):
                        parts[t, i0, h] += v0 * weight[u, h]

    @njit(**options)
    def sddmm_t(t_crow, t_col, t_perm, touched, codes, weight, bounds, out):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    for h in range(hidden):
                        w = weight[u, h]
                        s0 += codes[i0, h] * w
                        s1 += codes[i1, h] * w
                    out[t_perm[p]] = s0
                    out[t_perm[p + 1]] = s1
                    p += 2
                if p < end:
                    i0 = t_col[p]
                    s0 = np.float32(0.0)
                    for h in range(hidden):
                        s0 += codes[i0, h] * weight[u, h]
                    out[t_perm[p]] = s0

    @njit(**options)
    def grad_rows_t(t_crow, t_col, vals_t, dense, bounds, out, out_rows,
                    accumulate):  # pragma: no cover
        hidden = dense.shape[1]
        for t in prange(len(bounds) - 1):
            for j in range(bounds[t], bounds[t + 1]):
                o = out_rows[j]
                if not accumulate:
                    out[o] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    v0, v1 = vals_t[p], vals_t[p + 1]
                    for h in range(hidden):
                        out[o, h] += v0 * dense[i0, h] + v1 * dense[i1, h]
                    p += 2
                if p < end:
                    i0, v0 = t_col[p], vals_t[p]
                    for h in range(hidden):
                        out[o, h] += v0 * dense[i0, h]

    @njit(**options)
    def dec_backward_t(t_crow, t_col, grad_t, touched, codes, weight, bounds, out, out_rows,
                       accumulate, parts):  # pragma: no cover
        hidden = weight.shape[1]
        for t in prange(len(bounds) - 1):
            parts[t] = 0.0
            for j in range(bounds[t], bounds[t + 1]):
                u = touched[j]
                o = out_rows[j]
                if not accumulate:
                    out[o] = 0.0
                p, end = t_crow[j], t_crow[j + 1]
                while p + 1 < end:
                    i0, i1 = t_col[p], t_col[p + 1]
                    g0, g1 = grad_t[p], grad_t[p + 1]
                    for h in range(hidden):
                        w = weight[u, h]
                        out[o, h] += g0 * codes[i0, h] + g1 * codes[i1, h]
                        parts[t, i0, h] += g0 * w
                        parts[t, i1, h] += g1 * w
                    p += 2
                if p < end:
                    i0, g0 = t_col[p], grad_t[p]
                    for h in range(hidden):
                        out[o, h] += g0 * codes[i0, h]
                        parts[t, i0, h] += g0 * weight[u, h]

    @njit(**options)
    def adam_t(weight, exp_avg, exp_avg_sq, rows, grad, decay, beta1, beta2, step_size,
               correction2_sqrt, eps, bounds):  # pragma: no cover
        hidden = weight.shape[1]
        one = np.float32(1.0)
        for t in prange(len(bounds) - 1):
            for j in range(bounds[t], bounds[t + 1]):
                u = rows[j]
                d = decay[j]
                w = weight[u]
                m = exp_avg[u]
                v = exp_avg_sq[u]
                g = grad[j]
                for h in range(hidden):
                    gh = g[h] + d * w[h]
                    mh = beta1 * m[h] + (one - beta1) * gh
                    vh = beta2 * v[h] + (one - beta2) * gh * gh
                    m[h] = mh
                    v[h] = vh
                    w[h] -= step_size * mh / (np.sqrt(vh) / correction2_sqrt + eps)

    class Kernels:
        pass

    kernels = Kernels()
    kernels.numba = numba
    kernels.spmm_t = spmm_t
    kernels.sddmm_t = sddmm_t
    kernels.grad_rows_t = grad_rows_t
    kernels.dec_backward_t = dec_backward_t
    kernels.adam_t = adam_t
    return kernels


#: Threads the kernels use while :func:`torch_threads_handed_over` is active (torch's count
#: before it set torch to one thread); ``None`` outside it.
_HANDED_OVER: int | None = None


def _threads(kernels: Any) -> int:
    """Numba's thread count for the next call: torch's (which the user may have set)."""
    wanted = _HANDED_OVER if _HANDED_OVER is not None else torch.get_num_threads()
    n = max(1, min(wanted, kernels.numba.config.NUMBA_NUM_THREADS))
    kernels.numba.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads_handed_over() -> Iterator[None]:
    """Run torch's operations on one thread and give the kernels torch's thread count.

    torch's OpenMP workers spin for milliseconds after each parallel operation, and the
    kernels' own thread pool then shares the cores with them: on 2 cores an epoch of compiled
    kernels took more time with two threads than with one (BENCHMARKS.md, issue 15). Inside
    this block torch starts no parallel region (its operations in a training step are small
    element-wise ones or memory-bound), so the kernels have the cores. Torch's count is
    restored on leaving; it is a process-wide setting, so another thread's torch operations
    run on one thread meanwhile. Does nothing without the kernels or with one thread.
    """
    global _HANDED_OVER
    threads = torch.get_num_threads()
    if threads <= 1 or _HANDED_OVER is not None or not available():
        yield
        return
    with _LOCK:
        _HANDED_OVER = threads
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _LOCK:
            _HANDED_OVER = None
            torch.set_num_threads(threads)


def _locked(fn: Any) -> Any:
    """Run ``fn`` holding :data:`_LOCK`, with Numba's thread count set for this thread."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            kernels = _numba()
            if kernels is not None:
                _threads(kernels)
            return fn(*args, **kwargs)

    return wrapper


def _bounds(t_crow: np.ndarray, parts: int) -> np.ndarray:
    """Split the touched columns into ``parts`` runs of about equal numbers of ratings."""
    n = len(t_crow) - 1
    if parts <= 1 or n <= 1:
        return np.array([0, n], dtype=np.int64)
    cuts = np.searchsorted(t_crow, np.linspace(0, t_crow[-1], parts + 1)[1:-1])
    return np.concatenate([[0], np.clip(cuts, 0, n), [n]]).astype(np.int64)


def _np(tensor: Tensor) -> np.ndarray:
    return tensor.detach().numpy()


class Plan:
    """A batch's compact transpose as NumPy arrays, with its split between threads."""

    def __init__(self, t_crow: Tensor, t_col: Tensor, t_perm: Tensor, touched: Tensor) -> None:
        kernels = _numba()
        assert kernels is not None
        self.kernels = kernels
        self.threads = _threads(kernels)
        self.t_crow = _np(t_crow)
        self.t_col = _np(t_col)
        self.t_perm = _np(t_perm)
        self.touched = _np(touched)
        self.bounds = _bounds(self.t_crow, self.threads)
        self.compact = np.arange(len(self.touched), dtype=np.int64)

    def parts(self, n_rows: int, hidden: int) -> np.ndarray:
        """Scratch for one ``n_rows x hidden`` block per thread, reused between calls (a fresh
        one costs page faults at every batch); only ever read inside this module."""
        shape = (len(self.bounds) - 1, n_rows, hidden)
        size = int(np.prod(shape))
        global _scratch
        if _scratch.size < size:
            _scratch = np.empty(size, dtype=np.float32)
        return _scratch[:size].reshape(shape)


_scratch = np.empty(0, dtype=np.float32)

#: One kernel call at a time in a process (the work-queue thread pool and the scratch
#: buffer are shared).
_LOCK = threading.RLock()


@_locked
def spmm(plan: Plan, values: Tensor, weight: Tensor, n_rows: int) -> Tensor:
    """``X @ weight`` (``n_rows x hidden``) for the batch ``X`` with ``values`` in CSR order."""
    parts = plan.parts(n_rows, weight.shape[1])
    vals_t = np.ascontiguousarray(_np(values)[plan.t_perm])
    plan.kernels.spmm_t(plan.t_crow, plan.t_col, vals_t, plan.touched, _np(weight),
                        plan.bounds, parts)
    return torch.from_numpy(parts.sum(axis=0) if len(parts) > 1 else parts[0])


@_locked
def sddmm(plan: Plan, codes: Tensor, weight: Tensor, nnz: int) -> Tensor:
    """``codes[i] . weight[u]`` at each observed ``(i, u)``, in CSR order."""
    out = np.empty(nnz, dtype=np.float32)
    plan.kernels.sddmm_t(plan.t_crow, plan.t_col, plan.t_perm, plan.touched, _np(codes),
                         _np(weight), plan.bounds, out)
    return torch.from_numpy(out)


def _rows_out(plan: Plan, hidden: int, rows: np.ndarray | None) -> np.ndarray:
    shape = (len(plan.touched), hidden)
    if rows is None:
        return np.empty(shape, dtype=np.float32)
    assert rows.shape == shape and rows.dtype == np.float32 and rows.flags.c_contiguous
    return rows


@_locked
def weight_grad(plan: Plan, values: Tensor, dense: Tensor, into: Tensor | None = None,
                rows: np.ndarray | None = None) -> Tensor:
    """``X^T @ dense`` at the touched rows: a ``touched x hidden`` tensor (written into
    ``rows`` when given), or, with ``into`` (the weight's dense ``.grad``), added into its
    touched rows (``into`` is returned)."""
    vals_t = np.ascontiguousarray(_np(values)[plan.t_perm])
    dense_np = _np(dense)
    if into is None:
        out = _rows_out(plan, dense_np.shape[1], rows)
        plan.kernels.grad_rows_t(plan.t_crow, plan.t_col, vals_t, dense_np, plan.bounds, out,
                                 plan.compact, False)
        return torch.from_numpy(out)
    plan.kernels.grad_rows_t(plan.t_crow, plan.t_col, vals_t, dense_np, plan.bounds, _np(into),
                             plan.touched, True)
    return into


#: Called with each block of a weight's touched rows and their gradient rows as soon as they
#: are computed: ``step(start, rows, grad)``, ``start`` the block's first position among the
#: touched rows (see :func:`weight_grad_stepped`).
BlockStep = Callable[[int, Tensor, Tensor], None]


def _blocks(plan: Plan, block_rows: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """The touched columns ``[a, b)`` a block at a time, with each block's split between
    threads (positions within the block); one block gives :attr:`Plan.bounds` itself."""
    n = len(plan.touched)
    if n <= block_rows:
        yield 0, n, plan.bounds
        return
    for a in range(0, n, block_rows):
        b = min(a + block_rows, n)
        yield a, b, _bounds(plan.t_crow[a:b + 1] - plan.t_crow[a], len(plan.bounds) - 1)


@_locked
def weight_grad_stepped(plan: Plan, values: Tensor, dense: Tensor, step: BlockStep,
                        block_rows: int) -> None:
    """:func:`weight_grad` a block of ``block_rows`` touched rows at a time, each block
    handed to ``step`` (which updates those weight rows) and then overwritten: the touched
    rows' gradient never exists whole (0.7 GB at Netflix shape; one block of 16,384 rows
    is 33 MB)."""
    vals_t = np.ascontiguousarray(_np(values)[plan.t_perm])
    dense_np = _np(dense)
    buffer = np.empty((min(block_rows, len(plan.touched)), dense_np.shape[1]),
                      dtype=np.float32)
    for a, b, bounds in _blocks(plan, block_rows):
        out = buffer[:b - a]
        plan.kernels.grad_rows_t(plan.t_crow[a:b + 1], plan.t_col, vals_t, dense_np, bounds,
                                 out, plan.compact, False)
        step(a, torch.from_numpy(plan.touched[a:b]), torch.from_numpy(out))


@_locked
def decoder_backward_stepped(plan: Plan, grad_out: Tensor, codes: Tensor, weight: Tensor,
                             step: BlockStep, block_rows: int) -> Tensor:
    """:func:`decoder_backward` a block of ``block_rows`` touched rows at a time, each
    block's weight gradient handed to ``step`` (as :func:`weight_grad_stepped`); returns the
    codes' gradient. A block's rows are read for the codes' gradient before ``step`` updates
    them, and no other block reads them, so every row enters it with its weights from
    before the step."""
    grad_t = np.ascontiguousarray(_np(grad_out)[plan.t_perm])
    codes_np = _np(codes)
    weight_np = _np(weight)
    parts = plan.parts(codes_np.shape[0], codes_np.shape[1])
    buffer = np.empty((min(block_rows, len(plan.touched)), codes_np.shape[1]),
                      dtype=np.float32)
    total: np.ndarray | None = None
    for a, b, bounds in _blocks(plan, block_rows):
        out = buffer[:b - a]
        plan.kernels.dec_backward_t(plan.t_crow[a:b + 1], plan.t_col, grad_t,
                                    plan.touched[a:b], codes_np, weight_np, bounds, out,
                                    plan.compact, False, parts)
        used = parts[:len(bounds) - 1]  # a block of one column runs on one thread
        block = used.sum(axis=0) if len(used) > 1 else used[0].copy()
        if total is None:
            total = block
        else:
            total += block
        step(a, torch.from_numpy(plan.touched[a:b]), torch.from_numpy(out))
    assert total is not None
    return torch.from_numpy(total)


@_locked
def decoder_backward(plan: Plan, grad_out: Tensor, codes: Tensor, weight: Tensor,
                     into: Tensor | None = None, rows: np.ndarray | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`sddmm` for ``grad_out`` (CSR order): the weight's (as
    :func:`weight_grad` gives it) and the codes' (``n_rows x hidden``)."""
    grad_t = np.ascontiguousarray(_np(grad_out)[plan.t_perm])
    codes_np = _np(codes)
    parts = plan.parts(codes_np.shape[0], codes_np.shape[1])
    if into is None:
        out = _rows_out(plan, codes_np.shape[1], rows)
        plan.kernels.dec_backward_t(plan.t_crow, plan.t_col, grad_t, plan.touched, codes_np,
                                    _np(weight), plan.bounds, out, plan.compact, False, parts)
        rows = torch.from_numpy(out)
    else:
        plan.kernels.dec_backward_t(plan.t_crow, plan.t_col, grad_t, plan.touched, codes_np,
                                    _np(weight), plan.bounds, _np(into), plan.touched, True,
                                    parts)
        rows = into
    return rows, torch.from_numpy(parts.sum(axis=0) if len(parts) > 1 else parts[0])


@_locked
def adam_rows(weight: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, rows: Tensor, grad: Tensor,
              decay: Tensor | None, *, lr: float, beta1: float, beta2: float, eps: float,
              step: int) -> None:
    """Adam (as :class:`torch.optim.Adam`, ``step`` counting this one) on ``weight[rows]``
    and its moments, in place, for the gradient rows ``grad`` plus ``decay[j] * weight[j]``."""
    kernels = _numba()
    assert kernels is not None
    threads = kernels.numba.get_num_threads()
    rows_np = _np(rows)
    if decay is None:
        decay_np = np.zeros(len(rows_np), dtype=np.float32)
    else:
        decay_np = np.ascontiguousarray(_np(decay), dtype=np.float32)
    bounds = np.linspace(0, len(rows_np), threads + 1).astype(np.int64)
    f32 = np.float32
    kernels.adam_t(_np(weight), _np(exp_avg), _np(exp_avg_sq), rows_np,
                   np.ascontiguousarray(_np(grad)), decay_np, f32(beta1), f32(beta2),
                   f32(lr / (1.0 - beta1 ** step)), f32(math.sqrt(1.0 - beta2 ** step)),
                   f32(eps), bounds)
