"""Entry point of the ``autorec`` command: parses, dispatches, turns errors into exit codes.

Exit status: 0 success, 2 bad input (options, data files, unavailable data, not enough
memory) with one line on stderr, 1 a run that failed on valid input (training diverged), 130
interrupted.

Importing this module is cheap: the commands, and numpy, pandas and torch behind them, are
imported inside :func:`main`, so that Ctrl-C in the first seconds ends like any other
interruption, with one line and status 130 instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn


def build_parser() -> Any:
    """The ``autorec`` argument parser, with every command."""
    from .. import __version__
    from . import datasets, evaluate, predict, recommend, serve, train, tune
    from ._common import OneLineParser

    parser = OneLineParser(prog="autorec",
                           description="AutoRec autoencoders for explicit rating prediction.")
    parser.add_argument("--version", action="version", version=f"autorec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug) to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=OneLineParser)
    for command in (train, evaluate, tune, predict, recommend, datasets, serve):
        sub = command.add_parser(subparsers)
        sub.set_defaults(handler=command.run, parser_error=sub.error)
    from ._options import COMMAND_PARSERS  # for hints naming the other commands' options

    COMMAND_PARSERS.clear()
    COMMAND_PARSERS.update(subparsers.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    interrupted: list[int] = []
    previous = _catch_sigint(interrupted)
    _catch_sigterm(interrupted)  # before the imports: SIGTERM in them said nothing
    try:
        status = _run(argv, interrupted)
        _raise_if_signalled(interrupted)  # a library swallowed the exception: still one
        return status
    except KeyboardInterrupt:
        # of the processes of a data-parallel run (issue 8), rank 0 or the launcher says it
        if os.environ.get("RANK", "0") == "0" and not os.environ.get("AUTOREC_LAUNCHED_BY"):
            print("autorec: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("autorec: terminated", file=sys.stderr)
        return 143  # 128 + SIGTERM, as before, now after the clean-up
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if _sigterm_before:
            signal.signal(signal.SIGTERM, _sigterm_before.pop())


class Terminated(BaseException):
    """SIGTERM in a one-process command: unwinds like Ctrl-C, so that temporary files go and
    nothing is half written; status 143."""


_sigterm_before: list[Any] = []


def _install(signum: int, handler: Any) -> Any:
    """``signal.signal(signum, handler)`` in the main thread; else (or when the interpreter
    refuses) ``None``."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signum, handler)
    except ValueError:  # pragma: no cover - not the main interpreter
        return None


