"""The data a command that trains reads: one source (a builtin data set, ``--data``, or
``--train``/``--test``), the loading progress, and MovieLens-100K's canonical splits; the
commands import these through :mod:`autorec.cli._options`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from ..data import load_dataset, read_ratings
from ..data.ratings import Ratings
from ..data.readers import LoadProgress
from ..split import canonical_split

__all__ = ["DEFAULT_DATASET", "canonical", "check_canonical", "check_sources", "load_progress",
           "load_ratings", "read_file"]

DEFAULT_DATASET = "ml-100k"


def check_sources(args: argparse.Namespace, named: Callable[..., str]) -> None:
    """One data source, and a split that fits it (``named``: as :func:`resolve` gives it)."""
    files = [name for name in ("data", "train", "test") if getattr(args, name, None) is not None]
    train, test = getattr(args, "train", None), getattr(args, "test", None)
    if args.dataset is not None and files:
        args.parser_error("give either --dataset or ratings files, not both")
    if args.data is not None and (train is not None or test is not None):
        args.parser_error("give either --data or --train/--test, not both")
    if (train is None) != (test is None):
        given, other = ("train", "test") if train is not None else ("test", "train")
        args.parser_error(f"{named(given, f'--{given}')} needs --{other}: --train and --test "
                          "go together")
    if files:  # where builtin data sets come from would be ignored without a word (set in
        # a config file, shared by several commands, it is fine)
        for dest, flag in (("data_dir", "--data-dir"),
                           ("download", "--download/--no-download")):
            if getattr(args, dest, None) is not None and named(dest, flag) == flag:
                args.parser_error(f"{flag} is for builtin data sets (--dataset); ratings files "
                                  "(--data, --train/--test) are read from their own paths")
    else:  # a builtin data set, read in its own format: the file options would be
        for dest in ("sep", "columns", "no_header"):  # ignored without a word
            # (no_header = false, the default spelled out in a file, asks nothing)
            if getattr(args, dest, None) not in (None, False):
                args.parser_error(f"{named(dest, '--' + dest.replace('_', '-'))} describes a "
                                  "ratings file (--data, --train/--test); a builtin data set "
                                  "is read in its own format")
        if args.dataset is None:
            args.dataset = DEFAULT_DATASET


def read_file(path: Path, args: argparse.Namespace) -> Ratings:
    return read_ratings(path, sep=args.sep, header=not args.no_header, columns=args.columns,
                        duplicates=args.duplicates, progress=load_progress(args))


def load_ratings(args: argparse.Namespace) -> tuple[Ratings, str]:
    """The ratings of ``--data`` or ``--dataset`` and a description."""
    if args.data is not None:
        return read_file(args.data, args), str(args.data)
    return (load_dataset(args.dataset, args.data_dir, download=args.download,
                         duplicates=args.duplicates, progress=load_progress(args)), args.dataset)


def load_progress(args: argparse.Namespace) -> Callable[[LoadProgress], None] | None:
    """Print the reader's reports on a large file (read block by block) to standard error,
    one line each; none with ``--quiet`` or in a data-parallel process other than rank 0."""
    if getattr(args, "quiet", None) or os.environ.get("RANK", "0").strip() not in ("", "0"):
        return None
    from ..progress import LoadBar

    return LoadBar()


def canonical(args: argparse.Namespace, name: str, option: str) -> tuple[Ratings, Ratings]:
    """An ML-100K canonical split (``u1``..``u5``, ``ua``, ``ub``) asked for by ``option``."""
    check_canonical(args, option)
    return canonical_split(name, args.data_dir, download=args.download,
                           duplicates=args.duplicates)


def check_canonical(args: argparse.Namespace, option: str) -> None:
    """Refuse a canonical split asked for by ``option`` of another data source (before any
    output: evaluate printed its table's header first)."""
    if args.data is not None or getattr(args, "train", None) is not None:
        args.parser_error(f"{option} is a canonical MovieLens-100K split; it needs --dataset "
                          "ml-100k")
    if args.dataset not in (None, "ml-100k"):
        args.parser_error(f"{option} exists only for ml-100k, not {args.dataset}")
