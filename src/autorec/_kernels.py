"""Compiled CPU kernels for a training batch (Numba), iterating over the *touched* columns.

The torch kernels of :mod:`autorec.sparse` walk a batch row by row, reading one weight row
per observed rating. These kernels walk the batch's compact transpose instead: each weight
row a batch touches is loaded once, and the small dense side (the batch's codes or their
gradient) stays in cache: the same multiply-adds with a fraction of the memory traffic
(BENCHMARKS.md, "Kernel choices").

* :func:`spmm` -- the encoder ``X @ W`` (each thread sums its share of the touched columns
  into its own ``rows x hidden`` block; the blocks are added at the end);
* :func:`sddmm` -- the decoder at the observed positions, ``H[i] . W[u]``;
* :func:`decoder_backward` -- both gradients of :func:`sddmm` in one pass over ``W``'s
  touched rows;
* :func:`weight_grad` -- ``X^T @ G`` for the touched rows;
* :func:`adam_rows` -- Adam on the touched rows, in place, with an L2 term per row.

Both gradient kernels can also step each touched weight row with Adam as soon as its gradient
is summed (``adam=``, :class:`RowAdam`): the touched rows' gradient is then never written to
memory, let alone held whole.

:func:`sddmm` also scores any (code row, output) pairs (`autorec.member.Member.reconstruct`).

Each function takes and returns torch CPU tensors (shared memory with NumPy, no copies). They
compute the same sums as the torch path in another order, and take float32 values below
1.2e-38 as zero (:mod:`autorec._fp_mode`), so results agree to float32 rounding, not
bitwise. The kernels are compiled on first use and cached on disk; :func:`available` says
whether Numba is installed and allowed (``AUTOREC_KERNELS=torch`` turns them off).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._kernel_source import ENV_KERNELS, KERNEL_CHOICES
from .exceptions import first_line

__all__ = ["RowAdam", "adam_rows", "available", "decoder_backward", "forget_last_plan", "sddmm",
           "spmm", "torch_threads_handed_over", "weight_grad"]

log = logging.getLogger(__name__)


@functools.cache
def _numba() -> Any:
    """The compiled kernels, or ``None`` where Numba is missing or turned off."""
    chosen = os.environ.get(ENV_KERNELS, "").strip().lower()
    if chosen == "torch":
        return None
    if chosen not in ("", *KERNEL_CHOICES):  # `off` kept them on without a word
        log.warning("$%s is %r, not one of %s: the compiled kernels stay on", ENV_KERNELS,
                    chosen, ", ".join(KERNEL_CHOICES))
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; a broken install falls back
        return None
    from ._kernel_source import compile_kernels

    try:
        return compile_kernels(numba)
    except RuntimeError as exc:  # "cannot cache function": nowhere writable for the cache
        log.warning("the compiled kernels are compiled in each process: %s", first_line(exc))
        return compile_kernels(numba, cache=False)


def available() -> bool:
    """Whether the compiled kernels can run (Numba importable, not turned off, not a child
    forked after they ran on GNU OpenMP)."""
    return not _FORKED_AFTER_OPENMP and _numba() is not None


#: Set in a process forked after the kernels ran on Numba's OpenMP layer: GNU OpenMP cannot
#: run in such a child (Numba would end it), so the child takes torch's kernels instead.
_FORKED_AFTER_OPENMP = False


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_OPENMP
    numba = sys.modules.get("numba")
    if numba is None or _numba.cache_info().currsize == 0:
        return
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel call yet: the child may start its own threads
        return
    if layer == "omp":
        _FORKED_AFTER_OPENMP = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Threads the kernels use while :func:`torch_threads_handed_over` is active (torch's count
#: before it set torch to one thread); ``None`` outside it.
_HANDED_OVER: int | None = None


def _threads(kernels: Any) -> int:
    """Numba's thread count for the next call: torch's (which the user may have set)."""
    torch_threads = torch.get_num_threads()
    wanted = _HANDED_OVER if _HANDED_OVER is not None else torch_threads
    n = max(1, min(wanted, kernels.numba.config.NUMBA_NUM_THREADS))
    kernels.numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        # starting Numba's OpenMP pool (first call) sets the OpenMP thread count, which
        # torch shares, to Numba's maximum: the user's setting (OMP_NUM_THREADS=1,
        # torch.set_num_threads) is put back
        torch.set_num_threads(torch_threads)
    return n


@contextlib.contextmanager
def torch_threads_handed_over() -> Iterator[None]:
    """Run torch's operations on one thread and give the kernels torch's thread count.

    torch's OpenMP workers spin for milliseconds after each parallel operation and would
    share the cores with the kernels' own threads (BENCHMARKS.md, issue 15); a training
    step's torch operations are small or memory-bound. Torch's count is restored on leaving;
    it is a process-wide setting, so another thread's torch operations run on one thread
    meanwhile. Does nothing without the kernels or with one thread.
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
        self.source = t_crow
        self._over_all: dict[int, Plan] = {}

    @classmethod
    def of(cls, t_crow: Tensor, t_col: Tensor, t_perm: Tensor, touched: Tensor) -> Plan:
        """The plan of a batch's transpose: the last one made, when it was made for the same
        ``t_crow`` on as many threads (the encoder and the decoder of a step share it)."""
        global _last_plan
        last = _last_plan
        if last is not None and last.source is t_crow and last.threads == _threads(last.kernels):
            return last
        _last_plan = cls(t_crow, t_col, t_perm, touched)
        return _last_plan

    def all_rows(self, n: int) -> Plan:
        """This plan over all ``n`` columns, those the batch misses with no ratings: for a
        step of every weight row (:attr:`RowAdam.all_rows`). The threads' shares count each
        column as one rating more (its step). Made once per plan."""
        if n in self._over_all:
            return self._over_all[n]
        plan = self._over_all[n] = copy.copy(self)
        plan._over_all = {}
        counts = np.zeros(n, dtype=np.int64)
        counts[self.touched] = np.diff(self.t_crow)
        plan.t_crow = np.concatenate([[0], np.cumsum(counts)])
        plan.touched = plan.compact = np.arange(n, dtype=np.int64)
        plan.bounds = _bounds(plan.t_crow + np.arange(n + 1), self.threads)
        return plan

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

