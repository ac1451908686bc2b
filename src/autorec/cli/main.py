"""Entry point of the ``autorec`` command: parses, dispatches, turns errors into exit codes.

Exit status: 0 success, 2 bad input (options, data files, unavailable data) with one line on
stderr, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..exceptions import AutorecError
from . import train
from ._common import OneLineParser


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="autorec",
                           description="AutoRec autoencoders for explicit rating prediction.")
    parser.add_argument("--version", action="version", version=f"autorec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug) to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND",
                                       parser_class=OneLineParser)
    subparsers.required = True
    train.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except (AutorecError, ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"autorec {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autorec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
