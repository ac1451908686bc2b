"""``autorec serve``: answer predict / recommend / fold-in requests for a saved model over HTTP."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import device_name, integer_type, positive_int

#: What to run when FastAPI or uvicorn is missing.
INSTALL_HINT = "pip install 'autorec[serve]'"

_port = integer_type("a port from 0 to 65535 (0: any free port)", lambda value: 0 <= value <= 65535)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve a saved model over HTTP (FastAPI + uvicorn)",
        description="Load a model saved by 'autorec train --save DIR' once and answer JSON "
        "requests: POST /predict {\"pairs\": [[user, item], ...]}, POST /recommend "
        "{\"user\": ID, \"n\": N, \"exclude_seen\": true}, POST /fold-in {\"ratings\": "
        "{item: rating}, \"n\": N}, GET /health, GET /model; the OpenAPI schema is at /docs. "
        f"Needs the serve extra: {INSTALL_HINT}. Ctrl-C stops it.",
    )
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="the model folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; "
                        "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=_port, default=8000,
                        help="port (default: %(default)s; 0: any free port, printed)")
    parser.add_argument("--device", default="cpu", metavar="DEV", type=device_name,
                        help="cpu (default), cuda, cuda:N, or auto")
    limits = parser.add_argument_group("request limits")
    limits.add_argument("--max-pairs", type=positive_int, default=10_000, metavar="N",
                        help="pairs per /predict request, items per /fold-in request "
                        "(default: %(default)s)")
    limits.add_argument("--max-ratings", type=positive_int, default=10_000, metavar="N",
                        help="ratings per /fold-in request (default: %(default)s)")
    limits.add_argument("--max-n", type=positive_int, default=1_000, metavar="N",
                        help="largest n of /recommend and /fold-in (default: %(default)s)")
    limits.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, metavar="B",
                        help="request body size (default: %(default)s)")
    limits.add_argument("--max-id-length", type=positive_int, default=256, metavar="N",
                        help="characters of a text id (default: %(default)s, or the model's "
                        "longest id where that is longer)")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..exceptions import AutorecError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise AutorecError(f"serving needs FastAPI and uvicorn: {INSTALL_HINT}") from None

    from ..estimator import load_model
    from ..persist import read_model_info
    from ..serve import Limits, bind, create_app, url_of
    from ..serve import run as run_server

    if not args.host.strip():
        args.parser_error("--host needs an address")
    device = None if args.device == "auto" else args.device
    info = read_model_info(args.model)
    model = load_model(args.model, device=device)
    limits = Limits(max_body_bytes=args.max_body_bytes, max_pairs=args.max_pairs,
                    max_ratings=args.max_ratings, max_n=args.max_n,
                    max_id_length=args.max_id_length)
    app = create_app(model, info=info, limits=limits)
    sock = bind(args.host, args.port)
    url = url_of(sock)
    print(f"serving {args.model} ({model.variant}-AutoRec, {len(model.users_)} users, "
          f"{len(model.items_)} items) at {url}  (API docs: {url}/docs; Ctrl-C stops)",
          flush=True)
    run_server(app, sock, log_level="info" if args.verbose else "warning",
               access_log=args.verbose > 0)
    return 0