#: The plan :meth:`Plan.of` made last (a batch's transpose and its split; dropped by
#: :func:`forget_last_plan` at the end of an epoch).
_last_plan: Plan | None = None


def forget_last_plan() -> None:
    """Drop the plan :meth:`Plan.of` keeps for the next call."""
    global _last_plan
    _last_plan = None

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
    # a result of its own: the scratch is the next call's (another batch's, another thread's)
    return torch.from_numpy(parts.sum(axis=0) if len(parts) > 1 else parts[0].copy())


@_locked
def sddmm(plan: Plan, codes: Tensor, weight: Tensor, nnz: int) -> Tensor:
    """``codes[i] . weight[u]`` at each observed ``(i, u)``, in CSR order."""
    out = np.empty(nnz, dtype=np.float32)
    plan.kernels.sddmm_t(plan.t_crow, plan.t_col, plan.t_perm, plan.touched, _np(codes),
                         _np(weight), plan.bounds, out)
    return torch.from_numpy(out)


@dataclass(frozen=True)
class RowAdam:
    """One Adam step (as :class:`torch.optim.Adam`, ``step`` counting this one) of a weight's
    rows, in place, with ``decay[j] * weight[row_j]`` added to the gradient of the ``j``-th
    row stepped (``decay`` ``None``: nothing added; a number: the same for every row). Given
    to a gradient kernel (:func:`weight_grad`, :func:`decoder_backward`), it steps each
    touched row as soon as that row's gradient is summed, the ``j``-th touched row with
    ``decay[j]``; with ``all_rows``, every row of the weight (those the batch misses with a
    zero gradient: dense Adam), over :meth:`Plan.all_rows`."""

    weight: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    decay: Tensor | float | None
    lr: float
    beta1: float
    beta2: float
    eps: float
    step: int
    all_rows: bool = False

    def arguments(self, n_rows: int) -> tuple[Any, ...]:
        """The kernels' trailing arguments, from the weight to ``eps``."""
        if self.decay is None or isinstance(self.decay, float):
            decay = np.full(n_rows, self.decay or 0.0, dtype=np.float32)
        else:
            decay = np.ascontiguousarray(_np(self.decay), dtype=np.float32)
        assert len(decay) == n_rows
        f32 = np.float32
        return (_np(self.weight), _np(self.exp_avg), _np(self.exp_avg_sq), decay,
                np.array([self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2], f32),
                f32(self.lr / (1.0 - self.beta1 ** self.step)),
                f32(math.sqrt(1.0 - self.beta2 ** self.step)), f32(self.eps))


