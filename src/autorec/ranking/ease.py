"""EASE: the closed-form linear item autoencoder (Steck, "Embarrassingly Shallow Autoencoders
for Sparse Data", WWW 2019).

With ``X`` the users x items implicit matrix and ``G = X^T X``, the item-item weights

    P = (G + lambda I)^-1,    B = I - P diag(1 / diag(P))    (so diag(B) = 0)

minimise ``||X - X B||^2 + lambda ||B||^2`` under ``diag(B) = 0``. A user's scores are
``x_u B``: folding in a new user is scoring its row. Memory is ``items^2`` (the Gram matrix,
inverted in place; :data:`EASE_ITEM_LIMIT`). Only the items with a training rating are
modelled (the others can never be recommended); with ``max_items`` only that many of the
most-rated ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..exceptions import NotFittedError

__all__ = ["EASE", "EASE_ITEM_LIMIT", "ease_weights"]

log = logging.getLogger(__name__)

#: Most items EASE models by default: one 1.6 GB float32 matrix, inverted in a few minutes on
#: 2 cores (BENCHMARKS.md, "Ranking"). Past it the default ranking model models the most-rated
#: ones (:func:`autorec.ranking.select.fit_ranking`, with a log line).
EASE_ITEM_LIMIT = 20_000


def ease_weights(gram: np.ndarray, lam: float, dtype: type[np.floating] = np.float32,
                 overwrite: bool = False) -> np.ndarray:
    """``B = I - P diag(1/diag(P))``, ``P = (gram + lam I)^-1``, with a zero diagonal.

    Parameters
    ----------
    gram
        Items x items ``X^T X`` (symmetric).
    lam
        The penalty, ``> 0`` (``gram + lam I`` is then positive definite).
    dtype
        ``numpy.float32`` or ``numpy.float64``: the precision of the inversion and of ``B``.
    overwrite
        Work in ``gram``'s memory when it is a C-contiguous array of ``dtype`` (memory
        ``items^2`` values in all, instead of twice that); ``gram`` then holds ``B``.

    Notes
    -----
    The inverse is a Cholesky factorisation (torch, in place) followed by LAPACK's ``potri``
    (SciPy, in place), which fills one triangle; the other is copied over in blocks, so that no
    second ``items^2`` array is made. When float32 round-off breaks the factorisation the
    inversion is redone in float64.
    """
    from scipy.linalg import lapack

    if not lam > 0:
        raise ValueError(f"lambda must be > 0, got {lam!r}")
    dtype = np.dtype(dtype).type
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    work = gram if (overwrite and gram.dtype == dtype and gram.flags.c_contiguous) else (
        np.array(gram, dtype=dtype, order="C"))
    n = work.shape[0]
    if n == 0:  # no item to model (a weighting that kept no rating): LAPACK refuses 0 x 0
        return work
    work.flat[::n + 1] += dtype(lam)
    info = torch.empty((), dtype=torch.int32)
    tensor = torch.from_numpy(work)
    torch.linalg.cholesky_ex(tensor, out=(tensor, info))  # lower factor L, C order
    if int(info) != 0:
        if dtype is np.float64:
            raise np.linalg.LinAlgError("X^T X + lambda I is not positive definite")
        log.info("EASE: float32 Cholesky failed; inverting in float64")
        again = ease_weights(np.asarray(gram, dtype=np.float64), lam, np.float64)
        return again.astype(dtype)
    # C-order lower L is F-order upper U = L^T; potri gives (U^T U)^-1 = (L L^T)^-1 in U's
    # triangle, i.e. in the lower triangle of the C-order array.
    potri = lapack.spotri if dtype is np.float32 else lapack.dpotri
    _, info_inv = potri(work.T, lower=0, overwrite_c=1)
    if info_inv != 0:
        raise np.linalg.LinAlgError(f"EASE: LAPACK potri failed (info {info_inv})")
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, n, step):  # upper triangle <- lower triangle, a block at a time
        stop = min(n, start + step)
        work[start:stop, stop:] = work[stop:, start:stop].T
        block = work[start:stop, start:stop]
        block[np.triu_indices(stop - start, 1)] = block.T[np.triu_indices(stop - start, 1)]
    diagonal = work.diagonal().copy()
    work /= -diagonal[None, :]  # column j divided by -P_jj
    work.flat[::n + 1] = 0.0
    return work


@dataclasses.dataclass(eq=False)
class EASE:
    """EASE over a users x items implicit matrix.

    Parameters
    ----------
    lam
        The L2 penalty ``lambda``.
    max_items
        Model at most this many items, the most-rated ones (``None``: every rated item).
    dtype
        ``"float32"`` (default: half the memory; ``B`` agrees with a float64 inversion to
        about 1e-5 relative) or ``"float64"``.

    Attributes
    ----------
    items_ : numpy.ndarray
        Column indices of the modelled items (sorted).
    weights_ : numpy.ndarray
        ``len(items_) x len(items_)`` weights ``B`` (zero diagonal).
    n_items_ : int
        Columns of the training matrix (scores have this width).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [0, 1, 1], [1, 1, 1.0]])
    >>> EASE(lam=1.0).fit(X).score(X[:1]).shape
    (1, 3)
    """

    lam: float = 250.0
    max_items: int | None = None
    dtype: str = "float32"

    @property
    def params(self) -> dict[str, Any]:
        """Hyperparameters (JSON values)."""
        return {"lam": float(self.lam), "max_items": self.max_items, "dtype": self.dtype}

    def _validate(self) -> None:
        if isinstance(self.lam, bool) or not (isinstance(self.lam, int | float | np.floating)
                                              and 0 < self.lam < math.inf):
            raise ValueError(f"lam must be a number > 0, got {self.lam!r}")
        check_max_items(self.max_items)
        self._np_dtype()

    def _np_dtype(self) -> type[np.floating]:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return np.float32 if self.dtype == "float32" else np.float64

    def fit(self, matrix: sp.csr_matrix, gram: np.ndarray | None = None,
            items: np.ndarray | None = None) -> EASE:
        """Fit on a users x items matrix.

        ``items`` and ``gram`` (:func:`modelled_items` and :func:`gram_matrix` over them) may
        be given to share one Gram matrix between several values of ``lam``; a given ``gram``
        is not changed.
        """
        self._validate()
        dtype = self._np_dtype()
        if items is None:
            items = modelled_items(matrix, self.max_items)
        own = gram is None
        if gram is None:
            gram = gram_matrix(matrix, items, dtype)
        self.items_ = np.asarray(items, dtype=np.int64)
        self.n_items_ = int(matrix.shape[1])
        self.weights_ = ease_weights(gram, float(self.lam), dtype, overwrite=own)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("EASE is not fitted yet: call fit first")

    def score(self, rows: sp.csr_matrix) -> np.ndarray:
        """Scores ``rows @ B`` of a batch of users' rows (``n x n_items`` float32); items
        not modelled get ``-inf``. A new user is folded in by scoring its row."""
        self._check_fitted()
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != self.n_items_:
            raise ValueError(f"rows must have {self.n_items_} columns, got {rows.shape[1]}")
        sub = rows[:, self.items_].astype(self.weights_.dtype)
        out = np.full((rows.shape[0], self.n_items_), -np.inf, dtype=np.float32)
        out[:, self.items_] = sub @ self.weights_  # sparse rows x dense B: cost nnz x items
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for safetensors)."""
        self._check_fitted()
        return {"items": self.items_, "weights": self.weights_,
                "n_items": np.asarray([self.n_items_], dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> EASE:
        """Rebuild from :meth:`to_arrays` and :attr:`params`."""
        model = cls(**params)
        model._validate()
        model.items_ = np.asarray(arrays["items"], dtype=np.int64)
        model.weights_ = np.ascontiguousarray(arrays["weights"], dtype=model._np_dtype())
        model.n_items_ = int(np.asarray(arrays["n_items"])[0])
        side = len(model.items_)
        if model.weights_.shape != (side, side):
            raise ValueError(f"EASE weights must be {side} x {side}, got "
                             f"{model.weights_.shape}")
        return model


def check_max_items(max_items: Any) -> None:
    """Refuse a ``max_items`` that is neither ``None`` nor an integer >= 1."""
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(
            max_items, int | np.integer) or max_items < 1):
        raise ValueError(f"max_items must be an integer >= 1 or None, got {max_items!r}")


def modelled_items(matrix: sp.csr_matrix, max_items: int | None = None) -> np.ndarray:
    """Columns with at least one entry; with ``max_items``, that many of the most-filled
    (ties to the lower index), sorted."""
    counts = np.asarray(sp.csr_matrix(matrix).getnnz(axis=0))
    items = np.flatnonzero(counts > 0)
    if max_items is not None and len(items) > max_items:
        order = np.argsort(-counts[items], kind="stable")[:max_items]
        items = np.sort(items[order])
        log.info("EASE models the %d most-rated of %d rated items", max_items,
                 int((counts > 0).sum()))
    return items


def gram_matrix(matrix: sp.csr_matrix, items: np.ndarray,
                dtype: type[np.floating] = np.float32) -> np.ndarray:
    """``X^T X`` over the columns ``items`` as a dense C-order array of ``dtype``.

    Built a block of columns at a time (sparse products), so that besides the result only a
    block's sparse product is held; the cost grows with ``sum over users of (items rated)^2``.
    """
    sub = sp.csr_matrix(matrix)[:, items].astype(np.float64)
    sub_t = sub.T.tocsr()
    sub_csc = sub.tocsc()
    n = len(items)
    out = np.empty((n, n), dtype=dtype)
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[:, start:stop] = (sub_t @ sub_csc[:, start:stop]).toarray()
    return out
