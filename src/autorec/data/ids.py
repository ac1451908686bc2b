"""Raw ids and dense indices: how ids are parsed, stored, compared and looked up.

**An id is its text.** ``"1000"`` and ``"1e3"`` are two ids, as are ``"5"``, ``"5.0"`` and
``"+5"``, or ``"007"`` and ``"7"``; the integer ``12`` and the text ``"12"`` are one id.
Every source (text files, Parquet, DataFrames, later lookups) goes through the functions of
this module, so that the same text is the same id everywhere:

* :func:`id_column` validates a column of ids and picks its storage: ``int64`` when *every*
  id in the column is a canonical integer text (``0``, ``-12``, ``345``: no sign ``+``, no
  leading zero, no ``-0``, no decimal point or exponent) that fits ``int64``, and text
  otherwise. Native integer columns stay integers (beyond ``int64``: text). Floating-point,
  boolean, date and other non-id values are refused, naming the row.
* :meth:`IdMap.to_index` compares a query id with the map's ids by text: an integer map
  finds ``12`` for ``"12"`` but nothing for ``"012"``, ``"+12"`` or ``12.0``.
* :func:`query_ids` validates the ids of a lookup as :func:`id_column` validates a column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .values import kind_of

__all__ = ["INTEGER_ID", "IdMap", "InvalidIdError", "common_ids", "id_column", "ids_as_text",
           "query_ids"]

#: A canonical integer id: what ``str(int(text)) == text`` accepts (``-0`` excluded).
INTEGER_ID = re.compile(r"0|-?[1-9][0-9]*")
_INT64_DIGITS = 19  # texts of up to 18 digits always fit int64; 19 digits may not


class InvalidIdError(ValueError):
    """A value that cannot be an id, or a missing id, at ``position`` (0-based) of a column."""

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(f"{problem} (position {position})")
        self.problem = problem
        self.position = position


def id_column(values: Any, *, integers: bool = True) -> pd.Series:
    """Validate a column of raw ids and give it its storage type.

    Parameters
    ----------
    values
        The ids (a Series, an array or a list), from any source.
    integers
        Store text ids as ``int64`` when every one of them is a canonical integer that fits
        (the rule for reading a column). ``False`` keeps text as text (for id maps built
        from ids already stored).

    Returns
    -------
    pandas.Series
        ``int64``, or text (Python ``str`` values), with a fresh 0-based index.

    Raises
    ------
    InvalidIdError
        A missing id (``None``, NaN, empty text) or a value that is neither an integer nor
        text (a float, a boolean, a date, a list...), with its position.
    """
    series = _as_series(values)
    dtype = series.dtype
    if len(series) and pd.api.types.is_bool_dtype(dtype):
        raise InvalidIdError(f"id {_show(series.iloc[0])} is a boolean, not an integer or text", 0)
    missing = series.isna().to_numpy()
    if missing.any():
        raise InvalidIdError("missing value", int(missing.argmax()))
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    elif isinstance(dtype, pd.ArrowDtype) and hasattr(dtype.pyarrow_dtype, "value_type"):
        # pyarrow's dictionary encoding (a Parquet category read with dtype_backend="pyarrow"):
        # its values, as pandas' own categories
        series = series.astype(pd.ArrowDtype(dtype.pyarrow_dtype.value_type))
        dtype = series.dtype
    if pd.api.types.is_integer_dtype(dtype):
        return _integer_column(series)
    if pd.api.types.is_float_dtype(dtype):
        raise InvalidIdError(
            f"id {_show(series.iloc[0])} is a floating-point number; store ids as integers "
            "or text", 0)
    if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
        raise InvalidIdError(f"ids of type {dtype} are neither integers nor text", 0)
    kind = pd.api.types.infer_dtype(series, skipna=False)
    if kind == "integer":  # Python ints, some perhaps beyond int64
        try:
            return pd.Series(series.to_numpy().astype(np.int64))
        except OverflowError:
            return _text_series([str(int(value)) for value in series])
    texts = series if kind == "string" else _texts_of(series)
    empty = (texts.str.len() == 0).to_numpy()
    if empty.any():
        raise InvalidIdError("missing value", int(empty.argmax()))
    _check_unicode(texts)
    if integers:
        as_int = _canonical_integers(texts)
        if as_int is not None:
            return as_int
    return texts.reset_index(drop=True)


def _check_unicode(texts: pd.Series) -> None:
    """Refuse text that cannot be written as UTF-8 (a lone surrogate such as ``"\\ud800"``,
    which only a Python string can hold): no model file, output or request could carry it."""
    try:
        "".join(texts.to_numpy(dtype=object)).encode("utf-8")
    except UnicodeEncodeError:
        for position, text in enumerate(texts.to_numpy(dtype=object)):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidIdError(f"id {_show(text)} is not Unicode text (it holds a lone "
                                     "surrogate)", position) from None


def ids_as_text(ids: np.ndarray | pd.Series) -> np.ndarray:
    """The canonical text of every id of a stored id array (integers written in decimal)."""
    array = np.asarray(ids)
    if array.dtype.kind in "iu":
        return array.astype(str).astype(object)
    return array.astype(object)


def common_ids(*arrays: np.ndarray) -> list[np.ndarray]:
    """Id arrays of several sources in one storage type: integers if all are integers, else
    the canonical text of every id (so that ``12`` of one file meets ``"12"`` of another)."""
    if all(np.asarray(a).dtype.kind in "iu" for a in arrays):
        return [np.asarray(a) for a in arrays]
    return [ids_as_text(a) for a in arrays]


class IdMap:
    """A bijection between raw ids and the dense indices ``0 .. n-1``.

    Raw ids are stored as integers (``int64``) or as text and compared by their text (see the
    module docstring): an integer map looked up with ``"12"`` finds ``12``, a text map looked
    up with ``12`` finds ``"12"``. Lookup of many ids at once is vectorised through
    :class:`pandas.Index`.

    Parameters
    ----------
    raw_ids
        The distinct raw ids, in index order: ``raw_ids[k]`` has index ``k``. A mixture of
        integers and text is stored as text.

    Examples
    --------
    >>> ids = IdMap.from_values(["b", "a", "b"])
    >>> ids.to_index(["a", "b", "zz"])
    array([ 1,  0, -1])
    >>> ids.to_raw([0, 1]).tolist()
    ['b', 'a']
    >>> IdMap.from_values([12, 7]).to_index(["7", "07", 12.0]).tolist()
    [1, -1, -1]
    """

    def __init__(self, raw_ids: Sequence[Any] | np.ndarray | pd.Index | pd.Series) -> None:
        index = pd.Index(id_column(raw_ids, integers=False))
        if not index.is_unique:
            raise ValueError("raw_ids must be distinct")
        self._index = index
        self._integer = index.dtype.kind in "iu"

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> IdMap:
        """Build a map over the distinct values, numbered in order of first appearance."""
        if not isinstance(values, np.ndarray | pd.Series | pd.Index):
            values = list(values)
        return cls(pd.unique(id_column(values, integers=False)))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw_id: object) -> bool:
        return bool(self.to_index([raw_id])[0] >= 0)

    def __iter__(self) -> Iterator[Any]:
        """The raw ids in index order, as Python ints or text (``list(model.items_)``)."""
        return iter(self._index.tolist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    @property
    def raw_ids(self) -> np.ndarray:
        """The raw ids as an array, in index order."""
        return self._index.to_numpy()

    def to_index(self, raw_ids: Iterable[Any] | Any) -> np.ndarray:
        """Dense indices of ``raw_ids``; ``-1`` for ids the map does not know.

        Ids are compared by text (see the module docstring); values that cannot be ids
        (floats, booleans, lists...) are unknown.
        """
        if isinstance(raw_ids, np.ndarray | pd.Index | pd.Series):
            query = np.asarray(raw_ids)
        else:
            query = _object_array(list(raw_ids) if _is_iterable(raw_ids) else [raw_ids])
        keys, known = (_integer_keys if self._integer else _text_keys)(query)
        result = self._index.get_indexer(keys).astype(np.int64)
        if known is not None:
            result[~known] = -1
        return result

    def to_raw(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Raw ids of dense ``indices`` (each from 0 to ``len(self) - 1``; ``-1``, the
        index of an unknown id, is refused, not read as the last id)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices must be from 0 to {len(self) - 1}; got "
                             f"{int(indices.min() if indices.min() < 0 else indices.max())}")
        return self._index.to_numpy()[indices]


# -- helpers -------------------------------------------------------------------------------------
def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    if isinstance(values, pd.DataFrame) and values.shape[1] == 1:
        return values.iloc[:, 0].reset_index(drop=True)
    if isinstance(values, pd.DataFrame) or (isinstance(values, np.ndarray) and values.ndim > 1):
        # iterating a frame gives its column names: never ids
        raise InvalidIdError(f"a table of {values.shape[1]} columns where one column of ids "
                             "is expected (pick one: frame['user_id'])", 0)
    if isinstance(values, np.ndarray) and values.ndim == 0:
        values = values.reshape(1)
    if isinstance(values, np.ndarray | pd.Index | pd.api.extensions.ExtensionArray):
        return pd.Series(values)
    return pd.Series(_object_array(list(values)), dtype=object)


def _object_array(values: list[Any]) -> np.ndarray:
    """A 1-d object array of ``values`` (never a 2-d array of list elements)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _text_series(texts: list[str]) -> pd.Series:
    return pd.Series(_object_array(texts), dtype=object)


