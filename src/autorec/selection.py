"""Model selection without the test set: a validation carve-out and early stopping.

:func:`validation_split` holds out a random part of the *training* ratings;
:func:`train_with_early_stopping` trains one epoch at a time, scores the validation part after
each epoch, stops when it has not improved for ``patience`` epochs and puts back the weights
of the best epoch. The test set never enters either.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from .data.ratings import Ratings
from .exceptions import TrainingError
from .train import Trainer

__all__ = ["EarlyStopping", "NetworkCheckpoint", "TrainingRun", "train_with_early_stopping",
           "validation_mask", "validation_split"]

log = logging.getLogger(__name__)


def validation_split(ratings: Ratings, fraction: float, random_state: int | None
                     ) -> tuple[Ratings, Ratings]:
    """Split training ratings into a part to fit and a part to validate on.

    Parameters
    ----------
    ratings
        The training ratings (never the test set).
    fraction
        Share of ``ratings`` held out for validation, in ``(0, 1)``; the validation part has
        ``round(fraction * len(ratings))`` ratings, at least one, and the fit part keeps at
        least one.
    random_state
        Seed of the draw; the same seed gives the same parts.

    Returns
    -------
    fit, validation
        Disjoint subsets that together hold every rating of ``ratings``, sharing its id maps.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation must be in (0, 1) to carve out a part, got {fraction!r}")
    n = len(ratings)
    if n < 2:
        raise ValueError(f"need at least 2 training ratings to hold some out, got {n}")
    held_out = validation_mask(n, fraction, random_state)
    return ratings.subset(~held_out), ratings.subset(held_out)


def validation_mask(n: int, fraction: float, random_state: int | None) -> np.ndarray:
    """The boolean mask of the ratings :func:`validation_split` holds out of ``n``."""
    n_val = min(max(round(fraction * n), 1), n - 1)
    order = np.random.default_rng(random_state).permutation(n)
    held_out = np.zeros(n, dtype=bool)
    held_out[order[:n_val]] = True
    return held_out


#: a best-weights copy at least this large is kept in a temporary file, not in memory
#: (:class:`EarlyStopping`)
SPILL_BYTES = 256 * 2**20


class _SpilledState:
    """A state dict's tensors written one after another to an anonymous temporary file
    (deleted when closed), read back straight into a module's own tensors."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.file = tempfile.TemporaryFile(prefix="autorec-best-")
        self.layout: list[tuple[str, int, torch.Size, torch.dtype]] = []
        try:
            for name, tensor in state.items():
                flat = tensor.detach().cpu().contiguous().reshape(-1)
                self.layout.append((name, self.file.tell(), tensor.shape, tensor.dtype))
                self.file.write(memoryview(flat.view(torch.uint8).numpy()))
            self.file.flush()
        except BaseException:
            self.file.close()
            raise

    def _read(self, offset: int, shape: torch.Size, dtype: torch.dtype,
              target: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor at ``offset``, read into ``target`` where that is a contiguous CPU tensor
        of its shape and dtype, else into a new one."""
        if (target is None or target.device.type != "cpu" or not target.is_contiguous()
                or target.shape != shape or target.dtype != dtype):
            target = torch.empty(shape, dtype=dtype)
        view = memoryview(target.reshape(-1).view(torch.uint8).numpy())
        self.file.seek(offset)
        if self.file.readinto(view) != len(view):  # a buffered file reads all it can
            raise OSError(f"the best weights' temporary file ended early ({self.file.name})")
        return target

    def load(self) -> dict[str, torch.Tensor]:
        """The tensors, read into new CPU tensors."""
        return {name: self._read(offset, shape, dtype)
                for name, offset, shape, dtype in self.layout}

    def copy_into(self, module: torch.nn.Module) -> None:
        """Put the tensors back into ``module`` (in place where a tensor is a contiguous CPU
        one: no second copy of the weights, even for a moment)."""
        own = module.state_dict()
        if set(own) != {name for name, *_ in self.layout}:
            raise ValueError("the held weights do not fit this module")
        with torch.no_grad():
            for name, offset, shape, dtype in self.layout:
                value = self._read(offset, shape, dtype, own[name])
                if value is not own[name]:
                    own[name].copy_(value)

    def close(self) -> None:
        self.file.close()


