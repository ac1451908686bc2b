"""Training: the trainer owns the device, the random generators and the optimizer.

The loss of a batch is the sum of squared errors over its observed ratings only (the masked
loss of the AutoRec paper and the reference chapter); the weight decay is Adam's L2 term.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from .model import AutoRecNet
from .sparse import SparseBatch

__all__ = ["EpochStats", "Trainer", "resolve_device", "seed_streams"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training did.

    Attributes
    ----------
    epoch
        1-based epoch number.
    train_loss
        Mean squared error over the observed training ratings, as seen during the epoch
        (with dropout, before each batch's update).
    seconds
        Wall time of the epoch.
    """

    epoch: int
    train_loss: float
    seconds: float


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    return device


def seed_streams(random_state: int | None, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from one ``random_state``."""
    sequence = np.random.SeedSequence(random_state)
    return [int(s.generate_state(2, np.uint64)[0] >> np.uint64(1)) for s in sequence.spawn(n)]


def _adam(net: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where this torch build supports it.

    Every step touches every weight (the L2 term makes all gradients dense), so for large
    inputs the optimizer dominates a step; the fused kernel is about 10x faster on CPU than
    the per-tensor loop (BENCHMARKS.md) and computes the same update.
    """
    try:
        return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)


class Trainer:
    """Trains an :class:`AutoRecNet` on the rows of a sparse training matrix.

    Parameters
    ----------
    net
        The network; moved to ``device``.
    matrix
        Training ratings, one row per input vector (items x users for I-AutoRec). Rows without
        any rating are never fed (they carry no loss).
    lr, weight_decay
        Adam's learning rate and L2 penalty.
    batch_size
        Rows per batch. The last batch of an epoch may be smaller; no row is dropped.
    device
        Where to train.
    seed
        Seeds the shuffling and the dropout masks.
    """

    def __init__(
        self,
        net: AutoRecNet,
        matrix: sp.csr_matrix,
        *,
        lr: float,
        weight_decay: float,
        batch_size: int,
        device: torch.device,
        seed: int,
    ) -> None:
        self.device = device
        self.net = net.to(device)
        self.matrix = matrix.tocsr()
        self.batch_size = batch_size
        self.rows = np.flatnonzero(np.diff(self.matrix.indptr) > 0)
        self.n_ratings = int(self.matrix.nnz)
        self.optimizer = _adam(self.net, lr, weight_decay)
        shuffle_seed, dropout_seed = seed_streams(seed, 2)
        self.rng = np.random.default_rng(shuffle_seed)
        self.generator = torch.Generator(device=device).manual_seed(dropout_seed)
        self.epoch = 0

    def batches(self, rows: np.ndarray) -> Iterator[SparseBatch]:
        """Sparse batches of ``rows`` of the training matrix, in the given order."""
        for start in range(0, len(rows), self.batch_size):
            yield SparseBatch.from_scipy(self.matrix[rows[start:start + self.batch_size]],
                                         self.device)

    def train_epoch(self) -> EpochStats:
        """One pass over the training rows in a fresh random order."""
        self.net.train()
        started = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch in self.batches(self.rng.permutation(self.rows)):
            self.optimizer.zero_grad(set_to_none=False)  # keep the buffers (sparse.py)
            predicted = self.net(batch, self.generator)
            loss = torch.sum((predicted - batch.values) ** 2)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        self.epoch += 1
        stats = EpochStats(self.epoch, float(total) / max(self.n_ratings, 1),
                           time.perf_counter() - started)
        log.debug("epoch %d: train loss %.4f (%.2fs)", stats.epoch, stats.train_loss,
                  stats.seconds)
        return stats
