"""What a rating is: the one place that decides, for every source (text files, Parquet,
DataFrames).

Accepted: numeric columns (integers, floats, nullable or Arrow-backed numbers) and text or
object columns holding numbers or numeric text (``"4"``, ``" 3.5"``, ``"-2e1"``). Refused:
booleans, dates, durations, complex numbers, lists, dicts and other non-numbers, missing
values, values that are not finite, and values whose square is not finite as ``float32``
(beyond about 1.8e19: training squares every error), so that a loss or an RMSE is never
infinite or NaN because of the data; and ratings that ``float32`` would change by more than
a ten-thousandth of their spread (far from 0 and close together: 20000001..20000005).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LARGEST_RATING", "InvalidRatingError", "kind_of", "rating_values", "show"]

#: The largest rating magnitude accepted: its square is finite as ``float32``.
LARGEST_RATING = float(np.sqrt(np.finfo(np.float32).max, dtype=np.float32))


class InvalidRatingError(ValueError):
    """A rating column that is not numbers, or a bad rating at ``position`` (0-based; ``None``
    for the whole column)."""

    def __init__(self, problem: str, position: int | None = None) -> None:
        super().__init__(problem if position is None else f"{problem} (position {position})")
        self.problem = problem
        self.position = position


def rating_values(values: pd.Series) -> np.ndarray:
    """A rating column as ``float32``, checked (see the module docstring); raises
    :class:`InvalidRatingError` naming the first bad value and its position."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values, dtype = values.astype(object), np.dtype(object)
    if pd.api.types.is_bool_dtype(dtype):
        raise InvalidRatingError("ratings are booleans (True/False), not numbers; convert "
                                 "them to 0/1 if that is what they mean")
    if pd.api.types.is_complex_dtype(dtype):
        raise InvalidRatingError("ratings are complex numbers")
    if pd.api.types.is_numeric_dtype(dtype):
        rating = values.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind not in ("string", "floating", "integer", "mixed-integer-float", "empty"):
            for position, value in enumerate(values.to_numpy(dtype=object)):
                if not _is_number_like(value):
                    raise InvalidRatingError(
                        f"rating {show(value)} is {kind_of(value)}, not a number", position)
        rating = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64,
                                                                  na_value=np.nan)
        rating = _read_spaced(values, rating)
    else:
        raise InvalidRatingError(f"ratings must be numbers, got a column of {dtype} values")

    with np.errstate(over="ignore", invalid="ignore"):
        stored = rating.astype(np.float32)
        bad = ~np.isfinite(stored * stored)
    if bad.any():
        position = int(bad.argmax())
        raw = values.iloc[position]
        # a numeral named as written, unquoted; "1e400" (inf as a float) is too large
        numeral = _numeral(raw)
        written = raw.strip() if numeral is not None and not numeral.is_nan() else show(raw)
        if _is_missing(raw):
            problem = "missing rating"
        elif isinstance(raw, str) and numeral is None:
            problem = f"rating {written} is not a number"
        elif np.isfinite(rating[position]) or (numeral is not None and numeral.is_finite()):
            problem = (f"rating {written} is too large: its square overflows float32 "
                       f"(ratings must be within ±{LARGEST_RATING:.2g})")
        else:
            problem = f"rating {written} is not a finite number"
        raise InvalidRatingError(problem, position)
    _check_precision(values, rating, stored)
    return stored


def _read_spaced(values: pd.Series, rating: np.ndarray) -> np.ndarray:
    """``rating`` filled in where pandas read no number from text only because of Unicode
    spaces around it (``"3\\u00a0"``), as the text files' reader (pyarrow) reads them."""
    unread = np.flatnonzero(np.isnan(rating))
    if len(unread) == 0:
        return rating
    texts = values.iloc[unread].to_numpy(dtype=object)  # pd.NA and None among them
    stripped = {k: v.strip() for k, v in enumerate(texts) if isinstance(v, str)
                and v.strip() != v}
    if stripped:
        rating = rating.copy()
        rating[unread[list(stripped)]] = pd.to_numeric(
            pd.Series(list(stripped.values()), dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
    return rating


#: The largest float32 rounding error of a rating accepted, as a share of the ratings'
#: spread (max - min): past it, ratings far from 0 next to each other lose their differences.
ROUNDING_SHARE = 1e-4


def _check_precision(values: pd.Series, rating: np.ndarray, stored: np.ndarray) -> None:
    """Refuse ratings that ``float32`` (about 7 significant digits) changes by more than
    :data:`ROUNDING_SHARE` of their spread: 20000001..20000005 are stored as 20000000,
    20000002 and 20000004, so the scale, the loss and the RMSE would be those of other
    values. Ratings all alike (no spread) are not checked."""
    if len(rating) < 2:
        return
    low, high = float(rating.min()), float(rating.max())
    if high <= low:
        return
    error = np.abs(stored.astype(np.float64) - rating)
    worst = int(error.argmax())
    if error[worst] > ROUNDING_SHARE * (high - low):
        raise InvalidRatingError(
            f"rating {rating[worst]:.9g} is stored as {float(stored[worst]):.9g} in "
            f"float32 (about 7 significant digits), too coarse for ratings from {low:.9g} to "
            f"{high:.9g}; subtract an offset (such as {low:.9g}) from every rating", worst)


#: A numeral as pandas and pyarrow read one: ASCII digits, no ``_`` between them (``Decimal``
#: alone would take ``"1_000"`` and other scripts' digits, which neither reads).
_NUMERAL = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                      r"|inf|infinity|nan)", re.ASCII | re.IGNORECASE)


def _numeral(value: Any) -> Decimal | None:
    """The number that text names (``"1e400"``, ``" inf"``), exactly; ``None`` for anything
    else."""
    if not isinstance(value, str) or not _NUMERAL.fullmatch(value.strip()):
        return None
    return Decimal(value.strip())


def _is_number_like(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    if value is None or isinstance(value, str | int | float | Decimal | np.integer | np.floating):
        return True
    return _is_missing(value)


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays: "truth value is ambiguous"
        return False


def kind_of(value: object) -> str:
    """``"a list"``, ``"a dict"``...: what a value that is not a number is."""
    if isinstance(value, list | tuple | np.ndarray):  # Parquet lists arrive as arrays
        return "a list"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def show(value: object) -> str:
    """A value as written in the source: strings quoted, numbers plain (no numpy repr), one
    short line whatever the value."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split()) if not isinstance(value, str) else text
    return text if len(text) <= 60 else text[:57] + "..."
