"""The request and response bodies of the HTTP service (pydantic models), and its limits.

Ids are raw ids as in the training data, sent as JSON strings or integers: ``196`` and
``"196"`` are the same id, ``"0196"`` is another, and ``196.0`` is refused (ids are compared by
their text, as :class:`autorec.data.ids.IdMap` compares them; a float is never an id, as in
the Python API). Spaces and tabs around a text id are dropped, as the command line and the
file readers drop them (``" 196 "`` is ``196``); an empty id and text that is not Unicode (a
lone surrogate such as ``"\ud800"``) are refused. Ids in responses are the model's own: JSON
integers when every training id of that column was a canonical integer, strings otherwise;
the ids a request names are echoed as sent, without the surrounding spaces.

Request bodies refuse what :mod:`autorec.serve.app` lists under 422 and 413; a list over
its :class:`Limits` is error type ``too_large`` (the app answers 413 for it).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

__all__ = ["FLOAT32_MAX", "ID_SPACE", "LIMITS", "TOO_LARGE", "FoldInRequest",
           "FoldInResponse", "HealthResponse", "Id", "Limits", "ModelResponse",
           "PredictRequest", "PredictResponse", "Prediction", "RecommendRequest",
           "RecommendResponse", "Recommendation", "is_unicode"]

#: Largest rating magnitude the model can store (float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The pydantic error type of a list over its limit (answered with 413).
TOO_LARGE = "too_large"
#: What is stripped from around a text id (as the file readers and the command line strip).
ID_SPACE = " \t"


@dataclass(frozen=True)
class Limits:
    """How large a request may be.

    Attributes
    ----------
    max_body_bytes
        Request body size in bytes; a larger body gets 413 before it is parsed.
    max_pairs
        Pairs of one ``/predict`` request, and items of one ``/fold-in`` request (413 beyond).
    max_ratings
        Ratings of one ``/fold-in`` request (413 beyond).
    max_n
        Largest ``n`` (items recommended) of ``/recommend`` and ``/fold-in`` (422 beyond).
    max_id_length
        Characters of a text id (422 beyond); :func:`~autorec.serve.create_app` raises it to
        the model's longest id, so that every id it knows can be asked for.
    """

    max_body_bytes: int = 1 << 20
    max_pairs: int = 10_000
    max_ratings: int = 10_000
    max_n: int = 1_000
    max_id_length: int = 256

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


#: The limits the request models check: those of the app answering the request (its
#: middleware sets them for the request's context); outside a request, the defaults.
LIMITS: ContextVar[Limits] = ContextVar("autorec_serve_limits", default=Limits())  # noqa: B039
#: A validation error of the request models: ``_fail(error type, one-line message)``.
_fail = PydanticCustomError


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- ids, pairs, ratings, n ---------------------------------------------------------------------
def _check_id(value: Any) -> int | str:
    # bool is an int in Python: refused explicitly; a float is never an id (1.0 is not 1)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail("invalid_id", f"an id is a JSON string or integer, got {_describe(value)}")
    limit = LIMITS.get().max_id_length
    # an integer id is compared by its text, so its text has the same limit (a digit takes
    # over 3.3 bits: past 4 bits a digit, surely too long, without writing it out)
    if isinstance(value, int) and (value.bit_length() > 4 * limit or len(str(value)) > limit):
        raise _fail("invalid_id", f"an id has at most {limit} characters, got an integer of "
                                  f"{value.bit_length()} bits")
    if isinstance(value, str):
        value = value.strip(ID_SPACE)
        if not value:
            raise _fail("invalid_id", "an id cannot be empty")
        if len(value) > limit:
            raise _fail("invalid_id", f"an id has at most {limit} characters, got {len(value)}")
        if not is_unicode(value):
            raise _fail("invalid_id", f"an id is Unicode text, got {_describe(value)} (a lone "
                                      "surrogate)")
    return value


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogate such as ``"\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ID_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}],
    "description": "a raw id as in the training data, a string or an integer, compared by "
                   "its text (196 and \"196\" are one id)"}

#: A raw id: a JSON string or integer.
Id = Annotated[Any, PlainValidator(_check_id), WithJsonSchema(_ID_SCHEMA)]


def _check_pair(value: Any) -> tuple[int | str, int | str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail("invalid_pair",
                    f"a pair is [user, item], a list of two ids; got {_describe(value)}")
    return _check_id(value[0]), _check_id(value[1])


Pair = Annotated[Any, PlainValidator(_check_pair),
                 WithJsonSchema({"type": "array", "items": _ID_SCHEMA, "minItems": 2,
                                 "maxItems": 2, "description": "[user, item]"})]


def _check_rating(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("invalid_rating", f"a rating is a number, got {_describe(value)}")
    try:
        rating = float(value)
    except OverflowError:  # an integer beyond any float
        rating = math.inf
    if not math.isfinite(rating):
        raise _fail("invalid_rating", f"a rating is a finite number, got {value!r}")
    if abs(rating) > FLOAT32_MAX:
        raise _fail("invalid_rating", f"a rating is at most {FLOAT32_MAX:.4g} in magnitude "
                                      f"(float32), got {value!r}")
    return rating


Rating = Annotated[Any, PlainValidator(_check_rating),
                   WithJsonSchema({"type": "number", "description": "a finite rating"})]


def _check_n(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("invalid_n", f"must be an integer, got {_describe(value)}")
    limit = LIMITS.get().max_n
    if not 1 <= value <= limit:
        raise _fail("invalid_n", f"must be from 1 to {limit}, got {value}")
    return value


N = Annotated[Any, PlainValidator(_check_n),
              WithJsonSchema({"type": "integer", "minimum": 1, "default": 10,
                              "description": "items to recommend, from 1 to the server's "
                                             "max_n (GET /model shows it); left out: 10, "
                                             "or max_n when that is smaller"})]

#: Items a request that leaves ``n`` out gets (fewer where the server's ``max_n`` is).
DEFAULT_N = 10


def _default_n() -> int:
    """``n`` left out: :data:`DEFAULT_N` within the server's ``max_n`` (a default is not
    validated)."""
    return min(DEFAULT_N, LIMITS.get().max_n)


def _sized(what: str, limit_name: str) -> BeforeValidator:
    """Refuse an empty list (or object), and one longer than a limit, before its items are
    validated."""

    def check(value: Any) -> Any:
        if isinstance(value, list | dict):
            if not value:
                raise _fail("empty", f"at least one {what} is needed, got none")
            limit = getattr(LIMITS.get(), limit_name)
            if len(value) > limit:
                raise _fail(TOO_LARGE, f"at most {limit} {what}s per request (the server's "
                                       f"{limit_name}), got {len(value)}")
        return value

    return BeforeValidator(check)


def _distinct_keys(value: Any) -> Any:
    """Refuse two keys that name one id once stripped (``"50"`` and ``" 50"``): the second
    would silently replace the first."""
    if isinstance(value, dict):
        seen: set[str] = set()
        for key in value:
            text = key.strip(ID_SPACE) if isinstance(key, str) else key
            if text in seen:
                raise _fail("duplicate_id", f"item {text!r} is rated more than once")
            seen.add(text)
    return value


class _Strict(BaseModel):
    """Request and response bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# -- /predict -----------------------------------------------------------------------------------
