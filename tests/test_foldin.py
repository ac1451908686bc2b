"""Fold-in of new users and items (issue 7): encoding, the ridge decoder row, adding, inputs."""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_low_rank

from autorec import AutoRec, NotFittedError, Ratings
from autorec.baseline import Biases
from autorec.foldin import DEFAULT_REG, RECOMMENDATION_COLUMNS, default_reg, ridge_row

#: Tiny, quick networks; no validation part, so that the biases and the networks' input rows
#: come from the same ratings and a copy of a known row can be compared with it.
FAST = {"hidden": 12, "epochs": 15, "lr": 0.03, "batch_size": 16, "validation": 0.0,
        "l2": 1.0, "random_state": 0, "device": "cpu"}
#: Fold-in and predict reach a score by different code paths, whose float32 sums may be
#: ordered differently on another CPU (AVX2, AVX-512) or thread count: equal within this.
CLOSE = {"rtol": 1e-6, "atol": 1e-6}


@cache
def _ratings() -> Ratings:
    return make_low_rank()


@cache
def _fitted(variant: str, baseline: str, ensemble: int = 1) -> AutoRec:
    return AutoRec(variant=variant, baseline=baseline, ensemble=ensemble,  # type: ignore[arg-type]
                   **FAST).fit(_ratings())


def fitted(variant: str = "item", baseline: str = "biases", ensemble: int = 1) -> AutoRec:
    """A fresh copy of a cached fitted model (tests may add newcomers to it)."""
    return copy.deepcopy(_fitted(variant, baseline, ensemble))


def ratings_of(side: str, raw_id: object, ratings: Ratings | None = None) -> dict:
    """The training ratings of a known user (``side="user"``: ``{item_id: rating}``) or item."""
    ratings = _ratings() if ratings is None else ratings
    if side == "user":
        mask = ratings.user_idx == ratings.users.to_index([raw_id])[0]
        return dict(zip(ratings.item_ids[mask].tolist(), ratings.rating[mask].tolist(),
                        strict=True))
    mask = ratings.item_idx == ratings.items.to_index([raw_id])[0]
    return dict(zip(ratings.user_ids[mask].tolist(), ratings.rating[mask].tolist(), strict=True))


def scores_of_known(model: AutoRec, side: str, raw_id: object) -> np.ndarray:
    """What ``predict`` gives a known user (over all items) or item (over all users)."""
    if side == "user":
        items = model.items_.raw_ids
        return model.predict([raw_id] * len(items), items)
    users = model.users_.raw_ids
    return model.predict(users, [raw_id] * len(users))


def fold(model: AutoRec, side: str, ratings, **kwargs):
    return (model.fold_in_user(ratings, **kwargs) if side == "user"
            else model.fold_in_item(ratings, **kwargs))


# -- the encoded side ---------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", ["biases", "none"])
@pytest.mark.parametrize(("variant", "side"), [("item", "item"), ("user", "user")])
def test_encoded_newcomer_scores_like_the_known_row(variant: str, side: str,
                                                    baseline: str) -> None:
    model = fitted(variant, baseline)
    id_map = model.users_ if side == "user" else model.items_
    position = 3
    raw_id = id_map.raw_ids[position]
    result = fold(model, side, ratings_of(side, raw_id))
    biases = model.biases_
    known_bias = (biases.user if side == "user" else biases.item)[position]
    # The newcomer's bias is one ridge step given the other side's biases: the last step of
    # fit_biases for a user, one step past it for an item (ALS has nearly converged).
    assert result.bias == pytest.approx(known_bias, abs=1e-3)
    # With that bias in the known row's place, the two score alike: the same input vector
    # gives the same hidden code and the same decoded outputs.
    if side == "user":
        model.biases_ = _with_bias(biases, user=(position, result.bias))
    else:
        model.biases_ = _with_bias(biases, item=(position, result.bias))
    np.testing.assert_allclose(result.scores.to_numpy(), scores_of_known(model, side, raw_id),
                               rtol=0, atol=1e-6)
    assert result.n_ratings == len(ratings_of(side, raw_id)) and result.n_unknown == 0


