"""Progress of training and of loading large files: a `tqdm <https://tqdm.github.io>`_ bar on
a terminal, plain lines elsewhere, nothing when quiet.

The mode follows the stream the bars would go to (standard error by default): ``"bar"`` on a
terminal (``TERM`` not ``dumb``), bars redrawn in place with the whole lines (one per epoch)
above them on standard output (``tqdm.write``); ``"lines"`` on a file, a pipe or a CI log,
whole lines only; ``"off"`` when quiet or in a process of a data-parallel run other than
rank 0 (``RANK`` set and not ``0``). ``AUTOREC_PROGRESS=bar|lines|off`` forces a mode. The
library itself never shows progress: the command line asks for it, and so can a script.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import IO, Any, Literal, get_args

from tqdm import tqdm

__all__ = ["MODES", "EpochProgress", "LoadBar", "epoch_line", "progress_mode"]

Mode = Literal["bar", "lines", "off"]
MODES: tuple[str, ...] = get_args(Mode)
#: Environment variable that forces a mode.
ENV_MODE = "AUTOREC_PROGRESS"


def progress_mode(stream: IO[str] | None = None, *, quiet: bool = False,
                  mode: Mode | None = None) -> Mode:
    """How progress shows on ``stream`` (default standard error): ``"off"`` when ``quiet`` or
    in a process other than rank 0 of a data-parallel run, else ``mode`` if given, else the
    mode ``AUTOREC_PROGRESS`` forces, else as the module docstring says."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if quiet or os.environ.get("RANK", "0").strip() not in ("", "0"):
        return "off"  # quiet, or not rank 0 of several processes (only rank 0 prints)
    forced = mode or os.environ.get(ENV_MODE, "").strip().lower()
    if forced in MODES:
        return forced  # type: ignore[return-value]
    try:
        terminal = bool((sys.stderr if stream is None else stream).isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return "bar" if terminal and os.environ.get("TERM", "") != "dumb" else "lines"


def _bar(total: int | None, desc: str, unit: str, stream: IO[str] | None, mode: Mode,
         **options: Any) -> tqdm:
    """A tqdm bar that vanishes when closed; a silent one unless ``mode`` is ``"bar"``."""
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                dynamic_ncols=True, disable=mode != "bar", **options)


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
        self.mode = progress_mode(stream, quiet=quiet, mode=mode)
        self.interval = interval
        self._stream = stream
        self._bar: tqdm | None = None
        self._last_line = -math.inf

    def __call__(self, report: Any) -> None:
        if self.mode == "off":
            return
        reading = report.stage == "reading"
        if self.mode == "bar" and reading:
            if self._bar is None:
                self._bar = _bar(report.bytes_total, os.path.basename(str(report.source)), "B",
                                 self._stream, "bar", unit_scale=True)
            self._bar.set_postfix(ratings=f"{report.rows:,}", refresh=False)
            self._bar.update(report.bytes_read - self._bar.n)
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        now = time.monotonic()
        if not (reading and now - self._last_line < self.interval):
            self._last_line = now
            print(report, file=self._stream or sys.stderr, flush=True)


# -- training ----------------------------------------------------------------------------------
def epoch_line(entry: dict[str, Any], epochs: int, *, networks: int = 1, label: str = "") -> str:
    """The line ``autorec train`` prints for one epoch's history entry."""
    network = f"network {entry.get('member', 1)}/{networks} " if networks > 1 else ""
    l2 = f"l2 {entry['l2']:g} " if "l2" in entry else ""  # one of several values tried
    parts = [f"{label}{l2}{network}epoch {entry['epoch']:3d}/{epochs}",
             f"train loss {entry['train_loss']:.4f}"]
    if entry.get("validation_rmse") is not None:
        parts.append(f"validation RMSE {entry['validation_rmse']:.4f}")
    if entry.get("eval_rmse") is not None:
        parts.append(f"test RMSE {entry['eval_rmse']:.4f}")
    parts.append(f"{entry['seconds']:.2f}s")
    return "  ".join(parts)


