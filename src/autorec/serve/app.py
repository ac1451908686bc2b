"""The FastAPI app: one fitted model, answered over HTTP.

Endpoints (the OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

``POST /predict``
    ``{"pairs": [[user, item], ...]}`` -> ``{"predictions": [{"user", "item", "prediction",
    "fallback"}, ...], "n_fallback"}``: :meth:`AutoRec.predict` for the pairs, in order;
    ``fallback`` marks a pair with a user or item the model does not know.
``POST /recommend``
    ``{"user": ID, "n": 10, "exclude_seen": true}`` -> ``{"user", "fallback", "items":
    [{"rank", "item", "score"}, ...]}``: :meth:`AutoRec.recommend` for one user.
``POST /fold-in``
    ``{"ratings": {item: rating, ...}, "n": 10, "exclude_rated": true, "items": null}`` ->
    ``{"fallback", "n_ratings", "n_unknown", "bias", "recommendations": [...],
    "predictions": [{"item", "prediction", "fallback"}, ...]}``: a new user folded in with
    :meth:`AutoRec.fold_in_user` (the model is not changed); predictions for ``items``, or for
    every item the model knows.
``GET /health``
    ``{"status": "ok", "uptime_seconds"}``.
``GET /model``
    The model's variant, constructor parameters, networks, sizes, rating scale, cold policy,
    the versions it was trained with and is served with, and the request limits.

Predictions are the library's, unchanged: the same float64 values ``model.predict`` returns
(JSON numbers carry a float64 exactly). Errors are JSON ``{"detail": "one line"}``; a request
that fails validation also gets ``"errors"`` (``loc``, ``msg``, ``type`` of each problem):

* 422: malformed JSON, a missing or unknown field, a value of the wrong type (no coercion),
  an id that is neither a string nor an integer, a rating that is not a finite float32
  number, ``n`` out of ``1..max_n``, an empty list;
* 413: a body over ``max_body_bytes`` (refused before it is parsed), more pairs, ratings or
  items than the limits allow;
* 415: a body sent with a Content-Type that is not JSON;
* 400: a body FastAPI cannot parse at all (JSON nested too deep);
* 404 / 405: an unknown path or method.

A bad request never gets a 500. The model is called under one lock: requests are answered
concurrently, the model computes one at a time (it uses every core for one request; this
also keeps its caches consistent).
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .schemas import (
    TOO_LARGE,
    FoldInRequest,
    FoldInResponse,
    HealthResponse,
    Limits,
    ModelResponse,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    reset_limits,
    use_limits,
)

if TYPE_CHECKING:
    from ..estimator import AutoRec

__all__ = ["RequestLimits", "create_app", "model_metadata"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Bytes of an over-large body read (and dropped) before the 413 is sent, so that the client
#: finishes sending and reads the answer; beyond this the connection is just closed.
_DRAIN_LIMIT = 64 << 20


def create_app(model: AutoRec, *, info: dict[str, Any] | None = None,
               limits: Limits | None = None, warm: bool = True) -> FastAPI:
    """The HTTP app serving ``model``.

    Parameters
    ----------
    model
        A fitted :class:`~autorec.estimator.AutoRec` (e.g. from
        :func:`autorec.persist.load_model`). The app never changes it.
    info
        The model folder's ``model.json`` (:func:`autorec.persist.read_model_info`): adds the
        versions it was trained with, its creation time and data set to ``GET /model``.
    limits
        Request size limits (default :class:`Limits`).
    warm
        Compute the model's recommendation caches (item codes, seen items) now, so that the
        first request is not the slow one.

    Returns
    -------
    fastapi.FastAPI
        Run it with any ASGI server (``autorec serve`` uses uvicorn); ``app.state.model`` is
        ``model``.
    """
    from .. import __version__

    model._check_fitted()
    limits = limits or Limits()
    lock = threading.Lock()
    started = time.monotonic()
    metadata = model_metadata(model, info)
    metadata["limits"] = limits.as_dict()

    app = FastAPI(
        title="autorec",
        version=__version__,
        summary="AutoRec rating predictions and recommendations over HTTP",
        description="Ids are raw ids as in the training data, sent as JSON strings or "
        "integers and compared by their text. Pairs, users or items the model does not know "
        "get its cold-start fallback, flagged `fallback: true`. Bad requests get a 4xx "
        "with a one-line `detail`.",
    )
    app.state.model = model
    app.state.limits = limits
    app.add_middleware(RequestLimits, limits=limits)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]

    if warm:
        with lock:
            _warm_up(model)

    @app.post("/predict", response_model=PredictResponse,
              summary="predicted ratings for (user, item) pairs")
    def predict(body: PredictRequest) -> dict[str, Any]:
        users = [pair[0] for pair in body.pairs]
        items = [pair[1] for pair in body.pairs]
        with lock, _unprocessable():
            predicted, cold = model.predict(users, items, return_cold=True)
        return {
            "predictions": [
                {"user": user, "item": item, "prediction": value, "fallback": flag}
                for user, item, value, flag in zip(users, items, predicted.tolist(),
                                                   cold.tolist(), strict=True)],
            "n_fallback": int(cold.sum()),
        }

    @app.post("/recommend", response_model=RecommendResponse,
              summary="the top-n items for one user")
    def recommend(body: RecommendRequest) -> dict[str, Any]:
        with lock, _unprocessable():
            table = model.recommend([body.user], n=body.n, exclude_seen=body.exclude_seen)
            known = bool(model.users_.to_index([body.user])[0] >= 0)
        return {"user": body.user, "fallback": not known,
                "items": _recommendations(table)}

    @app.post("/fold-in", response_model=FoldInResponse,
              summary="recommendations and predictions for a new user, from its ratings")
    def fold_in(body: FoldInRequest) -> dict[str, Any]:
        with lock, _unprocessable():
            result = model.fold_in_user(body.ratings, n=body.n,
                                        exclude_rated=body.exclude_rated)
            predictions = _fold_in_predictions(model, result, body.items)
        assert result.recommendations is not None
        return {"fallback": result.n_ratings == 0, "n_ratings": result.n_ratings,
                "n_unknown": result.n_unknown, "bias": result.bias,
                "recommendations": _recommendations(result.recommendations),
                "predictions": predictions}

    @app.get("/health", response_model=HealthResponse, summary="liveness")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "uptime_seconds": time.monotonic() - started}

    @app.get("/model", response_model=ModelResponse,
             summary="the served model: settings, sizes, rating scale, versions, limits")
    async def describe() -> dict[str, Any]:
        return metadata

    return app


# -- answers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _unprocessable() -> Iterator[None]:
    """Turn a ``ValueError`` of the library (a bad value validation let through) into 422."""
    try:
        yield
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=_one_line(exc)) from exc


def _recommendations(table: Any) -> list[dict[str, Any]]:
    return [{"rank": rank, "item": _plain(item), "score": score}
            for rank, item, score in zip(table["rank"].tolist(), table["item_id"].tolist(),
                                         table["score"].tolist(), strict=True)]


def _fold_in_predictions(model: AutoRec, result: Any, items: list[Any] | None
                         ) -> list[dict[str, Any]]:
    """Predictions of the folded-in user for ``items`` (``None``: every known item). An item
    the model does not know gets what ``predict`` would give the user once added: the cold
    policy, with the user's own bias under ``cold="baseline"``."""
    scores = result.scores.to_numpy()
    if items is None:
        return [{"item": _plain(item), "prediction": value, "fallback": False}
                for item, value in zip(result.scores.index.tolist(), scores.tolist(),
                                       strict=True)]
    index = model.items_.to_index(items)
    if model.cold == "baseline":
        unknown = float(model.biases_.mean + result.bias)
    else:
        unknown = float(model.cold_value())
    low, high = model.rating_scale_
    unknown = float(np.clip(unknown, low, high))
    return [{"item": item, "prediction": float(scores[i]) if i >= 0 else unknown,
             "fallback": bool(i < 0)}
            for item, i in zip(items, index.tolist(), strict=True)]


