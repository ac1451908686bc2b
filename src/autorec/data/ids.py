"""Maps between raw ids (strings or integers, as in the source) and dense indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["IdMap"]


class IdMap:
    """A bijection between raw ids and the dense indices ``0 .. n-1``.

    Raw ids keep their type (integers stay integers, strings stay strings). Lookup of many ids
    at once is vectorised through :class:`pandas.Index`.

    Parameters
    ----------
    raw_ids
        The distinct raw ids, in index order: ``raw_ids[k]`` has index ``k``.

    Examples
    --------
    >>> ids = IdMap.from_values(["b", "a", "b"])
    >>> ids.to_index(["a", "b", "zz"])
    array([ 1,  0, -1])
    >>> ids.to_raw([0, 1]).tolist()
    ['b', 'a']
    """

    def __init__(self, raw_ids: Sequence[Any] | np.ndarray | pd.Index) -> None:
        index = pd.Index(raw_ids)
        if not index.is_unique:
            raise ValueError("raw_ids must be distinct")
        self._index = index

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> IdMap:
        """Build a map over the distinct values, numbered in order of first appearance."""
        return cls(pd.Index(pd.unique(pd.Series(values))))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw_id: object) -> bool:
        return raw_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    @property
    def raw_ids(self) -> np.ndarray:
        """The raw ids as an array, in index order."""
        return self._index.to_numpy()

    def to_index(self, raw_ids: Iterable[Any] | Any) -> np.ndarray:
        """Dense indices of ``raw_ids``; ``-1`` for ids the map does not know."""
        if isinstance(raw_ids, np.ndarray | pd.Index | pd.Series):
            query = pd.Index(raw_ids)
        else:
            query = pd.Index(list(raw_ids) if _is_iterable(raw_ids) else [raw_ids])
        return self._index.get_indexer(query).astype(np.int64)

    def to_raw(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Raw ids of dense ``indices``."""
        return self._index.to_numpy()[np.asarray(indices, dtype=np.int64)]


def _is_iterable(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes)
