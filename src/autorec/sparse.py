"""Sparse kernels for AutoRec: the encoder as SpMM and the masked decoder as SDDMM.

Both autograd functions below take a :class:`SparseBatch` (rows of the training matrix as CSR,
with the compact CSR of their transpose) and work in proportion to its observed ratings times
the hidden size; neither forms the dense batch, and the decoder computes reconstructions only
at observed positions, so the loss (and every gradient) is blind to unobserved entries.

Weight gradients are ``X^T @ G``: an SpMM with the compact transpose gives the gradient rows
of the touched inputs only (``k x hidden``). What happens to them depends on ``sparse_grad``:

* ``False``: they are added in place into the weight's dense ``.grad`` buffer (kept across
  steps by ``zero_grad(set_to_none=False)``), which is what autograd's accumulation would do,
  without allocating an ``n_in x hidden`` tensor per step (BENCHMARKS.md);
* ``True``: they become a row-sparse COO gradient (set as the leaf's ``.grad``, like the dense
  case), for an optimizer that updates only the touched rows (:class:`autorec.optim.LazyAdam`).

Inside :func:`rows_stepped_in_backward` and in the compiled kernels, either way, each row is
stepped by Adam as soon as its gradient is summed (:func:`autorec.optim.row_step`: the touched
rows under lazy Adam, every row under Adam) and the weight gets no gradient at all.

The decoder is ``torch.sparse.sampled_addmm`` with the weight passed as a transposed *view*,
so that it reads contiguous weight rows (5-40x faster on CPU than the dense decoder or a
gather-based dot product). On the CPU, a training batch with at least
:data:`COMPILED_MIN_NNZ` ratings goes through the compiled kernels of :mod:`autorec._kernels`
instead (same values and gradients to float32 rounding; 4-8x faster at ML-1M and ML-10M
shapes); smaller batches keep the torch kernels, which need no compilation; a trainer of large
batches sends its epoch's smaller last batch to the compiled kernels as well
(:attr:`SparseBatch.compiled`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _kernels
from .batch import SparseBatch, csr_tensor, slice_rows

__all__ = ["SparseBatch", "release_row_buffers", "rows_stepped_in_backward", "sampled_decode",
           "share_row_buffer", "slice_rows", "sparse_linear"]


def _row_grad(weight: Tensor, batch: SparseBatch, rows_grad: Tensor, sparse_grad: bool
              ) -> Tensor | None:
    """Turn the gradient rows of ``batch.touched`` into what autograd expects for ``weight``.

    See the module docstring: dense leaves get the rows added into ``.grad`` (``None`` is
    returned), ``sparse_grad`` gives a row-sparse COO gradient, non-leaves a dense one.
    """
    touched = batch.touched
    assert touched is not None
    if sparse_grad:
        grad = torch.sparse_coo_tensor(touched.unsqueeze(0), rows_grad, weight.shape,
                                       is_coalesced=True, check_invariants=False)
        if not weight.is_leaf:
            return grad
        # set directly, as for dense leaves: autograd's accumulation would drop the
        # "coalesced" flag and make the optimizer sort the rows again
        weight.grad = grad if weight.grad is None else (weight.grad + grad).coalesce()
        return None
    if not weight.is_leaf:
        return torch.zeros_like(weight).index_add_(0, touched, rows_grad)
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    weight.grad.index_add_(0, touched, rows_grad)
    return None


#: Touched rows whose gradient is computed at once when it is added into a dense ``.grad``:
#: bounds the temporary where a batch touches many rows.
_GRAD_CHUNK_ROWS = 1 << 16


def _weight_grad(weight: Tensor, batch: SparseBatch, values: Tensor | None, dense: Tensor,
                 sparse_grad: bool) -> Tensor | None:
    """``csr_t(values) @ dense``, the gradient rows of ``batch.touched``, as
    :func:`_row_grad` delivers them; added into a dense leaf's ``.grad`` a chunk of rows at a
    time (the same sums, so the same numbers, with a bounded temporary)."""
    n_touched = len(batch.touched) if batch.touched is not None else 0
    if sparse_grad or not weight.is_leaf or n_touched <= _GRAD_CHUNK_ROWS:
        return _row_grad(weight, batch, torch.sparse.mm(batch.csr_t(values), dense),
                         sparse_grad)
    assert batch.t_crow is not None and batch.t_col is not None and batch.t_perm is not None
    assert batch.touched is not None
    values = batch.values if values is None else values
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    for start in range(0, n_touched, _GRAD_CHUNK_ROWS):
        stop = min(start + _GRAD_CHUNK_ROWS, n_touched)
        lo, hi = int(batch.t_crow[start]), int(batch.t_crow[stop])
        part = csr_tensor(batch.t_crow[start:stop + 1] - lo, batch.t_col[lo:hi],
                    values[batch.t_perm[lo:hi]], (stop - start, batch.n_rows))
        weight.grad.index_add_(0, batch.touched[start:stop], torch.sparse.mm(part, dense))
    return None


#: Ratings in a training batch from which the compiled kernels are used (CPU, float32, Numba
#: installed); below it the torch kernels. ``0`` uses them for every training batch, a huge
#: value never. A trainer whose batches hold this many on average sends every batch of its
#: epochs to the compiled kernels, the last one too (:attr:`SparseBatch.compiled`).
COMPILED_MIN_NNZ = 32_768


def _plan(batch: SparseBatch, weight: Tensor) -> _kernels.Plan | None:
    """The compiled kernels' view of ``batch``, where they apply (module docstring)."""
    wanted = batch.nnz >= COMPILED_MIN_NNZ if batch.compiled is None else batch.compiled
    if (not wanted or batch.t_crow is None or batch.t_col is None or batch.t_perm is None
            or batch.touched is None or weight.device.type != "cpu"
            or weight.dtype != torch.float32 or not _kernels.available()):
        return None
    return _kernels.Plan.of(batch.t_crow, batch.t_col, batch.t_perm, batch.touched)


