"""Choosing the ranking model cheaply at large catalogues (autorec.ranking.select, blend):
EASE's choices on the most-rated items, EASE past its item limit, the blend a block at a
time."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp

import autorec
from autorec.data.ids import IdMap
from autorec.ranking import protocol, select
from autorec.ranking.blend import choose_weights_in_blocks, standardise
from autorec.ranking.ease import EASE
from autorec.ranking.model import RankingModel
from autorec.ranking.protocol import evaluate_scores, implicit_matrix
from autorec.ranking.select import fit_ranking
from autorec.selection import validation_split


def _skewed(n_users: int = 300, n_items: int = 80, seed: int = 0) -> autorec.Ratings:
    """Four taste groups of items, skewed popularity (item 0 the most rated), ratings 1..5
    (4-5 within a user's group)."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.7
    groups = rng.integers(0, 4, n_items)
    users, items, values = [], [], []
    for u in range(n_users):
        own = groups == u % 4
        chosen = np.flatnonzero(rng.random(n_items) < np.clip(
            0.5 * popularity * np.where(own, 3.0, 0.4), 0, 0.95))
        users += [u] * len(chosen)
        items += list(chosen)
        values += list(np.where(own[chosen], rng.integers(4, 6, len(chosen)),
                                rng.integers(1, 4, len(chosen))).astype(float))
    return autorec.Ratings(np.asarray(users), np.asarray(items), np.asarray(values),
                           IdMap(np.arange(n_users)), IdMap(np.arange(n_items)))


def _item_means(part: autorec.Ratings):
    means = (np.bincount(part.item_idx, part.rating, minlength=part.n_items)
             / np.maximum(np.bincount(part.item_idx, minlength=part.n_items), 1))
    return lambda users: np.tile(means.astype(np.float32), (len(users), 1))


def test_choices_on_the_most_rated_items_then_one_full_size_fit() -> None:
    ratings = _skewed()
    n_rated = len(np.unique(ratings.item_idx))
    counts = np.bincount(ratings.item_idx, minlength=ratings.n_items)
    model, report = fit_ranking(ratings, components=["ease"], select_items=30, random_state=0)
    chosen = report["ease"]
    assert chosen["selection_items"] == 30 and chosen["n_items"] == n_rated
    # every value of lambda was scored with EASE over the 30 most-rated items of the fit part
    fit, val = validation_split(ratings, 0.1, 0)
    x = implicit_matrix(fit, chosen["weighting"], ratings.rating_scale())
    head = EASE(chosen["lam"], max_items=30).fit(x)
    assert len(head.items_) == 30
    assert set(np.flatnonzero(np.bincount(fit.item_idx, minlength=ratings.n_items)
                              >= np.sort(np.bincount(fit.item_idx))[-30])) >= set(head.items_)
    value = evaluate_scores(lambda u: head.score(x[u]), implicit_matrix(fit, "binary"), val,
                            rating_scale=ratings.rating_scale(), max_users=None)["ndcg@10"]
    assert chosen["validation_ndcg"] == pytest.approx(value)
    # ... and the one fit is at full size, on every training rating
    ease = model.components["ease"][2]
    assert ease.weights_.shape == (n_rated, n_rated)
    np.testing.assert_array_equal(ease.items_, np.flatnonzero(counts > 0))
    full = implicit_matrix(ratings, chosen["weighting"], ratings.rating_scale())
    np.testing.assert_allclose(ease.weights_, EASE(chosen["lam"]).fit(full).weights_)
    assert np.isfinite(model.score(ratings.to_csr("user")[:2])[:, counts > 0]).all()


def test_below_the_selection_size_the_choices_are_made_at_full_size() -> None:
    ratings = _skewed(seed=1)
    n_rated = len(np.unique(ratings.item_idx))
    _, at_size = fit_ranking(ratings, components=["ease"], select_items=n_rated,
                             random_state=0)
    _, unlimited = fit_ranking(ratings, components=["ease"], select_items=None, random_state=0)
    assert at_size["ease_validation"] == unlimited["ease_validation"]
    assert at_size["ease"]["selection_items"] == n_rated


def test_past_the_item_limit_the_default_is_ease_on_the_most_rated_items(caplog) -> None:
    ratings = _skewed(seed=2)
    counts = np.bincount(ratings.item_idx, minlength=ratings.n_items)
    with caplog.at_level(logging.INFO, logger="autorec.ranking.select"):
        model, report = fit_ranking(ratings, rating_scorer=_item_means, item_limit=25,
                                    random_state=0)
    assert report["components"] == ["ease", "rating"]
    assert "EASE models the 25 most-rated" in caplog.text
    ease = model.components["ease"][2]
    assert len(ease.items_) == 25 and counts[ease.items_].min() >= np.sort(counts)[-25]
    # items past the limit are never offered, whatever the blend weights
    rows = ratings.to_csr("user")[:4]
    scores = model.score(rows, np.ones((4, ratings.n_items), dtype=np.float32))
    outside = np.setdiff1d(np.arange(ratings.n_items), ease.items_)
    assert np.isneginf(scores[:, outside]).all()
    assert np.isfinite(scores[:, ease.items_]).all()


def test_a_zero_weight_item_model_still_bounds_the_offered_items() -> None:
    ratings = _skewed(seed=3)
    x = implicit_matrix(ratings, "binary")
    ease = EASE(100.0, max_items=20).fit(x)
    model = RankingModel({"ease": ("ease", "binary", ease), "rating": ("rating", "rating", None)},
                         (0.0, 1.0), ratings.rating_scale(),
                         np.bincount(ratings.item_idx, minlength=ratings.n_items))
    rows = ratings.to_csr("user")[:3]
    predicted = np.random.default_rng(0).random((3, ratings.n_items)).astype(np.float32)
    scores = model.score(rows, predicted)
    outside = np.setdiff1d(np.arange(ratings.n_items), ease.items_)
    assert np.isneginf(scores[:, outside]).all()
    # the network's scores standardised over the offered items the user has not rated
    raw = np.full_like(predicted, -np.inf)
    raw[:, ease.items_] = predicted[:, ease.items_]
    np.testing.assert_allclose(scores, standardise(raw, rows), rtol=1e-5, atol=1e-5)


def test_blend_weights_chosen_a_block_at_a_time_as_all_at_once() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    parts = [standardise(rng.normal(size=(n_users, n_items))) for _ in range(2)]
    seen = sp.random(n_users, n_items, density=0.2, format="csr", random_state=1)
    relevant = sp.random(n_users, n_items, density=0.15, format="csr", random_state=2)
    relevant = relevant + sp.csr_matrix((np.ones(n_users), (np.arange(n_users),
                                         rng.integers(0, n_items, n_users))),
                                        shape=(n_users, n_items))
    relevant = (relevant - relevant.multiply(seen) > 0).astype(np.float32).tocsr()
    whole = choose_weights_in_blocks([(parts, seen, relevant, None)], 2, k=5, resolution=4)
    columns = np.arange(n_items)
    blocks = [([p[s:s + 7] for p in parts], seen[s:s + 7], relevant[s:s + 7], columns)
              for s in range(0, n_users, 7)]
    in_blocks = choose_weights_in_blocks(iter(blocks), 2, k=5, resolution=4)
    assert in_blocks[0] == whole[0] and in_blocks[1] == pytest.approx(whole[1])
    np.testing.assert_allclose([v for _, v in in_blocks[2]], [v for _, v in whole[2]])


def test_the_blend_choice_scores_validation_users_a_block_at_a_time(monkeypatch) -> None:
    ratings = _skewed(n_users=200, n_items=40, seed=4)
    batches: list[int] = []

    def scorer(part: autorec.Ratings):
        score = _item_means(part)

        def counted(users: np.ndarray) -> np.ndarray:
            batches.append(len(users))
            return score(users)

        return counted

    for module in (select, protocol):  # 8 users x 40 items at a time
        monkeypatch.setattr(module, "SCORE_BLOCK", 40 * 8)
    _, report = fit_ranking(ratings, rating_scorer=scorer, random_state=0)
    assert report["n_validation_users"] > 8
    assert batches and max(batches) <= 8


def test_blend_weights_are_chosen_with_ease_at_full_size() -> None:
    ratings = _skewed(seed=5)
    n_rated = len(np.unique(ratings.item_idx))
    _, report = fit_ranking(ratings, rating_scorer=_item_means, select_items=30,
                            random_state=0)
    chosen = report["ease"]
    assert chosen["selection_items"] == 30 and chosen["n_items"] == n_rated
    # the blend's "EASE alone" point ranks with EASE over every item of the fit part, not the
    # 30 it was tuned on
    fit, val = validation_split(ratings, 0.1, 0)
    x = implicit_matrix(fit, chosen["weighting"], ratings.rating_scale())
    scale = ratings.rating_scale()
    seen = implicit_matrix(fit, "binary")
    full = EASE(chosen["lam"]).fit(x)
    head = EASE(chosen["lam"], max_items=30).fit(x)
    at = {tuple(point): value for point, value in report["blend"]["tried"]}
    expected = evaluate_scores(lambda u: full.score(x[u]), seen, val, rating_scale=scale,
                               max_users=None)["ndcg@10"]
    other = evaluate_scores(lambda u: head.score(x[u]), seen, val, rating_scale=scale,
                            max_users=None)["ndcg@10"]
    assert expected != pytest.approx(other)
    assert at[(1.0, 0.0)] == pytest.approx(expected)


def _two_components(n_users: int, gainers: int) -> tuple[list[np.ndarray], sp.csr_matrix]:
    """Both components put each user's relevant item (column 0) first, except for
    ``gainers`` users, where each puts a different wrong item first and any mix of them puts
    the relevant one first (k = 1)."""
    first = np.tile(np.array([2.0, 0.0, -2.0], dtype=np.float32), (n_users, 1))
    second = first.copy()
    first[:gainers] = [1.0, 1.1, -2.1]
    second[:gainers] = [1.0, -2.1, 1.1]
    relevant = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), np.zeros(n_users, int))),
                             shape=(n_users, 3))
    return [first, second], relevant


