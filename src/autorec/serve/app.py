"""The FastAPI app: one fitted model, answered over HTTP.

Endpoints (the OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

``POST /predict``
    ``{"pairs": [[user, item], ...]}`` -> ``{"predictions": [{"user", "item", "prediction",
    "fallback"}, ...], "n_fallback"}``: :meth:`AutoRec.predict` for the pairs, in order;
    ``fallback`` marks a pair with a user or item the model does not know.
``POST /recommend``
    ``{"user": ID, "n": 10, "exclude_seen": true}`` -> ``{"user", "fallback", "items":
    [{"rank", "item", "score", "predicted_rating"}, ...]}``: :meth:`AutoRec.recommend` for
    one user (``score``: the ranking model's, by which the list is ranked; the predicted
    rating beside it).
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

* 422: malformed JSON, a body that is not UTF-8 text, a key repeated in one JSON object
  (``{"user": 1, "user": 2}``: the Python API would not take it either), text holding a lone
  surrogate (``"\ud800"``), a missing or unknown field, a value of the wrong type (no
  coercion), an id that is neither a string nor an integer (``196.0`` is refused), a rating
  that is not a finite number or is outside the model's rating scale, ``n`` out of
  ``1..max_n``, an empty list;
* 413: a body over ``max_body_bytes`` (refused before it is parsed), more pairs, ratings or
  items than the limits allow;
* 415: a POST without a Content-Type, or with one that is not JSON (``application/json`` or
  ``application/*+json``, UTF-8);
* 400: a body FastAPI cannot parse at all (JSON nested too deep);
* 404 / 405: an unknown path or method (``HEAD`` works wherever ``GET`` does).

A bad request never gets a 500. An answer never holds NaN or infinity: a model whose
prediction is not finite (its weights are broken) gets a 500 with a one-line ``detail``,
never a ``null`` in place of a number. The model is called under one lock: requests are answered
concurrently, the model computes one at a time (it uses every core for one request; this
also keeps its caches consistent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .._io import json_ready
from ..exceptions import first_line
from ..fitted import FittedModel, as_fitted
from ..foldin import fold_in as fold_in_model
from ..recommend import recommend as recommend_items
from ..recommend import seen_matrix
from .limits import RequestLimits, _safe
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
)

__all__ = ["create_app", "model_metadata"]

log = logging.getLogger(__name__)


def create_app(model: Any, *, info: dict[str, Any] | None = None,
               limits: Limits | None = None, warm: bool = True) -> FastAPI:
    """The HTTP app serving ``model``.

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel` (e.g. from :func:`autorec.persist.load_model`)
        or a fitted estimator holding one. The app never changes it.
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

    given, model = model, as_fitted(model)
    limits = limits or Limits()
    longest = max(_longest_text_id(model.users.raw_ids), _longest_text_id(model.items.raw_ids))
    if longest > limits.max_id_length:  # every id the model knows can be asked for
        limits = dataclasses.replace(limits, max_id_length=longest)
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
    app.state.model = given
    app.state.limits = limits
    app.add_middleware(RequestLimits, limits=limits,
                       json_paths=frozenset({"/predict", "/recommend", "/fold-in"}))
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)

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
        _check_finite(predicted, "prediction")
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
            table = recommend_items(model, [body.user], n=body.n,
                                    exclude_seen=body.exclude_seen)
            known = bool(model.users.to_index([body.user])[0] >= 0)
        _check_finite(table[["score", "predicted_rating"]].to_numpy().ravel(), "score")
        return {"user": body.user, "fallback": not known,
                "items": _recommendations(table)}

    @app.post("/fold-in", response_model=FoldInResponse,
              summary="recommendations and predictions for a new user, from its ratings")
    def fold_in(body: FoldInRequest) -> dict[str, Any]:
        with lock, _unprocessable():
            result = fold_in_model(model, "user", body.ratings, n=body.n,
                                   exclude_rated=body.exclude_rated)
            predictions = _fold_in_predictions(model, result, body.items)
        assert result.recommendations is not None
        _check_finite(np.array([result.bias] + [p["prediction"] for p in predictions]
                               + result.recommendations["score"].tolist()
                               + result.recommendations["predicted_rating"].tolist()),
                      "prediction")
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

    # HEAD wherever GET works (the headers of the GET answer, no body); not in the schema
    app.head("/health", include_in_schema=False)(health)
    app.head("/model", include_in_schema=False)(describe)

    return app


# -- answers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def _unprocessable() -> Iterator[None]:
    """Turn a ``ValueError`` of the library (a bad value validation let through) into 422."""
    try:
        yield
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=first_line(exc)) from exc


def _longest_text_id(raw_ids: np.ndarray) -> int:
    """Characters of the longest text id among ``raw_ids`` (0 for integer ids)."""
    return max(map(len, map(str, raw_ids)), default=0) if raw_ids.dtype == object else 0


def _check_finite(values: np.ndarray, what: str) -> None:
    """A 500 (the model is broken, not the request) rather than NaN answered as ``null``."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if bad.any():
        log.error("the model gave %d non-finite %s(s): are its weights finite?",
                  int(bad.sum()), what)
        raise HTTPException(status_code=500, detail=f"the model gave a non-finite {what} "
                            f"({int(bad.sum())} of {len(bad)}): its weights are not finite")


def _recommendations(table: Any) -> list[dict[str, Any]]:
    """The rows of a recommendation table as JSON items (pandas gives Python scalars)."""
    return (table[["rank", "item_id", "score", "predicted_rating"]]
            .rename(columns={"item_id": "item"}).to_dict("records"))


def _fold_in_predictions(model: FittedModel, result: Any, items: list[Any] | None
                         ) -> list[dict[str, Any]]:
    """Predictions of the folded-in user for ``items`` (``None``: every known item). An item
    the model does not know gets what ``predict`` would give the user once added: the cold
    policy, with the user's own bias under ``cold="baseline"``."""
    scores = result.scores.to_numpy()
    cold = bool(result.cold)  # no usable rating: every score is the cold fallback
    if items is None:
        return [{"item": _plain(item), "prediction": value, "fallback": cold}
                for item, value in zip(result.scores.index.tolist(), scores.tolist(),
                                       strict=True)]
    index = model.items.to_index(items)
    if model.cold == "baseline":
        assert model.biases is not None
        unknown = float(model.biases.mean + result.bias)
    else:
        unknown = float(model.cold_value())
    unknown = float(np.clip(unknown, *model.rating_scale))
    return [{"item": item, "prediction": float(scores[i]) if i >= 0 else unknown,
             "fallback": cold or bool(i < 0)}
            for item, i in zip(items, index.tolist(), strict=True)]


def _plain(value: Any) -> Any:
    """A numpy scalar id as a Python int or str."""
    return value.item() if isinstance(value, np.generic) else value


def _warm_up(model: FittedModel) -> None:
    started = time.perf_counter()
    if len(model.users):
        recommend_items(model, [model.users.raw_ids[0]], n=1)
    log.info("recommendation caches computed in %.2f s", time.perf_counter() - started)


def model_metadata(model: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``GET /model`` answers (without ``limits``), JSON-ready (``NaN`` as ``null``)."""
    import fastapi
    import pydantic
    import torch

    from .. import __version__

    model = as_fitted(model)
    info = info or {}
    networks = [{**member.describe(), "best_epoch": member.best_epoch,
                 "blend_weight": float(weight)}
                for weight, member in zip(model.blend[:-1], model.members, strict=True)]
    metadata = {
        "variant": model.variant,
        "n_users": len(model.users),
        "n_items": len(model.items),
        "n_ratings": int(seen_matrix(model).nnz),
        "rating_scale": [float(v) for v in model.rating_scale],
        "global_mean": float(model.global_mean),
        "cold": model.cold,
        "baseline": model.baseline,
        "l2": None if model.l2 is None else float(model.l2),
        "validation_rmse": float(model.validation_rmse),
        "params": dict(model.params),
        "networks": networks,
        "ranking": None if model.ranking is None else model.ranking.describe(),
        "id_types": {side: "integer" if ids.raw_ids.dtype.kind in "iu" else "text"
                     for side, ids in (("users", model.users), ("items", model.items))},
        "device": None if model.device is None else str(model.device),
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
    return json_ready(metadata)


# -- errors -------------------------------------------------------------------------------------
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A 500 with a one-line JSON ``detail`` (not Starlette's plain text) for what nothing
    else caught, such as a broken model failing inside torch; the traceback goes to the log."""
    log.error("%s %s failed: %s", request.method, request.url.path, first_line(exc),
              exc_info=exc)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}: "
                                   f"{_safe(first_line(exc))}"}, status_code=500)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A one-line ``detail`` and the list of problems; 413 when a list is over its limit;
    415 for a body that is not JSON (the middleware answers that first, but only for the
    app's own paths: an app mounted under a prefix gets here)."""
    content_type = request.headers.get("content-type")
    if content_type and "json" not in content_type.lower():
        detail = (f"send the body as JSON (Content-Type: application/json), got Content-Type "
                  f"{content_type!r}")
        return JSONResponse({"detail": detail}, status_code=415)
    # an unknown field first: it usually explains the missing one beside it
    errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
    status = 413 if any(e.get("type") == TOO_LARGE for e in errors) else 422
    problems = [{"loc": [_safe(p) for p in e.get("loc", ())], "msg": _safe(e.get("msg", "")),
                 "type": _safe(e.get("type", ""))} for e in errors[:20]]
    detail = _safe(_describe_error(errors[0])) if errors else "invalid request"
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
    parts = loc[1:] if loc[:1] == ["body"] else loc
    path = ".".join(parts)
    if parts[-1:] == ["[key]"]:  # a mapping's key, not its value: "ratings key ''"
        path = f"{'.'.join(parts[:-2])} key {parts[-2]!r}"
    if kind == "missing":
        return f"{path}: required field missing" if path else "a JSON body is required"
    if kind == "extra_forbidden":
        return f"{path}: unknown field"
    if kind in ("model_attributes_type", "dict_type") and not path:
        return "the body must be a JSON object"
    message = str(error.get("msg", "invalid"))
    return f"{path or 'body'}: {message}"