def _with_bias(biases: Biases, *, user=None, item=None) -> Biases:
    users, items = biases.user.copy(), biases.item.copy()
    if user is not None:
        users[user[0]] = user[1]
    if item is not None:
        items[item[0]] = item[1]
    return Biases(biases.mean, users, items, biases.reg_user, biases.reg_item)


def test_bias_is_the_ridge_step_of_fit_biases() -> None:
    model = fitted("item", "biases")
    ratings = {1003: 5.0, 1010: 2.0, 1020: 4.5}
    result = model.fold_in_user(ratings)
    biases = model.biases_
    index = model.items_.to_index(list(ratings))
    expected = (np.sum(np.array(list(ratings.values())) - biases.mean - biases.item[index])
                / (biases.reg_user + len(ratings)))
    assert result.bias == pytest.approx(expected, rel=1e-12)


# -- the ridge side -----------------------------------------------------------------------------
@pytest.mark.parametrize("intercept", [False, True])
@pytest.mark.parametrize("reg", [0.3, 1.0, 50.0])
@pytest.mark.parametrize("n", [3, 40])
def test_ridge_row_matches_least_squares(n: int, reg: float, intercept: bool) -> None:
    rng = np.random.default_rng(n)
    codes = rng.random((n, 12))
    targets = rng.normal(size=n)
    row, bias = ridge_row(codes, targets, reg, intercept=intercept)
    design = np.column_stack([codes, np.ones(n)]) if intercept else codes
    penalty = np.zeros((12, design.shape[1]))
    penalty[np.arange(12), np.arange(12)] = np.sqrt(reg)  # the bias column unpenalised
    expected = np.linalg.lstsq(np.vstack([design, penalty]),
                               np.concatenate([targets, np.zeros(12)]), rcond=None)[0]
    np.testing.assert_allclose(row, expected[:12], rtol=0, atol=1e-9)
    assert bias == (pytest.approx(expected[12], abs=1e-9) if intercept else 0.0)


def test_ridge_row_without_penalty_is_minimum_norm_least_squares() -> None:
    rng = np.random.default_rng(0)
    codes, targets = rng.random((4, 10)), rng.normal(size=4)
    row, _ = ridge_row(codes, targets, 0.0)
    np.testing.assert_allclose(row, np.linalg.pinv(codes) @ targets, atol=1e-9)
    with pytest.raises(ValueError, match="reg"):
        ridge_row(codes, targets, -1.0)


@pytest.mark.parametrize("baseline", ["biases", "none"])
@pytest.mark.parametrize(("variant", "side"), [("item", "user"), ("user", "item")])
def test_fitted_decoder_row_is_the_ridge_solution(variant: str, side: str,
                                                  baseline: str) -> None:
    model = fitted(variant, baseline)
    other_map = model.items_ if side == "user" else model.users_
    raw = other_map.raw_ids[[0, 4, 5, 9, 17]]
    values = np.array([5.0, 1.0, 4.0, 3.5, 2.0])
    reg = 0.7
    result = fold(model, side, (raw, values), add=True, reg=reg, **{f"{side}_id": 7000})
    member = model.members_[0]
    net = member.net
    index = other_map.to_index(raw)
    biases = model.biases_
    other_bias = biases.item if side == "user" else biases.user
    offsets = (biases.mean + result.bias + other_bias[index] if baseline == "biases"
               else np.zeros(len(index)))
    targets = (values - offsets) / member.scale
    codes = member.encode_rows(index).double().numpy()
    design = np.column_stack([codes, np.ones(len(index))]) if baseline == "none" else codes
    hidden = codes.shape[1]
    penalty = np.zeros((hidden, design.shape[1]))
    penalty[np.arange(hidden), np.arange(hidden)] = np.sqrt(reg)
    expected = np.linalg.lstsq(np.vstack([design, penalty]),
                               np.concatenate([targets, np.zeros(hidden)]), rcond=None)[0]
    np.testing.assert_allclose(net.decoder_weight[-1].detach().double().numpy(),
                               expected[:hidden], rtol=1e-6, atol=1e-6)
    if baseline == "none":
        assert net.decoder_bias[-1].item() == pytest.approx(expected[hidden], rel=1e-6,
                                                            abs=1e-6)
    else:
        assert net.decoder_bias is None
    # the new input's encoder row is zero: no existing hidden code changes
    assert not net.encoder_weight[-1].any()
    assert result.reg == reg


