"""Top-N recommendation and ranking metrics: against predict, brute force and hand counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from autorec import AutoRec, Ratings, ranking_metrics
from autorec.metrics import ranking_metrics_from_hits
from autorec.recommend import score_matrix, seen_matrix, top_n

# lists by predicted rating (the rating networks' path, checked against predict and brute
# force); the ranking model's lists: tests/test_ranking_integration.py
FAST = {"hidden": 8, "epochs": 3, "batch_size": 16, "random_state": 0, "device": "cpu",
        "ranking": "none"}


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    from conftest import make_low_rank

    return make_low_rank()


@pytest.fixture(scope="module")
def models(ratings: Ratings) -> dict[str, AutoRec]:
    return {
        "item": AutoRec(variant="item", validation=0.1, **FAST).fit(ratings),
        "user": AutoRec(variant="user", validation=0.0, **FAST).fit(ratings),
        "both-none": AutoRec(variant="both", ensemble=2, baseline="none", validation=0.1,
                             **FAST).fit(ratings),
    }


VARIANTS = ["item", "user", "both-none"]


def rated_items(ratings: Ratings) -> dict[object, set[object]]:
    frame = ratings.to_dataframe()
    return {user: set(group) for user, group in frame.groupby("user_id")["item_id"]}


@pytest.mark.parametrize("name", VARIANTS)
def test_scores_equal_predict(models: dict[str, AutoRec], name: str) -> None:
    model = models[name]
    users = model.users_.raw_ids
    table = model.recommend(users, n=10, exclude_seen=False)
    assert len(table) == 10 * len(users)
    predicted = model.predict(table["user_id"].to_numpy(), table["item_id"].to_numpy())
    np.testing.assert_allclose(table["score"].to_numpy(), predicted, rtol=0, atol=1e-5)
    matrix = score_matrix(model, np.arange(len(users)))
    u, i = np.meshgrid(users, model.items_.raw_ids, indexing="ij")
    np.testing.assert_allclose(matrix.ravel(), model.predict(u.ravel(), i.ravel()), atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_top_n_is_the_best_unseen_items(models: dict[str, AutoRec], ratings: Ratings,
                                        name: str) -> None:
    model = models[name]
    n_users, n_items = len(model.users_), len(model.items_)
    picked, scores = top_n(model, np.arange(n_users), 5)
    matrix = score_matrix(model, np.arange(n_users))
    seen = seen_matrix(model).toarray() != 0
    assert seen.sum() == len(ratings)
    for u in range(n_users):
        assert not seen[u, picked[u]].any()
        assert np.all(np.diff(scores[u]) <= 0)  # best first
        best = np.sort(np.where(seen[u], -np.inf, matrix[u]))[::-1][:5]
        np.testing.assert_allclose(scores[u], best, atol=1e-5)
        np.testing.assert_allclose(scores[u], matrix[u, picked[u]], atol=1e-6)
    assert picked.shape == (n_users, 5) and (picked >= 0).all() and (picked < n_items).all()


def test_seen_items_are_excluded_by_default(models: dict[str, AutoRec], ratings: Ratings
                                            ) -> None:
    model = models["item"]
    rated = rated_items(ratings)
    table = model.recommend(model.users_.raw_ids, n=len(model.items_))
    for user, group in table.groupby("user_id"):
        items = set(group["item_id"])
        assert not items & rated[user]
        assert items | rated[user] == set(model.items_.raw_ids)  # every other item, once
        assert list(group["rank"]) == list(range(1, len(group) + 1))
        assert group["score"].is_monotonic_decreasing
        assert not group["fallback"].any()
    every = model.recommend(model.users_.raw_ids[:2], n=len(model.items_), exclude_seen=False)
    assert len(every) == 2 * len(model.items_)


def test_fewer_candidates_than_n_pads_arrays_and_shortens_table(models: dict[str, AutoRec],
                                                                ratings: Ratings) -> None:
    model = models["item"]
    user = model.users_.raw_ids[0]
    n_rated = len(rated_items(ratings)[user])
    n_left = len(model.items_) - n_rated
    picked, scores = top_n(model, model.users_.to_index([user]), len(model.items_) + 5)
    assert (picked[0, :n_left] >= 0).all() and (picked[0, n_left:] == -1).all()
    assert np.isfinite(scores[0, :n_left]).all() and np.isnan(scores[0, n_left:]).all()
    assert len(model.recommend(user, n=100)) == n_left


def test_unknown_user_gets_the_flagged_baseline_fallback(models: dict[str, AutoRec]) -> None:
    model = models["item"]
    known = model.users_.raw_ids[0]
    table = model.recommend(["stranger", known], n=5)
    stranger = table[table["user_id"] == "stranger"]
    assert stranger["fallback"].all() and not table[table["user_id"] == known][
        "fallback"].any()
    expected = np.argsort(-model.biases_.item, kind="stable")[:5]
    assert list(stranger["item_id"]) == list(model.items_.to_raw(expected))
    predicted, cold = model.predict(["stranger"] * 5, stranger["item_id"], return_cold=True)
    assert cold.all()
    np.testing.assert_allclose(stranger["score"], predicted)


def test_candidate_items_and_unknown_candidates(models: dict[str, AutoRec]) -> None:
    model = models["user"]
    items = list(model.items_.raw_ids[:6])
    table = model.recommend(model.users_.raw_ids[:4], n=3, items=items, exclude_seen=False)
    assert set(table["item_id"]) <= set(items) and len(table) == 12
    full = score_matrix(model, np.arange(4), np.arange(6))
    np.testing.assert_allclose(table["score"].to_numpy().reshape(4, 3),
                               -np.sort(-full, axis=1)[:, :3], atol=1e-6)
    with pytest.raises(ValueError, match="item id"):
        model.recommend(model.users_.raw_ids[:1], items=["no-such-item"])
    one = model.items_.raw_ids[0]  # one id, as user_ids takes one (it was a TypeError)
    pd.testing.assert_frame_equal(model.recommend(model.users_.raw_ids[:2], items=one),
                                  model.recommend(model.users_.raw_ids[:2], items=[one]))


@pytest.mark.parametrize("name", ["item", "both-none"])
def test_a_candidate_given_twice_is_one_candidate(models: dict[str, AutoRec], ratings: Ratings,
                                                  name: str) -> None:
    """A seen item given twice stays out of the list, and no item is listed twice (each copy
    was a column of its own: one escaped exclude_seen and an unseen one came twice)."""
    model = models[name]
    user = model.users_.raw_ids[0]
    rated = rated_items(ratings)[user]
    seen = sorted(rated)[0]
    unseen = sorted(set(model.items_.raw_ids) - rated)[:2]
    table = model.recommend(user, n=5, items=[seen, unseen[0], seen, unseen[1], unseen[0]])
    assert table["item_id"].tolist() == model.recommend(user, n=5, items=unseen)[
        "item_id"].tolist()
    assert sorted(table["item_id"]) == sorted(unseen)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        model.recommend(model.users_.raw_ids[:1], n=0)


def test_ids_compared_as_text(models: dict[str, AutoRec]) -> None:
    model = models["item"]
    raw = int(model.users_.raw_ids[3])
    a = model.recommend([raw], n=3)
    b = model.recommend([str(raw)], n=3)
    assert list(a["item_id"]) == list(b["item_id"]) and not b["fallback"].any()
    assert model.recommend([f"0{raw}"], n=3)["fallback"].all()  # another id


def test_item_codes_cache_follows_weight_changes(ratings: Ratings) -> None:
    model = AutoRec(variant="item", validation=0.0, **FAST).fit(ratings)
    users = model.users_.raw_ids
    model.recommend(users, n=3)  # fills the cache
    with torch.no_grad():
        model.members_[0].net.encoder_weight.mul_(3.0)
    table = model.recommend(users, n=3, exclude_seen=False)
    predicted = model.predict(table["user_id"].to_numpy(), table["item_id"].to_numpy())
    np.testing.assert_allclose(table["score"], predicted, atol=1e-5)


# -- ranking metrics ----------------------------------------------------------------------------
def test_ranking_metrics_hand_computed() -> None:
    recommended = [[1, 2, 3, 4, 5], [7, 8], [1, 2], [1, 2, 3]]
    relevant = [{2, 4, 9}, {7}, set(), {10}]  # the third user has nothing relevant: skipped
    figures = ranking_metrics(recommended, relevant, k=5)
    # user 1: hits at positions 2 and 4 of 5, 3 relevant
    ndcg_1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    ap_1 = (1 / 2 + 2 / 4) / 3
    # user 2: a hit at position 1 of a list of 2 (precision still over k = 5), 1 relevant
    # user 4: no hit
    assert figures["n_users"] == 3
    assert figures["precision@5"] == pytest.approx((2 / 5 + 1 / 5 + 0) / 3)
    assert figures["recall@5"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert figures["hit_rate@5"] == pytest.approx(2 / 3)
    assert figures["ndcg@5"] == pytest.approx((ndcg_1 + 1 + 0) / 3)
    assert figures["map@5"] == pytest.approx((ap_1 + 1 + 0) / 3)
    assert ndcg_1 == pytest.approx(1.0616064 / 2.1309298, abs=1e-7)  # 0.498189


def test_ranking_metrics_cut_off_and_ideal_list() -> None:
    # k smaller than the relevant set: ideal DCG and MAP's denominator use min(k, n_relevant)
    figures = ranking_metrics([[1, 2, 3]], [{1, 2, 3, 4, 5}], k=2)
    assert figures["precision@2"] == 1.0 and figures["ndcg@2"] == 1.0
    assert figures["map@2"] == 1.0 and figures["recall@2"] == pytest.approx(2 / 5)
    figures = ranking_metrics([[9, 1]], [{1}], k=2)  # the hit at position 2
    assert figures["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert figures["map@2"] == pytest.approx(1 / 2)
    hits = ranking_metrics_from_hits([[False, True]], [1])
    assert hits == ranking_metrics([["a", "b"]], [{"b"}], k=2)


def test_ranking_metrics_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="repeats an item"):
        ranking_metrics([[1, 1]], [{1}], k=2)
    with pytest.raises(ValueError, match="differ in length"):
        ranking_metrics([[1]], [{1}, {2}], k=2)
    empty = ranking_metrics([[1]], [set()], k=3)
    assert empty["n_users"] == 0 and math.isnan(empty["ndcg@3"])


@pytest.mark.parametrize("ranking", ["auto", "none"])
def test_weights_that_are_not_finite_give_nan_scores_not_an_empty_list(ratings: Ratings,
                                                                       ranking: str) -> None:
    """A NaN score was taken for an excluded item (and the blend dropped the items the
    network gives NaN): a broken model answered a known user with no items at all."""
    broken = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu",
                     ranking=ranking).fit(ratings)
    broken.biases_.item[:] = np.nan
    user = ratings.to_dataframe()["user_id"].iloc[0]
    table = broken.recommend([user], n=3)
    assert len(table) == 3
    assert table["predicted_rating"].isna().all()


def test_equal_scores_are_listed_in_item_order_whatever_n() -> None:
    """torch.topk orders equal scores as it goes: with every rating equal, the top 1 was not
    the start of the top 2, and a folded-in user's list (a stable sort) differed from its
    list once added."""
    import pandas as pd

    frame = pd.DataFrame({"user_id": [u for u in range(6) for _ in range(6)],
                          "item_id": [(u + j) % 12 for u in range(6) for j in range(6)],
                          "rating": 3.0})
    model = AutoRec(epochs=2, ranking="none", random_state=0, hidden=4, device="cpu",
                    validation=0.0).fit(frame)
    lists = {n: list(model.recommend([0], n=n).item_id) for n in (1, 2, 3, 6)}
    for n, listed in lists.items():
        assert listed == lists[6][:n]
    scores = model.recommend([0], n=6).score.to_numpy()
    for a in range(len(scores) - 1):  # equal scores in item order
        if scores[a] == scores[a + 1]:
            assert lists[6][a] < lists[6][a + 1]
    folded = model.fold_in_user({0: 3.0, 1: 3.0}, n=4, add=True, user_id=100)
    assert list(folded.recommendations.item_id) == list(model.recommend([100], n=4).item_id)


@pytest.mark.parametrize("value", ["no", None, 0, 1.0])
def test_exclude_seen_must_be_true_or_false(models: dict[str, AutoRec], value) -> None:
    """``exclude_seen="no"`` was read by truth value: seen items left out, the opposite of
    what was asked (fold-in's ``exclude_rated`` already refused such values)."""
    model = next(iter(models.values()))
    with pytest.raises(ValueError, match="exclude_seen must be True or False"):
        top_n(model.fitted_, np.array([0]), 3, exclude_seen=value)
    with pytest.raises(ValueError, match="exclude_seen must be True or False"):
        model.recommend(model.users_.raw_ids[:1], n=3, exclude_seen=value)