def _target(plan: Plan, hidden: int, into: Tensor | None, rows: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Where a gradient kernel writes the touched rows' gradient: ``(out, out_rows,
    accumulate)``, into a dense ``.grad`` (``into``) or a ``touched x hidden`` array (``rows``
    when given)."""
    if into is not None:
        return _np(into), plan.touched, True
    n = len(plan.touched)
    if rows is None:
        rows = np.empty((n, hidden), dtype=np.float32)
    assert rows.shape == (n, hidden) and rows.dtype == np.float32 and rows.flags.c_contiguous
    return rows, plan.compact, False


@_locked
def weight_grad(plan: Plan, values: Tensor, dense: Tensor, into: Tensor | None = None,
                rows: np.ndarray | None = None, adam: RowAdam | None = None) -> Tensor | None:
    """``X^T @ dense`` at the touched rows: a ``touched x hidden`` tensor (written into
    ``rows`` when given), or, with ``into`` (the weight's dense ``.grad``), added into its
    touched rows (``into`` is returned). With ``adam``, each touched row of the weight is
    stepped as soon as its gradient is summed, and ``None`` returned: the gradient is never
    held."""
    vals_t = np.ascontiguousarray(_np(values)[plan.t_perm])
    dense_np = _np(dense)
    if adam is not None:
        if adam.all_rows:
            plan = plan.all_rows(adam.weight.shape[0])
        plan.kernels.grad_rows_adam_t(plan.t_crow, plan.t_col, vals_t, plan.touched, dense_np,
                                      plan.bounds, *adam.arguments(len(plan.touched)))
        return None
    out, out_rows, accumulate = _target(plan, dense_np.shape[1], into, rows)
    plan.kernels.grad_rows_t(plan.t_crow, plan.t_col, vals_t, dense_np, plan.bounds, out,
                             out_rows, accumulate)
    return into if into is not None else torch.from_numpy(out)


@_locked
def decoder_backward(plan: Plan, grad_out: Tensor, codes: Tensor, weight: Tensor,
                     into: Tensor | None = None, rows: np.ndarray | None = None,
                     adam: RowAdam | None = None) -> tuple[Tensor | None, Tensor]:
    """Gradients of :func:`sddmm` for ``grad_out`` (CSR order): the weight's (as
    :func:`weight_grad` gives it, ``adam`` included) and the codes' (``n_rows x hidden``).
    With ``adam`` (whose weight is ``weight``), each touched row is read for the codes'
    gradient before it is stepped, and no other touched row reads it."""
    grad_t = np.ascontiguousarray(_np(grad_out)[plan.t_perm])
    codes_np, weight_np = _np(codes), _np(weight)
    if adam is not None and adam.all_rows:
        plan = plan.all_rows(weight_np.shape[0])
    parts = plan.parts(codes_np.shape[0], codes_np.shape[1])
    weight_rows: Tensor | None = None
    if adam is not None:
        assert adam.weight.data_ptr() == weight.data_ptr()
        plan.kernels.dec_backward_adam_t(plan.t_crow, plan.t_col, grad_t, plan.touched,
                                         codes_np, plan.bounds, parts,
                                         *adam.arguments(len(plan.touched)))
    else:
        out, out_rows, accumulate = _target(plan, codes_np.shape[1], into, rows)
        plan.kernels.dec_backward_t(plan.t_crow, plan.t_col, grad_t, plan.touched, codes_np,
                                    weight_np, plan.bounds, out, out_rows, accumulate, parts)
        weight_rows = into if into is not None else torch.from_numpy(out)
    used = parts[:len(plan.bounds) - 1]
    total = used.sum(axis=0) if len(used) > 1 else used[0].copy()
    return weight_rows, torch.from_numpy(total)


@_locked
def adam_rows(adam: RowAdam, rows: Tensor, grad: Tensor) -> None:
    """``adam`` on ``adam.weight[rows]`` and its moments, in place, for the gradient rows
    ``grad`` (the ``j``-th with ``adam.decay[j]``)."""
    kernels = _numba()
    assert kernels is not None
    threads = kernels.numba.get_num_threads()
    rows_np = _np(rows)
    bounds = np.linspace(0, len(rows_np), threads + 1).astype(np.int64)
    weight, exp_avg, exp_avg_sq, decay, *scalars = adam.arguments(len(rows_np))
    kernels.adam_t(weight, exp_avg, exp_avg_sq, rows_np, np.ascontiguousarray(_np(grad)), decay,
                   *scalars, bounds)
