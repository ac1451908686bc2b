"""The paper's L2 penalty, one step's share at a time (:mod:`autorec.train`'s docstring).

Each step carries the share of ``(l2 / 2) (||W_enc||^2 + ||W_dec||^2)`` that its ratings are
of all ratings (dense optimizers), or, under the lazy optimizer, each touched weight row
carries the share of *its* ratings in the batch: one epoch adds the whole penalty once,
whatever the batch size. :meth:`L2Share.fold` hands the share to the optimizer's update
(Adam's coupled ``weight_decay``, :meth:`autorec.optim.LazyAdam.set_row_decay`); :meth:`add`
adds its gradient to the weights' gradients (several processes, ``rprop``): the same update.
"""

from __future__ import annotations

import numpy as np
import torch

from .batch import SparseBatch
from .optim import LazyAdam

__all__ = ["L2Share"]


class L2Share:
    """A batch's share of the ``l2`` penalty on ``weights``.

    Parameters
    ----------
    l2
        The penalty's strength.
    weights
        The penalised weight matrices (encoder and decoder), one row per input column.
    indices
        Column index of every training rating (the per-row denominators of the lazy share).
    n_columns
        Input columns (the weights' rows).
    weight_decay
        Adam's own coupled decay, to which a folded share is added.
    device
        Where the counts live.
    """

    def __init__(self, l2: float, weights: list[torch.nn.Parameter], indices: np.ndarray,
                 n_columns: int, weight_decay: float, device: torch.device) -> None:
        self.l2 = l2
        self.weights = weights
        self.n_ratings = len(indices)
        self.weight_decay = weight_decay
        # ratings per column (per input and per output)
        self._col_counts = torch.from_numpy(
            np.bincount(indices, minlength=n_columns).astype(np.float32)).to(device)

    def _dense_share(self, batch: SparseBatch) -> float:
        return self.l2 * batch.nnz / max(self.n_ratings, 1)

    def row_shares(self, batch: SparseBatch) -> torch.Tensor:
        """The lazy share of each touched row: its ratings in the batch over all its ratings."""
        assert batch.touched is not None and batch.t_crow is not None
        in_batch = (batch.t_crow[1:] - batch.t_crow[:-1]).to(torch.float32)
        return self.l2 * in_batch / self._col_counts[batch.touched]

    def fold(self, optimizer: torch.optim.Optimizer, batch: SparseBatch) -> None:
        """Hand this batch's share to ``optimizer``: the same update as :meth:`add` followed
        by the step."""
        if isinstance(optimizer, LazyAdam):
            share = self.row_shares(batch)
            for weight in self.weights:
                optimizer.set_row_decay(weight, share)
            return
        share = self._dense_share(batch)
        for group in optimizer.param_groups:
            is_weight = any(param is weight for param in group["params"]
                            for weight in self.weights)
            group["weight_decay"] = self.weight_decay + (share if is_weight else 0.0)

    @torch.no_grad()
    def add(self, batch: SparseBatch, lazy: bool) -> None:
        """Add this batch's share of the penalty's gradient to the weights' gradients
        (``lazy``: row-sparse gradients, each touched row its own share)."""
        if not lazy:
            share = self._dense_share(batch)
            for weight in self.weights:
                weight.grad.add_(weight, alpha=share)  # type: ignore[union-attr]
            return
        row_share = self.row_shares(batch).unsqueeze(1)
        for weight in self.weights:
            grad = weight.grad
            assert grad is not None and grad.is_sparse
            if not grad.is_coalesced():
                grad = grad.coalesce()
            rows = grad._indices()[0]  # batch.touched, as autorec.sparse builds it
            values = grad._values() + row_share * weight.index_select(0, rows)
            weight.grad = torch.sparse_coo_tensor(grad._indices(), values, weight.shape,
                                                  is_coalesced=True, check_invariants=False)
