"""Pieces shared by the commands: an argparse that fails in one line, typed options, output."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import numbers
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from .._io import (
    OutputPathError,
    atomic_write,
    check_output_file,
    check_output_folder,
    is_inside,
    json_ready,
    names_a_folder,
    same_path,
)

__all__ = ["MAX_SEED", "STDOUT", "OneLineParser", "Outputs", "device_name", "fraction",
           "integer_type", "nonnegative_float", "number_type", "output_dir", "output_file",
           "positive_float", "positive_int", "seconds", "seed", "separator", "unit_interval",
           "write_csv", "write_json_atomic"]

#: What an output option takes to mean standard output (where the command supports it).
STDOUT = "-"

#: Seeds are 0 .. 2**32 - 1 (numpy's SeedSequence takes no negative seed).
MAX_SEED = 2**32 - 1


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer_type(expected: str, ok: Callable[[int], bool]) -> Callable[[str], int]:
    """An option type: an integer for which ``ok`` holds, else "expected EXPECTED"."""

    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def number_type(expected: str, ok: Callable[[float], bool]) -> Callable[[str], float]:
    """An option type: a finite number for which ``ok`` holds, else "expected EXPECTED"."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = integer_type("a positive integer", lambda value: value >= 1)
seed = integer_type(f"an integer from 0 to {MAX_SEED}", lambda value: 0 <= value <= MAX_SEED)
positive_float = number_type("a number > 0", lambda value: value > 0)
nonnegative_float = number_type("a number >= 0", lambda value: value >= 0)
fraction = number_type("a number strictly between 0 and 1", lambda value: 0 < value < 1)
unit_interval = number_type("a number in [0, 1)", lambda value: 0 <= value < 1)
at_least_two = integer_type("an integer >= 2", lambda value: value >= 2)


