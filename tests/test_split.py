"""Splits: random holdout, k-fold, canonical MovieLens-100K splits, align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autorec import Ratings, align, canonical_split, kfold_split, random_split, read_ratings


def keys(part: Ratings) -> np.ndarray:
    """Sorted (raw user, raw item) pairs of a part, as a two-column array."""
    pairs = np.column_stack([part.user_ids, part.item_ids])
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def key_set(part: Ratings) -> set[tuple]:
    return set(zip(part.user_ids.tolist(), part.item_ids.tolist(), strict=True))


@pytest.fixture
def ratings(make_ratings) -> Ratings:
    data = make_ratings(n_users=30, n_items=20, density=0.6, seed=3)
    assert len(data) > 300
    return data


# -- random_split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("test_ratio", [0.1, 0.25, 0.5, 0.137])
def test_random_split_disjoint_complete_exact_size(ratings: Ratings, test_ratio: float) -> None:
    train, test = random_split(ratings, test_ratio=test_ratio, random_state=0)
    n = len(ratings)
    assert len(test) == round(test_ratio * n)
    assert len(train) + len(test) == n
    assert not key_set(train) & key_set(test)
    whole = Ratings(np.concatenate([train.user_idx, test.user_idx]),
                    np.concatenate([train.item_idx, test.item_idx]),
                    np.concatenate([train.rating, test.rating]), ratings.users, ratings.items)
    np.testing.assert_array_equal(keys(whole), keys(ratings))
    # each rating keeps its value
    pairs = zip(ratings.user_ids.tolist(), ratings.item_ids.tolist(), strict=True)
    original = dict(zip(pairs, ratings.rating.tolist(), strict=True))
    for part in (train, test):
        for u, i, r in zip(part.user_ids.tolist(), part.item_ids.tolist(), part.rating.tolist(),
                           strict=True):
            assert original[(u, i)] == r


def test_random_split_shares_id_maps(ratings: Ratings) -> None:
    train, test = random_split(ratings, 0.2, random_state=1)
    assert train.users is ratings.users and test.users is ratings.users
    assert train.items is ratings.items and test.items is ratings.items


def test_random_split_deterministic_per_seed(ratings: Ratings) -> None:
    a_train, a_test = random_split(ratings, 0.2, random_state=7)
    b_train, b_test = random_split(ratings, 0.2, random_state=7)
    np.testing.assert_array_equal(keys(a_test), keys(b_test))
    np.testing.assert_array_equal(keys(a_train), keys(b_train))
    _, c_test = random_split(ratings, 0.2, random_state=8)
    assert key_set(a_test) != key_set(c_test)


@pytest.mark.parametrize("test_ratio", [0.0, 1.0, -0.1, 1.5])
def test_random_split_bad_ratio(ratings: Ratings, test_ratio: float) -> None:
    with pytest.raises(ValueError, match="test_ratio"):
        random_split(ratings, test_ratio=test_ratio)


def test_random_split_tiny_ratio_keeps_one_test_rating(ratings: Ratings) -> None:
    train, test = random_split(ratings, test_ratio=1e-6, random_state=0)
    assert len(test) == 1 and len(train) == len(ratings) - 1


# -- kfold_split ----------------------------------------------------------------------------------
def test_kfold_each_rating_in_exactly_one_test_fold(ratings: Ratings) -> None:
    folds = list(kfold_split(ratings, n_splits=5, random_state=0))
    assert len(folds) == 5
    n = len(ratings)
    sizes = [len(test) for _, test in folds]
    assert sum(sizes) == n
    assert max(sizes) - min(sizes) <= 1
    all_test = np.concatenate([keys(test) for _, test in folds])
    all_test = all_test[np.lexsort((all_test[:, 1], all_test[:, 0]))]
    np.testing.assert_array_equal(all_test, keys(ratings))
    for train, test in folds:
        assert len(train) + len(test) == n
        assert not key_set(train) & key_set(test)
        assert train.users is ratings.users and test.items is ratings.items


def test_kfold_sizes_when_not_divisible(make_ratings) -> None:
    data = make_ratings(n_users=10, n_items=10, density=1.0)
    data = data.subset(np.arange(23))
    sizes = sorted(len(test) for _, test in kfold_split(data, n_splits=5, random_state=0))
    assert sizes == [4, 4, 5, 5, 5]


def test_kfold_deterministic(ratings: Ratings) -> None:
    first = [key_set(test) for _, test in kfold_split(ratings, 4, random_state=3)]
    again = [key_set(test) for _, test in kfold_split(ratings, 4, random_state=3)]
    other = [key_set(test) for _, test in kfold_split(ratings, 4, random_state=4)]
    assert first == again
    assert first != other


@pytest.mark.parametrize("n_splits", [1, 0, 2.5])
def test_kfold_bad_n_splits(ratings: Ratings, n_splits) -> None:
    with pytest.raises(ValueError, match="n_splits"):
        next(kfold_split(ratings, n_splits=n_splits))


# -- canonical_split ------------------------------------------------------------------------------
@pytest.mark.real_data
def test_canonical_u1_sizes(ml100k_dir: Path) -> None:
    train, test = canonical_split("u1", ml100k_dir, download=False)
    assert (len(train), len(test)) == (80_000, 20_000)
    assert train.users is test.users and train.items is test.items
    assert not key_set(train) & key_set(test)


@pytest.mark.real_data
def test_canonical_ua_ten_per_user(ml100k_dir: Path) -> None:
    train, test = canonical_split("ua", ml100k_dir, download=False)
    assert len(test) == 9430
    assert len(train) == 90_570
    per_user = np.bincount(test.user_idx, minlength=test.n_users)
    assert per_user.tolist() == [10] * 943


@pytest.mark.real_data
def test_canonical_keeps_raw_ids(ml100k_dir: Path) -> None:
    _, test = canonical_split("u1", ml100k_dir, download=False)
    direct = read_ratings(ml100k_dir / "ml-100k" / "u1.test", sep="\t", header=False)
    np.testing.assert_array_equal(test.user_ids, direct.user_ids)
    np.testing.assert_array_equal(test.item_ids, direct.item_ids)
    np.testing.assert_array_equal(test.rating, direct.rating)


@pytest.mark.parametrize("name", ["u6", "u0", "ml-100k", ""])
def test_canonical_bad_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="u1"):
        canonical_split(name, tmp_path, download=False)


# -- align ----------------------------------------------------------------------------------------
def test_align_separately_read_parts(write_file) -> None:
    train = read_ratings(write_file("train.csv",
                                    "user_id,item_id,rating\nb,10,4\na,11,3\nb,12,5\n"))
    test = read_ratings(write_file("test.csv",
                                   "user_id,item_id,rating\na,12,1\nc,10,2\n"))
    # read separately, the two parts disagree on what index 0 means
    assert train.users.raw_ids[0] != test.users.raw_ids[0]
    a_train, a_test = align(train, test)
    assert a_train.users is a_test.users and a_train.items is a_test.items
    assert set(a_train.users.raw_ids.tolist()) == {"a", "b", "c"}
    assert set(a_train.items.raw_ids.tolist()) == {10, 11, 12}
    for before, after in ((train, a_train), (test, a_test)):
        np.testing.assert_array_equal(after.user_ids, before.user_ids)
        np.testing.assert_array_equal(after.item_ids, before.item_ids)
        np.testing.assert_array_equal(after.rating, before.rating)
        assert after.source == before.source
    # the same raw id has the same index in both parts
    assert a_train.users.to_index(["a"])[0] == a_test.user_idx[0]
    assert a_train.items.to_index([10])[0] == a_test.item_idx[1]


@pytest.mark.parametrize("odd", ["x9", "02"])
def test_align_matches_integer_ids_with_text_ids(write_file, odd: str) -> None:
    """One non-integer id makes the test file's column text; ids still match by text."""
    train = read_ratings(write_file("tr.csv", "user_id,item_id,rating\n1,1,4\n2,2,3\n4,4,5\n"))
    test = read_ratings(write_file("te.csv", f"user_id,item_id,rating\n1,2,4\n2,1,3\n4,{odd},1\n"))
    assert train.items.raw_ids.dtype == np.int64 and test.items.raw_ids.dtype == object
    a_train, a_test = align(train, test)
    known = set(a_train.item_idx.tolist())
    assert [i in known for i in a_test.item_idx.tolist()] == [True, True, False]
    assert a_test.item_ids.tolist() == ["2", "1", odd]


