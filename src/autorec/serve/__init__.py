"""The HTTP service of ``autorec serve``: a FastAPI app over one fitted model.

:func:`create_app` builds the app (:mod:`autorec.serve.app` documents the endpoints),
:mod:`autorec.serve.schemas` holds the request and response models and the size
:class:`Limits`, :mod:`autorec.serve.server` runs it under uvicorn. FastAPI and uvicorn are
the optional extra ``autorec[serve]``; without them importing this package raises an
``ImportError`` that says how to install them.

Example
-------
::

    from autorec import load_model
    from autorec.serve import BackgroundServer, create_app

    app = create_app(load_model("models/ml-100k"))
    with BackgroundServer(app) as server:          # uvicorn in a thread, a free port
        print(server.url)                           # POST {server.url}/predict ...
"""

from __future__ import annotations

INSTALL_HINT = "pip install 'autorec[serve]'"

try:
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the CLI test without FastAPI
    raise ImportError(f"autorec serve needs FastAPI and uvicorn: {INSTALL_HINT}") from exc

from .app import create_app, model_metadata  # noqa: E402
from .schemas import Limits  # noqa: E402
from .server import BackgroundServer, bind, run, url_of  # noqa: E402

__all__ = ["INSTALL_HINT", "BackgroundServer", "Limits", "bind", "create_app",
           "model_metadata", "run", "url_of"]
