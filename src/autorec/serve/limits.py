"""Request size and body checks before the app sees a request: the ASGI middleware
:class:`RequestLimits` (413, 415 and 422 answers with a one-line ``detail``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._io import DuplicateKeyError, unique_keys
from .schemas import LIMITS, Limits, is_unicode

__all__ = ["RequestLimits"]

#: Bytes of an over-large body read (and dropped) before the 413 is sent, so that the client
#: finishes sending and reads the answer; beyond this the connection is just closed.
_DRAIN_LIMIT = 64 << 20


def _safe(value: Any) -> str:
    """``str(value)`` that UTF-8 can carry (a lone surrogate written as ``\\ud800``)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


# -- request size -------------------------------------------------------------------------------
class RequestLimits:
    """ASGI middleware: the app's :class:`Limits` for the request models, a request body
    over ``limits.max_body_bytes`` refused (413) before the app sees it, and the bodies of
    the JSON endpoints checked before FastAPI parses them.

    A ``Content-Length`` over the limit is refused at once (the body is read and dropped, up
    to 64 MiB, so that the client reads the answer); a body without one (chunked) is counted
    while it is read. The body is read here and handed to the app whole.

    A POST to one of ``json_paths`` needs a JSON Content-Type (415 without one: FastAPI would
    take the body as bytes and answer 422), a UTF-8 body (422), no key twice in one object
    (422: Python's ``json`` would keep the last silently) and no lone surrogate in its text
    (422: it cannot be written back as UTF-8). Malformed JSON is left to FastAPI (422).
    """

    def __init__(self, app: ASGIApp, limits: Limits,
                 json_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.limits = limits
        self.max_bytes = limits.max_body_bytes
        self.json_paths = json_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = LIMITS.set(self.limits)
        try:
            await self._limited(scope, receive, send)
        except asyncio.CancelledError:
            # a request still in progress when the shutdown's grace ran out (a client that
            # stalled halfway through its body): uvicorn cancels it and says so in one line;
            # it is answered 503 here, not logged again as a traceback of the app
            with contextlib.suppress(Exception):
                await _reply(send, 503, "the server is shutting down")
        finally:
            LIMITS.reset(token)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid Content-Length header")
                    return
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, declared)
            await _reply(send, 413, self._message(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await _drain(receive, _DRAIN_LIMIT)
                await _reply(send, 413, self._message(None))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope.get("method") == "POST" and scope.get("path") in self.json_paths:
            status, problem = _json_body_problem(scope, body)
            if problem is not None:
                await _reply(send, status, problem, close=False)
                return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: int | None) -> str:
        got = f", got {size} bytes" if size is not None else ""
        return f"request body too large: at most {self.max_bytes} bytes{got}"


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a refused body (up to ``_DRAIN_LIMIT`` bytes)."""
    seen = 0
    while seen <= min(limit, _DRAIN_LIMIT):
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _reply(send: Send, status: int, detail: str, *, close: bool = True) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_body_problem(scope: Scope, body: bytes) -> tuple[int, str | None]:
    """``(status, one-line problem)`` of a JSON endpoint's request, ``(0, None)`` when FastAPI
    may parse it."""
    import json
    from email.message import Message as Header

    content_type = encoding = ""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-type":
            content_type = value.decode("latin-1").strip()
        elif name.lower() == b"content-encoding":
            encoding = value.decode("latin-1").strip()
    if encoding and encoding.lower() != "identity":  # read as text it was "not UTF-8 (byte 1)"
        return 415, (f"Content-Encoding {_safe(repr(encoding))} is not supported; send the "
                     "body uncompressed")
    header = Header()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    charset = (header.get_param("charset") or "utf-8")
    if (not content_type or header.get_content_maintype() != "application"
            or not (subtype == "json" or subtype.endswith("+json"))
            or str(charset).lower() not in ("utf-8", "utf8")):
        got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        return 415, f"send the body as JSON (Content-Type: application/json), got {got}"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return 422, f"the body is not valid JSON: not UTF-8 text (byte {exc.start})"

    try:
        parsed = json.loads(text, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        key = _safe(repr(exc.args[0]))
        return 422, f"the key {key} appears twice in one JSON object of the body"
    except (json.JSONDecodeError, RecursionError):  # malformed or too deep: FastAPI's answer
        try:  # unless FastAPI reads it after all: json.loads of bytes guesses their encoding
            json.loads(body)
        except (ValueError, RecursionError):
            return 0, None
        return 422, ("the body is not valid JSON: send UTF-8 text without a byte order mark "
                     "(UTF-16 and UTF-32 are not read)")
    except ValueError:  # valid JSON Python will not read: an integer of 4,300+ digits
        return 422, "the body is not readable JSON: it holds an integer of over 4,300 digits"
    if not is_unicode(json.dumps(parsed, ensure_ascii=False)):  # a key or a value
        return 422, "the body holds text that is not Unicode (a lone surrogate such as " \
                    "\\ud800)"
    return 0, None

