"""Running the app under uvicorn: in the foreground (``autorec serve``) or in a thread.

The listening socket is bound here, before uvicorn starts, so that a port in use or a bad
host is one clear ``OSError`` (``autorec serve`` exits 2 with one line), and so that port
``0`` (any free port) can be told to the caller.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "bind", "run", "url_of"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free port, see ``getsockname``).

    Raises
    ------
    OSError
        The address cannot be resolved or listened on (in use, no permission); the message
        names ``host:port``.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host}:{port}: unknown host ({exc.strerror})") from None
    # IPv4 first: "localhost" then listens where clients of 127.0.0.1 look
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


#: Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in progress before cancelling
#: them: a client that stalls halfway through sending its body held the server up for as
#: long as it stalled (uvicorn waits without end by default).
SHUTDOWN_GRACE = 10.0


def _config(app: Any, log_level: str, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off",
                          timeout_keep_alive=30, server_header=False,
                          timeout_graceful_shutdown=SHUTDOWN_GRACE)


def run(app: Any, sock: socket.socket, *, log_level: str = "warning",
        access_log: bool = False) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM (uvicorn's graceful shutdown)."""
    uvicorn.Server(_config(app, log_level, access_log)).run(sockets=[sock])


class BackgroundServer:
    """uvicorn serving ``app`` in a daemon thread, on a loopback port; a context manager.

    Examples
    --------
    >>> with BackgroundServer(create_app(model)) as server:   # doctest: +SKIP
    ...     urllib.request.urlopen(server.url + "/health").read()
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning", access_log: bool = False,
                 start_timeout: float = 30.0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.access_log = access_log
        self.start_timeout = start_timeout
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundServer:
        sock = bind(self.host, self.port)
        self.url = url_of(sock)
        self._server = uvicorn.Server(_config(self.app, self.log_level, self.access_log))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="autorec-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        """Stop the server and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