@pytest.mark.parametrize(("variant", "side"), [("item", "user"), ("user", "item")])
def test_ridge_row_reproduces_a_converged_row(variant: str, side: str) -> None:
    """At a converged training optimum each decoder row solves exactly the ridge problem
    fold-in solves with the default ``reg = l2 / 2``: folding in a copy of a known row gives
    back its predictions."""
    ratings = make_low_rank(n_users=16, n_items=12, seed=1)
    model = AutoRec(variant=variant, hidden=4, epochs=500, optimizer="rprop", lr=0.01,
                    dropout=0.0, input_dropout=0.0, validation=0.0, l2=2.0, patience=500,
                    random_state=0, device="cpu").fit(ratings)
    raw_id = (model.users_ if side == "user" else model.items_).raw_ids[3]
    known = ratings_of(side, raw_id, ratings)
    result = fold(model, side, known)
    assert result.reg == 1.0 == default_reg(model)
    expected = scores_of_known(model, side, raw_id)
    np.testing.assert_allclose(result.scores.to_numpy(), expected, atol=2e-3)
    # (while a penalty off by a factor of two misses by tens of times more)
    assert np.abs(fold(model, side, known, reg=2.0).scores.to_numpy() - expected).max() > 0.05


def test_default_reg_without_l2() -> None:
    model = fitted()
    model.l2_ = 0.0
    assert default_reg(model) == DEFAULT_REG
    model.l2_ = 100.0
    assert default_reg(model) == 50.0


# -- adding -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "ensemble"), [("item", 1), ("user", 1), ("both", 2)])
def test_added_newcomers_predict_their_fold_in_scores(variant: str, ensemble: int) -> None:
    model = fitted(variant, "biases", ensemble)
    assert len(model.members_) == (4 if variant == "both" else 1)
    ratings = _ratings()
    before = model.predict(ratings.user_ids, ratings.item_ids)
    n_users, n_items = len(model.users_), len(model.items_)

    user = model.fold_in_user({1000: 5.0, 1007: 2.0, 1011: 4.0, 9999: 3.0}, add=True,
                              user_id=7000)
    assert user.added and user.n_ratings == 3 and user.n_unknown == 1
    items = model.items_.raw_ids
    np.testing.assert_allclose(model.predict([7000] * n_items, items),
                               user.scores.to_numpy(), **CLOSE)
    item = model.fold_in_item({100: 1.0, 105: 4.0, "7000": 5.0}, add=True, item_id=5000)
    users = model.users_.raw_ids
    assert len(users) == n_users + 1 and len(model.items_) == n_items + 1
    assert list(item.scores.index[-1:]) == [7000]
    np.testing.assert_allclose(model.predict(users, [5000] * len(users)),
                               item.scores.to_numpy(), **CLOSE)
    assert not model.predict([7000], [5000], return_cold=True)[1][0]
    # nobody else's predictions moved (the new inputs' encoder rows are zero)
    np.testing.assert_allclose(model.predict(ratings.user_ids, ratings.item_ids), before,
                               **CLOSE)
    assert model.items_.raw_ids.dtype.kind == "i"  # 5000 kept the integer id storage
    assert model.users_.raw_ids.dtype.kind == "i"  # and 7000 too
    for member in model.members_:
        assert member.matrix.shape == ((n_items + 1, n_users + 1) if member.spec.variant == "item"
                                       else (n_users + 1, n_items + 1))
        assert member.net.encoder_weight.shape[0] == member.net.n_inputs == member.n_inputs
    with pytest.raises(ValueError, match="already known"):
        model.fold_in_user({1000: 3.0}, add=True, user_id="7000")
    with pytest.raises(ValueError, match="already known"):
        model.fold_in_item({100: 3.0}, add=True, item_id="5000")  # ids compared by text


