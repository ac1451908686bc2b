"""Sparse kernels for AutoRec: the encoder as SpMM and the masked decoder as SDDMM.

A training batch is a set of rows of the training matrix (items x users for I-AutoRec), held
as CSR together with the CSR of its transpose. Both autograd functions below do work in
proportion to the number of observed ratings in the batch times the hidden size; neither
ever forms the dense batch, and the decoder computes reconstructions only at observed
positions, so the loss (and every gradient) is blind to unobserved entries by construction.

Measured on CPU (see BENCHMARKS.md): ``torch.sparse.sampled_addmm`` with the decoder weight
passed as a transposed *view* reads contiguous weight rows and beats both the dense decoder
and a gather-based dot product by 5-40x; a transposed CSR built once per batch makes the
weight gradients ``X^T @ G`` a plain CSR SpMM, added in place into the weights' gradient
buffers (see :func:`_weight_grad`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["SparseBatch", "sampled_decode", "sparse_linear"]


@dataclass(frozen=True)
class SparseBatch:
    """Rows of a sparse matrix (``n_rows x n_cols``), in CSR, with their transpose.

    Attributes
    ----------
    crow, col, values
        CSR structure and values of the batch; ``values`` are the observed ratings.
    t_crow, t_col, t_perm
        CSR structure of the transpose (``n_cols x n_rows``); ``values[t_perm]`` lists the
        values in the transpose's order. ``None`` for a batch built without its transpose
        (enough for inference, which needs no weight gradients).
    """

    crow: Tensor
    col: Tensor
    values: Tensor
    t_crow: Tensor | None
    t_col: Tensor | None
    t_perm: Tensor | None
    n_rows: int
    n_cols: int

    @classmethod
    def from_scipy(cls, matrix: sp.csr_matrix, device: torch.device | str = "cpu",
                   *, transpose: bool = True) -> SparseBatch:
        """Build a batch from a SciPy CSR matrix whose rows are the batch.

        ``transpose=False`` skips the transpose, which only the backward pass uses.
        """
        matrix = matrix.tocsr()
        matrix.sort_indices()

        def tensor(a: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

        t_crow = t_col = t_perm = None
        if transpose:
            # The transpose of a CSR matrix is its CSC form; carry positions for the permutation.
            positions = sp.csr_matrix(
                (np.arange(1, matrix.nnz + 1, dtype=np.int64), matrix.indices, matrix.indptr),
                shape=matrix.shape,
            ).tocsc()
            positions.sort_indices()
            t_crow = tensor(positions.indptr, torch.int64)
            t_col = tensor(positions.indices, torch.int64)
            t_perm = tensor(positions.data - 1, torch.int64)
        return cls(
            crow=tensor(matrix.indptr, torch.int64),
            col=tensor(matrix.indices, torch.int64),
            values=tensor(matrix.data, torch.float32),
            t_crow=t_crow,
            t_col=t_col,
            t_perm=t_perm,
            n_rows=matrix.shape[0],
            n_cols=matrix.shape[1],
        )

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def row(self) -> Tensor:
        """The batch row of each value (length ``nnz``), derived from ``crow``."""
        counts = self.crow[1:] - self.crow[:-1]
        return torch.repeat_interleave(torch.arange(self.n_rows, device=counts.device), counts)

    def csr(self, values: Tensor | None = None) -> Tensor:
        """The batch (``n_rows x n_cols``) as a torch CSR tensor with ``values``."""
        values = self.values if values is None else values
        return _csr(self.crow, self.col, values, (self.n_rows, self.n_cols))

    def csr_t(self, values: Tensor | None = None) -> Tensor:
        """The transpose (``n_cols x n_rows``) as CSR; ``values`` are in the batch's order."""
        if self.t_crow is None or self.t_col is None or self.t_perm is None:
            raise ValueError("this batch was built with transpose=False")
        values = self.values if values is None else values
        return _csr(self.t_crow, self.t_col, values[self.t_perm], (self.n_cols, self.n_rows))


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    # The structure comes from SciPy, so it is valid; torch warns that CSR is "beta" once per
    # process, which is noise for our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _SparseLinear(torch.autograd.Function):
    """``X @ W + b`` for a sparse batch ``X`` (rows x n_in) and ``W`` (n_in x hidden)."""

    @staticmethod
    def forward(ctx, batch: SparseBatch, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.batch = batch
        ctx.weight = weight
        return torch.sparse.mm(batch.csr(), weight) + bias

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        batch: SparseBatch = ctx.batch
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_grad(ctx.weight, batch.csr_t(), grad_out.contiguous())
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0)
        return None, grad_weight, grad_bias


class _SampledDecode(torch.autograd.Function):
    """``(H @ W.T + b)`` evaluated only at the batch's observed positions (SDDMM)."""

    @staticmethod
    def forward(ctx, batch: SparseBatch, hidden: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.batch = batch
        ctx.save_for_backward(hidden, weight)
        # weight.t() is a view: the kernel then reads contiguous rows of weight (fast).
        products = torch.sparse.sampled_addmm(batch.csr(), hidden.contiguous(), weight.t(),
                                              beta=0.0)
        return products.values() + bias[batch.col]

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        batch: SparseBatch = ctx.batch
        hidden, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_hidden = torch.sparse.mm(batch.csr(grad_out), weight)
        if ctx.needs_input_grad[2]:
            grad_weight = _weight_grad(weight, batch.csr_t(grad_out), hidden.contiguous())
        if ctx.needs_input_grad[3]:
            grad_bias = torch.zeros(batch.n_cols, dtype=grad_out.dtype, device=grad_out.device)
            grad_bias.index_add_(0, batch.col, grad_out)
        return None, grad_hidden, grad_weight, grad_bias


def _weight_grad(weight: Tensor, sparse_t: Tensor, dense: Tensor) -> Tensor | None:
    """The weight gradient ``sparse_t @ dense``, accumulated straight into ``weight.grad``.

    The gradient of an ``n_in x hidden`` weight is dense (``n_in x hidden``). Returning a
    fresh tensor each step makes the allocator map and fault in hundreds of MB per batch for
    large ``n_in``; adding into the leaf's existing ``.grad`` (kept across steps by
    ``zero_grad(set_to_none=False)``) is ~10x faster (BENCHMARKS.md). This does what
    autograd's gradient accumulation would do, so ``None`` is returned to autograd. Non-leaf
    weights get an ordinary returned gradient.
    """
    if not weight.is_leaf:
        return torch.sparse.mm(sparse_t, dense)
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    weight.grad.addmm_(sparse_t, dense)
    return None


def sparse_linear(batch: SparseBatch, weight: Tensor, bias: Tensor) -> Tensor:
    """Encoder pre-activation ``X @ weight + bias`` for a sparse batch ``X``.

    Parameters
    ----------
    batch
        ``n_rows x n_in`` sparse input.
    weight
        ``n_in x hidden``.
    bias
        ``hidden``.

    Returns
    -------
    Tensor
        ``n_rows x hidden``, dense.

    Notes
    -----
    A leaf ``weight`` gets its gradient added straight into ``weight.grad`` (see
    :func:`_weight_grad`), which is what ``loss.backward()`` does anyway; asking
    ``torch.autograd.grad`` for that weight's gradient is not supported.
    """
    return _SparseLinear.apply(batch, weight, bias)


def sampled_decode(batch: SparseBatch, hidden: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
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
        ``n_out``.

    Notes
    -----
    As for :func:`sparse_linear`, a leaf ``weight``'s gradient is added into ``weight.grad``.
    """
    return _SampledDecode.apply(batch, hidden, weight, bias)