@pytest.mark.parametrize(("gainers", "kept"), [(1, False), (10, True)])
def test_a_blend_is_kept_only_beyond_a_paired_standard_error(gainers: int, kept: bool) -> None:
    """One user of 50 helped by the blend is a gain of one paired standard error: below the
    1.5 asked for, so the best single component is used; ten users (3.5 errors) keep it."""
    parts, relevant = _two_components(50, gainers)
    weights, value, tried, gate = choose_weights_in_blocks(
        [(parts, None, relevant, None)], 2, k=1, resolution=10, standard_errors=1.5)
    best = max(v for _, v in tried)
    assert best == pytest.approx(1.0) and gate is not None
    assert gate["gain"] == pytest.approx(gainers / 50)
    assert gate["standard_error"] == pytest.approx(
        np.std([1.0] * gainers + [0.0] * (50 - gainers), ddof=1) / np.sqrt(50))
    assert gate["kept"] is kept
    if kept:
        assert sum(w > 0 for w in weights) == 2 and value == pytest.approx(1.0)
    else:
        assert weights == (1.0, 0.0) and value == pytest.approx(1 - gainers / 50)


def test_no_gate_when_a_single_component_is_best() -> None:
    parts, relevant = _two_components(20, 0)
    weights, value, _, gate = choose_weights_in_blocks([(parts, None, relevant, None)], 2, k=1)
    assert weights == (1.0, 0.0) and value == pytest.approx(1.0) and gate is None