class PredictRequest(_Strict):
    """Predicted ratings for (user, item) pairs."""

    pairs: Annotated[list[Pair], _sized("pair", "max_pairs")] = Field(
        description="[[user, item], ...]: at least one pair, at most max_pairs")

    model_config = ConfigDict(json_schema_extra={  # and _Strict's extra="forbid"
        "examples": [{"pairs": [[196, 242], ["186", "302"], ["new-user", 1]]}]})


class Prediction(_Strict):
    user: Any = Field(description="the user id, as sent")
    item: Any = Field(description="the item id, as sent")
    prediction: float = Field(description="the predicted rating, clipped to the training scale")
    fallback: bool = Field(description="true when the user or the item is unknown to the "
                                       "model: the prediction is its cold-start fallback")


class PredictResponse(_Strict):
    predictions: list[Prediction] = Field(description="one per pair, in the order sent")
    n_fallback: int = Field(description="pairs given the cold-start fallback")


# -- /recommend ---------------------------------------------------------------------------------
class RecommendRequest(_Strict):
    """The top-n items for one user."""

    user: Id
    n: N = Field(default_factory=_default_n)
    exclude_seen: StrictBool = Field(
        default=True, description="leave out the items the user rated in training")

    model_config = ConfigDict(json_schema_extra={  # and _Strict's extra="forbid"
        "examples": [{"user": 196, "n": 10, "exclude_seen": True}]})