def _catch_sigterm(interrupted: list[int]) -> None:
    """Turn SIGTERM into :class:`Terminated` (and a mark in ``interrupted``), except in a
    process of a data-parallel run (its launcher stops the others with SIGTERM and speaks
    for the job); :func:`_run` lets ``serve`` have the system's own again (uvicorn stops
    gracefully on it)."""

    def on_sigterm(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        raise Terminated

    if "RANK" not in os.environ:
        previous = _install(signal.SIGTERM, on_sigterm)
        if previous is not None:
            _sigterm_before.append(previous)


def _raise_if_signalled(interrupted: list[int]) -> None:
    """Raise what a signal marked in ``interrupted`` raised, if code on the way caught it."""
    if interrupted:
        raise Terminated if interrupted[-1] == signal.SIGTERM else KeyboardInterrupt


def _catch_sigint(interrupted: list[int]) -> Any:
    """Make Ctrl-C raise KeyboardInterrupt as usual *and* leave a mark in ``interrupted``,
    so that an interruption is not lost when code being imported catches every exception.
    Returns the handler it replaced (``None`` when it could not install one)."""

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    return _install(signal.SIGINT, on_sigint)


def _joined_negative_values(argv: Sequence[str]) -> list[str]:
    """``--rating-scale -10,10`` as ``--rating-scale=-10,10``: argparse takes a value that
    starts with ``-`` (and is not one number) for an option."""
    out = list(argv)
    for k in range(len(out) - 2, -1, -1):
        flag = out[k]  # or a prefix of it, as argparse takes one
        if (flag.startswith("--rat") and "--rating-scale".startswith(flag)
                and re.fullmatch(r"-[\d.][^ ]*", out[k + 1])):
            out[k:k + 2] = [f"{out[k]}={out[k + 1]}"]
    return out


def _run(argv: Sequence[str] | None, interrupted: list[int] | None = None) -> int:
    import logging

    from ..exceptions import AutorecError, TrainingError, first_line

    parser = build_parser()
    _raise_if_signalled(interrupted or [])  # during the imports above, swallowed on the way
    args, unknown = parser.parse_known_args(_joined_negative_values(
        sys.argv[1:] if argv is None else argv))
    for token in list(unknown):  # -v after the command too: `autorec train ... -v`
        if token == "--verbose" or (token.startswith("-v") and set(token[1:]) == {"v"}):
            args.verbose += 1 if token == "--verbose" else len(token) - 1
            unknown.remove(token)
    if unknown:  # refused by the command's own parser: `autorec train: error: ...`
        args.parser_error(f"unrecognized arguments: {' '.join(unknown)}")
    from .._kernel_source import ENV_KERNELS, KERNEL_CHOICES
    from ..progress import ENV_MODE, MODES

    for name, choices in ((ENV_MODE, MODES), (ENV_KERNELS, KERNEL_CHOICES)):
        forced = os.environ.get(name, "").strip()
        if forced and forced.lower() not in choices:  # it was ignored without a word
            args.parser_error(f"${name} is {forced!r}; expected {', '.join(choices)} (or "
                              "unset)")
    if args.command == "serve" and _sigterm_before:
        signal.signal(signal.SIGTERM, _sigterm_before.pop())
    if args.command == "train":  # what `train --nproc N` starts N processes with (issue 8)
        args.argv = list(sys.argv[1:] if argv is None else argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    # -v and -vv are autorec's log; the libraries it uses say only their warnings
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:  # without it, as the root logger says (WARNING, or a caller's setting)
        logging.getLogger("autorec").setLevel(level)
    try:
        from ..distributed import launched

        if args.command != "train" and launched():  # each process would run it all
            raise ValueError("runs in one process: of autorec's commands only train runs as "
                             "several (torchrun, or train --nproc N)")
        return int(args.handler(args))
    except BrokenPipeError:  # the reader of standard output went away (`| head`): no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit's flush
        return 141  # 128 + SIGPIPE, as a shell tool's `| head` ends
    except (AutorecError, ValueError, OSError) as exc:
        _report(args.command, exc, 2)
        return 2
    except MemoryError as exc:  # outside a training epoch (which says more): a traceback
        _report(args.command, MemoryError(
            f"ran out of memory ({first_line(exc, 200)}); free some memory, or ask for less "
            "(less data; to train: a smaller --hidden or --ensemble, --ranking none)"), 2)
        return 2
    except TrainingError as exc:  # valid input, failed run: not a usage error
        _report(args.command, exc, 1)
        return 1


def cli() -> NoReturn:
    """The ``autorec`` command (and ``python -m autorec``): :func:`main`, then the exit.

    Two kinds of run end without the interpreter's shutdown, which could abort them (status
    134, SIGABRT) after the run's own report: one whose text reader was stopped by bad input
    (pyarrow's read-ahead threads still hold Python objects:
    :func:`autorec.data._source.held_on_error`), and any process of a data-parallel run (a
    gloo worker thread may still be releasing its last exchange's tensors)."""
    status = main()
    # looked up, not imported: after a Ctrl-C during the first imports the import would run
    # over half-initialised numpy and pandas modules (a traceback after "interrupted")
    stopped = getattr(sys.modules.get("autorec.data._source"), "readers_stopped_by_error",
                      None)  # (None too when that module's own import was cut short)
    in_group = "RANK" in os.environ and "torch.distributed" in sys.modules
    if in_group or (stopped is not None and stopped()):
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
                stream.flush()
        os._exit(status)
    sys.exit(status)


def _report(command: str, exc: BaseException, status: int) -> None:
    """One line on stderr; once per job in a data-parallel run (autorec.distributed)."""
    from ._launch import report_error

    if isinstance(exc, OSError) and exc.strerror:  # no "[Errno 28]"; the path when known
        message = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    else:
        message = str(exc)
    line = message.splitlines()[0] if message else type(exc).__name__
    report_error(f"autorec {command}: error: {line}", exc, status)


if __name__ == "__main__":
    cli()