def _integer_column(series: pd.Series) -> pd.Series:
    if series.dtype == np.int64:
        return series
    if pd.api.types.is_unsigned_integer_dtype(series.dtype):
        values = series.to_numpy(dtype=np.uint64)
        if len(values) and values.max() > np.iinfo(np.int64).max:
            return pd.Series(ids_as_text(values), dtype=object)  # beyond int64: text
    return pd.Series(series.to_numpy(dtype=np.int64))


def _texts_of(series: pd.Series) -> pd.Series:
    """The text of each id of a mixed object column; refuses what cannot be an id."""
    texts: list[str] = []
    for position, value in enumerate(series.to_numpy(dtype=object)):
        text = _id_text(value)
        if text is None:
            raise InvalidIdError(_not_an_id(value), position)
        texts.append(text)
    return _text_series(texts)


def _id_text(value: Any) -> str | None:
    """The text of one raw id, ``None`` when ``value`` cannot be an id."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _not_an_id(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return f"id {_show(value)} is a boolean, not an integer or text"
    if isinstance(value, float | np.floating):
        return f"id {_show(value)} is a floating-point number; store ids as integers or text"
    if isinstance(value, bytes):
        return "id is bytes that are not UTF-8 text"
    return f"id {_show(value)} is {kind_of(value)}, not an integer or text"


def _show(value: Any) -> str:
    text = repr(value.tolist() if isinstance(value, np.generic | np.ndarray) else value)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _canonical_integers(texts: pd.Series) -> pd.Series | None:
    """``texts`` as ``int64`` when every one is a canonical integer that fits, else None."""
    keys, known = _int64_keys(texts)
    return pd.Series(keys) if known.all() else None


def _int64_keys(texts: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The value of each text that is a canonical integer within ``int64`` (0 for the
    others), and which ones are."""
    known = (texts.str.fullmatch(INTEGER_ID.pattern)
             & (texts.str.len() <= _INT64_DIGITS + 1)).to_numpy(dtype=bool, copy=True)
    keys = np.zeros(len(texts), dtype=np.int64)
    values = texts[known].to_numpy(dtype=object)
    try:
        keys[known] = values.astype(np.int64)
    except OverflowError:  # 19 digits beyond int64: found one by one
        big = np.array([not -(2**63) <= int(value) < 2**63 for value in values], dtype=bool)
        known[np.flatnonzero(known)[big]] = False
        keys[known] = values[~big].astype(np.int64)
    return keys, known


