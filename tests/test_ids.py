"""IdMap: raw id <-> dense index."""

from __future__ import annotations

import numpy as np
import pytest

from autorec import IdMap


@pytest.mark.parametrize(
    "values",
    [
        [30, 10, 30, 20, 10, 40],
        ["b", "a", "b", "zz", "a", "c"],
    ],
    ids=["int", "str"],
)
def test_round_trip_raw_index_raw(values: list) -> None:
    ids = IdMap.from_values(values)
    index = ids.to_index(values)
    assert index.dtype == np.int64
    assert index.min() == 0 and index.max() == len(ids) - 1
    back = ids.to_raw(index)
    assert back.tolist() == values
    # index -> raw -> index is the identity on 0..n-1
    assert ids.to_index(ids.to_raw(np.arange(len(ids)))).tolist() == list(range(len(ids)))


def test_order_of_first_appearance() -> None:
    ids = IdMap.from_values([30, 10, 30, 20, 10])
    assert ids.raw_ids.tolist() == [30, 10, 20]
    assert ids.to_index([10, 20, 30]).tolist() == [1, 2, 0]
    assert len(ids) == 3


def test_int_ids_stay_int_and_str_ids_stay_str() -> None:
    assert np.issubdtype(IdMap.from_values([5, 3]).raw_ids.dtype, np.integer)
    raw = IdMap.from_values(["5", "3"]).raw_ids
    assert all(isinstance(v, str) for v in raw)
    # "5" (a string) is not the integer 5
    assert IdMap.from_values(["5"]).to_index([5]).tolist() == [-1]


def test_unknown_ids_are_minus_one() -> None:
    ids = IdMap.from_values(["b", "a"])
    assert ids.to_index(["a", "nope", "b", ""]).tolist() == [1, -1, 0, -1]
    ints = IdMap.from_values([1, 2])
    assert ints.to_index(np.array([2, 3, 1])).tolist() == [1, -1, 0]


def test_scalar_lookup_and_membership() -> None:
    ids = IdMap.from_values(["ab", "cd"])
    # a string is one id, not an iterable of characters
    assert ids.to_index("cd").tolist() == [1]
    assert "ab" in ids
    assert "a" not in ids


def test_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="distinct"):
        IdMap([1, 2, 1])
    with pytest.raises(ValueError, match="distinct"):
        IdMap(["x", "x"])


def test_equality() -> None:
    assert IdMap([1, 2]) == IdMap.from_values([1, 2, 1])
    assert IdMap([1, 2]) != IdMap([2, 1])