def test_by_default_the_best_blend_is_kept_and_its_noise_reported() -> None:
    parts, relevant = _two_components(50, 1)
    weights, value, _, gate = choose_weights_in_blocks([(parts, None, relevant, None)], 2, k=1)
    assert sum(w > 0 for w in weights) == 2 and value == pytest.approx(1.0)
    assert gate is not None and gate["kept"] and gate["standard_errors"] == 0.0
    assert gate["gain"] == pytest.approx(gate["standard_error"])  # one user of 50: 1 SE


def test_ease_choices_use_their_own_validation_part_when_a_split_is_given() -> None:
    """The rating network's (small) validation part chooses only the blend: EASE's input
    weighting and lambda are chosen on a ``validation`` carve-out of the training ratings, as
    without a split, and the blend's EASE is the one fitted on the split's fit part."""
    train = _skewed(n_users=300, n_items=80, seed=5)
    network_split = validation_split(train, 0.05, 11)
    alone = fit_ranking(train, components=["ease"], validation=0.1, random_state=3)[1]
    with_split = fit_ranking(train, components=["ease"], validation=0.1, random_state=3,
                             split=network_split)[1]
    assert with_split["ease_validation"] == alone["ease_validation"]
    assert (with_split["ease"]["weighting"], with_split["ease"]["lam"]) == (
        alone["ease"]["weighting"], alone["ease"]["lam"])
    on_split = fit_ranking(train, components=["ease"], validation=0.1, random_state=4,
                           split=network_split)[1]
    assert on_split["ease_validation"] != alone["ease_validation"]  # the seed's carve-out


