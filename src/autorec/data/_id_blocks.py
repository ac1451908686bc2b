"""Id columns read block by block: integers while every id is a canonical integer text,
else codes into the distinct texts (pyarrow dictionaries, unified as blocks arrive)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .ids import IdMap, InvalidIdError, id_column
from .ratings import index_dtype

__all__ = ["IdBlocks", "canonical_integers"]

_SPACE = " \t"
_UNIFY_MIN = 1 << 16  # fewest pending dictionary entries worth a unifying pass


class IdBlocks:
    """One id column, block by block: int64 values while every id is a canonical integer
    text, else codes into the distinct (stripped) texts, in order of first appearance.

    On the text path each block is dictionary-encoded on its own; block dictionaries are
    unified with the distinct ids so far once they add up to as many entries (so a bounded
    number of passes over the distinct ids, whatever the number of blocks)."""

    def __init__(self) -> None:
        self._integers: list[np.ndarray] | None = []
        self._codes: list[np.ndarray] = []
        self._texts: Any = None  # pyarrow StringArray of the distinct ids, in code order
        self._pending: list[Any] = []  # dictionary-encoded blocks not yet unified
        self._pending_size = 0

    def add(self, strings: Any, offset: int) -> None:
        """Add a block's ids; :class:`InvalidIdError` (position counted from the first
        block) for a missing one."""
        if not len(strings):
            return
        if self._integers is not None:
            values = canonical_integers(strings)
            if values is not None:
                self._integers.append(values)
                return
            self._switch_to_text()
        if strings.null_count:
            raise InvalidIdError("missing value", offset + int(
                np.flatnonzero(pc.is_null(strings).to_numpy(zero_copy_only=False))[0]))
        encoded = pc.dictionary_encode(strings)
        stripped = pc.utf8_trim(encoded.dictionary, characters=_SPACE)
        if pc.any(pc.match_substring(stripped, "\r")).as_py():  # a quoted line break
            stripped = pc.replace_substring(pc.replace_substring(stripped, "\r\n", "\n"),
                                            "\r", "\n")
        empty = pc.equal(pc.binary_length(stripped), 0).to_numpy(zero_copy_only=False)
        if empty.any():
            rows = np.flatnonzero(empty[encoded.indices.to_numpy()])
            raise InvalidIdError("missing value", offset + int(rows[0]))
        self._pending.append((encoded.indices, stripped))
        self._pending_size += len(stripped)
        known = 0 if self._texts is None else len(self._texts)
        if self._pending_size >= max(known, _UNIFY_MIN):
            self._unify()

    def finish(self) -> tuple[np.ndarray, IdMap]:
        """The dense index of every row (:func:`~autorec.data.ratings.index_dtype`) and the
        id map."""
        if self._integers is not None:
            values = np.concatenate(self._integers) if self._integers else \
                np.zeros(0, np.int64)
            self._integers = None
            codes, uniques = pd.factorize(values)
            del values
            return codes.astype(index_dtype(len(uniques)), copy=False), IdMap(uniques)
        self._unify()
        codes = np.concatenate(self._codes)
        self._codes = []
        texts = pd.Series(self._texts.to_numpy(zero_copy_only=False), dtype=object)
        return codes.astype(index_dtype(len(texts)), copy=False), IdMap(id_column(texts))

    def _switch_to_text(self) -> None:
        assert self._integers is not None
        if self._integers:
            codes, uniques = pd.factorize(np.concatenate(self._integers))
            self._codes = [codes.astype(np.int32)]
            self._texts = pa.array(uniques.astype(str), type=pa.string())
        self._integers = None

    def _unify(self) -> None:
        """Give the pending blocks codes into the distinct ids (growing them)."""
        if not self._pending:
            return
        known = [] if self._texts is None else [self._texts]
        unified = pc.dictionary_encode(
            pa.concat_arrays([*known, *(texts for _, texts in self._pending)]))
        self._texts = unified.dictionary
        to_code = unified.indices.to_numpy()
        start = len(known[0]) if known else 0
        for indices, texts in self._pending:
            self._codes.append(to_code[start:start + len(texts)][indices.to_numpy()])
            start += len(texts)
        self._pending, self._pending_size = [], 0


def canonical_integers(strings: Any) -> np.ndarray | None:
    """The ids of a block as integers, when every one is a canonical integer text (as
    :data:`autorec.data.ids.INTEGER_ID` says: digits with perhaps a ``-``, no ``+``, no
    leading zero, no ``-0``, no spaces, within ``int64``); else ``None``. ``int32`` when
    they fit."""
    if strings.null_count or not len(strings):
        return None
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[
        strings.offset:strings.offset + len(strings) + 1]
    lengths = np.diff(offsets)
    if lengths.min() == 0:
        return None
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    digit = (data - np.uint8(ord("0"))) < 10
    negative = not digit.all()
    if negative and not (digit | (data == ord("-"))).all():
        return None  # "0x1f", "1e3", "5.0", " 5"...: pyarrow would read some as integers
    starts = offsets[:-1] - offsets[0]
    first = data[starts]
    if ((first == ord("0")) & (lengths > 1)).any():
        return None  # "007", "00"
    if negative:
        signed = np.flatnonzero((first == ord("-")) & (lengths > 1))
        if (data[starts[signed] + 1] == ord("0")).any():
            return None  # "-0", "-07"
    try:
        values = pc.cast(strings, pa.int64()).to_numpy()
    except pa.ArrowInvalid:  # "-", "1-2", beyond int64
        return None
    if len(values) and np.iinfo(np.int32).min <= values.min() and \
            values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values