class EpochProgress:
    """An ``on_epoch_end`` callback for :meth:`AutoRec.fit` (and :meth:`batch`, an
    ``on_batch_end`` one): on a terminal, a bar over each network's epochs and one over the
    batches of the epoch; one line per epoch (:func:`epoch_line`) on ``out``
    (default standard output) unless quiet.

    Parameters
    ----------
    epochs
        Most epochs per network (the bar's total; early stopping may end it sooner).
    networks
        Networks trained one after the other (a bar each).
    label
        Starts every line (``"fold-2: "``).
    quiet
        Show nothing.
    stream
        Where the bars go (default standard error); its being a terminal decides the mode.
    out
        Where the lines go (default standard output).
    mode
        Force ``"bar"``, ``"lines"`` or ``"off"`` (default: :func:`progress_mode`).
    lines
        Print the line of each epoch (:func:`epoch_line`); ``False`` for only the bars.

    Call :meth:`close` (or use it as a context manager) when ``fit`` returns.

    Examples
    --------
    >>> with EpochProgress(model.epochs, networks=2, quiet=args.quiet) as show:  # doctest: +SKIP
    ...     model.fit(train, eval_set=test, on_epoch_end=show, on_batch_end=show.batch)
    """

    #: In ``"lines"`` mode, an epoch prints where it is every this many seconds.
    BATCH_LINE_SECONDS = 30.0

    def __init__(self, epochs: int, *, networks: int = 1, label: str = "", quiet: bool = False,
                 stream: IO[str] | None = None, out: IO[str] | None = None,
                 mode: Mode | None = None, lines: bool = True) -> None:
        self.epochs = epochs
        self.networks = networks
        self.label = label
        self.mode = progress_mode(stream, quiet=quiet, mode=mode)
        self._stream = stream
        self._out = out
        self._lines = lines
        self._member: Any = None
        self._bar: tqdm | None = None
        self._batches: tqdm | None = None
        self._epoch_started = self._last_batch_line = time.monotonic()

    def __call__(self, entry: dict[str, Any]) -> None:
        member = entry.get("member", 1), entry.get("l2")  # a bar per network and l2 value
        if self._bar is None or member != self._member:
            if self._bar is not None:
                self._bar.close()
            self._member = member
            which = (f"network {member[0]}/{self.networks}" if self.networks > 1
                     else "training") + (f" l2 {member[1]:g}" if member[1] is not None else "")
            self._bar = _bar(self.epochs, f"{self.label}{which}", " epochs", self._stream,
                             self.mode)
        if self._lines and self.mode != "off":
            out = self._out or sys.stdout
            line = epoch_line(entry, self.epochs, networks=self.networks, label=self.label)
            tqdm.write(line, file=out)  # above the bars on a terminal
            out.flush()
        figures = {"loss": entry.get("train_loss"), "val": entry.get("validation_rmse"),
                   "test": entry.get("eval_rmse")}
        self._bar.set_postfix({k: f"{v:.4f}" for k, v in figures.items() if v is not None},
                              refresh=False)
        self._bar.update(1)

    def batch(self, done: int, total: int) -> None:
        """A step of the epoch in progress ended (``done`` of ``total`` batches): a bar over
        the batches on a terminal; in plain lines, one line every :attr:`BATCH_LINE_SECONDS`
        of a long epoch (100 million ratings take minutes an epoch), none for short ones."""
        now = time.monotonic()
        if done <= 1 or self._batches is None:
            self._epoch_started = self._last_batch_line = now
            if self._batches is not None:
                self._batches.close()
            self._batches = _bar(total, f"{self.label}epoch", " batches", self._stream,
                                 self.mode)
        self._batches.update(done - self._batches.n)
        if self.mode == "lines" and now - self._last_batch_line >= self.BATCH_LINE_SECONDS:
            self._last_batch_line = now
            print(f"{self.label}  ... {done}/{total} batches of the epoch, "
                  f"{now - self._epoch_started:.0f}s", file=self._stream or sys.stderr,
                  flush=True)  # beside the loading lines, not among the results
        if done >= total:
            self._batches.close()
            self._batches = None

    def close(self) -> None:
        for bar in (self._batches, self._bar):
            if bar is not None:
                bar.close()
        self._batches = self._bar = None

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