def test_split_errors_name_the_source(write_file) -> None:
    one = read_ratings(write_file("one.csv", "user_id,item_id,rating\n1,1,4\n"))
    with pytest.raises(ValueError, match=r"one\.csv"):
        random_split(one)
    with pytest.raises(ValueError, match=r"one\.csv"):
        list(kfold_split(one, 3))


def test_index_arrays_are_32_bit_through_reading_and_splitting(tmp_path):
    """Dense indices are int32 whatever made them (half the memory at scale), and splits keep
    them so; an int64 array given to Ratings is converted, not kept."""
    from autorec.data.ratings import Ratings, index_dtype

    path = tmp_path / "r.csv"
    path.write_text("user_id,item_id,rating\n" + "".join(
        f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(30) for i in range(0, 30, 3)))
    ratings = read_ratings(path)
    train, test = random_split(ratings, 0.2, random_state=0)
    for part in (ratings, train, test):
        assert part.user_idx.dtype == np.int32 and part.item_idx.dtype == np.int32
    wide = Ratings(ratings.user_idx.astype(np.int64), ratings.item_idx.astype(np.int64),
                   ratings.rating, ratings.users, ratings.items)
    assert wide.user_idx.dtype == np.int32
    assert np.array_equal(wide.user_idx, ratings.user_idx)
    assert index_dtype(2**31 - 1) == np.int64 and index_dtype(10) == np.int32


def test_splits_take_a_data_frame_as_fit_does_and_check_their_numbers() -> None:
    """A DataFrame ended in an AttributeError ('subset'); a test_ratio given as text in a
    bare comparison TypeError."""
    import pandas as pd

    frame = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": [1, 2, 1, 3, 2],
                          "rating": [1.0, 2.0, 3.0, 4.0, 5.0]})
    train, test = random_split(frame, test_ratio=0.4, random_state=0)
    assert len(train) == 3 and len(test) == 2
    folds = list(kfold_split(frame, n_splits=5, random_state=0))
    assert sorted(len(t) for _, t in folds) == [1] * 5
    for bad in ("0.1", True, float("nan")):
        with pytest.raises(ValueError, match="test_ratio"):
            random_split(frame, test_ratio=bad)
    with pytest.raises(ValueError, match="n_splits"):
        list(kfold_split(frame, n_splits=True))


@pytest.mark.parametrize("bad", [-1, 1.5, "a", True])
def test_a_bad_random_state_is_named(bad) -> None:
    """numpy's own error ("expected non-negative integer", a TypeError for 1.5) did not name
    the parameter."""
    ratings = Ratings.from_arrays([1, 2, 3, 4], [1, 1, 2, 2], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="random_state must be an integer >= 0 or None"):
        random_split(ratings, 0.5, bad)
    with pytest.raises(ValueError, match="random_state must be an integer >= 0 or None"):
        next(kfold_split(ratings, 2, bad))
