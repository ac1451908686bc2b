"""``autorec datasets``: the builtin data sets, their published sizes, and which are here."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import data_folder


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "datasets",
        help="list the builtin data sets and whether each is available locally",
        description="List the builtin MovieLens data sets with their sizes as GroupLens "
        "publishes them (ratings, users, movies in the catalogue) and where each is found "
        "locally: --data-dir or $AUTOREC_DATA_DIR, then the download cache. Nothing is "
        "downloaded.",
    )
    parser.add_argument("--data-dir", type=data_folder, metavar="DIR",
                        help="folder holding data sets as DIR/<name>/... "
                        "(default: $AUTOREC_DATA_DIR)")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..data.builtin import DATASETS, IncompleteCopyError, find_local_dir

    rows = []
    for name, spec in DATASETS.items():
        ratings, users, items = spec.published or (0, 0, 0)
        try:
            folder = find_local_dir(name, args.data_dir)
            local = f"yes ({folder})" if folder is not None else "no (downloaded on first use)"
        except IncompleteCopyError as exc:  # a damaged copy: its row says so
            local = f"no: {exc}"
        rows.append((name, f"{ratings:,}", f"{users:,}", f"{items:,}", local))
    table = [("name", "ratings", "users", "items", "local"), *rows]
    widths = [max(len(row[k]) for row in table) for k in range(4)]
    for row in table:  # the name left-aligned, the counts right-aligned
        print("  ".join([row[0].ljust(widths[0]),
                         *(row[k].rjust(widths[k]) for k in range(1, 4)), row[4]]))
    return 0