class Recommendation(_Strict):
    rank: int = Field(description="1 = best")
    item: Any = Field(description="the item id (the model's own)")
    score: float = Field(description="what the list is ranked by: the ranking model's score "
                                     "(the predicted rating for a model without one, and for "
                                     "an unknown user)")
    predicted_rating: float = Field(description="the predicted rating of the pair (what "
                                                "/predict gives)")


class RecommendResponse(_Strict):
    user: Any = Field(description="the user id, as sent")
    fallback: bool = Field(description="true when the model does not know the user: the items "
                                       "are ranked by the baseline (mean plus item bias)")
    items: list[Recommendation] = Field(description="best first; fewer than n when fewer "
                                                    "items are left")


# -- /fold-in -----------------------------------------------------------------------------------
class FoldInRequest(_Strict):
    """A new user, from its ratings: recommendations and predictions without retraining."""

    ratings: Annotated[dict[Id, Rating], _sized("rating", "max_ratings"),
                       BeforeValidator(_distinct_keys)] = Field(
        description="{item: rating} (JSON object keys are text: \"242\" is item 242); items "
                    "the model does not know are ignored and counted")
    n: N = Field(default_factory=_default_n)
    exclude_rated: StrictBool = Field(
        default=True, description="leave the items rated in the request out of the "
                                  "recommendations")
    items: Annotated[list[Id] | None, _sized("item", "max_pairs")] = Field(
        default=None, description="items to predict (default: every item the model knows)")

    model_config = ConfigDict(json_schema_extra={  # and _Strict's extra="forbid"
        "examples": [{"ratings": {"50": 5, "172": 4, "181": 5}, "n": 5}]})


class FoldInPrediction(_Strict):
    item: Any = Field(description="the item id (as sent, or the model's own)")
    prediction: float = Field(description="the predicted rating, clipped to the training scale")
    fallback: bool = Field(description="true for an item the model does not know (its "
                                       "cold-start fallback for this user)")


class FoldInResponse(_Strict):
    fallback: bool = Field(description="true when no rating named an item the model knows: "
                                       "the scores are the cold-start fallback")
    n_ratings: int = Field(description="ratings used (of items the model knows)")
    n_unknown: int = Field(description="ratings ignored (of items the model does not know)")
    bias: float = Field(description="the new user's fitted baseline bias")
    recommendations: list[Recommendation]
    predictions: list[FoldInPrediction]


# -- /health, /model ----------------------------------------------------------------------------
class HealthResponse(_Strict):
    status: str = Field(description="\"ok\"")
    uptime_seconds: float


class ModelResponse(BaseModel):
    """What the service serves: the model's settings, sizes, scale and versions."""

    model_config = ConfigDict(extra="allow")

    variant: str
    n_users: int
    n_items: int
    n_ratings: int
    rating_scale: tuple[float, float]
    global_mean: float
    cold: str
    baseline: str
    params: dict[str, Any]
    networks: list[dict[str, Any]]
    id_types: dict[str, str]
    versions: dict[str, Any]
    limits: dict[str, int]
