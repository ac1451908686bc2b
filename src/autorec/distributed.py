"""Data-parallel training with torch.distributed: the process group, sharding, reductions and
the rank-0 helpers, so that model and trainer code never branch on the rank.

How a run is laid out (``torchrun --nproc-per-node N -m autorec train ...``, or
``autorec train --nproc N ...``, which starts the same thing, :mod:`autorec.cli._launch`):

* Every process (rank) reads the data and makes the same split, validation carve-out, biases
  and initial weights: they are deterministic given the seed.
* Rows are shuffled in the same order on every rank; each global batch of ``batch_size``
  rows is cut into ``world_size`` contiguous parts, one per rank (:meth:`World.batches`). A
  part may be empty (a last batch smaller than the number of ranks): zero gradients.
* Gradients are **summed** over the ranks (:meth:`World.reduce_gradients`), so the update is
  the single-process update for the whole batch (the loss is a sum of squared errors).
  Row-sparse gradients (:mod:`autorec.sparse`) are reduced with dense collectives only, on
  gloo and nccl alike: a ``MAX`` all-reduce of a byte per weight row gives the union of the
  touched rows, then a ``SUM`` all-reduce of a ``len(union) x hidden`` buffer the coalesced
  gradient (never the dense ``n_rows x hidden`` matrix). Rprop's full-batch gradient is
  accumulated over the rank's parts and summed once.
* The paper's ``l2`` penalty is added by each rank in proportion to the ratings in its part
  (:mod:`autorec.train`), so the sum over ranks adds it once.
* The loss is summed with the gradients, and metrics are reduced as sums (squared errors,
  absolute errors, count: :func:`pooled_errors`), never as a mean of means: every rank takes
  the same decision on a diverging run and on early stopping.
* Dropout masks come from a generator seeded per rank (:meth:`World.rank_seed`), so a run on
  N processes is not bitwise the single-process one (without dropout the weights agree to
  float32 rounding).
* Only rank 0 prints, logs and writes files (:func:`quiet_unless_main`, ``World.is_main``).

Failures end the job instead of hanging: a collective waits for a peer at most the process
group's timeout, one that fails because a peer died raises :class:`DistributedError` (exit
status 1, one line), and the launcher (torch's elastic agent with ``max_restarts=0``:
:mod:`autorec.cli._launch`) stops the other workers as soon as one exits.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from .exceptions import TrainingError, first_line
from .metrics import mae, rmse

__all__ = ["DEFAULT_TIMEOUT", "LAUNCHER_ENV", "TIMED_OUT", "DistributedError", "World", "launched",
           "local_world_size", "pooled_errors", "process_group", "quiet_unless_main",
           "rank_device", "wants_cuda", "world"]

log = logging.getLogger(__name__)

#: Seconds a collective waits for the other processes before the run fails.
DEFAULT_TIMEOUT = 600.0

#: Set for the workers that ``autorec train --nproc N`` starts: the launching process reports
#: their errors, in one line.
LAUNCHER_ENV = "AUTOREC_LAUNCHED_BY"


class DistributedError(TrainingError):
    """The processes of a data-parallel run lost contact (a peer died, or a collective timed
    out), or could not form their group. Exit status 1, like any failed run on valid input."""


@dataclass(frozen=True)
class World:
    """The processes of a run, as seen from one of them.

    ``World()`` is the single process: every method is then the identity (or a plain
    computation), so code written against a ``World`` runs unchanged without a process group.

    Attributes
    ----------
    rank, size
        This process's global rank and the number of processes.
    backend
        ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
    """

    rank: int = 0
    size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this process logs, prints and writes files (rank 0)."""
        return self.rank == 0

    # -- sharding -----------------------------------------------------------------------------
    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def batches(self, rows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        """This rank's part of each global batch of ``batch_size`` consecutive ``rows``.

        Every rank yields as many parts as there are global batches (some may be empty), so
        that all of them take part in the same collectives.
        """
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            yield chunk if self.size == 1 else chunk[self.shard(len(chunk))]

    def rank_seed(self, seed: int) -> int:
        """A seed of this rank's own (``seed`` itself on a single process)."""
        if self.size == 1:
            return seed
        state = np.random.SeedSequence([seed, self.rank]).generate_state(2, np.uint64)
        return int(state[0] >> np.uint64(1))

    # -- reductions ---------------------------------------------------------------------------
    @property
    def _device(self) -> torch.device:
        """Where this rank's collectives take their tensors (NCCL: its GPU)."""
        return (torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl"
                else torch.device("cpu"))

    def check_same(self, digest: str, what: str) -> None:
        """Refuse (``ValueError``, on every rank) a run whose ranks hold different ``what``:
        ``digest`` (hex) of each compared with rank 0's. A run launched by hand on several
        machines, each with its own copy, otherwise mixed splits, hung or aborted."""
        if self.size == 1:
            return
        mine = torch.tensor([int(digest[:15], 16)], dtype=torch.int64, device=self._device)
        every = [torch.empty_like(mine) for _ in range(self.size)]
        try:
            dist.all_gather(every, mine)
        except RuntimeError as exc:
            raise self._lost(exc) from None
        values = [int(value) for value in every]
        differ = [rank for rank, value in enumerate(values) if value != values[0]]
        if differ:
            raise ValueError(f"rank {differ[0]} of {self.size} has other {what} than rank 0: "
                             "every process of a data-parallel run needs the same data and "
                             "command")

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks, in float64 (the same result on every rank)."""
        if self.size == 1:
            return [float(v) for v in values]
        buffer = torch.tensor([float(v) for v in values], dtype=torch.float64,
                              device=self._device)
        self._all_reduce(buffer)
        return buffer.cpu().tolist()

    def _all_reduce(self, tensor: torch.Tensor, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM,
                    async_op: bool = False) -> dist.Work | None:
        try:
            return dist.all_reduce(tensor, op=op, async_op=async_op)
        except RuntimeError as exc:
            raise self._lost(exc) from None

    def _wait(self, works: list[dist.Work]) -> None:
        try:
            for work in works:
                work.wait()
        except RuntimeError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> DistributedError:
        if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
            waited = f" {_timeout:g} s" if _timeout is not None else ""
            return DistributedError(
                f"rank {self.rank} of {self.size} {TIMED_OUT}{waited} (--dist-timeout) for the "
                "other processes at an exchange: one of them hung or fell far behind "
                f"({first_line(exc, 120)})")
        return DistributedError(
            f"rank {self.rank} of {self.size} lost contact with the other processes (a process "
            f"died, or a collective timed out): {first_line(exc, 200)}")

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter], loss: torch.Tensor
                         ) -> torch.Tensor:
        """Sum every parameter's ``.grad`` and ``loss`` over the ranks (module docstring).

        Dense gradients are all-reduced in place; a row-sparse COO gradient is replaced by the
        coalesced sum over the ranks. Returns the summed loss.
        """
        if self.size == 1:
            return loss
        total = loss.detach().reshape(1).clone()
        works = [self._all_reduce(total, async_op=True)]
        union: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        for param in params:
            grad = param.grad
            if grad is None:  # no backward on this rank: it adds zeros
                param.grad = grad = torch.zeros_like(param)
            if not grad.is_sparse:
                works.append(self._all_reduce(grad, async_op=True))
                continue
            grad = grad if grad.is_coalesced() else grad.coalesce()
            rows = grad._indices()[0]
            values = grad._values()
            if union is None or not torch.equal(union[0], rows):
                # the encoder and decoder weights (and a sparse decoder bias) share the
                # touched rows: one union for them all
                union = (rows, *self._union(rows, grad.shape[0]))
            _, touched, position = union
            summed = values.new_zeros((len(touched), *values.shape[1:]))
            summed.index_copy_(0, position, values)
            works.append(self._all_reduce(summed, async_op=True))
            param.grad = torch.sparse_coo_tensor(touched.unsqueeze(0), summed, grad.shape,
                                                 is_coalesced=True, check_invariants=False)
        self._wait([work for work in works if work is not None])
        return total[0]

    def _union(self, rows: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows touched on any rank (sorted) and where this rank's ``rows`` are in it."""
        marks = torch.zeros(n_rows, dtype=torch.uint8, device=rows.device)
        marks[rows] = 1
        self._all_reduce(marks, op=dist.ReduceOp.MAX)
        touched = torch.nonzero(marks).squeeze(1)
        return touched, torch.searchsorted(touched, rows)


_SINGLE = World()


def world() -> World:
    """The processes of the current run: the default process group when one is initialised
    with more than one process, else a single process.

    A fit inside an initialised process group (torchrun and ``init_process_group``, which
    the command line does) trains data-parallel across it: every rank must call ``fit`` with
    the same data and settings.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return _SINGLE
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 backend=str(dist.get_backend()))


#: What a rank's error says when a collective timed out (:func:`autorec.cli._launch` looks
#: for it: the process that did not answer is then the hung one, killed by the launcher).
TIMED_OUT = "gave up waiting"
#: The process group's timeout in seconds, once :func:`process_group` has made one.
_timeout: float | None = None

#: Pairs predicted at a time by :func:`pooled_errors` on one process: this bounds a
#: prediction's temporaries (several float64 arrays per pair).
SCORE_CHUNK = 1 << 19


def pooled_errors(truth: np.ndarray, predict: Callable[[slice], np.ndarray]
                  ) -> tuple[float, float]:
    """RMSE and MAE over all of ``truth``; under torch.distributed each rank predicts only its
    part (``predict(part)`` gives the predictions for ``truth[part]``) and the sums of squared
    and absolute errors and the count are summed over the ranks.

    On a single process this is exactly ``rmse`` and ``mae`` of ``predict(slice(None))`` up
    to :data:`SCORE_CHUNK` pairs; more are predicted that many at a time, their errors summed
    in float64.
    """
    group = world()
    if group.size == 1 and len(truth) <= SCORE_CHUNK:
        predicted = predict(slice(None))
        return rmse(truth, predicted), mae(truth, predicted)
    sse = sae = 0.0
    parts = ([slice(start, start + SCORE_CHUNK) for start in range(0, len(truth), SCORE_CHUNK)]
             if group.size == 1 else [group.shard(len(truth))])
    for part in parts:
        errors = np.asarray(predict(part), dtype=np.float64) - np.asarray(truth[part], np.float64)
        sse += float(np.square(errors).sum())
        sae += float(np.abs(errors).sum())
    n = len(truth)
    if group.size > 1:
        sse, sae, n = group.sum([sse, sae, len(errors)])
    if n == 0:
        raise ValueError("cannot score zero ratings")
    return math.sqrt(sse / n), sae / n


# -- the process group ---------------------------------------------------------------------------
def launched() -> bool:
    """Whether this process is one of several started by torchrun (or ``--nproc``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_world_size() -> int:
    """Processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def wants_cuda(device: str | None) -> bool:
    """Whether ``device`` (``None``/``auto``: CUDA when available) is a CUDA device."""
    if device is None or device == "auto":
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def rank_device(device: str | None) -> str | None:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` where CUDA is asked for (or
    available, for ``None``), else ``device`` unchanged."""
    if not launched() or not wants_cuda(device):
        return device
    if device in (None, "auto", "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if local_world_size() > 1:
        raise ValueError(f"--device {device} names one GPU, but each of the "
                         f"{local_world_size()} processes on this machine takes the GPU of "
                         "its local rank: use --device cuda (or auto)")
    return device


@contextmanager
def process_group(device: str | None, timeout: float = DEFAULT_TIMEOUT) -> Iterator[World]:
    """Join the process group torchrun describes (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``/``MASTER_PORT`` in the environment) for the duration of the block, with
    nccl when training on CUDA (one GPU per local rank) and gloo otherwise. Outside torchrun
    (or with one process) this does nothing and gives the single-process :class:`World`.

    ``timeout``: seconds any collective waits for the other processes before failing.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    cuda = wants_cuda(device)
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if cuda else "gloo"
    global _timeout
    _timeout = timeout
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"rank {os.environ.get('RANK', '?')} could not join the "
                               f"process group ({backend}): {first_line(exc, 200)}") from None
    group = world()
    if group.is_main:  # rank 0 speaks for the job (quiet_unless_main)
        log.info("%d processes joined the process group (%s)", group.size, backend)
    _exit_with_launcher()
    try:
        yield group
        # all ranks finish together: one leaving early can tear down a peer's connections
        # while it exits (gloo then aborts the process)
        try:
            dist.barrier()
        except RuntimeError as exc:
            raise group._lost(exc) from None
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dist.destroy_process_group()


def _exit_with_launcher() -> None:
    """A worker of ``autorec train --nproc`` ends when its launcher is gone (killed with
    SIGKILL, it cannot stop its workers itself): a daemon thread checks the parent process
    every second."""
    launcher = os.environ.get(LAUNCHER_ENV, "")
    if not launcher.isdigit() or os.getppid() != int(launcher):
        return

    def watch() -> None:
        while os.getppid() == int(launcher):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="autorec-launcher-watch", daemon=True).start()


@contextmanager
def quiet_unless_main(group: World) -> Iterator[None]:
    """On ranks other than 0, for the duration of the block: standard output goes nowhere,
    autorec's log records and Python warnings are dropped (rank 0 speaks for the job)."""
    if group.is_main:
        yield
        return
    # a level above every record: autorec.fitting & co. take it from here (``disabled``
    # silenced only the records of the "autorec" logger itself, not its children's)
    logger = logging.getLogger("autorec")
    level = logger.level
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            logger.setLevel(level)
