"""The ranking models (autorec.ranking): EASE, Mult-VAE, the blend and its selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import autorec
from autorec.data.ids import IdMap
from autorec.ranking.blend import choose_weights_in_blocks, simplex_grid, standardise
from autorec.ranking.ease import EASE, ease_weights
from autorec.ranking.model import RankingModel, weight_rows
from autorec.ranking.protocol import evaluate_scores, implicit_matrix, top_k
from autorec.ranking.select import fit_ranking
from autorec.ranking.vae import MultVAE


def _ratings(n_users: int = 60, n_items: int = 25, density: float = 0.3, seed: int = 0
             ) -> autorec.Ratings:
    """Users in two taste groups (first or second half of the items), ratings 1..5."""
    rng = np.random.default_rng(seed)
    users, items, values = [], [], []
    for u in range(n_users):
        liked = np.arange(n_items // 2) if u % 2 == 0 else np.arange(n_items // 2, n_items)
        for i in range(n_items):
            p = density * (2.0 if i in liked else 0.5)
            if rng.random() < p:
                users.append(u)
                items.append(i)
                values.append(float(rng.integers(4, 6) if i in liked else rng.integers(1, 4)))
    return autorec.Ratings(np.asarray(users), np.asarray(items), np.asarray(values),
                           IdMap(np.arange(n_users)), IdMap(np.arange(n_items)))


def _closed_form(x: np.ndarray, lam: float) -> np.ndarray:
    gram = x.T @ x
    p = np.linalg.inv(gram + lam * np.eye(len(gram)))
    b = np.eye(len(gram)) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_matches_the_numpy_closed_form() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((40, 9)) < 0.4).astype(np.float64)
    x[:, 3] = 0.0  # an item nobody rated is not modelled
    model = EASE(lam=3.0, dtype="float64").fit(sp.csr_matrix(x))
    rated = np.flatnonzero(x.sum(axis=0) > 0)
    expected = _closed_form(x[:, rated], 3.0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-10, atol=1e-12)
    assert np.all(np.diag(model.weights_) == 0.0)
    scores = model.score(sp.csr_matrix(x[:5]))
    # scores are float32
    np.testing.assert_allclose(scores[:, rated], x[:5][:, rated] @ expected, rtol=1e-6,
                               atol=1e-7)
    assert np.all(np.isneginf(scores[:, 3]))
    model32 = EASE(lam=3.0).fit(sp.csr_matrix(x))
    assert model32.weights_.dtype == np.float32
    np.testing.assert_allclose(model32.weights_, expected, atol=1e-5)


def test_ease_weights_in_place_and_the_max_items_cap() -> None:
    rng = np.random.default_rng(2)
    x = (rng.random((30, 6)) < 0.5).astype(np.float64)
    gram = (x.T @ x).astype(np.float32)
    out = ease_weights(gram, 2.0, np.float32, overwrite=True)
    assert np.shares_memory(out, gram)
    np.testing.assert_allclose(out, _closed_form(x, 2.0), atol=1e-5)
    counts = x.sum(axis=0)
    model = EASE(lam=2.0, max_items=3).fit(sp.csr_matrix(x))
    assert len(model.items_) == 3
    assert set(model.items_) == set(np.argsort(-counts, kind="stable")[:3])
    with pytest.raises(ValueError, match="lam"):
        EASE(lam=0.0).fit(sp.csr_matrix(x))


def test_ease_round_trip_through_arrays() -> None:
    x = sp.csr_matrix((np.random.default_rng(3).random((20, 7)) < 0.4).astype(np.float32))
    model = EASE(lam=5.0).fit(x)
    again = EASE.from_arrays(model.to_arrays(), model.params)
    np.testing.assert_array_equal(again.score(x), model.score(x))
    arrays = model.to_arrays()
    arrays["weights"] = arrays["weights"][:-1]
    with pytest.raises(ValueError, match="weights"):
        EASE.from_arrays(arrays, model.params)


def test_implicit_matrix_weightings() -> None:
    ratings = _ratings()
    binary = implicit_matrix(ratings, "binary")
    assert binary.shape == (ratings.n_users, ratings.n_items)
    assert binary.nnz == len(ratings) and set(binary.data) == {1.0}
    weighted = implicit_matrix(ratings, "rating")
    np.testing.assert_allclose(weighted[ratings.user_idx, ratings.item_idx].A1,
                               ratings.rating / 5.0, rtol=1e-6)
    positive = implicit_matrix(ratings, "positive")
    assert positive.nnz == int((ratings.rating >= 4).sum())
    rows = weight_rows(ratings.to_csr("user"), "rating", (1.0, 5.0))
    assert (rows != weighted).nnz == 0
    with pytest.raises(ValueError, match="weighting"):
        implicit_matrix(ratings, "counts")  # type: ignore[arg-type]


def test_evaluate_scores_on_a_tiny_known_case() -> None:
    # 2 users x 4 items; user 0 trained on item 0, user 1 on item 3.
    train = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1.0]]))
    heldout = autorec.Ratings(np.array([0, 0, 1]), np.array([1, 2, 2]),
                              np.array([5.0, 2.0, 4.0]), IdMap(np.arange(2)),
                              IdMap(np.arange(4)))
    fixed = np.array([[9.0, 1.0, 2.0, 3.0], [0.0, 5.0, 4.0, 9.0]], dtype=np.float32)
    # items 1 and 2 have no training rating: never candidates; so lists are [3] and [0]
    out = evaluate_scores(lambda u: fixed[u].copy(), train, heldout, k=2, rating_scale=(1, 5))
    assert out["n_users"] == 0  # every relevant item is outside the candidates
    train2 = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1.0]]))
    out = evaluate_scores(lambda u: fixed[u].copy(), train2, heldout, k=2, rating_scale=(1, 5))
    # user 0 (relevant: item 1) gets [3, 1]: hit at position 2; user 1 (relevant: item 2)
    # gets [2, 0]: hit at position 1
    assert out["n_users"] == 2
    assert out["precision@2"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(1.0)
    assert out["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1.0) / 2)
    assert out["map@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["hit_rate@2"] == pytest.approx(1.0)
    lists = [[3, 1], [2, 0]]
    same = autorec.ranking_metrics(lists, [{1}, {2}], k=2)
    assert same["ndcg@2"] == pytest.approx(out["ndcg@2"])


def test_top_k_leaves_out_seen_items_and_pads() -> None:
    scores = np.array([[3.0, 2.0, 1.0]], dtype=np.float32)
    picked = top_k(scores.copy(), sp.csr_matrix(np.array([[1, 0, 1.0]])), 3)
    np.testing.assert_array_equal(picked, [[1, -1, -1]])


def test_mult_vae_scores_fold_in_and_round_trip() -> None:
    ratings = _ratings()
    x = implicit_matrix(ratings, "binary")
    model = MultVAE(hidden=16, latent=8, epochs=3, batch_size=16, random_state=0).fit(x)
    scores = model.score(x[:4])
    assert scores.shape == (4, ratings.n_items) and scores.dtype == np.float32
    # fold-in: a new user's row is scored by encoding it; its ratings change its scores
    new_user = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(1, ratings.n_items))
    other = sp.csr_matrix(([1.0, 1.0], ([0, 0], [20, 21])), shape=(1, ratings.n_items))
    assert not np.allclose(model.score(new_user), model.score(other))
    # scoring is deterministic (no dropout, the mean code)
    np.testing.assert_array_equal(model.score(new_user), model.score(new_user))
    again = MultVAE.from_arrays(model.to_arrays(), model.params)
    np.testing.assert_array_equal(again.score(x[:4]), scores)
    # same seed, same model
    twin = MultVAE(hidden=16, latent=8, epochs=3, batch_size=16, random_state=0).fit(x)
    np.testing.assert_array_equal(twin.score(x[:4]), scores)
    other_seed = MultVAE(hidden=16, latent=8, epochs=3, batch_size=16, random_state=1).fit(x)
    assert not np.array_equal(other_seed.score(x[:4]), scores)


def test_mult_vae_input_dropout_masks_while_training_only() -> None:
    ratings = _ratings()
    x = implicit_matrix(ratings, "binary")
    model = MultVAE(hidden=0, latent=8, variational=False, epochs=1, random_state=0).fit(x)
    import torch

    batch = torch.from_numpy(x[:8].toarray())
    generator = torch.Generator().manual_seed(0)
    model.net_.train()
    noisy = model._loss(model.net_, batch, 0.0, generator)
    model.dropout = 0.0
    clean = model._loss(model.net_, batch, 0.0, generator)
    assert float(noisy.detach()) != pytest.approx(float(clean.detach()))
    model.net_.eval()


def test_mult_vae_chooses_the_epoch_on_validation() -> None:
    x = implicit_matrix(_ratings(), "binary")
    values = iter([0.1, 0.3, 0.2, 0.2, 0.2, 0.2])
    model = MultVAE(hidden=0, latent=4, epochs=6, patience=2, random_state=0)
    model.fit(x, validation=lambda m: next(values))
    assert model.best_epoch_ == 2
    assert len(model.history_) == 4  # stopped after 2 epochs without improvement


def test_mult_vae_without_a_validation_score_reports_the_epoch_it_kept() -> None:
    """No validation user with a relevant rating: every score NaN, training stopped after
    ``patience`` epochs with the last weights, but ``best_epoch_`` said ``epochs``."""
    x = implicit_matrix(_ratings(), "binary")
    model = MultVAE(hidden=0, latent=4, epochs=30, patience=3, random_state=0)
    model.fit(x, validation=lambda m: float("nan"))
    assert len(model.history_) == 3 and model.best_epoch_ == 3


@pytest.mark.parametrize(("model", "needle"), [
    (EASE(lam="x"), "lam must be a number > 0"), (EASE(lam=-5.0), "lam must be a number > 0"),
    (EASE(lam=float("inf")), "lam must be a number > 0"),
    (EASE(max_items=-3), "max_items must be an integer >= 1"),
    (EASE(dtype="float16"), "dtype must be"),
    (MultVAE(variational="x"), "variational must be true or false"),
    (MultVAE(dropout="x"), "dropout must be in [0, 1)"),
    (MultVAE(max_items=0.5), "max_items must be an integer >= 1"),
])
def test_ranking_components_check_their_settings(model, needle: str) -> None:
    """EASE's settings were checked only when it fitted: a model folder's bad ``lam`` or
    ``max_items`` loaded without a word; Mult-DAE's ``variational`` and a text ``dropout``
    failed later, in the network."""
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace(")", r"\)")):
        model._validate()


def test_standardise_and_the_blend_grid() -> None:
    z = standardise(np.array([[1.0, 2.0, 3.0, -np.inf]]), sp.csr_matrix([[0, 0, 1, 0]]))
    np.testing.assert_allclose(z[0, :2], [-1.0, 1.0])  # over the unseen items 0 and 1
    assert np.isneginf(z[0, 3])
    grid = simplex_grid(3, 4)
    assert len(grid) == 15 and all(sum(p) == pytest.approx(1.0) for p in grid)
    assert grid[:3] == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    good = np.array([[0.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    bad = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
    weights, value, _, _ = choose_weights_in_blocks(
        [([bad, good], None, sp.csr_matrix([[0, 1, 0, 0]]), None)], 2, k=1)
    assert weights == (0.0, 1.0) and value == pytest.approx(1.0)


def test_fit_ranking_chooses_lambda_on_a_validation_part_of_train() -> None:
    from autorec.selection import validation_split

    ratings = _ratings(n_users=80, n_items=30, seed=4)
    train, test = autorec.random_split(ratings, 0.2, random_state=0)
    model, report = fit_ranking(train, components=["ease"], random_state=0)
    chosen = report["ease"]
    # the reported validation NDCG is that of EASE fitted on the fit part of *train* and
    # scored on its validation part: the test part plays no role
    fit, val = validation_split(train, 0.1, 0)
    x = implicit_matrix(fit, chosen["weighting"], train.rating_scale())
    ease = EASE(chosen["lam"]).fit(x)
    value = evaluate_scores(lambda u: ease.score(x[u]), implicit_matrix(fit, "binary"), val,
                            rating_scale=train.rating_scale(), max_users=None)["ndcg@10"]
    assert chosen["validation_ndcg"] == pytest.approx(value)
    assert str(chosen["lam"]) in report["ease_validation"][chosen["weighting"]]
    assert len(report["ease_validation"][chosen["weighting"]]) >= 2  # neighbours were tried
    # the final EASE is refitted on every training rating, never on test ratings
    ease_final = model.components["ease"][2]
    full = implicit_matrix(train, chosen["weighting"], train.rating_scale())
    np.testing.assert_allclose(ease_final.weights_, EASE(chosen["lam"]).fit(full).weights_)
    assert test.rating.size  # (a test part exists; it was never passed)
    scores = model.score(train.to_csr("user")[:3])
    assert scores.shape == (3, train.n_items)


def test_fit_ranking_uses_only_the_fit_part_for_choices() -> None:
    ratings = _ratings(n_users=80, n_items=30, seed=5)
    train, _ = autorec.random_split(ratings, 0.2, random_state=0)
    seen_sizes: list[int] = []

    def rating_scorer(part: autorec.Ratings):
        seen_sizes.append(len(part))
        means = np.bincount(part.item_idx, part.rating, minlength=part.n_items) / np.maximum(
            np.bincount(part.item_idx, minlength=part.n_items), 1)
        return lambda users: np.tile(means.astype(np.float32), (len(users), 1))

    model, report = fit_ranking(train, rating_scorer=rating_scorer, components=["ease", "rating"],
                                random_state=0)
    assert seen_sizes == [len(train) - round(0.1 * len(train))]  # the fit part, not all
    assert len(report["blend"]["weights"]) == 2
    rows = train.to_csr("user")[:2]
    if model.needs_rating_scores:
        with pytest.raises(ValueError, match="rating_scores"):
            model.score(rows)
    extra = np.ones((2, train.n_items), dtype=np.float32)
    out = model.score(rows, extra)
    again = RankingModel.from_arrays(model.to_arrays(), model.params)
    np.testing.assert_array_equal(again.score(rows, extra), out)


def test_ranking_model_falls_back_to_popularity_for_an_empty_row() -> None:
    ratings = _ratings()
    model, _ = fit_ranking(ratings, components=["ease"], random_state=0)
    empty = sp.csr_matrix((1, ratings.n_items), dtype=np.float32)
    scores = model.score(empty)
    popularity = np.bincount(ratings.item_idx, minlength=ratings.n_items)
    assert np.argmax(scores[0]) == np.argmax(popularity)


def test_blend_hits_of_lists_with_nothing_picked() -> None:
    """Lists with no item picked (``-1``) over a component that models no item (all ratings
    non-positive under the ``rating`` weighting) failed with an IndexError through the empty
    column map; a picked column maps to its item."""
    from autorec.ranking.blend import _hits

    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]]))
    nothing = np.full((2, 3), -1)
    assert not _hits(nothing, relevant, np.array([], dtype=np.int64)).any()
    picked = np.array([[0, 1, -1], [1, -1, -1]])
    hits = _hits(picked, relevant, np.array([3, 0]))  # column 0 is item 3, column 1 item 0
    assert hits.tolist() == [[True, False, False], [True, False, False]]
