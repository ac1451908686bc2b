"""Training: the trainer owns the device, the random generators and the optimizer.

The loss of a batch is the sum of squared errors over its observed ratings only (the masked
loss of the AutoRec paper and the reference chapter). Regularisation comes in two forms:

* ``l2``: the paper's penalty ``(l2 / 2) * (||W_enc||^2 + ||W_dec||^2)`` on the objective
  ``sum over observed ratings of (r - r_hat)^2``, one step's share at a time, so that one epoch
  adds the whole penalty once whatever the batch size (:mod:`autorec.penalty`; in one process
  folded into the optimizer's update, without a pass over every weight).
* ``weight_decay``: Adam's coupled L2 term, as the reference chapter uses it.

The trainer exposes one epoch at a time; deciding when to stop is :mod:`autorec.selection`'s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from . import _kernels, distributed, sparse
from .exceptions import TrainingError
from .memory import EPOCH_TRIM_MIN_RESIDENT, memory_errors_as_resource_error, release_free_memory
from .model import AutoRecNet
from .optim import LazyAdam, fused_adam, row_step
from .penalty import L2Share
from .sparse import SparseBatch, release_row_buffers, slice_rows

__all__ = ["OPTIMIZERS", "EpochStats", "Trainer", "resolve_device", "seed_streams"]

log = logging.getLogger(__name__)

#: ``auto`` (the default): ``lazy_adam`` or ``adam``, chosen once per fit from the share of
#: input rows a batch touches (:func:`choose_optimizer`).
#: ``adam``: Adam over minibatches, every weight updated each step (the reference).
#: ``lazy_adam``: Adam over minibatches that updates only the weight rows a batch touches
#: (:class:`autorec.optim.LazyAdam`); far cheaper per step when inputs are many and batches
#: sparse.
#: ``rprop``: full-batch resilient propagation, as the AutoRec paper trained.
OPTIMIZERS: tuple[str, ...] = ("auto", "adam", "lazy_adam", "rprop")


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of training did.

    Attributes
    ----------
    epoch
        1-based epoch number.
    train_loss
        Mean squared error over the observed training ratings, as seen during the epoch
        (with dropout, before each batch's update), in the units the network learns (with
        the bias baseline: residuals over the ratings' standard deviation); the penalty is
        not included.
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
        parsed: torch.device | None = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):  # mps, xpu...: never tested
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {str(device)!r}")
    device = parsed
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} requested but this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_streams(random_state: int | None, n: int) -> list[int]:
    """``n`` independent 63-bit seeds derived from one ``random_state``."""
    sequence = np.random.SeedSequence(random_state)
    return [int(s.generate_state(2, np.uint64)[0] >> np.uint64(1)) for s in sequence.spawn(n)]


class Trainer:
    """Trains an :class:`AutoRecNet` on the rows of a sparse training matrix.

    Parameters
    ----------
    net
        The network; moved to ``device``. Built with ``sparse_grad=True`` for ``lazy_adam``.
    matrix
        Training ratings, one row per input vector (items x users for I-AutoRec), with sorted
        column indices. Rows without any rating are never fed (they carry no loss).
    targets
        What to reconstruct at each stored rating, aligned with ``matrix.data`` (the rating
        minus a baseline, for example); ``None`` reconstructs the ratings themselves.
    optimizer
        One of :data:`OPTIMIZERS`.
    lr
        Learning rate (Adam's; Rprop's initial step size).
    weight_decay
        Adam's coupled L2 term (``adam`` only).
    l2
        The paper's penalty on both weight matrices (module docstring).
    batch_size
        Rows per batch. The last batch of an epoch may be smaller; no row is dropped. For
        ``rprop``, gradients of all batches are summed before the one step of an epoch.
    input_dropout
        Probability of hiding each observed input rating from the encoder (denoising).
    device
        Where to train.
    seed
        Seeds the shuffling and the dropout masks.

    Notes
    -----
    Inside a torch.distributed process group (:func:`autorec.distributed.world`) each process
    trains on its part of every batch and the gradients and losses are summed over the
    processes before each step; each process draws its own dropout masks.
    """

    def __init__(
        self,
        net: AutoRecNet,
        matrix: sp.csr_matrix,
        *,
        targets: np.ndarray | None = None,
        optimizer: str = "adam",
        lr: float,
        weight_decay: float = 0.0,
        l2: float = 0.0,
        batch_size: int,
        input_dropout: float = 0.0,
        device: torch.device,
        seed: int,
    ) -> None:
        if optimizer not in OPTIMIZERS[1:]:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS[1:])} (resolve "
                             f"'auto' with choose_optimizer first), got {optimizer!r}")
        if (optimizer == "lazy_adam") != net.sparse_grad:
            raise ValueError("lazy_adam needs a network built with sparse_grad=True, and only it")
        if weight_decay and optimizer != "adam":
            raise ValueError("weight_decay (Adam's coupled L2) applies to optimizer 'adam' only; "
                             "use l2")
        self.device = device
        self.net = net.to(device)
        matrix = matrix.tocsr()
        matrix.sort_indices()
        # the matrix's own arrays, not copies (32-bit indices stay 32-bit until a batch)
        self.indptr = matrix.indptr.astype(np.int64)  # one entry per row: small
        self.indices = matrix.indices
        self.values = np.asarray(matrix.data, dtype=np.float32)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        if self.targets is not None and self.targets.shape != self.values.shape:
            raise ValueError("targets must align with the matrix's stored values")
        self.n_cols = matrix.shape[1]
        self.batch_size = batch_size
        self.input_dropout = input_dropout
        self.optimizer_name = optimizer
        self.l2 = l2
        self.rows = np.flatnonzero(np.diff(self.indptr) > 0)
        self.n_ratings = int(matrix.nnz)
        self.penalty = L2Share(l2, [net.encoder_weight, net.decoder_weight], self.indices,
                               self.n_cols, weight_decay, device)
        self.optimizers = self._make_optimizers(lr, weight_decay)
        # data parallel (issue 8): the same shuffling everywhere, dropout masks per process
        self.world = distributed.world()
        #: the L2 share goes into the optimizer's update (module docstring); several
        #: processes add theirs to the gradients before summing them instead
        self.fold_l2 = self.world.size == 1 and optimizer in ("adam", "lazy_adam")
        #: ``adam`` and ``lazy_adam`` on one process step the decoder before the encoder's
        #: gradient exists, so one gradient buffer serves both (:meth:`_backward_and_step`)
        self.split_step = self.world.size == 1 and optimizer in ("adam", "lazy_adam")
        self._grad_buffer: torch.Tensor | None = None
        shuffle_seed, dropout_seed = seed_streams(seed, 2)
        self.rng = np.random.default_rng(shuffle_seed)
        self.generator = torch.Generator(device=device).manual_seed(
            self.world.rank_seed(dropout_seed))
        self.epoch = 0
        #: called after each batch with (batches done, batches in the epoch), for progress
        self.on_batch_end: Callable[[int, int], None] | None = None

    def _make_optimizers(self, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
        params = list(self.net.parameters())
        if self.optimizer_name == "adam":
            return [fused_adam(params, lr, weight_decay)]
        if self.optimizer_name == "rprop":
            return [torch.optim.Rprop(params, lr=lr)]
        return [LazyAdam(params, lr=lr)]

    def batches(self, rows: np.ndarray) -> Iterator[SparseBatch]:
        """Sparse batches of ``rows`` of the training matrix, in the given order (under
        torch.distributed, this process's part of each batch, perhaps empty)."""
        compiled = self.large_batches or None
        for part in self.world.batches(rows, self.batch_size):
            indptr, positions = slice_rows(self.indptr, part)
            yield SparseBatch.from_arrays(
                indptr, self.indices[positions], self.values[positions], self.n_cols,
                self.device,
                target=None if self.targets is None else self.targets[positions],
                compiled=compiled,
            )

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers:
            # dense gradient buffers are kept (sparse.py adds into them); sparse ones dropped
            optimizer.zero_grad(set_to_none=self.optimizer_name == "lazy_adam")

    def _backward(self, batch: SparseBatch) -> torch.Tensor:
        predicted = self.net(batch, self.generator, self.input_dropout)
        loss = torch.sum((predicted - batch.targets) ** 2, dtype=torch.float64)
        loss.backward()
        if self.l2 > 0.0 and self.fold_l2:  # this batch's share of the penalty (:mod:`penalty`)
            self.penalty.fold(self.optimizers[0], batch)
        elif self.l2 > 0.0:
            self.penalty.add(batch, lazy=self.optimizer_name == "lazy_adam")
        return loss.detach()

    def _backward_and_step(self, batch: SparseBatch) -> torch.Tensor:
        """One batch's backward pass and step, the decoder first: the same gradients and
        updates as :meth:`_backward` then :meth:`_step`, with one gradient buffer instead of
        two (``adam``: weight-sized; ``lazy_adam``: the touched rows' of :mod:`autorec.sparse`).

        The backward pass is cut at the hidden code: the first half gives the decoder's
        gradients and the code's; the decoder is stepped (the encoder's parameters have no
        gradient yet, so the optimizer leaves them alone, and the lazy penalty's share for the
        encoder waits for its step), and its gradient buffer receives the encoder's weight
        gradient from the second half, which needs only the code's gradient and the batch
        (never the decoder's weights); then the encoder is stepped. Each parameter has its
        own Adam state (and under ``adam`` its own group), so stepping them apart is the same
        arithmetic as one step over all. In the compiled kernels the weights need no buffer:
        rows are stepped as computed (:func:`autorec.sparse.rows_stepped_in_backward`).
        """
        net = self.net
        dense = self.optimizer_name == "adam"
        optimizer = self.optimizers[0]
        decoder = [net.decoder_weight] + ([net.decoder_bias] if net.decoder_bias is not None
                                          else [])
        for parameter in net.parameters():
            parameter.grad = None
        buffer, self._grad_buffer = self._grad_buffer, None
        if dense and buffer is not None and not self._steps_in_kernels():
            net.decoder_weight.grad = buffer.zero_()
        hidden = net.code(batch, self.generator, self.input_dropout)
        cut = hidden.detach().requires_grad_()
        loss = torch.sum((net.decode_batch(batch, cut) - batch.targets) ** 2, dtype=torch.float64)
        self._check_finite(loss.detach())
        if self.l2 > 0.0:
            self.penalty.fold(optimizer, batch)  # depends on the batch only
        with sparse.rows_stepped_in_backward(net.decoder_weight,
                                             row_step(optimizer, net.decoder_weight)):
            loss.backward()
        loss = loss.detach()
        self._step()  # the decoder's parameters: the only ones with a gradient
        buffer = net.decoder_weight.grad if dense else None
        for parameter in decoder:
            parameter.grad = None
        if buffer is not None:
            net.encoder_weight.grad = buffer.zero_()
        elif not dense:
            sparse.share_row_buffer([net.decoder_weight, net.encoder_weight])
        with sparse.rows_stepped_in_backward(net.encoder_weight,
                                             row_step(optimizer, net.encoder_weight)):
            hidden.backward(cut.grad)
        self._step()  # the encoder's
        self._grad_buffer = net.encoder_weight.grad if dense else None
        net.encoder_weight.grad = net.encoder_bias.grad = None
        return loss

    def _reduce(self, loss: torch.Tensor) -> torch.Tensor:
        """Gradients and ``loss`` summed over the processes of a data-parallel run (the
        whole batch's), unchanged on one process (:mod:`autorec.distributed`)."""
        return self.world.reduce_gradients(list(self.net.parameters()), loss)

    def _step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def train_epoch(self) -> EpochStats:
        """One pass over the training rows in a fresh random order.

        Raises
        ------
        TrainingError
            The loss became NaN or infinite (the run diverged).
        ResourceError
            Memory ran out during the epoch.
        """
        self.net.train()
        started = time.perf_counter()
        # the C heap's pages freed since the last epoch (scoring's temporaries) go back
        # before the gradient buffers are allocated, in a process large enough to matter
        release_free_memory(min_resident=EPOCH_TRIM_MIN_RESIDENT)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with (_kernels.torch_threads_handed_over() if self._compiled_batches()
              else contextlib.nullcontext()):
            total = self._epoch(total)
        # gradient buffers (as large as the weights) are not needed between epochs
        for parameter in self.net.parameters():
            parameter.grad = None
        self._grad_buffer = None
        release_row_buffers(self.net.parameters())
        self.epoch += 1
        stats = EpochStats(self.epoch, float(total) / max(self.n_ratings, 1),
                           time.perf_counter() - started)
        log.debug("epoch %d: train loss %.4f (%.2fs)", stats.epoch, stats.train_loss,
                  stats.seconds)
        return stats

    @property
    def large_batches(self) -> bool:
        """Whether the batches hold :data:`autorec.sparse.COMPILED_MIN_NNZ` ratings on average:
        all then go to the compiled kernels (:attr:`SparseBatch.compiled`), the last too."""
        n_batches = max(1, -(-len(self.rows) // self.batch_size))
        return self.n_ratings / n_batches >= sparse.COMPILED_MIN_NNZ

    def _compiled_batches(self) -> bool:
        """Whether torch's threads are handed over to the compiled kernels for the epoch
        (:func:`autorec._kernels.torch_threads_handed_over`): every batch compiled, under
        ``lazy_adam`` or with the weights stepped in the kernels; not for torch's fused
        ``adam`` step over whole tensors, which gains more from torch's threads than the
        kernels lose to their spinning (BENCHMARKS.md)."""
        return self._all_compiled() and (self.optimizer_name == "lazy_adam"
                                         or self._steps_in_kernels())

    def _steps_in_kernels(self) -> bool:
        """Whether every batch's weight rows are stepped in the compiled gradient kernels
        (:func:`autorec.sparse.rows_stepped_in_backward`; :meth:`_backward_and_step`)."""
        return self.split_step and sparse.STEP_IN_BACKWARD and self._all_compiled()

    def _all_compiled(self) -> bool:
        """Whether every batch goes to the compiled kernels: CPU float32 large batches, not
        densified ones (torch's products)."""
        return (self.device.type == "cpu" and self.net.encoder_weight.dtype == torch.float32
                and not self.net.dense_batches and self.large_batches and _kernels.available())

    def _epoch(self, total: torch.Tensor) -> torch.Tensor:
        """The batches of one epoch and their steps; returns ``total`` plus their losses."""
        n_batches = -(-len(self.rows) // self.batch_size)
        full_batch = self.optimizer_name == "rprop"  # one step on the gradient of all ratings
        with memory_errors_as_resource_error():
            if full_batch:
                self._zero_grad()
            rows = self.rows if full_batch else self.rng.permutation(self.rows)
            for done, batch in enumerate(self.batches(rows), start=1):
                if full_batch:
                    loss = self._backward(batch)
                elif self.split_step and (self.fold_l2 or not self.l2):
                    loss = self._backward_and_step(batch)  # the penalty folded in
                else:
                    self._zero_grad()
                    loss = self._reduce(self._backward(batch))
                    self._check_finite(loss)
                    self._step()
                total += loss
                if self.on_batch_end is not None:
                    self.on_batch_end(done, n_batches)
            if full_batch:
                total = self._reduce(total)
                self._check_finite(total)
                self._step()
        return total

    def _check_finite(self, loss: torch.Tensor) -> None:
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingError.diverged(self.epoch + 1, "loss", value)