def _integer_keys(query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Lookup keys of ``query`` in an integer map, and which of them can match at all."""
    kind = query.dtype.kind
    if kind == "i":
        return query.astype(np.int64, copy=False), None
    if kind == "u":
        fits = query <= np.iinfo(np.int64).max
        return np.where(fits, query, 0).astype(np.int64), fits
    if kind not in "OUS" and not pd.api.types.is_string_dtype(query.dtype):
        return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
    texts = pd.Series(query, dtype=object)
    if pd.api.types.infer_dtype(query, skipna=False) != "string":  # integers among others
        texts = texts.map(lambda value: value if isinstance(value, str) else str(int(value))
                          if isinstance(value, int | np.integer)
                          and not isinstance(value, bool | np.bool_)
                          and -(2**63) <= value < 2**63 else "")  # beyond int64: unknown
    return _int64_keys(texts)


def _text_keys(query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Lookup keys of ``query`` in a text map, and which of them can match at all."""
    kind = query.dtype.kind
    if kind in "iu":
        return ids_as_text(query), None
    if kind == "U":
        return query.astype(object), None
    if kind != "O" and not pd.api.types.is_string_dtype(query.dtype):
        return np.full(len(query), "", dtype=object), np.zeros(len(query), dtype=bool)
    if pd.api.types.infer_dtype(query, skipna=False) == "string":
        return query, None
    texts = [_id_text(value) for value in query.tolist()]
    known = np.array([text is not None for text in texts], dtype=bool)
    return _object_array([text or "" for text in texts]), known


def _is_iterable(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes)


def query_ids(values: Any, name: str) -> np.ndarray:
    """The ids of a lookup (one id or several), validated as :func:`id_column` validates a
    column, text kept as text.

    Parameters
    ----------
    values
        One raw id (text, bytes or an integer) or an iterable of them.
    name
        The argument's name, for the error message.

    Returns
    -------
    numpy.ndarray
        ``int64`` or text (object) ids, one per value.

    Raises
    ------
    ValueError
        A value that cannot be an id (a float, even an integral one such as ``196.0``: ids
        are compared by text and ``196.0`` is not ``196``; a boolean, a list...) or a missing
        id (``None``, NaN, empty text), naming ``name`` and the position.
    """
    if not _is_iterable(values):
        values = [values]
    try:
        return id_column(values, integers=False).to_numpy()
    except InvalidIdError as exc:
        problem = exc.problem.replace("; store ids as integers or text",
                                      ", not an id (ids are integers or text, compared by "
                                      "text: 5.0 is not 5)")
        raise ValueError(f"{name}: {problem} (position {exc.position})") from None