def test_an_item_rated_only_in_the_validation_part_is_still_scored_by_mult_dae() -> None:
    """Mult-DAE is fitted on the fit part and not refitted: it modelled only the fit part's
    items, so an item whose ratings all fell in the validation part (a rare one) was in no
    list, not even with ``exclude_seen=False``; it models every training item now."""
    ratings = _skewed(seed=4)
    fit, val = validation_split(ratings, 0.1, 0)
    only_in_validation = np.setdiff1d(np.unique(val.item_idx), np.unique(fit.item_idx))
    if len(only_in_validation) == 0:  # make one: move an item's fit ratings away
        item = int(val.item_idx[0])
        keep = fit.item_idx != item
        fit = autorec.Ratings(fit.user_idx[keep], fit.item_idx[keep], fit.rating[keep],
                              fit.users, fit.items)
        train = autorec.Ratings(np.concatenate([fit.user_idx, val.user_idx]),
                                np.concatenate([fit.item_idx, val.item_idx]),
                                np.concatenate([fit.rating, val.rating]),
                                ratings.users, ratings.items)
        only_in_validation = np.array([item])
    else:
        train = ratings
    model, _ = fit_ranking(train, components=["vae"], split=(fit, val),
                           vae_params={"epochs": 2, "latent": 8}, random_state=0)
    vae = model.components["vae"][2]
    assert set(only_in_validation) <= set(vae.items_.tolist())
    scores = model.score(train.to_csr("user")[:5])
    assert np.isfinite(scores[:, only_in_validation]).all()