def test_add_needs_an_id_and_a_known_rating() -> None:
    model = fitted()
    with pytest.raises(ValueError, match="user_id"):
        model.fold_in_user({1000: 5.0}, add=True)
    with pytest.raises(ValueError, match="without a rating"):
        model.fold_in_user({"unknown": 5.0}, add=True, user_id=7001)
    assert len(model.users_) == 40


# -- cold, unknown ids, inputs ------------------------------------------------------------------
@pytest.mark.parametrize("cold", ["baseline", "mean", "midpoint"])
def test_no_usable_rating_gives_the_cold_fallback(cold: str) -> None:
    model = fitted()
    model.cold = cold
    items, users = model.items_.raw_ids, model.users_.raw_ids
    for ratings in ({}, {"nope": 4.0, 12345: 1.0}):
        user = model.fold_in_user(ratings, n=3)
        assert user.cold and user.bias == 0.0 and user.n_unknown == len(ratings)
        np.testing.assert_allclose(user.scores.to_numpy(),
                                   model.predict(["unseen"] * len(items), items), **CLOSE)
        assert len(user.recommendations) == 3 and user.recommendations["fallback"].all()
        # ranked as recommend ranks a user it does not know
        expected = model.recommend(["unseen"], n=3)
        assert user.recommendations["item_id"].tolist() == expected["item_id"].tolist()
        item = model.fold_in_item(ratings)
        np.testing.assert_allclose(item.scores.to_numpy(),
                                   model.predict(users, ["unseen"] * len(users)), **CLOSE)


def test_unknown_ids_are_ignored_and_counted() -> None:
    model = fitted("both", "biases")
    plain = model.fold_in_user({1000: 5.0, 1003: 1.0})
    mixed = model.fold_in_user({1000: 5.0, "x": 2.0, 1003: 1.0, -7: 4.0})
    assert (mixed.n_ratings, mixed.n_unknown) == (2, 2)
    np.testing.assert_array_equal(plain.scores.to_numpy(), mixed.scores.to_numpy())


def test_input_forms_agree() -> None:
    model = fitted("both", "biases")
    as_dict = model.fold_in_user({1000: 5.0, 1003: 1.0, 1010: 3.5}, n=5)
    forms = [
        {"1010": 3.5, "1000": 5.0, "1003": 1.0},  # text ids, other order
        pd.Series([5.0, 1.0, 3.5], index=[1000, 1003, 1010]),
        pd.DataFrame({"item_id": [1003, 1010, 1000], "rating": [1, 3.5, 5]}),
        ([1000, 1003, 1010], np.array([5, 1, 3.5], dtype=np.float32)),
        [(1000, 5.0), (1003, 1.0), (1010, 3.5)],  # a list of (id, rating) tuples
    ]
    for form in forms:
        other = model.fold_in_user(form, n=5)
        pd.testing.assert_series_equal(other.scores, as_dict.scores)
        pd.testing.assert_frame_equal(other.recommendations, as_dict.recommendations)
    assert as_dict.scores.index.name == "item_id"
    item = model.fold_in_item(pd.DataFrame({"user_id": [100, 101], "rating": [4.0, 2.0]}))
    assert item.scores.index.name == "user_id" and item.recommendations is None


