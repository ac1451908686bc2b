"""Pieces shared by the commands: an argparse that fails in one line, typed options, output."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import IO, Any, NoReturn

from .._io import atomic_write

__all__ = ["MAX_SEED", "OneLineParser", "fraction", "nonnegative_float", "output_dir",
           "positive_float", "positive_int", "seed", "separator", "write_json_atomic"]

#: Seeds are 0 .. 2**32 - 1 (numpy's SeedSequence takes no negative seed).
MAX_SEED = 2**32 - 1


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, "
                                         f"got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def seed(text: str) -> int:
    """A seed: an integer from 0 to :data:`MAX_SEED`."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def separator(text: str) -> str:
    """A field separator: one character, '::', or 'tab' (also written \\t)."""
    from ..data.readers import check_separator  # pandas: imported only when parsing

    try:
        return check_separator(text)  # type: ignore[return-value]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_dir(text: str) -> Path:
    """An output folder: any non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder, got {text!r}")
    return Path(text)


def check_output_dir(path: Path) -> None:
    """Fail early (before any work) when ``path`` cannot become an output folder."""
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {path}: {parent} exists and is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"--out {path}: {parent} is not writable")
            return


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (see :func:`autorec._io.atomic_write`:
    permissions follow the umask; an ``OSError`` names ``path``)."""

    def write(handle: IO[str]) -> None:
        json.dump(payload, handle, indent=2, sort_keys=False, default=_jsonable)
        handle.write("\n")

    atomic_write(path, write)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def eprint(message: str) -> None:
    print(message, file=sys.stderr)