@dataclass
class EarlyStopping:
    """Track the best validation score and decide when to stop.

    Parameters
    ----------
    patience
        Epochs without improvement after which to stop.
    reset
        Puts a module back to the predictions of its best state without a copy of its weights
        (a residual network's epoch 0: zero decoder weights); then no copy is ever made.
    spill_bytes
        A copy of at least this many bytes goes to a temporary file instead of memory
        (:data:`SPILL_BYTES`; ``None``: always in memory).

    Notes
    -----
    The best weights are copied only when the module is about to change (:meth:`hold`,
    called before each epoch): while the best epoch is the last one, they are the module's
    own, so a run whose last epoch is its best never holds a second copy of its weights. A
    copy of ``spill_bytes`` or more is written to an anonymous temporary file and read back
    into the module by :meth:`restore` (a disk that cannot take it leaves the copy in memory,
    with a warning).
    """

    patience: int
    best_score: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    reset: Callable[[torch.nn.Module], None] | None = field(default=None, repr=False)
    spill_bytes: int | None = field(default_factory=lambda: SPILL_BYTES)
    _spilled: _SpilledState | None = field(default=None, repr=False)
    _current: torch.nn.Module | None = field(default=None, repr=False)

    def update(self, epoch: int, score: float, module: torch.nn.Module) -> bool:
        """Record ``score`` of ``epoch``; ``module``'s weights become the best when it beats
        the best so far. Returns whether training should stop."""
        if score < self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self._drop()
            self._current = module
        return epoch - self.best_epoch >= self.patience

    def hold(self) -> None:
        """Copy the best weights out of the module before it trains on (see Notes)."""
        if self._current is not None:
            if self.reset is None:
                state = self._current.state_dict()
                size = sum(v.numel() * v.element_size() for v in state.values())
                if self.spill_bytes is not None and size >= self.spill_bytes:
                    try:
                        self._spilled = _SpilledState(state)
                        log.info("best weights (%.2f GB) held in a temporary file",
                                 size / 1e9)
                    except OSError as exc:
                        log.warning("could not hold the best weights in a temporary file "
                                    "(%s); keeping them in memory", exc)
                if self._spilled is None:
                    self.best_state = {k: v.detach().clone() for k, v in state.items()}
            self._current = None

    def _drop(self) -> None:
        self.best_state = None
        if self._spilled is not None:
            self._spilled.close()
            self._spilled = None

    def state(self) -> dict[str, torch.Tensor] | None:
        """The best weights (the module's own while they are its present ones), or ``None``
        when they are not kept (``reset``, or nothing recorded)."""
        if self._current is not None:
            return self._current.state_dict()
        if self._spilled is not None:
            return self._spilled.load()
        return self.best_state

    def restore(self, module: torch.nn.Module) -> None:
        """Put the best weights back into ``module``."""
        if self._current is module:
            return
        if self._spilled is not None:
            self._spilled.copy_into(module)
        elif self.best_state is not None:
            module.load_state_dict(self.best_state)
        elif self.reset is not None:
            self.reset(module)