@pytest.mark.parametrize(("ratings", "message"), [
    ({1000: float("nan")}, "rating nan at position 0 is not a finite"),  # not np.float64(nan)
    ({1000: float("inf")}, "not a finite"),
    ({1000: True}, "boolean"),
    ({1000: "five"}, "not a number"),
    ({1000: 1e39}, "not a finite"),
    ({1000: 10**400}, r"at position 0 \(an integer beyond 1e308\) is not a finite"),
    ({1000: -10**5000}, r"at position 0 \(an integer beyond 1e308\) is not a finite"),
    (([1000, "1000"], [1.0, 2.0]), "item_id 1000 is rated more than once"),
    (pd.DataFrame({"item_id": [1000, 1000], "rating": [5.0, 1.0]}),
     r"item_id 1000 is rated more than once \(position 1\)"),  # was np.int64(1000)
    (([1000, 1003], [1.0]), "2 ids but 1 ratings"),
    (([1000, 1.5], [1.0, 2.0]), "floating-point"),
    (pd.DataFrame({"user_id": [1000], "rating": [1.0]}), "item_id"),
])
def test_bad_ratings_are_refused(ratings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fitted().fold_in_user(ratings)


def test_bad_arguments() -> None:
    model = fitted()
    with pytest.raises(TypeError, match="mapping"):
        model.fold_in_user(42)
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            model.fold_in_user({1000: 4.0}, n=n)
    for reg in (-1.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="reg must be"):
            model.fold_in_user({1000: 4.0}, reg=reg)
    with pytest.raises(ValueError, match="add must be"):
        model.fold_in_item({100: 4.0}, add="yes")
    with pytest.raises(NotFittedError):
        AutoRec().fold_in_user({1000: 4.0})


# -- recommendations ----------------------------------------------------------------------------
def test_recommendations_rank_unrated_items_by_score() -> None:
    """Without a ranking model (``ranking="none"``) the list is by predicted rating; with one:
    tests/test_ranking_integration.py."""
    model = fitted("user", "biases")
    model.ranking_ = None
    rated = {1000: 5.0, 1001: 4.0, 1002: 1.0}
    result = model.fold_in_user(rated, n=7, user_id="u-new")
    top = result.recommendations
    assert list(top.columns) == list(RECOMMENDATION_COLUMNS)
    assert top["rank"].tolist() == list(range(1, 8))
    assert (top["user_id"] == "u-new").all()
    assert not set(top["item_id"]) & set(rated)
    assert top["score"].is_monotonic_decreasing and not top["fallback"].any()
    unrated = result.scores.drop(list(rated))
    assert top["score"].iloc[0] == unrated.max()
    np.testing.assert_array_equal(top["score"], result.scores.loc[top["item_id"]].to_numpy())
    np.testing.assert_array_equal(top["predicted_rating"], top["score"])
    everything = model.fold_in_user(rated, n=1000, exclude_rated=False)
    assert len(everything.recommendations) == len(model.items_)
    assert everything.recommendations["user_id"].isna().all()  # no id given
    assert model.fold_in_user(rated, n=None).recommendations is None


@pytest.mark.parametrize("variant", ["item", "user"])
def test_added_user_is_recommended_for_and_saved(variant: str, tmp_path) -> None:
    model = fitted(variant, "biases")
    rated = {1000: 5.0, 1001: 4.0, 1002: 1.0, 1015: 2.0}
    result = model.fold_in_user(rated, n=6, add=True, user_id=7000)
    listed = model.recommend([7000], n=6)
    assert listed["item_id"].tolist() == result.recommendations["item_id"].tolist()
    np.testing.assert_allclose(listed["score"], result.recommendations["score"], atol=1e-5)
    assert not set(listed["item_id"]) & set(rated)  # its ratings are now its seen items
    loaded = AutoRec.load(model.save(tmp_path / "grown"))
    items = model.items_.raw_ids
    np.testing.assert_allclose(loaded.predict([7000] * len(items), items),
                               result.scores.to_numpy(), **CLOSE)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fold_in_on_cuda_matches_cpu(tmp_path) -> None:
    """A CPU-trained model loaded onto CUDA folds in (and adds) the same newcomers."""
    cpu = fitted("both", "biases")
    gpu = AutoRec.load(cpu.save(tmp_path / "model"), device="cuda")
    rated = {1000: 5.0, 1007: 2.0, 1011: 4.0}
    for model in (cpu, gpu):
        model.fold_in_user(rated, add=True, user_id=7000)
        model.fold_in_item({100: 1.0, 105: 4.0, 7000: 5.0}, add=True, item_id=9000)
    users, items = cpu.users_.raw_ids, cpu.items_.raw_ids
    pairs = (np.repeat(users, len(items)), np.tile(items, len(users)))
    np.testing.assert_allclose(gpu.predict(*pairs), cpu.predict(*pairs), atol=1e-4)


def test_rows_are_encoded_in_chunks_bounded_by_their_ratings(monkeypatch) -> None:
    """Scoring encodes rows in chunks of at most _ENCODE_ROWS rows and _ENCODE_RATINGS
    ratings (a few rows with many ratings made one chunk's transpose 1 GB at Netflix shape);
    a row with more ratings than the bound is a chunk of its own. The codes do not depend on
    the chunking."""
    from autorec import member as member_module
    from autorec.batch import SparseBatch

    member = fitted("item").members_[0]
    rows = np.arange(member.matrix.shape[0])[::-1].copy()
    whole = member.encode_rows(rows)
    sizes: list[int] = []
    build = SparseBatch.from_scipy

    def recording(matrix, *args, **kwargs):
        sizes.append(matrix.nnz)
        return build(matrix, *args, **kwargs)

    monkeypatch.setattr(SparseBatch, "from_scipy", staticmethod(recording))
    monkeypatch.setattr(member_module, "_ENCODE_RATINGS", 7)
    chunked = member.encode_rows(rows)
    counts = np.diff(member.matrix.indptr)[rows]
    assert sum(sizes) == counts.sum() and len(sizes) > 1
    assert all(size <= 7 or size in counts for size in sizes)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["item", "user"])