#: Per weight, the buffer its row-sparse gradient's values were last computed into: reused
#: by the next backward pass that finds the weight's ``.grad`` unset (a fresh block per batch
#: costs page faults). Keyed by ``id(weight)``; an entry goes when its weight does.
_ROW_BUFFERS: dict[int, np.ndarray] = {}


def _row_buffer(weight: Tensor, n_rows: int) -> np.ndarray | None:
    """A reusable ``n_rows x hidden`` buffer for ``weight``'s sparse gradient values, or
    ``None`` (allocate afresh) while its ``.grad`` is set: a second backward pass before the
    optimizer step adds to that gradient, which must keep its values."""
    if not weight.is_leaf or weight.grad is not None:
        return None
    hidden = weight.shape[1]
    key = id(weight)
    buffer = _ROW_BUFFERS.get(key)
    if buffer is None or buffer.shape[0] < n_rows or buffer.shape[1] != hidden:
        if key not in _ROW_BUFFERS:
            weakref.finalize(weight, _ROW_BUFFERS.pop, key, None)
        old = buffer
        buffer = np.empty((max(n_rows, weight.shape[0] // 2), hidden), dtype=np.float32)
        # weights sharing the old buffer (share_row_buffer) share the new one instead
        for other, shared in list(_ROW_BUFFERS.items()):
            if old is not None and shared is old:
                _ROW_BUFFERS[other] = buffer
        _ROW_BUFFERS[key] = buffer
    return buffer[:n_rows]


def share_row_buffer(weights: Any) -> None:
    """Give ``weights`` one reusable gradient buffer (:func:`_row_buffer`) between them, the
    largest of theirs: for weights whose row-sparse gradients never exist at the same time
    (the trainer steps the decoder before the encoder's gradient is computed). A weight's
    buffer is only handed out while that weight has no gradient; the caller makes sure the
    others have none either."""
    weights = list(weights)
    present = [_ROW_BUFFERS[id(w)] for w in weights if id(w) in _ROW_BUFFERS]
    if not present:
        return
    largest = max(present, key=len)
    for weight in weights:
        key = id(weight)
        if key not in _ROW_BUFFERS:
            weakref.finalize(weight, _ROW_BUFFERS.pop, key, None)
        _ROW_BUFFERS[key] = largest


def release_row_buffers(weights: Any) -> None:
    """Let go of the reused gradient buffers of ``weights`` (:func:`_row_buffer`), and of the
    last batch's kernel plan: the trainer does after each epoch, since the buffers are as
    large as half the weights."""
    _kernels.forget_last_plan()
    for weight in weights:
        _ROW_BUFFERS.pop(id(weight), None)


#: Whether a lazy weight's touched rows are stepped inside the backward pass
#: (:func:`rows_stepped_in_backward`); ``False``: the touched rows' gradient, then the
#: optimizer's step.
STEP_IN_BACKWARD = True

#: The weights whose rows are stepped during the backward pass now, by ``id``, each with the
#: function that starts its step (:func:`rows_stepped_in_backward`).
_ROW_STEPPERS: dict[int, Callable[[], _kernels.RowAdam]] = {}


@contextlib.contextmanager
def rows_stepped_in_backward(weight: Tensor,
                             start: Callable[[], _kernels.RowAdam] | None) -> Iterator[None]:
    """Inside this block a backward pass that computes ``weight``'s gradient in the compiled
    kernels steps each of its rows with Adam as soon as that row's gradient is summed:
    ``start()`` begins the step (:func:`autorec.optim.row_step`), and ``weight`` gets no
    ``.grad``, so its gradient is never written out. A batch that the torch kernels take
    gives ``weight`` its usual gradient, for the optimizer's ``step``. Nothing else in the
    backward pass may read the rows stepped: a decoder row is read for the codes' gradient
    before it is stepped, and the encoder's weights are never read. ``start`` ``None`` (or
    :data:`STEP_IN_BACKWARD` off) does nothing."""
    if start is None or not STEP_IN_BACKWARD:
        yield
        return
    _ROW_STEPPERS[id(weight)] = start
    try:
        yield
    finally:
        _ROW_STEPPERS.pop(id(weight), None)


def _row_step(weight: Tensor) -> _kernels.RowAdam | None:
    """The step of ``weight``'s rows that its gradient kernel applies, if any (this starts
    the step: call once, where the compiled kernels take the batch). A gradient buffer the
    weight holds goes: the optimizer's own step must then leave the weight alone."""
    start = _ROW_STEPPERS.get(id(weight))
    if start is None:
        return None
    weight.grad = None
    return start()


def _compiled_grad(weight: Tensor, batch: SparseBatch, plan: _kernels.Plan,
                   compute: Any, sparse_grad: bool) -> tuple[Tensor | None, Any]:
    """Run ``compute(into, rows)`` (a compiled gradient kernel, see :mod:`autorec._kernels`)
    so that its weight rows land where :func:`_row_grad` would put them: added straight into
    a dense leaf's ``.grad`` (no temporary), else as ``touched x hidden`` rows (in a reused
    buffer, :func:`_row_buffer`). Returns what autograd expects for ``weight`` and the
    kernel's other result, if any."""
    if not sparse_grad and weight.is_leaf:
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        result = compute(weight.grad, None)
        return None, result[1] if isinstance(result, tuple) else None
    rows_buffer = _row_buffer(weight, len(plan.touched)) if sparse_grad else None
    result = compute(None, rows_buffer)
    rows, other = result if isinstance(result, tuple) else (result, None)
    return _row_grad(weight, batch, rows, sparse_grad), other


class _SparseLinear(torch.autograd.Function):
    """``X @ W + b`` for a sparse batch ``X`` (rows x n_in) and ``W`` (n_in x hidden)."""

    @staticmethod
    def forward(ctx, batch: SparseBatch, weight: Tensor, bias: Tensor,  # type: ignore[override]
                sparse_grad: bool) -> Tensor:
        ctx.batch = batch
        ctx.weight = weight
        ctx.sparse_grad = sparse_grad
        ctx.plan = plan = _plan(batch, weight)
        if plan is not None:
            return _kernels.spmm(plan, batch.values, weight.detach(), batch.n_rows) + bias
        return torch.sparse.mm(batch.csr(), weight) + bias

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        batch: SparseBatch = ctx.batch
        grad_weight = grad_bias = None
        adam = (_row_step(ctx.weight)
                if ctx.needs_input_grad[1] and ctx.plan is not None else None)
        if adam is not None:
            _kernels.weight_grad(ctx.plan, batch.values, grad_out.contiguous(), adam=adam)
        elif ctx.needs_input_grad[1] and ctx.plan is not None:
            plan, dense = ctx.plan, grad_out.contiguous()
            grad_weight, _ = _compiled_grad(
                ctx.weight, batch, plan,
                lambda into, rows: _kernels.weight_grad(plan, batch.values, dense, into, rows),
                ctx.sparse_grad)
        elif ctx.needs_input_grad[1]:
            grad_weight = _weight_grad(ctx.weight, batch, None, grad_out.contiguous(),
                                       ctx.sparse_grad)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0)
        return None, grad_weight, grad_bias, None


class _SampledDecode(torch.autograd.Function):
    """``(H @ W.T + b)`` evaluated only at the batch's observed positions (SDDMM)."""

    @staticmethod
    def forward(ctx, batch: SparseBatch, hidden: Tensor, weight: Tensor,  # type: ignore[override]
                bias: Tensor | None, sparse_grad: bool) -> Tensor:
        ctx.batch = batch
        ctx.sparse_grad = sparse_grad
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight)
        ctx.plan = plan = _plan(batch, weight)
        if plan is not None:
            out = _kernels.sddmm(plan, hidden.detach().contiguous(), weight.detach(), batch.nnz)
            return out + bias[batch.col] if bias is not None else out
        # weight.t() is a view: the kernel then reads contiguous rows of weight (fast).
        products = torch.sparse.sampled_addmm(batch.csr(), hidden.contiguous(), weight.t(),
                                              beta=0.0)
        out = products.values()
        return out + bias[batch.col] if bias is not None else out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        batch: SparseBatch = ctx.batch
        hidden, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_hidden = grad_weight = grad_bias = None
        adam = (_row_step(weight)
                if ctx.plan is not None and ctx.needs_input_grad[2] else None)
        if adam is not None:
            # the same pass, each decoder row stepped once its gradient is known
            _, grad_hidden = _kernels.decoder_backward(
                ctx.plan, grad_out, hidden.detach().contiguous(), weight.detach(), adam=adam)
            if not ctx.needs_input_grad[1]:
                grad_hidden = None
        elif ctx.plan is not None and ctx.needs_input_grad[2]:
            # one pass over the touched decoder rows gives both gradients
            plan, codes = ctx.plan, hidden.detach().contiguous()
            grad_weight, grad_hidden = _compiled_grad(
                weight, batch, plan,
                lambda into, rows: _kernels.decoder_backward(plan, grad_out, codes,
                                                             weight.detach(), into, rows),
                ctx.sparse_grad)
            if not ctx.needs_input_grad[1]:
                grad_hidden = None
        elif ctx.needs_input_grad[1]:
            grad_hidden = torch.sparse.mm(batch.csr(grad_out), weight)
        if ctx.needs_input_grad[2] and ctx.plan is None:
            grad_weight = _weight_grad(weight, batch, grad_out, hidden.contiguous(),
                                       ctx.sparse_grad)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            assert batch.touched is not None and batch.t_crow is not None
            counts_grad = torch.segment_reduce(grad_out[batch.t_perm], "sum",
                                               offsets=batch.t_crow)
            if ctx.sparse_grad:
                grad_bias = torch.sparse_coo_tensor(
                    batch.touched.unsqueeze(0), counts_grad, (batch.n_cols,),
                    is_coalesced=True, check_invariants=False)
            else:
                grad_bias = torch.zeros(batch.n_cols, dtype=grad_out.dtype,
                                        device=grad_out.device)
                grad_bias.index_add_(0, batch.col, grad_out)
        return None, grad_hidden, grad_weight, grad_bias, None


def sparse_linear(batch: SparseBatch, weight: Tensor, bias: Tensor, *,
                  sparse_grad: bool = False) -> Tensor:
    """Encoder pre-activation ``X @ weight + bias`` for a sparse batch ``X``.

    Parameters
    ----------
    batch
        ``n_rows x n_in`` sparse input.
    weight
        ``n_in x hidden``.
    bias
        ``hidden``.
    sparse_grad
        Give ``weight`` a row-sparse COO gradient (rows of the touched inputs only) instead
        of accumulating into a dense ``.grad``; see the module docstring.

    Returns
    -------
    Tensor
        ``n_rows x hidden``, dense.

    Notes
    -----
    A dense leaf ``weight`` gets its gradient added straight into ``weight.grad``, which is
    what ``loss.backward()`` does anyway; asking ``torch.autograd.grad`` for that weight's
    gradient is not supported.
    """
    return _SparseLinear.apply(batch, weight, bias, sparse_grad)


def sampled_decode(batch: SparseBatch, hidden: Tensor, weight: Tensor, bias: Tensor | None,
                   *, sparse_grad: bool = False) -> Tensor:
    """Decoder output at the batch's observed positions only.

    Returns the vector whose ``k``-th entry is ``hidden[row_k] @ weight[col_k] + bias[col_k]``
    for the ``k``-th observed entry ``(row_k, col_k)`` of ``batch`` (CSR order).

    Parameters
    ----------
    batch
        Gives the positions; its values are ignored.
    hidden
        ``n_rows x hidden``.
    weight
        ``n_out x hidden`` (one row per output, e.g. per user for I-AutoRec).
    bias
        ``n_out``, or ``None`` for a decoder without bias.
    sparse_grad
        Row-sparse gradients for ``weight`` and ``bias`` (see :func:`sparse_linear`).
    """
    return _SampledDecode.apply(batch, hidden, weight, bias, sparse_grad)
