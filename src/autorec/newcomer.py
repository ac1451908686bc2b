"""A newcomer's input to fold-in, checked: its ratings in any accepted form and its new id.

:func:`autorec.foldin.fold_in` reads them through :func:`rating_pairs`, :func:`check_scale`
and :func:`new_id`; an id map grows by one with :func:`extend_map`. Every refusal is a
``ValueError`` (or ``TypeError`` for a container of the wrong kind) of one line naming the
value and its position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .data.ids import IdMap, id_column, ids_as_text

__all__ = ["check_scale", "extend_map", "new_id", "rating_pairs"]


def new_id(id_map: IdMap, new_id: Any, side: str) -> Any:
    name = f"{side}_id"
    if new_id is None:
        raise ValueError(f"add=True needs the new {side}'s id ({name})")
    try:
        parsed = id_column([new_id], integers=False).iloc[0]
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    shown = repr(_plain(new_id))
    if parsed in id_map:
        raise ValueError(f"{name} {shown} is already known to the model; fold-in adds new "
                         f"{side}s only")
    if id_map.raw_ids.dtype.kind in "iu" and id_column([new_id]).dtype.kind not in "iu":
        raise ValueError(f"{name} {shown}: the model's {side} ids are integers, so a new "
                         f"{side}'s id must be an integer too (written without a plus "
                         "sign, leading zero or decimal point) that int64 holds")
    return new_id


def extend_map(id_map: IdMap, new_id: Any) -> IdMap:
    """``id_map`` with ``new_id`` appended, in the map's storage: integers stay integers
    (:func:`new_id` refuses a non-integer id for them), text stays text (an integer id is
    stored as its text)."""
    raw = id_map.raw_ids
    parsed = id_column([new_id], integers=True)
    if raw.dtype.kind in "iu" and parsed.dtype.kind in "iu":
        return IdMap(np.append(raw, parsed.to_numpy()))
    return IdMap(np.append(ids_as_text(raw), ids_as_text(parsed.to_numpy())))


def rating_pairs(ratings: Any, id_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, ratings)`` of a newcomer's ratings in any accepted form, validated; ratings as
    float32 values (the precision the model stores ratings in), held in float64."""
    if isinstance(ratings, pd.DataFrame):
        missing = [c for c in (id_name, "rating") if c not in ratings.columns]
        if missing:
            raise ValueError(f"ratings: the DataFrame needs columns {id_name} and rating; "
                             f"missing {', '.join(missing)}")
        ids, values = ratings[id_name].to_numpy(), ratings["rating"].to_numpy()
    elif isinstance(ratings, pd.Series):
        ids, values = ratings.index.to_numpy(), ratings.to_numpy()
    elif isinstance(ratings, Mapping):
        ids, values = list(ratings.keys()), list(ratings.values())
    elif isinstance(ratings, tuple | list) and len(ratings) == 0:
        ids, values = [], []  # no ratings, as {} is
    elif isinstance(ratings, list) and all(
            isinstance(pair, tuple | list) and len(pair) == 2 for pair in ratings):
        # a list of (id, rating) tuples, whatever its length: [(0, 5), (1, 3)] is two pairs,
        # not the ids (0, 5) rated 1 and 3; lists too (JSON has no tuples), but two lists of
        # two can be either form
        if len(ratings) == 2 and not any(isinstance(pair, tuple) for pair in ratings):
            raise ValueError(f"ratings {ratings!r} could be two ({id_name}, rating) pairs or "
                             "(ids, ratings); write the pairs as tuples [(id, rating), ...], "
                             "or give a tuple (ids, ratings) or a mapping {id: rating}")
        ids, values = [pair[0] for pair in ratings], [pair[1] for pair in ratings]
    elif isinstance(ratings, tuple | list) and len(ratings) == 2:
        ids, values = ratings
    else:
        raise TypeError(f"ratings must be a mapping {{{id_name}: rating}}, a Series, a DataFrame "
                        f"with columns {id_name} and rating, a pair (ids, ratings) or a list "
                        f"of (id, rating) tuples; got {type(ratings).__name__}")
    try:
        id_series = id_column(ids, integers=False)
    except ValueError as exc:
        raise ValueError(f"ratings: {exc}") from None
    values = _rating_values(values)
    if len(values) != len(id_series):
        raise ValueError(f"ratings: {len(id_series)} ids but {len(values)} ratings")
    texts = ids_as_text(id_series.to_numpy())
    duplicated = pd.Index(texts).duplicated()
    if duplicated.any():
        position = int(np.argmax(duplicated))
        raise ValueError(f"ratings: {id_name} {texts[position]} is rated more than once "
                         f"(position {position})")
    return id_series.to_numpy(), values


def _rating_values(values: Any) -> np.ndarray:
    array = np.asarray(values if not isinstance(values, pd.Series) else values.to_numpy())
    if array.ndim != 1:
        raise ValueError("ratings: the ratings must be one-dimensional")
    if array.dtype.kind == "O":  # numbers only: no text, boolean, None, Decimal...
        for position, value in enumerate(array):
            if isinstance(value, bool | np.bool_) or not isinstance(
                    value, int | float | np.integer | np.floating):
                raise ValueError(f"ratings: rating {_plain(value)!r} at position {position} "
                                 f"is {_kind(value)}, not a number")
            if isinstance(value, int) and abs(value) >= 2**1024:  # too many digits to show
                raise ValueError(f"ratings: rating at position {position} (an integer "
                                 "beyond 1e308) is not a finite float32 number")
    elif array.dtype.kind not in "iuf":  # text ("5" is not a rating), booleans, dates...
        if not len(array):
            raise ValueError(f"ratings: ratings of type {array.dtype} are not numbers")
        raise ValueError(f"ratings: rating {_plain(array[0])!r} at position 0 is "
                         f"{_kind(array[0])}, not a number")
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            as_float = array.astype(np.float32).astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError("ratings: a rating is not a number") from None
    bad = ~np.isfinite(as_float)
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(f"ratings: rating {_plain(array[position])!r} at position {position} "
                         "is not a finite float32 number")
    return as_float


def _kind(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, str | bytes):
        return "text"
    if value is None:
        return "missing"
    return f"a {type(value).__name__}"


def _plain(value: Any) -> Any:
    """A numpy scalar as its value (``nan``, not ``np.float64(nan)``)."""
    return value.item() if isinstance(value, np.generic) else value


def check_scale(values: np.ndarray, scale: tuple[float, float]) -> None:
    """Refuse a rating outside the model's training rating scale (``[low, high]``): it is
    not a rating the model could have learnt from, and it would move the newcomer's bias and
    decoder row without bound. Both sides are float32 values held in float64."""
    low, high = (float(v) for v in scale)
    outside = (values < low) | (values > high)
    if outside.any():
        position = int(np.argmax(outside))
        # float32's shortest text: 0.9999999 is not shown as 1 (":g" rounded it into the scale)
        shown = str(np.float32(values[position])).removesuffix(".0")  # float32's shortest
        raise ValueError(f"ratings: rating {shown} at position {position} is outside the "
                         f"model's rating scale {low:g} to {high:g}")