@dataclass
class TrainingRun:
    """What :func:`train_with_early_stopping` did.

    Attributes
    ----------
    history
        One dict per epoch: ``epoch``, ``train_loss``, ``seconds`` and, when scored,
        ``validation_rmse``.
    best_epoch
        The epoch whose weights were kept (0: the initial weights were best); the last epoch
        when nothing was scored.
    best_score
        Its validation RMSE (``nan`` when nothing was scored).
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_score: float


def train_with_early_stopping(
    trainer: Trainer,
    max_epochs: int,
    *,
    score: Callable[[], float] | None = None,
    patience: int | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: NetworkCheckpoint | None = None,
    reset: Callable[[torch.nn.Module], None] | None = None,
    on_batch_end: Callable[[int, int], None] | None = None,
) -> TrainingRun:
    """Train up to ``max_epochs``, keeping the weights of the best validation epoch.

    The untrained weights (epoch 0) are scored too and kept when no epoch beats them; they do
    not start the patience count, since the first epochs of a fresh network are often worse
    than where it started (a residual network starts at the baseline).

    Parameters
    ----------
    trainer
        Trains one epoch per call.
    max_epochs
        Upper bound on the epochs.
    score
        Validation RMSE of the current weights; ``None`` trains exactly ``max_epochs``.
    patience
        Stop after this many epochs without improvement (``None``: never stop early, but
        still keep the best epoch's weights).
    on_epoch_end
        Called with each epoch's history entry (it may add to it).
    checkpoint
        Restores this network when it had finished or was interrupted, and saves the state
        after every epoch (:mod:`autorec.checkpoint`).
    reset
        Returns the network to its epoch-0 predictions without a copy of its initial weights
        (see :class:`EarlyStopping`); without it, the initial weights are copied.
    on_batch_end
        Called after every batch with (batches done, batches in the epoch).
    """
    if checkpoint is not None and checkpoint.finished is not None:  # checkpoints (issue 8)
        return checkpoint.restore_finished(trainer.net)
    trainer.on_batch_end = on_batch_end
    history: list[dict[str, Any]] = []
    stopper = EarlyStopping(patience if patience is not None else max_epochs + 1)
    # the untrained weights: a fallback, not the patience anchor
    initial = EarlyStopping(0, reset=reset)
    stop = False
    if checkpoint is not None and checkpoint.interrupted is not None:
        history, stop = checkpoint.restore(trainer, stopper, initial)
    elif score is not None:
        initial.update(0, score(), trainer.net)
        log.info("epoch 0 (the untrained network): validation RMSE %.4f", initial.best_score)
    for _ in range(0 if stop else max_epochs - len(history)):
        stopper.hold()
        initial.hold()
        stats = trainer.train_epoch()
        entry: dict[str, Any] = {"epoch": stats.epoch, "train_loss": stats.train_loss,
                                 "seconds": stats.seconds}
        stop = False
        if score is not None:
            entry["validation_rmse"] = score()
            if not math.isfinite(entry["validation_rmse"]):
                # the weights after the epoch's steps are not finite, though every loss
                # (taken before its step) was: one batch an epoch, a huge learning rate
                raise TrainingError.diverged(stats.epoch, "validation RMSE",
                                             entry["validation_rmse"])
            stop = stopper.update(stats.epoch, entry["validation_rmse"], trainer.net)
        if on_epoch_end is not None:
            on_epoch_end(entry)
        history.append(entry)
        log.info("epoch %d: %s", entry["epoch"], ", ".join(
            f"{key.replace('_', ' ')} {value:.4f}" if isinstance(value, float)
            else f"{key.replace('_', ' ')} {value}" for key, value in entry.items()
            if key != "epoch"))
        if checkpoint is not None:
            checkpoint.save(trainer, stopper, initial, history, stop)
        if stop:
            break
    if score is None:
        run = TrainingRun(history, trainer.epoch, math.nan)
    else:
        stopper = initial if initial.best_score <= stopper.best_score else stopper
        stopper.restore(trainer.net)
        run = TrainingRun(history, stopper.best_epoch, stopper.best_score)
    if checkpoint is not None:
        checkpoint.finish(trainer.net, run)
    return run


class NetworkCheckpoint(Protocol):
    """What :func:`train_with_early_stopping` asks of one network's checkpoint (implemented by
    :class:`autorec.checkpoint.NetworkCheckpoint`, which sits above this module)."""

    finished: dict[str, Any] | None
    interrupted: dict[str, Any] | None

    def restore_finished(self, net: torch.nn.Module) -> TrainingRun: ...

    def restore(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping
                ) -> tuple[list[dict[str, Any]], bool]: ...

    def save(self, trainer: Trainer, stopper: EarlyStopping, initial: EarlyStopping,
             history: list[dict[str, Any]], stop: bool) -> None: ...

    def finish(self, net: torch.nn.Module, run: TrainingRun) -> None: ...