def test_cached_codes_follow_added_newcomers(variant: str) -> None:
    """A prediction over most rows keeps every row's codes for the next one (the member's
    cache); adding a newcomer on either side invalidates them: the model that cached predicts
    what a model that never did predicts, newcomers included."""
    warm, cold = fitted(variant), fitted(variant)
    ratings = _ratings()
    member = warm.members_[0]
    member._codes = cold.members_[0]._codes = None
    first = warm.predict(ratings.user_ids, ratings.item_ids)
    assert member._codes is not None  # every row's codes are kept
    np.testing.assert_allclose(warm.predict(ratings.user_ids, ratings.item_ids), first,
                               rtol=0, atol=0)
    for model in (warm, cold):
        model.fold_in_user({1000: 5.0, 1007: 2.0, 1011: 4.0}, add=True, user_id=7000)
        model.fold_in_item({100: 1.0, 105: 4.0}, add=True, item_id=5000)
    users = np.concatenate([ratings.user_ids, [7000] * 40, ratings.user_ids[:40]])
    items = np.concatenate([ratings.item_ids, ratings.item_ids[:40], [5000] * 40])
    cold.members_[0]._codes = None
    np.testing.assert_allclose(warm.predict(users, items), cold.predict(users, items), **CLOSE)


def test_a_list_of_two_pairs_is_two_ratings() -> None:
    # it was read as (ids, ratings): items 1000 and 5 rated... a silent misreading
    model = fitted("both", "biases")
    two = model.fold_in_user([(1000, 5.0), (1003, 1.0)], n=None)
    pd.testing.assert_series_equal(two.scores,
                                   model.fold_in_user({1000: 5.0, 1003: 1.0}, n=None).scores)
    assert two.n_ratings == 2 and two.n_unknown == 0


def test_lists_of_two_are_pairs_and_two_of_them_are_refused_as_ambiguous() -> None:
    """JSON has no tuples: [[1000, 5], [1003, 1]] was read as the ids (1000, 5) rated 5 and
    1 (one known item, no error); three such lists or one were refused as a TypeError, and
    so was an empty list, while {} gave the cold answer."""
    model = fitted("both", "biases")
    three = {1000: 5.0, 1003: 1.0, 1010: 3.5}
    pd.testing.assert_series_equal(
        model.fold_in_user([[1000, 5.0], [1003, 1.0], [1010, 3.5]], n=None).scores,
        model.fold_in_user(three, n=None).scores)
    one = model.fold_in_user([[1003, 1.0]], n=None)
    assert one.n_ratings == 1
    with pytest.raises(ValueError, match="could be two"):
        model.fold_in_user([[1000, 5.0], [1003, 1.0]])
    empty = model.fold_in_user({}, n=None)
    for nothing in ([], ()):
        result = model.fold_in_user(nothing, n=None)
        assert result.n_ratings == 0
        pd.testing.assert_series_equal(result.scores, empty.scores)


def test_an_id_already_known_is_named_plainly() -> None:
    model = fitted("both", "biases")
    known = model.fitted_.users.raw_ids[0]  # a numpy integer
    with pytest.raises(ValueError, match=rf"^user_id {int(known)} is already known"):
        model.fold_in_user({1000: 5.0}, add=True, user_id=known)
