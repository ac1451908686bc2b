"""One trained AutoRec network with what it reads: its orientation and its input rows.

An :class:`~autorec.estimator.AutoRec` holds one or more members (several seeds, I-AutoRec
and U-AutoRec side by side) and blends their outputs. A member knows dense indices only:
``user_idx`` and ``item_idx`` over the estimator's id maps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from . import _kernels
from .memory import release_free_memory
from .model import AutoRecNet
from .optim import choose_optimizer
from .selection import TrainingRun, train_with_early_stopping
from .sparse import SparseBatch
from .train import Trainer

if TYPE_CHECKING:
    from .selection import NetworkCheckpoint  # the protocol autorec.checkpoint implements

__all__ = ["Member", "NetworkSpec", "orient"]

#: Rows, and ratings, at most per chunk when rows are encoded for scoring: a chunk's transpose
#: (several int64 arrays per rating) stays bounded where a few rows hold many ratings.
_ENCODE_ROWS = 1024
_ENCODE_RATINGS = 1 << 20
#: the codes of every input row are kept (for the next request on the same weights) up to
#: this size: a training epoch's validation and test scoring then encode once, not twice
_CODES_CACHE_BYTES = 256 * 2**20
#: pairs decoded at a time on torch's path (it gathers two ``pairs x hidden`` blocks)
_DECODE_PAIRS = 1 << 14
#: from this many pairs on, a CPU member scores them with the compiled kernel (grouped by
#: output; 0.01 s against torch's 0.11 s for ML-1M's 50,000 validation pairs); fewer stay on
#: torch's gathers (ML-100K's validation and test sets, bit for bit)
_KERNEL_PAIRS = 1 << 15


def _zero_decoder(net: torch.nn.Module) -> None:
    """A residual network's epoch-0 predictions (the baseline alone): zero decoder weights."""
    with torch.no_grad():
        net.decoder_weight.zero_()  # type: ignore[operator]