@pytest.mark.parametrize("with_network", [False, True])
def test_a_user_whose_weighted_row_is_empty_gets_the_popular_items(with_network) -> None:
    """EASE on ``rating`` rows keeps only ratings above 0: a user (Jester) with only
    negative ratings scored every item 0.0, and the list was torch.topk's tie order (its
    top 3 changed with n). Such a user gets the popularity ranking, unless another weighed
    component (the rating network) knows them."""
    ratings = _skewed(seed=5)
    signed = autorec.Ratings(ratings.user_idx, ratings.item_idx, ratings.rating - 3.0,
                             ratings.users, ratings.items)  # -2..2
    x = implicit_matrix(signed, "rating", signed.rating_scale())
    ease = EASE(100.0).fit(x)
    popularity = np.bincount(signed.item_idx, minlength=signed.n_items).astype(np.float32)
    components = {"ease": ("ease", "rating", ease)}
    weights: tuple[float, ...] = (1.0,)
    if with_network:
        components["rating"] = ("rating", "rating", None)
        weights = (0.5, 0.5)
    model = RankingModel(components, weights, signed.rating_scale(), popularity)
    rows = sp.csr_matrix((np.array([-2.0, -1.0, -2.0], dtype=np.float32),
                          (np.zeros(3, dtype=int), np.array([0, 5, 9]))),
                         shape=(1, signed.n_items))
    predicted = np.random.default_rng(0).random((1, signed.n_items)).astype(np.float32)
    scores = model.score(rows, predicted if with_network else None)[0]
    if with_network:  # ranked by the network's predictions
        assert np.argsort(-scores)[0] == np.argmax(predicted[0])
    else:
        np.testing.assert_allclose(scores, standardise(popularity[None, :])[0], rtol=1e-6)
        assert len(np.unique(scores)) > 1


def test_such_a_user_is_ranked_by_the_networks_predictions_when_given() -> None:
    """EASE alone: a Jester user who disliked every joke got the popular jokes first (those
    the network predicted worst for them). Given the predictions, their order ranks such a
    user; a row with no rating at all still gets the popular items."""
    ratings = _skewed(seed=5)
    signed = autorec.Ratings(ratings.user_idx, ratings.item_idx, ratings.rating - 3.0,
                             ratings.users, ratings.items)  # -2..2
    ease = EASE(100.0).fit(implicit_matrix(signed, "rating", signed.rating_scale()))
    popularity = np.bincount(signed.item_idx, minlength=signed.n_items).astype(np.float32)
    model = RankingModel({"ease": ("ease", "rating", ease)}, (1.0,), signed.rating_scale(),
                         popularity)
    assert not model.needs_rating_scores
    rated = [0, 5, 9]
    rows = sp.vstack([sp.csr_matrix((np.array([-2.0, -1.0, -2.0], dtype=np.float32),
                                     (np.zeros(3, dtype=int), np.array(rated))),
                                    shape=(1, signed.n_items)),
                      sp.csr_matrix((1, signed.n_items), dtype=np.float32)]).tocsr()
    predicted = np.random.default_rng(1).random((2, signed.n_items)).astype(np.float32)
    scores = model.score(rows, predicted)
    unrated = np.setdiff1d(np.arange(signed.n_items), rated)
    order = unrated[np.argsort(-scores[0, unrated], kind="stable")]
    assert order.tolist() == unrated[np.argsort(-predicted[0, unrated], kind="stable")].tolist()
    np.testing.assert_allclose(scores[1], standardise(popularity[None, :])[0], rtol=1e-6)
    # without predictions, as before: the popular items
    np.testing.assert_allclose(model.score(rows)[0], standardise(popularity[None, :])[0],
                               rtol=1e-6)


def test_the_popularity_fallback_offers_only_the_modelled_items() -> None:
    """A user with an empty row got the popularity ranking over every item, those past
    EASE's item limit too, which no other list offers (README: 'not recommended')."""
    ratings = _skewed(seed=3)
    ease = EASE(100.0, max_items=20).fit(implicit_matrix(ratings, "binary"))
    popularity = np.bincount(ratings.item_idx, minlength=ratings.n_items).astype(np.float32)
    model = RankingModel({"ease": ("ease", "binary", ease)}, (1.0,), ratings.rating_scale(),
                         popularity)
    scores = model.score(sp.csr_matrix((1, ratings.n_items), dtype=np.float32))[0]
    outside = np.setdiff1d(np.arange(ratings.n_items), ease.items_)
    assert len(outside) and np.isneginf(scores[outside]).all()
    assert np.isfinite(scores[ease.items_]).all()
    assert np.argmax(scores) == ease.items_[np.argmax(popularity[ease.items_])]