def device_name(text: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N (whether CUDA is there is checked later)."""
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text) is None:
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


#: A time limit in seconds, from one (less leaves the processes no time to join; gloo then
#: "timed out after 0ms") up to a million (11.6 days): larger ones overflow the timedelta
#: and the milliseconds that torch.distributed and gloo keep.
MAX_SECONDS = 1e6
seconds = number_type(f"a number of seconds >= 1 and at most {MAX_SECONDS:.0e}",
                      lambda value: 1 <= value <= MAX_SECONDS)


def l2_values(text: str) -> float | list[float]:
    """One penalty, or several separated by commas (chosen on validation)."""
    values = [nonnegative_float(part) for part in text.split(",")]
    return values[0] if len(values) == 1 else values


def separator(text: str) -> str:
    """A field separator: one character, '::', or 'tab' (also written \\t)."""
    from ..data.readers import check_separator  # pandas: imported only when parsing

    try:
        return check_separator(text)  # type: ignore[return-value]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def data_folder(text: str) -> Path:
    """``--data-dir``: a folder that exists (a misspelt one would be passed over)."""
    if not text.strip():  # Path("") is the current folder
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}")
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{'not a folder' if path.exists() else 'no such folder'}: {text}")
    return path


def output_file(text: str) -> Path:
    """An output path; ``-`` is standard output where the option takes it, and ``./-`` a
    file named ``-`` (as an absolute path: ``Path("./-")`` is ``-``). An empty one is refused
    (``Path("")`` is the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    if names_a_folder(text):  # Path("x.csv/") is x.csv
        raise argparse.ArgumentTypeError(f"{text} ends with a separator, so it names a "
                                         "folder; give a file name")
    path = Path(text)
    return path.absolute() if text != STDOUT and str(path) == STDOUT else path


def output_dir(text: str) -> Path:
    """An output folder: any non-empty path (``./-``: a folder named ``-``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}")
    path = Path(text)
    return path.absolute() if text != STDOUT and str(path) == STDOUT else path


@dataclass(frozen=True)
class _Path:
    option: str
    path: Path
    kind: str  # input-file, input-folder, file, folder, model, checkpoint
    files: tuple[str, ...] = ()

    @property
    def written(self) -> list[Path]:
        """The files this output writes (a file output: itself)."""
        return [self.path] if self.kind == "file" else [self.path / n for n in self.files]


class Outputs:
    """The output paths of one command, checked before any work starts.

    Register the inputs first (:meth:`input`), then each output; each is checked at once and
    against the paths registered before it. Every refusal is a one-line ``ValueError`` naming
    the option and the path. Refused:

    * an output that is one of the inputs (the same file, through any link), or lies inside
      the model folder being read;
    * a device, a named pipe, a socket, or a folder where a file is meant (``-`` means
      standard output, for the options that take it: ``stdout=True``); ``-`` elsewhere;
    * a file whose folder does not exist (unless an output folder registered before it makes
      that folder: ``--out DIR --plot DIR/curves.png``) or is not a folder; a folder under a
      file; a folder that cannot be written (probed with a temporary file);
    * two outputs that would write the same file; anything written inside the ``--save``
      model folder other than the model itself and ``--out``'s ``metrics.json`` (the same
      folder for ``--out`` and ``--save`` is fine: their files have different names); a
      checkpoint folder that is the model folder, or inside it, or holds it.
    """

    def __init__(self) -> None:
        self._paths: list[_Path] = []

    def input(self, option: str, path: str | os.PathLike[str] | None, *,
              folder: bool = False) -> None:
        """An input of the command (a file, or with ``folder`` a folder it reads from)."""
        if path is not None and str(path).strip() not in ("", STDOUT):
            self._paths.append(_Path(option, Path(path), "input-folder" if folder
                                     else "input-file"))

    def file(self, option: str, path: str | os.PathLike[str] | None, *,
             stdout: bool = False) -> Path | None:
        """Check an output file; ``None`` when there is none, or it is ``-`` (standard
        output, accepted only with ``stdout``)."""
        if path is None:
            return None
        if str(path) == STDOUT:
            if stdout:
                return None
            raise ValueError(f"{option} -: standard output is not supported here; give a "
                             "file name (./- for a file named -)")
        hint = f" (write {option} - for standard output)" if stdout else ""
        folder = Path(path).parent
        try:
            made = [known.path for known in self._paths
                    if known.kind in ("folder", "model", "checkpoint")]
            if not folder.exists() and any(is_inside(folder, place) for place in made):
                check_output_folder(folder)  # made by this command: --plot DIR/x.png --out DIR
            else:
                check_output_file(path)
        except OutputPathError as exc:
            raise ValueError(f"{option}: {exc}{hint if 'regular file' in str(exc) else ''}"
                             ) from None
        return self._add(_Path(option, Path(path), "file"))

    def plot(self, option: str, path: str | os.PathLike[str] | None) -> Path | None:
        """Check a figure's path: its format and matplotlib (:func:`autorec.plots.
        check_plot_path`), then as any output file."""
        if path is not None and str(path) != STDOUT:
            from ..plots import check_plot_path

            try:
                check_plot_path(path)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
        return self.file(option, path)

    def folder(self, option: str, path: str | os.PathLike[str] | None,
               files: tuple[str, ...]) -> Path | None:
        """Check an output folder in which the command writes ``files`` (names)."""

        def check(folder: str | os.PathLike[str]) -> None:
            check_output_folder(folder)
            for name in files:
                target = Path(folder) / name
                if target.exists() or target.is_symlink():
                    check_output_file(target)

        return self._folder(option, path, "folder", check, files)

    def model(self, option: str, path: str | os.PathLike[str] | None) -> Path | None:
        """Check a model folder to save to (:func:`autorec.persist.check_save_path`)."""
        from ..persist import JSON_FILE, WEIGHTS_FILE, check_save_path

        return self._folder(option, path, "model", check_save_path, (JSON_FILE, WEIGHTS_FILE))

    def checkpoint(self, option: str, path: str | os.PathLike[str] | None, *,
                   resume: bool, folds: bool | None = None) -> Path | None:
        """Check a checkpoint folder (:func:`autorec.checkpoint.check_folder`; ``folds``:
        the run keeps its checkpoints in ``fold-K`` folders)."""
        from ..checkpoint import check_folder

        return self._folder(option, path, "checkpoint",
                            lambda folder: check_folder(folder, resume=resume, folds=folds))

    def _folder(self, option: str, path: str | os.PathLike[str] | None, kind: str,
                check: Callable[[str | os.PathLike[str]], Any], files: tuple[str, ...] = ()
                ) -> Path | None:
        """An output folder of ``kind``: not standard output, passing ``check`` (its
        ``ValueError`` named by ``option``), apart from the paths registered before."""
        if path is None:
            return None
        if str(path) == STDOUT:
            raise ValueError(f"{option} -: standard output is not supported here; give a "
                             "folder (./- for a folder named -)")
        try:
            check(path)
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
        return self._add(_Path(option, Path(path), kind, files))

    def _add(self, new: _Path) -> Path:
        for old in self._paths:
            problem = _conflict(new, old) or _conflict(old, new)
            if problem:
                raise ValueError(problem)
        self._paths.append(new)
        return new.path


def _conflict(out: _Path, other: _Path) -> str | None:
    """Why output ``out`` cannot go with ``other`` (an input or an output); ``None`` if it
    can. Called both ways round."""
    if out.kind.startswith("input"):
        return None
    if other.kind == "input-file":
        for path in [*out.written, out.path]:
            if same_path(path, other.path):
                return (f"{out.option} {out.path} would overwrite {other.option} {other.path}, "
                        "an input of this command; give another path")
    elif other.kind == "input-folder":
        if is_inside(out.path, other.path):
            return (f"{out.option} {out.path} is inside {other.option} {other.path}, which "
                    "this command reads; write it somewhere else")
    elif other.kind == "model" and out.kind != "model":
        inside = is_inside(out.path, other.path)
        if out.kind == "folder" and same_path(out.path, other.path):
            inside = any(path.name in other.files for path in out.written)
        if out.kind == "checkpoint" and (inside or is_inside(other.path, out.path)):
            return (f"{out.option} {out.path} and the model folder {other.option} "
                    f"{other.path} must be apart (neither the same folder nor one inside "
                    "the other): a model folder holds only the model's files")
        if inside:
            return (f"{out.option} {out.path} would write inside the model folder "
                    f"{other.option} {other.path}, which holds only the model's files and "
                    "--out's metrics.json; give another path")
    if (other.kind == "checkpoint" and out.kind not in ("checkpoint", "model")
            and is_inside(out.path, other.path)):
        # found only after training otherwise: kfold's fold-K folders, or the next --resume,
        # which refuses files autorec did not write there
        return (f"{out.option} {out.path} would write inside the checkpoint folder "
                f"{other.option} {other.path}, which holds only autorec's checkpoints; give "
                "another path")
    if out.kind == "file" and other.kind in ("folder", "model", "checkpoint") and (
            same_path(out.path, other.path) or is_inside(other.path, out.path)):
        return (f"{out.option} {out.path} is a file, and {other.option} {other.path} a folder "
                "this command writes in; give different paths")
    if not other.kind.startswith("input"):
        for mine in out.written:
            for theirs in other.written:
                if same_path(mine, theirs):
                    return (f"{out.option} {out.path} and {other.option} {other.path} would "
                            f"both write {mine}; give different paths")
    return None


def write_csv(frame: Any, output: Path | None) -> None:
    """``frame`` (a DataFrame) as CSV with ``\n`` line ends: to ``output`` atomically, or
    with ``None`` to standard output."""

    def write(handle: IO[str]) -> None:
        frame.to_csv(handle, index=False, lineterminator="\n")

    if output is None:
        if sys.stdout is None:  # closed (>&-): to_csv(None) returned the text unwritten
            raise OSError(errno.EBADF, "cannot write to standard output (--output -): closed")
        try:
            write(sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader left: status 141, as for any command
            raise
        except OSError as exc:  # a full disk: the line named no output
            raise OSError(exc.errno, f"cannot write to standard output (--output -): "
                                     f"{exc.strerror or exc}") from exc
    else:
        atomic_write(output, write)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (:func:`autorec._io.atomic_write`).

    Strict JSON: a NaN or infinite number (a figure that does not apply, such as the
    validation RMSE of a run without a validation part) is written as ``null``."""
    cleaned = json_ready(payload)

    def write(handle: IO[str]) -> None:
        json.dump(cleaned, handle, indent=2, sort_keys=False, allow_nan=False)
        handle.write("\n")

    atomic_write(path, write)


def require_finite(figures: dict[str, Any]) -> None:
    """Raise :class:`~autorec.exceptions.TrainingError` (exit status 1: valid input, failed
    run) naming the first of ``figures`` (name -> number) that is not finite."""
    from ..exceptions import TrainingError

    for name, value in figures.items():
        if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
            raise TrainingError(f"{name} is {float(value)}, not a finite number: the model's "
                                "predictions are not finite (ratings too large for float32 "
                                "arithmetic, or a diverged fit: lower --lr or raise --l2)")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a command writes its outputs, one after another: a
    signal between two of them left a new model beside the last run's metrics. One that
    comes meanwhile is noted (whichever thread the system gives it to) and acted on once
    they are all written."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers belong to the main thread
        return
    caught: list[int] = []
    before = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
              for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():  # None: one not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if caught:  # now, under the command's own handler
            signal.raise_signal(caught[0])
