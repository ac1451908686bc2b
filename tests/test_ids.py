"""IdMap: raw id <-> dense index."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autorec import IdMap
from autorec.data.ids import InvalidIdError, common_ids, id_column, query_ids


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
    # an id is its text: the integer 5 is the id "5" (issue 5)
    assert IdMap.from_values(["5"]).to_index([5]).tolist() == [0]


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


# -- an id is its text (issue 5) ----------------------------------------------------------------
def stored(values) -> list:
    return id_column(values).tolist()


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["1000", "1e3"], ["1000", "1e3"]),
        (["5", "5.0", "+5"], ["5", "5.0", "+5"]),
        (["007", "7"], ["007", "7"]),
        (["0", "-0"], ["0", "-0"]),
        (["12", "-3", "0"], [12, -3, 0]),
        (["9223372036854775807", "-9223372036854775808"],
         [9223372036854775807, -9223372036854775808]),
    ],
    ids=["exponent", "decimal-and-plus", "leading-zero", "minus-zero", "canonical", "int64-ends"],
)
def test_text_ids_are_integers_only_when_every_one_is_canonical(texts, expected) -> None:
    assert stored(texts) == expected
    assert len(set(stored(texts))) == len(texts)  # distinct texts, distinct ids


@pytest.mark.parametrize(
    "values",
    [
        ["18446744073709551616", "1"],  # beyond uint64
        ["18446744073709551615", "-1"],  # uint64 max with a negative id
        ["12345678901234567890123", "007"],  # 23 digits with a leading zero
        [2**64, 1],  # Python ints beyond int64
        np.array([2**64 - 1, 3], dtype=np.uint64),
    ],
    ids=["beyond-uint64", "uint64-and-negative", "23-digits", "python-big-ints", "uint64"],
)
def test_huge_integers_stay_text(values) -> None:
    result = stored(values)
    assert result == [str(v) for v in values]


def test_native_integer_columns_stay_integers() -> None:
    for dtype in (np.int8, np.int32, np.uint16, "Int64"):
        column = id_column(pd.Series([3, 1, 2], dtype=dtype))
        assert column.dtype == np.int64 and column.tolist() == [3, 1, 2]


@pytest.mark.parametrize(
    ("values", "position", "words"),
    [
        (pd.Series([1.0, 2.0]), 0, "floating-point"),
        (pd.Series([True, False]), 0, "boolean"),
        (pd.Series(["a", {"x": 1}], dtype=object), 1, "dict"),
        (pd.Series([1, [1, 2]], dtype=object), 1, "list"),
        (pd.Series(["a", 2.5], dtype=object), 1, "floating-point"),
        (pd.Series(["a", None]), 1, "missing"),
        (pd.Series(["a", ""]), 1, "missing"),
        (pd.Series(pd.to_datetime(["2020-01-01"])), 0, "datetime"),
    ],
    ids=["float", "bool", "dict", "list", "float-in-object", "none", "empty", "datetime"],
)
def test_values_that_cannot_be_ids(values, position, words) -> None:
    with pytest.raises(InvalidIdError) as info:
        id_column(values)
    assert info.value.position == position
    assert words in info.value.problem


def test_mixed_integers_and_text_become_text() -> None:
    assert stored(pd.Series([1, "a", np.int64(7)], dtype=object)) == ["1", "a", "7"]
    assert IdMap.from_values([1, "1", "a"]).raw_ids.tolist() == ["1", "a"]


def test_lookups_compare_by_text() -> None:
    ints = IdMap.from_values([12, 7])
    assert ints.to_index(["12", 7, np.int64(12), "7"]).tolist() == [0, 1, 0, 1]
    assert ints.to_index(["012", "+12", 12.0, True, "12.0", " 12", "x", None]).tolist() == [-1] * 8
    assert ints.to_index(np.array([12.0, 7.0])).tolist() == [-1, -1]
    assert ints.to_index(np.array(["7", "07"])).tolist() == [1, -1]
    assert ints.to_index(np.array([7, 2**64 - 1], dtype=np.uint64)).tolist() == [1, -1]
    assert ints.to_index(["99999999999999999999999"]).tolist() == [-1]
    assert "12" in ints and 12.0 not in ints
    texts = IdMap.from_values(["12", "a"])
    assert texts.to_index([12, np.int64(12), "12", "a", 12.0, [1]]).tolist() == [0, 0, 0, 1, -1, -1]
    assert texts.to_index(np.array([12, 5])).tolist() == [0, -1]


def test_common_ids_turn_integers_into_text_next_to_text() -> None:
    ints, texts = np.array([1, 2]), np.array(["1", "x9"], dtype=object)
    assert [a.tolist() for a in common_ids(ints, texts)] == [["1", "2"], ["1", "x9"]]
    assert [a.dtype.kind for a in common_ids(ints, np.array([3]))] == ["i", "i"]


def test_an_id_map_iterates_over_its_raw_ids_in_index_order() -> None:
    integers = IdMap.from_values([12, 7, 12, 3])
    assert list(integers) == [12, 7, 3]
    assert all(type(raw) is int for raw in integers)  # Python ints, not numpy scalars
    texts = IdMap.from_values(["b", "a"])
    assert list(texts) == ["b", "a"]
    assert list(integers.to_index(list(integers))) == [0, 1, 2]


def test_to_raw_refuses_indices_outside_the_map() -> None:
    """-1 (what to_index gives an unknown id) came back as the last id."""
    ids = IdMap(np.array([10, 20, 30]))
    assert ids.to_raw([2, 0]).tolist() == [30, 10]
    for bad in ([-1], [3]):
        with pytest.raises(IndexError, match="from 0 to 2"):
            ids.to_raw(bad)
    assert ids.to_raw([]).tolist() == []


def test_an_integer_map_takes_mixed_queries_with_huge_integers() -> None:
    ids = IdMap(pd.Index(np.array([1, 12], dtype=np.int64)))
    # beyond int64 (and beyond str()'s 4,300 digits): unknown, not an error
    assert ids.to_index(["1", 10**5000, 2**63, 12, -(2**63) - 1]).tolist() == [0, -1, -1, 1, -1]


def test_a_lone_surrogate_is_refused_as_an_id_with_its_position() -> None:
    # no model file, output or request could carry it: refused when read, not when asked for
    ids = pd.Series(["a", "b", "\ud800x"], dtype=object)
    with pytest.raises(InvalidIdError, match=r"is not Unicode text") as caught:
        id_column(ids)
    assert caught.value.position == 2
    with pytest.raises(ValueError, match=r"^user_ids: id .* is not Unicode text .*position 1"):
        query_ids(["a", "\udfff"], "user_ids")


def test_the_fitted_map_is_integers_when_only_unrated_ids_were_text() -> None:
    from autorec import AutoRec
    from autorec.data.readers import from_dataframe

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(1, 31, 300), "item_id": rng.integers(1, 16, 300),
                          "rating": rng.integers(1, 6, 300).astype(float)})
    frame = frame.drop_duplicates(["user_id", "item_id"], ignore_index=True)
    text_id = pd.DataFrame({"user_id": ["x9"], "item_id": [1], "rating": [4.0]})
    ratings = from_dataframe(pd.concat([frame, text_id], ignore_index=True))
    assert ratings.users.raw_ids.dtype == object  # the whole map is text
    model = AutoRec(hidden=4, epochs=1, random_state=0, ranking="none").fit(
        ratings.subset(np.arange(len(ratings) - 1)))  # without the text id's rating
    assert model.users_.raw_ids.dtype == np.int64
    assert model.items_.raw_ids.dtype == np.int64
    assert isinstance(model.recommend([int(frame.user_id[0])], n=1)["item_id"][0],
                      np.integer | int)