def orient(user_idx: np.ndarray, item_idx: np.ndarray, rating: np.ndarray, variant: str,
           n_users: int, n_items: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Ratings as CSR in ``variant``'s orientation (items x users for I-AutoRec), with sorted
    column indices, and for each stored value the position of its rating in the inputs."""
    if variant == "item":
        rows, cols, shape = item_idx, user_idx, (n_items, n_users)
    else:
        rows, cols, shape = user_idx, item_idx, (n_users, n_items)
    order = np.lexsort((cols, rows))
    # 32-bit indices where they fit: half the memory of the structure
    small = max(shape[1], len(order)) < 2**31 - 1
    index = np.int32 if small else np.int64
    indptr = np.zeros(shape[0] + 1, dtype=index)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    matrix = sp.csr_matrix((np.asarray(rating, dtype=np.float32)[order],
                            cols[order].astype(index, copy=False), indptr), shape=shape)
    return matrix, order


Offsets = Callable[[np.ndarray, np.ndarray], np.ndarray]
Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def _targets(ratings: tuple[np.ndarray, np.ndarray, np.ndarray], offsets: Offsets,
             order: np.ndarray, scale: float, chunk: int = 1 << 22) -> np.ndarray:
    """``(rating - offsets(user, item)) / scale`` in ``order``, as float32, a chunk at a time
    (the same values as the whole-array expression, without its float64 temporaries)."""
    user_idx, item_idx, rating = ratings
    targets = np.empty(len(order), dtype=np.float32)
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        targets[start:start + chunk] = (rating[part] - offsets(user_idx[part], item_idx[part])
                                        ) / scale
    return targets


@dataclass(frozen=True)
class NetworkSpec:
    """How to build and train one member (the estimator's parameters, resolved)."""

    variant: str
    hidden: int
    activation: str
    dropout: float
    input_dropout: float
    lr: float
    weight_decay: float
    l2: float
    batch_size: int
    optimizer: str
    residual: bool  # learn the deviation from a baseline (no decoder bias)
    patience: int
    dense_batches: bool = False  # densify each batch (a GPU path), see AutoRecNet


class Member:
    """One network and the training ratings it encodes.

    Parameters
    ----------
    spec
        Architecture and training settings.
    n_users, n_items
        Sizes of the estimator's index spaces.
    device
        Where the network lives.
    """

    def __init__(self, spec: NetworkSpec, n_users: int, n_items: int,
                 device: torch.device) -> None:
        self.spec = spec
        self.n_users = n_users
        self.n_items = n_items
        self.device = device
        self.net: AutoRecNet | None = None
        self.matrix: sp.csr_matrix | None = None
        self.scale = 1.0
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        #: the optimizer the network trained with (``spec.optimizer``, ``auto`` resolved)
        self.optimizer: str | None = None
        self._trainer: Trainer | None = None  # while fit runs: its epoch stamps the weights
        self._codes: tuple[tuple[Any, ...], torch.Tensor] | None = None

    @property
    def n_inputs(self) -> int:
        """Length of an input vector: users for I-AutoRec, items for U-AutoRec."""
        return self.n_users if self.spec.variant == "item" else self.n_items

    def set_inputs(self, user_idx: np.ndarray, item_idx: np.ndarray, rating: np.ndarray) -> None:
        """The ratings predictions are reconstructed from."""
        self._codes = None
        self.matrix = orient(user_idx, item_idx, np.asarray(rating) / self.scale,
                             self.spec.variant, self.n_users, self.n_items)[0]

    def fit(
        self,
        ratings: Triple | Callable[[], Triple],
        offsets: Offsets | None,
        *,
        epochs: int,
        init_seed: int,
        train_seed: int,
        score: Callable[[], float] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        checkpoint: NetworkCheckpoint | None = None,
        on_batch_end: Callable[[int, int], None] | None = None,
        optimizer: str | None = None,
    ) -> TrainingRun:
        """Train a fresh network on ``ratings`` (``user_idx, item_idx, rating``, or a function
        returning them: then their memory is freed once the network's matrix is built, since
        arguments stay referenced by the caller for the whole call).

        ``offsets(user_idx, item_idx)`` (the baseline) is subtracted from the ratings to make
        the targets when the spec is residual; a residual network also works in units of the
        ratings' standard deviation (inputs and targets divided by it, outputs multiplied
        back), so that its penalty and learning rate mean the same on any rating scale.
        ``score`` rates the current weights on validation data; the best epoch's weights are
        kept. ``checkpoint`` restores or checkpoints this network (:mod:`autorec.checkpoint`).
        ``optimizer`` (resolved, not ``"auto"``) is used instead of the spec's choice: the
        refit keeps the update its epochs were chosen with.
        """
        spec = self.spec
        self._codes = None
        if callable(ratings):
            ratings = ratings()
        user_idx, item_idx, rating = ratings
        with np.errstate(over="ignore"):
            std = float(np.std(rating))
        if not math.isfinite(std):  # float32's sum of squares overflowed (ratings past ~1e17)
            std = float(np.std(rating, dtype=np.float64))
        self.scale = std if spec.residual and std > 0 else 1.0
        self.matrix, order = orient(user_idx, item_idx, np.asarray(rating) / self.scale,
                                    spec.variant, self.n_users, self.n_items)
        targets = None
        if spec.residual:
            assert offsets is not None
            targets = _targets(ratings, offsets, order, self.scale)
        # what the network trains on is in self.matrix and targets now: let the caller's
        # arrays go if it holds no other reference
        del ratings, user_idx, item_idx, rating, order
        release_free_memory()  # the preparation's freed heap, before the weights are allocated
        self.optimizer = optimizer = optimizer or choose_optimizer(
            spec.optimizer, self.matrix, spec.batch_size, train_seed,
            weight_decay=spec.weight_decay, dense_batches=spec.dense_batches)
        generator = torch.Generator().manual_seed(init_seed)
        self.net = AutoRecNet(self.n_inputs, spec.hidden, spec.activation, spec.dropout,
                              decoder_bias=not spec.residual,
                              sparse_grad=optimizer == "lazy_adam",
                              dense_batches=spec.dense_batches, generator=generator)
        if spec.residual:
            # the untrained network adds nothing: epoch 0 predicts the baseline exactly
            _zero_decoder(self.net)
        trainer = Trainer(self.net, self.matrix, targets=targets, optimizer=optimizer,
                          lr=spec.lr, weight_decay=spec.weight_decay, l2=spec.l2,
                          batch_size=spec.batch_size, input_dropout=spec.input_dropout,
                          device=self.device, seed=train_seed)
        self._trainer = trainer
        try:
            run = train_with_early_stopping(trainer, epochs, score=score,
                                            patience=spec.patience, on_epoch_end=on_epoch_end,
                                            checkpoint=checkpoint,
                                            reset=_zero_decoder if spec.residual else None,
                                            on_batch_end=on_batch_end)
        finally:
            self._trainer, self._codes = None, None
        self.net.eval()
        # the gradient buffers training kept are as large as the weights: not needed now
        self.net.zero_grad(set_to_none=True)
        del trainer
        self.best_epoch = run.best_epoch
        self.history = run.history
        return run

    def encode_rows(self, rows: np.ndarray) -> torch.Tensor:
        """Hidden codes (``len(rows) x hidden``) of input rows of the member's matrix."""
        assert self.net is not None and self.matrix is not None
        self.net.eval()
        codes = torch.empty((len(rows), self.spec.hidden), dtype=torch.float32,
                            device=self.device)
        # with its transpose a chunk is encoded by the compiled kernel where it applies
        # (autorec.sparse): 4-6x less CPU than torch's CSR product at ML-10M shape
        transpose = self.device.type == "cpu" and _kernels.available()
        counts = np.diff(self.matrix.indptr)[rows]
        start = 0
        with torch.no_grad():
            while start < len(rows):
                stop = min(start + _ENCODE_ROWS, len(rows))
                fits = np.searchsorted(np.cumsum(counts[start:stop]), _ENCODE_RATINGS, "right")
                stop = start + max(1, int(fits))
                batch = SparseBatch.from_scipy(self.matrix[rows[start:stop]], self.device,
                                               transpose=transpose)
                codes[start:stop] = self.net.encode(batch)
                start = stop
        return codes

    def _codes_of(self, unique_rows: np.ndarray) -> torch.Tensor:
        """:meth:`encode_rows` of sorted distinct rows, through a cache of every row's codes
        for requests that cover at least half the rows: valid while the matrix, the encoder's
        parameters (objects: fold-in replaces them) and, during fit, the trainer's epoch are
        the same (weights change only in an epoch, or when fit puts the best ones back, after
        which the cache is dropped)."""
        assert self.net is not None and self.matrix is not None
        key = (self.matrix, self.net.encoder_weight, self.net.encoder_bias,
               None if self._trainer is None else self._trainer.epoch)
        if self._codes is None or not same_key(self._codes[0], key, 3):
            n_rows = self.matrix.shape[0]
            if (2 * len(unique_rows) < n_rows
                    or n_rows * self.spec.hidden * 4 > _CODES_CACHE_BYTES):
                return self.encode_rows(unique_rows)
            self._codes = (key, self.encode_rows(np.arange(n_rows)))
        every = self._codes[1]
        return every[torch.from_numpy(unique_rows).to(every.device)]

    def reconstruct(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """The network's output for known (user, item) index pairs, unclipped (without the
        baseline for a residual member)."""
        assert self.net is not None
        if self.spec.variant == "item":
            rows, outputs = item_idx, user_idx
        else:
            rows, outputs = user_idx, item_idx
        unique_rows, position = np.unique(rows, return_inverse=True)
        codes = self._codes_of(unique_rows)
        if (self.device.type == "cpu" and len(rows) >= _KERNEL_PAIRS and _kernels.available()
                and codes.dtype == torch.float32):
            # grouped by output, each decoder row read once (_score_pairs)
            net = self.net
            values = _score_pairs(codes, net.decoder_weight, position,
                                  np.asarray(outputs, dtype=np.int64))
            if net.decoder_bias is not None:
                values += net.decoder_bias.detach().numpy()[outputs]
            return values.astype(np.float64) * self.scale
        position_t = torch.from_numpy(position.astype(np.int64)).to(self.device)
        outputs_t = torch.from_numpy(np.asarray(outputs, dtype=np.int64)).to(self.device)
        result = np.empty(len(rows), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(rows), _DECODE_PAIRS):
                stop = start + _DECODE_PAIRS
                values = self.net.decode_pairs(codes, position_t[start:stop],
                                               outputs_t[start:stop])
                result[start:stop] = values.double().cpu().numpy()
        return result * self.scale


def same_key(old: tuple[Any, ...], new: tuple[Any, ...], n_objects: int) -> bool:
    """Whether a cache key still holds: its first ``n_objects`` the same objects, the rest
    equal values."""
    return (all(a is b for a, b in zip(old[:n_objects], new[:n_objects], strict=True))
            and old[n_objects:] == new[n_objects:])


def _score_pairs(codes: torch.Tensor, weight: torch.Tensor, rows: np.ndarray,
                 outputs: np.ndarray) -> np.ndarray:
    """``codes[rows[k]] . weight[outputs[k]]`` for every pair ``k`` (float32), by the compiled
    SDDMM kernel: the pairs are grouped by output (a stable sort), so that each of
    ``weight``'s rows is read once for all its pairs."""
    order = np.argsort(outputs, kind="stable")
    touched, counts = np.unique(outputs[order], return_counts=True)
    t_crow = np.zeros(len(touched) + 1, dtype=np.int64)
    np.cumsum(counts, out=t_crow[1:])
    plan = _kernels.Plan(torch.from_numpy(t_crow),
                         torch.from_numpy(np.ascontiguousarray(rows[order], dtype=np.int64)),
                         torch.from_numpy(order.astype(np.int64, copy=False)),
                         torch.from_numpy(touched.astype(np.int64, copy=False)))
    return _kernels.sddmm(plan, codes.contiguous(), weight.detach().contiguous(),
                          len(rows)).numpy()
