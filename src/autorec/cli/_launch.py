"""The launcher of ``autorec train --nproc N`` and the one-line error report of a data-parallel
run's processes (issue 8); the process group itself is :mod:`autorec.distributed`'s."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..distributed import (
    DEFAULT_TIMEOUT,
    LAUNCHER_ENV,
    TIMED_OUT,
    DistributedError,
    launched,
    wants_cuda,
)
from ..exceptions import first_line

__all__ = ["MAX_PROCESSES_PER_CORE", "check_cpu_processes", "launch", "report_error"]

#: Most CPU processes per core ``--nproc`` starts: each holds a copy of the model and of the
#: data, and beyond one per core they only share the cores.
MAX_PROCESSES_PER_CORE = 4


def _cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_cpu_processes(nproc: int, cores: int | None = None) -> str | None:
    """The warning for ``nproc`` CPU processes on ``cores`` cores (default: this process's),
    ``None`` when there are cores enough.

    Raises
    ------
    ValueError
        More than :data:`MAX_PROCESSES_PER_CORE` processes per core.
    """
    cores = cores or _cores()
    if nproc > MAX_PROCESSES_PER_CORE * cores:
        raise ValueError(f"--nproc {nproc} is more than {MAX_PROCESSES_PER_CORE} processes per "
                         f"core ({cores} core{'s' if cores > 1 else ''} here): each process "
                         "holds the model and the data; use at most one per core")
    if nproc > cores:
        return (f"--nproc {nproc} starts more processes than the {cores} core"
                f"{'s' if cores > 1 else ''} here: they share the cores (no speed-up) and "
                "each holds the model and the data")
    return None


def report_error(line: str, exc: BaseException, status: int = 2) -> None:
    """Report a command's one-line error, once for the whole job; ``status`` is the exit
    status the process ends with (recorded for the launcher, which may stop this process
    before it exits).

    A worker of a data-parallel run also leaves it in torch elastic's error file
    (``TORCHELASTIC_ERROR_FILE``) for the launcher; under ``autorec train --nproc`` the
    launcher prints it, under plain torchrun rank 0 does (every rank meets the same input
    errors), and any rank that lost contact with the others says so.
    """
    if not launched():
        print(line, file=sys.stderr)
        return
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        with contextlib.suppress(OSError), open(error_file, "w", encoding="utf-8") as handle:
            json.dump({"message": line, "timestamp": int(time.time()), "status": status},
                      handle)
    if os.environ.get(LAUNCHER_ENV):
        return
    if os.environ.get("RANK", "0") == "0" or isinstance(exc, DistributedError):
        print(line, file=sys.stderr)


def launch(nproc: int, argv: Sequence[str], *, device: str | None = None,
           command: str = "train", timeout: float = DEFAULT_TIMEOUT) -> int:
    """Run ``python -m autorec ARGV`` as ``nproc`` processes on this machine, as
    ``torchrun --standalone --nproc-per-node NPROC --max-restarts 0`` would; returns the
    exit status.

    When a worker fails, torch's elastic agent stops the others and this prints one line:
    the first worker's own error, or which worker died of what signal. Each worker gets
    ``OMP_NUM_THREADS`` = cores / ``nproc`` (unless set); on CUDA (``device`` ``cuda``, or
    ``None`` where CUDA is available) worker ``k`` takes GPU ``k``.

    Raises
    ------
    ValueError
        ``device`` names one GPU (``cuda:1``), there are fewer GPUs than ``nproc``, or more
        than :data:`MAX_PROCESSES_PER_CORE` processes per core on the CPU
        (:func:`check_cpu_processes`).
    """
    cuda = wants_cuda(device)
    if cuda and device not in (None, "auto", "cuda"):
        raise ValueError(f"--device {device} names one GPU, but each of the {nproc} processes "
                         "takes the GPU of its local rank: use --device cuda (or auto)")
    if cuda and nproc > torch.cuda.device_count():
        raise ValueError(f"--nproc {nproc} on CUDA needs {nproc} GPUs, one per process; this "
                         f"machine has {torch.cuda.device_count()} (or use --device cpu)")
    if not cuda:
        warning = check_cpu_processes(nproc)
        if warning:
            print(f"autorec {command}: warning: {warning}", file=sys.stderr)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    quiet = _silence_elastic_logs()
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"autorec-{uuid.uuid4().hex}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0",
        rdzv_configs={"timeout": int(max(timeout, 60))}, max_restarts=0,
        monitor_interval=0.1, shutdown_timeout=5)
    env = {LAUNCHER_ENV: str(os.getpid()), "TORCH_CPP_LOG_LEVEL": "ERROR"}
    if not cuda and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update({key: value for key, value in env.items()
                       if key not in os.environ or key == LAUNCHER_ENV})
    try:
        elastic_launch(config, sys.executable)("-m", "autorec", *argv)
    except ChildFailedError as exc:
        line, status = _describe_failure(command, exc.failures)
        print(line, file=sys.stderr)
        return status
    except SignalException as exc:  # as one process says it (autorec.cli.main)
        terminated = int(exc.sigval) == signal.SIGTERM
        print(f"autorec: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + int(exc.sigval)
    except Exception as exc:  # rendezvous or start-up failures of the agent itself
        print(f"autorec {command}: error: could not run {nproc} processes: "
              f"{first_line(exc, 200)}", file=sys.stderr)
        return 1
    finally:
        quiet()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return 0


def _silence_elastic_logs() -> Callable[[], None]:
    """torch's elastic agent logs its own account of each start and failure; :func:`launch`
    reports in one line instead (``-v`` shows them). Returns what undoes it."""
    root = logging.getLogger()
    level = logging.getLogger("autorec").getEffectiveLevel()
    if level <= logging.INFO:  # -v: autorec's level for the agent's log too
        elastic = logging.getLogger("torch.distributed.elastic")
        before = elastic.level
        elastic.setLevel(level)
        return lambda: elastic.setLevel(before)

    def keep(record: logging.LogRecord) -> bool:
        return not record.name.startswith("torch.distributed")

    handlers = [h for logger in (root, logging.getLogger("torch"),
                                 logging.getLogger("torch.distributed"))
                for h in logger.handlers]
    handlers += [logging.lastResort] if logging.lastResort is not None else []
    for handler in handlers:
        handler.addFilter(keep)

    def undo() -> None:
        for handler in handlers:
            handler.removeFilter(keep)

    return undo


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _describe_failure(command: str, failures: dict[int, Any]) -> tuple[str, int]:
    """One line and an exit status for the failed workers (``rank -> ProcessFailure``:
    ``exitcode``, ``pid``, ``message``, ``timestamp``)."""
    ranked = sorted(failures.items())
    # a worker gave up waiting at an exchange: the ones killed are the hung ones, stopped by
    # the agent (SIGTERM, then SIGKILL for a process that cannot take it)
    waited = [(rank, f) for rank, f in ranked
              if TIMED_OUT in str(getattr(f, "message", ""))]
    if waited:
        rank, failure = waited[0]
        hung = [f"{r} (pid {f.pid})" for r, f in ranked if int(f.exitcode) < 0]
        return (str(failure.message) + (f"; stopped rank{'s' if len(hung) > 1 else ''} "
                                        f"{', '.join(hung)}" if hung else ""), 1)
    # a worker killed by a signal the agent did not send (SIGTERM is how it stops the rest)
    for rank, failure in ranked:
        code = int(failure.exitcode)
        if code < 0 and -code != signal.SIGTERM:
            return (f"autorec {command}: error: the process of rank {rank} (pid "
                    f"{failure.pid}) was killed by {_signal_name(-code)}; the other "
                    "processes were stopped", 1)
    # others lost contact with a worker stopped by a signal without an error of its own
    # (SIGTERM or Ctrl-C sent to that worker): it is the cause, not the ones left waiting
    if any("lost contact" in str(getattr(f, "message", "")) for _, f in ranked):
        for rank, failure in ranked:
            code = int(failure.exitcode)
            own = str(getattr(failure, "message", "")).startswith("autorec ")
            if not own and (code < 0 or code in (128 + signal.SIGINT, 128 + signal.SIGTERM)):
                return (f"autorec {command}: error: the process of rank {rank} (pid "
                        f"{failure.pid}) was stopped by {_signal_name(abs(code) % 128)}; the "
                        "other processes were stopped", 1)
    # the first worker that reported an error of its own
    reported = [(int(getattr(f, "timestamp", 0)), rank, f) for rank, f in ranked
                if str(getattr(f, "message", "")).startswith("autorec ")]
    if reported:
        _, rank, failure = min(reported, key=lambda item: item[:2])
        # the status the worker was ending with: it may have been stopped (SIGTERM) after
        # writing its error, when another worker's failure reached the agent first
        status = (getattr(failure, "error_file_data", None) or {}).get("status")
        code = int(failure.exitcode)
        if isinstance(status, int) and not isinstance(status, bool) and status > 0:
            return str(failure.message), status
        return str(failure.message), code if code > 0 else 1
    rank, failure = ranked[0]
    code = int(failure.exitcode)
    how = f"exited with status {code}" if code > 0 else f"was stopped by {_signal_name(-code)}"
    return (f"autorec {command}: error: the process of rank {rank} (pid {failure.pid}) "
            f"{how}; the other processes were stopped", 1)
