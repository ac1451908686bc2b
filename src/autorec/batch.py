"""A training batch: rows of the training matrix as CSR, with the compact CSR of its transpose.

:class:`SparseBatch` holds a set of rows of the training matrix (items x users for
I-AutoRec) as CSR, together with a *compact* CSR of its transpose: one row per column that
the batch touches (``touched``), not one per column of the matrix. The kernels of
:mod:`autorec.sparse` and :mod:`autorec._kernels` work on it; :func:`slice_rows` cuts a
batch's rows out of a CSR matrix.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["SparseBatch", "csr_tensor", "slice_rows"]


def slice_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR ``indptr`` of ``rows`` of a CSR matrix, and the positions of their entries.

    ``positions`` indexes the parent's ``indices`` / ``data`` (and any array aligned with
    them), row after row, so several value arrays can be sliced consistently.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    total = int(new_indptr[-1])
    # position k of row r is starts[r] + (k - new_indptr[r])
    positions = np.arange(total, dtype=np.int64)
    positions += np.repeat(starts - new_indptr[:-1], lengths)
    return new_indptr, positions


@dataclass(frozen=True)
class SparseBatch:
    """Rows of a sparse matrix (``n_rows x n_cols``), in CSR, with their compact transpose.

    Attributes
    ----------
    crow, col, values
        CSR structure and values of the batch; ``values`` are the encoder's input (the
        observed ratings).
    n_rows, n_cols
        Shape of the batch.
    target
        What the decoder should reconstruct at each observed position, in CSR order
        (``values`` minus a baseline, for example); ``None`` means ``values``.
    touched
        The distinct columns that hold an entry, sorted (``k`` of them).
    t_crow, t_col, t_perm
        Compact transpose (``k x n_rows``): row ``j`` lists the batch rows holding column
        ``touched[j]``; ``values[t_perm]`` lists the values in the transpose's order. ``None``
        for a batch built without it (enough for inference, which needs no weight gradients).
    compiled
        Whether the compiled CPU kernels take this batch where they can run: ``None`` decides
        by its size (:data:`autorec.sparse.COMPILED_MIN_NNZ`); a trainer of batches that large
        on average says ``True`` for all of them, its epoch's smaller last batch included.
    """

    crow: Tensor
    col: Tensor
    values: Tensor
    n_rows: int
    n_cols: int
    target: Tensor | None = None
    touched: Tensor | None = None
    t_crow: Tensor | None = None
    t_col: Tensor | None = None
    t_perm: Tensor | None = None
    compiled: bool | None = None

    @classmethod
    def from_arrays(
        cls,
        indptr: np.ndarray,
        indices: np.ndarray,
        values: np.ndarray,
        n_cols: int,
        device: torch.device | str = "cpu",
        *,
        target: np.ndarray | None = None,
        transpose: bool = True,
        compiled: bool | None = None,
    ) -> SparseBatch:
        """Build a batch from CSR arrays whose column indices are sorted within each row."""

        def tensor(a: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

        n_rows = len(indptr) - 1
        extra: dict[str, Tensor] = {}
        if transpose:
            # The transpose of a CSR matrix is its CSC form (a counting sort in SciPy); carry
            # positions through it for the permutation, then keep the non-empty columns.
            positions = sp.csr_matrix(
                (np.arange(1, len(indices) + 1, dtype=np.int64), indices, indptr),
                shape=(n_rows, n_cols),
            ).tocsc()
            positions.sort_indices()
            touched = np.flatnonzero(np.diff(positions.indptr))
            t_crow = np.concatenate([[0], positions.indptr[touched + 1]])
            extra = {
                "touched": tensor(touched, torch.int64),
                "t_crow": tensor(t_crow, torch.int64),
                "t_col": tensor(positions.indices, torch.int64),
                "t_perm": tensor(positions.data - 1, torch.int64),
            }
        return cls(
            crow=tensor(indptr, torch.int64),
            col=tensor(indices, torch.int64),
            values=tensor(values, torch.float32),
            n_rows=n_rows,
            n_cols=n_cols,
            target=None if target is None else tensor(target, torch.float32),
            compiled=compiled,
            **extra,
        )

    @classmethod
    def from_scipy(cls, matrix: sp.csr_matrix, device: torch.device | str = "cpu",
                   *, transpose: bool = True) -> SparseBatch:
        """Build a batch from a SciPy CSR matrix whose rows are the batch.

        ``transpose=False`` skips the transpose, which only the backward pass uses.
        """
        matrix = matrix.tocsr()
        matrix.sort_indices()
        return cls.from_arrays(matrix.indptr, matrix.indices, matrix.data, matrix.shape[1],
                               device, transpose=transpose)

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def targets(self) -> Tensor:
        """The reconstruction targets (``target``, else ``values``)."""
        return self.values if self.target is None else self.target

    @property
    def row(self) -> Tensor:
        """The batch row of each value (length ``nnz``), derived from ``crow``."""
        counts = self.crow[1:] - self.crow[:-1]
        return torch.repeat_interleave(torch.arange(self.n_rows, device=counts.device), counts)

    def with_values(self, values: Tensor) -> SparseBatch:
        """The same batch with other input values (targets unchanged)."""
        return replace(self, values=values, target=self.targets)

    def csr(self, values: Tensor | None = None) -> Tensor:
        """The batch (``n_rows x n_cols``) as a torch CSR tensor with ``values``."""
        values = self.values if values is None else values
        return csr_tensor(self.crow, self.col, values, (self.n_rows, self.n_cols))

    def csr_t(self, values: Tensor | None = None) -> Tensor:
        """The compact transpose (``len(touched) x n_rows``) as CSR.

        Row ``j`` is column ``touched[j]`` of the batch; ``values`` are in the batch's order.
        """
        if self.t_crow is None or self.t_col is None or self.t_perm is None:
            raise ValueError("this batch was built with transpose=False")
        values = self.values if values is None else values
        n_touched = len(self.t_crow) - 1
        return csr_tensor(self.t_crow, self.t_col, values[self.t_perm], (n_touched, self.n_rows))


def csr_tensor(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    # The structure comes from SciPy, so it is valid; torch warns that CSR is "beta" once per
    # process, which is noise for our users.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
