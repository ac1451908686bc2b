"""Progress of long steps (training, evaluation, loading): a bar on a terminal, plain lines
elsewhere, nothing when quiet.

The display follows where it writes (standard error by default):

* ``"bar"``: the stream is a terminal (and ``TERM`` is not ``dumb``): a `tqdm
  <https://tqdm.github.io>`_ bar that redraws in place, with the latest figures beside it;
  lines written with :meth:`Progress.write` appear above it (on standard output).
* ``"lines"``: the stream is not a terminal (a file, a pipe, a CI log): no bar and no
  carriage returns, only whole lines: what :meth:`Progress.write` is given, and a status line
  such as ``training: 12/25 epochs (48%), 3.1 s, loss 0.8123`` at most every ``interval``
  seconds and when the step ends.
* ``"off"``: ``quiet=True``, or a process of a data-parallel run other than rank 0
  (``RANK`` set and not ``0``): nothing at all.

``AUTOREC_PROGRESS=bar|lines|off`` forces a mode (for a terminal that is not detected, or
to silence every bar). The library itself never shows progress: the command line asks for
it (:mod:`autorec.cli`), and so can a script.

Examples
--------
>>> with Progress(total=3, desc="demo", unit="step", mode="lines", interval=None) as bar:
...     for step in range(3):
...         bar.update(1, loss=0.5)
...         bar.write(f"step {step + 1} done")
step 1 done
step 2 done
step 3 done
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Literal

__all__ = ["MODES", "EpochProgress", "LoadBar", "Progress", "Task", "epoch_line",
           "progress_mode", "task", "track"]

Mode = Literal["bar", "lines", "off"]
#: The display modes.
MODES: tuple[str, ...] = ("bar", "lines", "off")
#: Environment variable that forces a mode.
ENV_MODE = "AUTOREC_PROGRESS"


def progress_mode(stream: IO[str] | None = None, *, quiet: bool = False) -> Mode:
    """How progress shows on ``stream`` (default standard error): ``"bar"``, ``"lines"`` or
    ``"off"`` (see the module docstring for the rules)."""
    if quiet:
        return "off"
    forced = os.environ.get(ENV_MODE, "").strip().lower()
    if forced in MODES:
        return forced  # type: ignore[return-value]
    if os.environ.get("RANK", "0").strip() not in ("", "0"):
        return "off"
    stream = sys.stderr if stream is None else stream
    try:
        terminal = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    if terminal and os.environ.get("TERM", "") != "dumb":
        return "bar"
    return "lines"


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


class Progress:
    """Progress of one step of ``total`` units (epochs, splits, bytes...).

    Parameters
    ----------
    total
        Units in the step; ``None`` when unknown.
    desc
        What the step is (``"training"``); starts every status line.
    unit
        What a unit is, in the plural (``"epochs"``).
    quiet
        Show nothing.
    stream
        Where the bar or the status lines go (default standard error); its being a terminal
        decides the mode.
    out
        Where :meth:`write` puts its lines (default standard output).
    interval
        In ``"lines"`` mode, the fewest seconds between two status lines (the first comes
        after ``interval`` seconds, the last when the step ends); ``None``: no status lines,
        only what :meth:`write` is given. ``0``: a status line at every update.
    mode
        Force ``"bar"``, ``"lines"`` or ``"off"`` (default: :func:`progress_mode`).
    leave
        Keep the finished bar on the terminal.
    unit_scale
        Show large counts with SI prefixes (``12.3MB``), for bytes.
    """

    def __init__(self, total: int | None = None, desc: str = "", *, unit: str = "it",
                 quiet: bool = False, stream: IO[str] | None = None,
                 out: IO[str] | None = None, interval: float | None = 10.0,
                 mode: Mode | None = None, leave: bool = True,
                 unit_scale: bool = False) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if total is not None and (isinstance(total, bool) or total < 0):
            raise ValueError(f"total must be a count >= 0 or None, got {total!r}")
        if interval is not None and not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds or None, got {interval!r}")
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval = interval
        self.unit_scale = unit_scale
        self._stream = stream
        self._out = out
        self.mode: Mode = "off" if quiet else (mode or progress_mode(stream))
        self.n = 0
        self.stats: dict[str, Any] = {}
        self._started = time.monotonic()
        self._last_line = self._started
        self._last_n: int | None = None
        self._closed = False
        self._bar: Any = None
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc or None, unit=f" {unit}" if not unit_scale
                             else unit, file=self.stream, leave=leave, dynamic_ncols=True,
                             unit_scale=unit_scale)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr if self._stream is None else self._stream

    @property
    def out(self) -> IO[str]:
        return sys.stdout if self._out is None else self._out

    @property
    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.monotonic() - self._started

    def update(self, n: int = 1, **stats: Any) -> None:
        """Advance by ``n`` units; ``stats`` (``loss=0.81``) are shown beside the progress."""
        self.n += n
        self.stats.update(stats)
        if self.mode == "bar":
            if stats:
                self._bar.set_postfix({k: _figure(v) for k, v in self.stats.items()},
                                      refresh=False)
            self._bar.update(n)
        elif self.mode == "lines" and self.interval is not None:
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._status(now)

    def write(self, message: str, *, always: bool = False) -> None:
        """Print a whole line (on ``out``), above the bar when there is one; nothing when
        quiet, unless ``always`` (a result line, such as a row of a table, that ``--quiet``
        does not hide)."""
        if self.mode == "bar":
            from tqdm import tqdm

            tqdm.write(message, file=self.out)
            self.out.flush()
        elif self.mode == "lines" or always:
            print(message, file=self.out, flush=True)

    def close(self) -> None:
        """End the step: the bar stays (``leave``), or a last status line is printed."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines" and self.interval is not None and self._last_n != self.n:
            self._status(time.monotonic(), final=True)

    def _status(self, now: float, final: bool = False) -> None:
        self._last_line, self._last_n = now, self.n
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        share = (f" ({100.0 * self.n / self.total:.0f}%)" if self.total else "")
        figures = "".join(f", {k} {_figure(v)}" for k, v in self.stats.items())
        done = "done, " if final and (self.total is None or self.n >= self.total) else ""
        print(f"{self.desc or 'progress'}: {done}{count} {self.unit}{share} in "
              f"{_seconds(now - self._started)}{figures}", file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.mode == "lines" and exc is not None:
            self._closed = True  # no "done" line for a step that failed
        self.close()

    def wrap_reader(self, handle: Any) -> Any:
        """``handle`` (a binary file) counting the bytes read from it as progress: give the
        result to a reader instead of the file (use ``unit="B", unit_scale=True`` and the
        file size as ``total``)."""
        return _CountingReader(handle, self)


class _CountingReader:
    """A file whose reads advance a :class:`Progress` by the bytes read."""

    def __init__(self, handle: Any, progress: Progress) -> None:
        self._handle = handle
        self._progress = progress

    def read(self, size: int = -1) -> Any:
        data = self._handle.read(size)
        self._progress.update(len(data))
        return data

    def read1(self, size: int = -1) -> Any:
        data = self._handle.read1(size)
        self._progress.update(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        count = self._handle.readinto(buffer)
        self._progress.update(count or 0)
        return count

    def readline(self, size: int = -1) -> Any:
        data = self._handle.readline(size)
        self._progress.update(len(data))
        return data

    def __iter__(self) -> Iterator[Any]:
        for line in self._handle:
            self._progress.update(len(line))
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def track(iterable: Iterable[Any], desc: str = "", *, total: int | None = None,
          **options: Any) -> Iterator[Any]:
    """Iterate over ``iterable`` showing progress (``options`` as :class:`Progress` takes)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, **options) as bar:
        for value in iterable:
            yield value
            bar.update(1)


# -- a step without counts (loading a file) -------------------------------------------------
class Task:
    """A step without a count (see :func:`task`)."""

    def __init__(self, desc: str, mode: Mode, stream: IO[str] | None) -> None:
        self.desc = desc
        self.mode = mode
        self._stream = stream
        self.note = ""
        self._started = time.monotonic()

    @property
    def stream(self) -> IO[str]:
        return sys.stderr if self._stream is None else self._stream

    def done(self, note: str) -> None:
        """What the step gave (``"100,000 ratings"``), shown on its last line."""
        self.note = note

    def _start(self) -> None:
        if self.mode == "off":
            return
        end = "" if self.mode == "bar" else "\n"
        print(f"{self.desc}...", end=end, file=self.stream, flush=True)

    def _finish(self, failed: bool) -> None:
        if self.mode == "off":
            return
        if failed:
            if self.mode == "bar":
                print(file=self.stream, flush=True)  # end the open line
            return
        note = f" ({self.note})" if self.note else ""
        line = f"{self.desc}: done in {_seconds(time.monotonic() - self._started)}{note}"
        prefix = "\r\x1b[2K" if self.mode == "bar" else ""
        print(prefix + line, file=self.stream, flush=True)


class _TaskContext:
    def __init__(self, task: Task) -> None:
        self.task = task

    def __enter__(self) -> Task:
        self.task._start()
        return self.task

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.task._finish(exc is not None)


def task(desc: str, *, quiet: bool = False, stream: IO[str] | None = None,
         mode: Mode | None = None) -> _TaskContext:
    """A context manager for a step without a count, such as loading a large file.

    Shows ``desc...`` when it starts and ``desc: done in 2.3 s (note)`` when it ends (on a
    terminal the second replaces the first); nothing when quiet; on failure only the start.

    Examples
    --------
    >>> with task("loading u.data", mode="lines") as step:   # doctest: +SKIP
    ...     ratings = read_ratings("u.data")
    ...     step.done(f"{len(ratings):,} ratings")
    """
    chosen: Mode = "off" if quiet else (mode or progress_mode(stream))
    return _TaskContext(Task(desc, chosen, stream))


# -- loading a large file ------------------------------------------------------------------------
class LoadBar:
    """A ``progress`` callback for :func:`autorec.data.read_ratings` and
    :func:`autorec.load_dataset`: the reader's :class:`~autorec.data.LoadProgress` reports
    (files of 64 MB or more, read block by block) as a bar of bytes on a terminal, as their
    one-line text otherwise (at most every ``interval`` seconds while reading, and every later
    stage), nothing when quiet.

    Examples
    --------
    >>> ratings = read_ratings("ratings.csv", progress=LoadBar())  # doctest: +SKIP
    """

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None,
                 interval: float = 5.0, mode: Mode | None = None) -> None:
        self.mode: Mode = "off" if quiet else (mode or progress_mode(stream))
        self.interval = interval
        self._stream = stream
        self._bar: Progress | None = None
        self._last_line = -math.inf

    @property
    def stream(self) -> IO[str]:
        return sys.stderr if self._stream is None else self._stream

    def __call__(self, report: Any) -> None:
        if self.mode == "off":
            return
        reading = report.stage == "reading"
        if self.mode == "bar" and reading:
            if self._bar is None:
                self._bar = Progress(report.bytes_total, os.path.basename(str(report.source)),
                                     unit="B", unit_scale=True, stream=self._stream,
                                     mode="bar", leave=False)
            self._bar.update(report.bytes_read - self._bar.n, ratings=f"{report.rows:,}")
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        now = time.monotonic()
        if reading and now - self._last_line < self.interval:
            return
        self._last_line = now
        print(str(report), file=self.stream, flush=True)


# -- training ----------------------------------------------------------------------------------
def epoch_line(entry: dict[str, Any], epochs: int, *, networks: int = 1, label: str = "") -> str:
    """The line ``autorec train`` prints for one epoch's history entry."""
    network = f"network {entry.get('member', 1)}/{networks} " if networks > 1 else ""
    parts = [f"{label}{network}epoch {entry['epoch']:3d}/{epochs}",
             f"train loss {entry['train_loss']:.4f}"]
    if entry.get("validation_rmse") is not None:
        parts.append(f"validation RMSE {entry['validation_rmse']:.4f}")
    if entry.get("eval_rmse") is not None:
        parts.append(f"test RMSE {entry['eval_rmse']:.4f}")
    parts.append(f"{entry['seconds']:.2f}s")
    return "  ".join(parts)


class EpochProgress:
    """An ``on_epoch_end`` callback for :meth:`AutoRec.fit`: a bar over each network's epochs
    and one line per epoch (:func:`epoch_line`, or ``line``), as :class:`Progress` shows them.

    Parameters
    ----------
    epochs
        Most epochs per network (the bar's total; early stopping may end it sooner).
    networks
        Networks trained one after the other (a bar each).
    label
        Starts every line (``"fold-2: "``).
    quiet, stream, out, mode
        As :class:`Progress`.
    line
        Makes the line of an epoch from its history entry (default :func:`epoch_line`);
        ``None`` for no lines, only the bar.

    Call :meth:`close` (or use it as a context manager) when ``fit`` returns.

    Examples
    --------
    >>> with EpochProgress(model.epochs, networks=2, quiet=args.quiet) as show:  # doctest: +SKIP
    ...     model.fit(train, eval_set=test, on_epoch_end=show)
    """

    def __init__(self, epochs: int, *, networks: int = 1, label: str = "", quiet: bool = False,
                 stream: IO[str] | None = None, out: IO[str] | None = None,
                 mode: Mode | None = None,
                 line: Callable[[dict[str, Any]], str] | Literal["default"] | None = "default"
                 ) -> None:
        self.epochs = epochs
        self.networks = networks
        self.label = label
        self._options: dict[str, Any] = {"quiet": quiet, "stream": stream, "out": out,
                                         "mode": mode}
        if line == "default":
            self._line: Callable[[dict[str, Any]], str] | None = (
                lambda entry: epoch_line(entry, epochs, networks=networks, label=label))
        else:
            self._line = line  # type: ignore[assignment]
        self._member: Any = None
        self._bar: Progress | None = None
        self._batches: Progress | None = None
        self._epoch_started = time.monotonic()
        self._last_batch_line = self._epoch_started
        self._mode: Mode = "off" if quiet else (mode or progress_mode(stream))

    def __call__(self, entry: dict[str, Any]) -> None:
        member = entry.get("member", 1)
        if self._bar is None or member != self._member:
            if self._bar is not None:
                self._bar.close()
            self._member = member
            which = f"network {member}/{self.networks}" if self.networks > 1 else "training"
            self._bar = Progress(self.epochs, f"{self.label}{which}", unit="epochs",
                                 interval=None, leave=False, **self._options)
        figures = {"loss": entry.get("train_loss")}
        if entry.get("validation_rmse") is not None:
            figures["val"] = entry["validation_rmse"]
        if entry.get("eval_rmse") is not None:
            figures["test"] = entry["eval_rmse"]
        if self._line is not None:
            self._bar.write(self._line(entry))
        self._bar.update(1, **{k: v for k, v in figures.items() if v is not None})

    #: In ``"lines"`` mode, an epoch prints where it is every this many seconds.
    BATCH_LINE_SECONDS = 30.0

    def batch(self, done: int, total: int) -> None:
        """A step of the epoch in progress ended (``done`` of ``total`` batches, the
        ``on_batch_end`` callback of :meth:`AutoRec.fit`): a bar over the batches on a
        terminal; in plain lines, one line every :attr:`BATCH_LINE_SECONDS` of a long epoch
        (100 million ratings take minutes an epoch), none for short ones."""
        now = time.monotonic()
        if done <= 1:
            self._epoch_started = self._last_batch_line = now
        if self._mode == "bar":
            if self._batches is None or done <= 1:
                if self._batches is not None:
                    self._batches.close()
                self._batches = Progress(total, f"{self.label}epoch", unit="batches",
                                         interval=None, leave=False, **self._options)
            self._batches.update(done - self._batches.n)
            if done >= total:
                self._batches.close()
                self._batches = None
        elif self._mode == "lines" and now - self._last_batch_line >= self.BATCH_LINE_SECONDS:
            self._last_batch_line = now
            print(f"{self.label}  ... {done}/{total} batches of the epoch, "
                  f"{now - self._epoch_started:.0f}s", file=self._options["out"] or sys.stdout,
                  flush=True)

    def close(self) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