def _plain(value: Any) -> Any:
    """A numpy scalar id as a Python int or str."""
    return value.item() if isinstance(value, np.generic) else value


def _warm_up(model: AutoRec) -> None:
    started = time.perf_counter()
    if len(model.users_):
        model.recommend([model.users_.raw_ids[0]], n=1)
    log.info("recommendation caches computed in %.2f s", time.perf_counter() - started)


def model_metadata(model: AutoRec, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``GET /model`` answers (without ``limits``), JSON-ready (``NaN`` as ``null``)."""
    import fastapi
    import pydantic
    import torch

    from .. import __version__

    info = info or {}
    networks = []
    for weight, member in zip(model.blend_[:-1], model.members_, strict=True):
        spec = member.spec
        networks.append({"variant": spec.variant, "hidden": spec.hidden,
                         "activation": spec.activation, "best_epoch": member.best_epoch,
                         "blend_weight": float(weight)})
    matrix = model.members_[0].matrix
    metadata = {
        "variant": model.variant,
        "n_users": len(model.users_),
        "n_items": len(model.items_),
        "n_ratings": int(matrix.nnz) if matrix is not None else 0,
        "rating_scale": [float(v) for v in model.rating_scale_],
        "global_mean": float(model.global_mean_),
        "cold": model.cold,
        "baseline": model.baseline,
        "l2": float(model.l2_) if hasattr(model, "l2_") else None,
        "validation_rmse": float(getattr(model, "validation_rmse_", math.nan)),
        "params": model.get_params(),
        "networks": networks,
        "id_types": {"users": _id_type(model.users_.raw_ids),
                     "items": _id_type(model.items_.raw_ids)},
        "device": str(model.device_) if hasattr(model, "device_") else None,
        "dataset": info.get("dataset"),
        "created": info.get("created"),
        "format_version": info.get("format_version"),
        "versions": {
            "trained_with": info.get("versions"),
            "serving": {"autorec": __version__, "torch": torch.__version__,
                        "numpy": np.__version__, "fastapi": fastapi.__version__,
                        "pydantic": pydantic.VERSION, "python": platform.python_version()},
        },
    }
    return _json_ready(metadata)


def _id_type(raw_ids: np.ndarray) -> str:
    return "integer" if raw_ids.dtype.kind in "iu" else "text"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- errors -------------------------------------------------------------------------------------
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A one-line ``detail`` and the list of problems; 413 when a list is over its limit."""
    content_type = request.headers.get("content-type")
    if content_type and "json" not in content_type.lower():
        detail = (f"send the body as JSON (Content-Type: application/json), got Content-Type "
                  f"{content_type!r}")
        return JSONResponse({"detail": detail}, status_code=415)
    # an unknown field first: it usually explains the missing one beside it
    errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
    status = 413 if any(e.get("type") == TOO_LARGE for e in errors) else 422
    problems = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                 "type": str(e.get("type", ""))} for e in errors[:20]]
    detail = _describe_error(errors[0]) if errors else "invalid request"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return JSONResponse({"detail": detail, "errors": problems}, status_code=status)


def _describe_error(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed")
        where = f" at position {loc[1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON ({reason}{where})"
    path = ".".join(loc[1:] if loc[:1] == ["body"] else loc)
    if kind == "missing":
        return f"{path}: required field missing" if path else "a JSON body is required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind in ("model_attributes_type", "dict_type") and not path:
        return "the body must be a JSON object"
    message = str(error.get("msg", "invalid"))
    return f"{path or 'body'}: {message}"


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


# -- request size -------------------------------------------------------------------------------
class RequestLimits:
    """ASGI middleware: the app's :class:`Limits` for the request models, and a request body
    over ``limits.max_body_bytes`` refused (413) before the app sees it.

    A ``Content-Length`` over the limit is refused at once (the body is read and dropped, up
    to 64 MiB, so that the client reads the answer); a body without one (chunked) is counted
    while it is read. The body is read here and handed to the app whole.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.max_bytes = limits.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = use_limits(self.limits)
        try:
            await self._limited(scope, receive, send)
        finally:
            reset_limits(token)

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


async def _reply(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
