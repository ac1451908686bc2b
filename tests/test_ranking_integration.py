"""The ranking model inside a fitted model (issue 14): fitted by ``AutoRec.fit`` beside the rating
networks, saved in the model folder, used by recommend / ranking_report / fold-in / serve, and
never by predict."""

from __future__ import annotations

import copy
import hashlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_low_rank

from autorec import AutoRec, Ratings, load_model, random_split, ranking_report
from autorec.evaluate import summarise
from autorec.exceptions import ModelFileError
from autorec.family import RankingScorer
from autorec.persist import JSON_FILE, WEIGHTS_FILE, read_model_info
from autorec.ranking.scorer import FittedRanking
from autorec.recommend import rating_rows, score_matrix, seen_matrix

FAST = {"hidden": 8, "epochs": 3, "batch_size": 16, "random_state": 0, "device": "cpu",
        "validation": 0.2}
MODEL_V1 = Path(__file__).parent / "data" / "model-v1"


@pytest.fixture(scope="module")
def ratings() -> Ratings:
    return make_low_rank(n_users=60, n_items=40, density=0.4)


@pytest.fixture(scope="module")
def ranked(ratings: Ratings) -> AutoRec:
    return AutoRec(**FAST).fit(ratings)


@pytest.fixture(scope="module")
def unranked(ratings: Ratings) -> AutoRec:
    return AutoRec(**FAST, ranking="none").fit(ratings)


def expected_lists(model: AutoRec, users: np.ndarray, n: int) -> np.ndarray:
    """Top-``n`` item indices straight from the ranking model's scores of the users' training
    rows, training items left out (ties: lower index first)."""
    fitted = model.fitted_
    rows = rating_rows(fitted)[users]
    scores = fitted.ranking.score_rows(rows, score_matrix(fitted, users)).astype(np.float64)
    scores[rows.toarray() != 0] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :n]


def test_fit_makes_a_ranking_model_beside_the_networks(ranked: AutoRec) -> None:
    ranking = ranked.ranking_
    assert isinstance(ranking, FittedRanking) and isinstance(ranking, RankingScorer)
    described = ranking.describe()
    assert described["ease"]["weight"] > 0  # EASE, chosen on the validation part
    assert ranking.report["ease"]["weighting"] in ("binary", "rating")
    assert set(ranking.model.components) == {"ease", "rating"}  # auto: EASE + the network


def test_recommend_lists_come_from_the_ranking_model(ranked: AutoRec) -> None:
    users = np.arange(len(ranked.users_))
    table = ranked.recommend(ranked.users_.raw_ids, n=5)
    got = ranked.items_.to_index(table["item_id"].to_numpy()).reshape(len(users), 5)
    np.testing.assert_array_equal(got, expected_lists(ranked, users, 5))
    # ... which are not the lists by predicted rating, shown beside the ranking score
    predicted = ranked.predict(table["user_id"].to_numpy(), table["item_id"].to_numpy())
    np.testing.assert_allclose(table["predicted_rating"], predicted, rtol=0, atol=1e-5)
    assert not np.allclose(table["score"], table["predicted_rating"])
    by_rating = score_matrix(ranked, users)
    by_rating[seen_matrix(ranked.fitted_).toarray() != 0] = -np.inf
    assert (np.argsort(-by_rating, axis=1, kind="stable")[:, :5] != got).any()
    assert (np.diff(table["score"].to_numpy().reshape(len(users), 5), axis=1) <= 0).all()


def test_a_newcomer_who_disliked_everything_is_ranked_by_predicted_rating() -> None:
    """EASE alone keeps only ratings above 0 (a Jester scale): a newcomer whose ratings are
    all below got the popular items, those the network predicted worst first. The network's
    predicted ratings order the list instead; a user with no known item still gets the
    popular items."""
    base = make_low_rank(n_users=60, n_items=40)
    signed = Ratings(base.user_idx, base.item_idx, base.rating - 3.0, base.users, base.items)
    model = AutoRec(**{**FAST, "ranking": "ease"}).fit(signed)
    assert model.fitted_.ranking.describe()["ease"]["input"] == "rating"
    rated = list(model.items_)[:2]
    result = model.fold_in_user({rated[0]: -2.0, rated[1]: -1.5}, n=8)
    listed = result.recommendations
    assert not listed["fallback"].any() and not set(listed["item_id"]) & set(rated)
    predicted = listed["predicted_rating"].to_numpy()
    assert (np.diff(predicted) <= 1e-5).all()  # best predicted first (float32 ties aside)
    # the first is the unrated item the network predicts best for them
    assert predicted[0] == pytest.approx(float(result.scores.drop(rated).max()), abs=1e-6)


def test_ranking_none_ranks_by_predicted_rating_and_predict_is_the_same(
        ranked: AutoRec, unranked: AutoRec, ratings: Ratings) -> None:
    assert unranked.ranking_ is None
    pairs = (ratings.user_ids, ratings.item_ids)
    np.testing.assert_array_equal(ranked.predict(*pairs), unranked.predict(*pairs))
    table = unranked.recommend(unranked.users_.raw_ids[:10], n=4)
    np.testing.assert_array_equal(table["score"], table["predicted_rating"])
    users = np.arange(10)
    by_rating = score_matrix(unranked, users)
    by_rating[seen_matrix(unranked.fitted_)[users].toarray() != 0] = -np.inf
    top = unranked.items_.to_index(table["item_id"].to_numpy()).reshape(10, 4)
    np.testing.assert_allclose(np.take_along_axis(by_rating, top, axis=1),
                               np.sort(by_rating, axis=1)[:, ::-1][:, :4], atol=1e-6)


def test_ranking_report_scores_the_ranking_models_lists(ratings: Ratings) -> None:
    train, test = random_split(ratings, 0.3, random_state=0)
    model = AutoRec(**FAST).fit(train)
    with_ranking = ranking_report(model, train, test, k=5)
    ranking = model.fitted_.ranking
    model.fitted_.ranking = None
    without = ranking_report(model, train, test, k=5)
    model.fitted_.ranking = ranking
    assert with_ranking["n_users"] == without["n_users"]
    assert with_ranking["ndcg@5"] != without["ndcg@5"]


def test_saved_ranking_model_loads_with_equal_scores(ranked: AutoRec, tmp_path: Path) -> None:
    folder = ranked.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [JSON_FILE, WEIGHTS_FILE]
    info = read_model_info(folder)
    assert info["format_version"] == 3 and info["ranking"]["family"] == "ranking"
    loaded = load_model(folder)
    assert loaded.ranking_ is not None
    assert loaded.ranking_.params == ranked.ranking_.params
    users = ranked.users_.raw_ids
    a, b = ranked.recommend(users, n=6), loaded.recommend(users, n=6)
    assert a["item_id"].tolist() == b["item_id"].tolist()
    np.testing.assert_array_equal(a["score"], b["score"])
    np.testing.assert_array_equal(a["predicted_rating"], b["predicted_rating"])
    for name, value in ranked.ranking_.to_arrays().items():
        np.testing.assert_array_equal(loaded.ranking_.to_arrays()[name], value)


def _rewrite(folder: Path, edit) -> None:
    info = json.loads((folder / JSON_FILE).read_text())
    edit(info)
    content = {key: value for key, value in info.items() if key != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    content["checksum"] = {"sha256": hashlib.sha256(canonical).hexdigest()}
    (folder / JSON_FILE).write_text(json.dumps(content, indent=2))


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda r: r["model"].update(weights=[-1.0, 2.0]), "'ranking.model.weights[0]' must be"),
    (lambda r: r.update(n_items=r["n_items"] + 1), "more than the id maps'"),
    (lambda r: r["model"]["components"][0].update(kind="svd"), "components[0].kind' must be"),
    (lambda r: r.update(evil=1), "'ranking.evil' is not a field"),
    (lambda r: r.pop("arrays"), "'ranking.arrays' is missing"),
])
def test_ranking_entry_fields_checked(ranked: AutoRec, tmp_path: Path, edit, needle: str
                                      ) -> None:
    folder = ranked.save(tmp_path / "model")
    _rewrite(folder, lambda info: edit(info["ranking"]))
    with pytest.raises(ModelFileError, match="field") as caught:
        load_model(folder)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_edited_ranking_entry_fails_the_checksum(ranked: AutoRec, tmp_path: Path) -> None:
    folder = ranked.save(tmp_path / "model")
    info = json.loads((folder / JSON_FILE).read_text())
    info["ranking"]["model"]["weights"] = list(reversed(info["ranking"]["model"]["weights"]))
    (folder / JSON_FILE).write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(folder)


def test_folders_without_a_ranking_model_still_load(unranked: AutoRec, tmp_path: Path) -> None:
    old = load_model(MODEL_V1)  # format 1
    assert old.ranking_ is None
    table = old.recommend(old.users_.raw_ids[:3], n=3)
    np.testing.assert_array_equal(table["score"], table["predicted_rating"])
    folder = unranked.save(tmp_path / "v2")  # a format-2 folder: no "ranking" key

    def as_version_2(info: dict) -> None:
        assert info.pop("ranking") is None
        info["format_version"] = 2

    _rewrite(folder, as_version_2)
    loaded = load_model(folder)
    assert loaded.ranking_ is None
    users = unranked.users_.raw_ids[:5]
    assert (loaded.recommend(users, n=3)["item_id"].tolist()
            == unranked.recommend(users, n=3)["item_id"].tolist())
    # a version-2 model.json with a ranking entry is refused (ranking came with version 3)
    _rewrite(folder, lambda info: info.update(ranking=None))
    with pytest.raises(ModelFileError, match="'ranking' is not a field of a version-2"):
        load_model(folder)


def test_fold_in_ranks_with_the_ranking_model(ranked: AutoRec) -> None:
    model = copy.deepcopy(ranked)
    rated = {model.items_.raw_ids[0]: 5.0, model.items_.raw_ids[3]: 4.0,
             model.items_.raw_ids[7]: 1.0}
    result = model.fold_in_user(rated, n=5)
    top = result.recommendations
    index = model.items_.to_index(list(rated))
    row = sp.csr_matrix((np.array(list(rated.values()), dtype=np.float32),
                         (np.zeros(3, dtype=np.int64), index)), shape=(1, len(model.items_)))
    scores = model.ranking_.score_rows(row, result.scores.to_numpy()[None, :])[0].astype(float)
    scores[index] = -np.inf
    expected = np.argsort(-scores, kind="stable")[:5]
    assert model.items_.to_index(top["item_id"].to_numpy()).tolist() == expected.tolist()
    np.testing.assert_allclose(top["score"], scores[expected], rtol=1e-6)
    np.testing.assert_array_equal(top["predicted_rating"],
                                  result.scores.loc[top["item_id"]].to_numpy())
    # added, the new user is recommended from its row like any user
    model.fold_in_user(rated, add=True, user_id=10_000)
    again = model.recommend([10_000], n=5)
    assert again["item_id"].tolist() == top["item_id"].tolist()


def test_a_model_with_an_added_item_saves_and_loads_its_ranking_model(ranked: AutoRec,
                                                                       tmp_path: Path) -> None:
    """An item added by fold-in after the fit is never ranked by the ranking model (it ranks
    the items of its fit); saved, the model loads again (it was refused: the ranking model's
    item count differed from the id maps') with the same lists and scores."""
    model = copy.deepcopy(ranked)
    n_items = len(model.items_)
    users = model.users_.raw_ids
    model.fold_in_item({users[0]: 5.0, users[1]: 3.0}, add=True, item_id=90_000)
    assert len(model.items_) == n_items + 1 and model.ranking_.n_items == n_items
    before = model.recommend(users, n=n_items + 1)
    assert 90_000 not in set(before["item_id"])  # the ranking model cannot rank it
    loaded = load_model(model.save(tmp_path / "grown"))
    assert len(loaded.items_) == n_items + 1 and loaded.ranking_.n_items == n_items
    after = loaded.recommend(users, n=n_items + 1)
    assert after["item_id"].tolist() == before["item_id"].tolist()
    np.testing.assert_array_equal(after["score"], before["score"])


def _post(url: str, path: str, body: object) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_server_answers_carry_the_ranking_score_and_the_predicted_rating(ranked: AutoRec
                                                                        ) -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    pytest.importorskip("uvicorn", reason="needs the serve extra")
    from autorec.serve import BackgroundServer, create_app

    user = ranked.users_.raw_ids[0].item()
    table = ranked.recommend([user], n=3)
    with BackgroundServer(create_app(ranked)) as running:
        answer = _post(running.url, "/recommend", {"user": user, "n": 3})
        folded = _post(running.url, "/fold-in",
                       {"ratings": {str(ranked.items_.raw_ids[0]): 5}, "n": 3})
        with urllib.request.urlopen(running.url + "/model", timeout=60) as response:
            described = json.loads(response.read())
    assert [i["item"] for i in answer["items"]] == table["item_id"].tolist()
    assert [i["score"] for i in answer["items"]] == pytest.approx(table["score"].tolist())
    assert ([i["predicted_rating"] for i in answer["items"]]
            == pytest.approx(table["predicted_rating"].tolist()))
    assert all({"score", "predicted_rating"} <= set(r) for r in folded["recommendations"])
    assert described["ranking"]["ease"]["weight"] > 0


def test_evaluate_summary_gives_ranking_intervals() -> None:
    results = [{"rmse": 1.0, "mae": 0.8, "n_test": 10, "n_cold": 0, "fit_seconds": 1.0,
                "ndcg@10": value} for value in (0.30, 0.32, 0.34)]
    summary = summarise(results)
    assert summary["mean_ndcg@10"] == pytest.approx(0.32)
    low, high = summary["ci95_ndcg@10"]
    assert low < 0.32 < high
    # a split with no relevant test rating has no lists: it made every mean nan
    summary = summarise([*results, {**results[0], "ndcg@10": float("nan")}])
    assert summary["mean_ndcg@10"] == pytest.approx(0.32)
    assert summary["ci95_ndcg@10"] == pytest.approx([low, high])
    assert summary["n_ranked_splits"] == 3 and summary["n_splits"] == 4


def test_train_flag_and_config_key_choose_the_ranking_model(capsys, tmp_path: Path,
                                                           ratings: Ratings) -> None:
    from autorec.cli.main import main

    data = tmp_path / "ratings.csv"
    ratings.to_dataframe().to_csv(data, index=False)
    common = ["train", "--data", str(data), "--epochs", "2", "--hidden", "4", "--seed", "0",
              "--device", "cpu", "--quiet"]
    assert main([*common, "--ranking", "none", "--out", str(tmp_path / "none")]) == 0
    stdout = capsys.readouterr().out
    assert "ranking at 10 by predicted rating (--ranking none)" in stdout
    metrics = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert metrics["ranking_model"] is None and metrics["model_params"]["ranking"] == "none"
    config = tmp_path / "ease.toml"
    config.write_text('ranking = "ease"\n')
    assert main([*common, "--config", str(config), "--out", str(tmp_path / "ease"),
                 "--save", str(tmp_path / "model")]) == 0
    assert "ranking at 10 of ranking model ease 1" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ease" / "metrics.json").read_text())
    assert metrics["ranking_model"] == "ranking model ease 1"
    assert set(load_model(tmp_path / "model").ranking_.model.components) == {"ease"}
    with pytest.raises(SystemExit) as exited:
        main([*common, "--ranking", "svd"])
    assert exited.value.code == 2


@pytest.mark.parametrize("ranking", ["auto", "ease", "blend"])
def test_ratings_none_above_zero_fit_a_ranking_model(ratings: Ratings, ranking: str) -> None:
    """On a scale with no rating above 0 (-10..-1 here) the rating weighting keeps no entry,
    and EASE was asked to invert a 0 x 0 matrix: LAPACK printed to standard output and the
    fit failed as bad input. Such an EASE models no item; the fit chooses what ranks."""
    frame = ratings.to_dataframe()
    frame["rating"] = -np.ceil(frame["rating"].to_numpy() * 2)  # -10..-2
    model = AutoRec(**{**FAST, "ranking": ranking}).fit(frame)
    lists = model.recommend(model.users_.raw_ids[:5], n=3)
    assert len(lists) == 15 and lists["score"].notna().all()


def test_too_few_ratings_for_the_ranking_model_are_refused_before_training(monkeypatch
                                                                            ) -> None:
    """With ``validation=0`` and one training rating the networks trained (every epoch on a
    large set) before the ranking model refused to hold some out."""
    from autorec import train as train_module

    def trained(self):
        raise AssertionError("a network trained")

    monkeypatch.setattr(train_module.Trainer, "train_epoch", trained)
    one = Ratings.from_arrays(np.array([1]), np.array([1]), np.array([5.0]))
    with pytest.raises(ValueError, match="need at least 2 training ratings for the ranking"):
        AutoRec(hidden=4, epochs=1, validation=0, random_state=0).fit(one)


def test_a_known_user_who_disliked_everything_is_ranked_by_prediction_in_any_candidates() -> None:
    """The same for a known user, whatever the candidate items: given ``items`` (a subset,
    or every item in another order) such a user got the popular items again."""
    base = make_low_rank(n_users=60, n_items=40)
    rating = base.rating - 3.0
    rating[base.user_idx < 5] = -np.abs(rating[base.user_idx < 5]) - 0.5  # users 0-4: all < 0
    signed = Ratings(base.user_idx, base.item_idx, rating, base.users, base.items)
    model = AutoRec(**{**FAST, "ranking": "ease", "validation": 0.0}).fit(signed)
    user = base.users.to_raw([0])[0]
    ids = np.asarray(model.items_.raw_ids)
    seen = set(base.items.to_raw(base.item_idx[base.user_idx == 0]).tolist())
    for items in (None, ids[::-1], ids[::3]):
        listed = model.recommend([user], n=5, items=items)
        candidates = [i for i in (ids if items is None else items) if i not in seen]
        predicted = np.sort(model.predict([user] * len(candidates), candidates))[::-1]
        # the best predicted first, up to float32 rounding (another CPU may order near-ties
        # otherwise): the listed items' predictions are the top ones, in order
        np.testing.assert_allclose(listed["predicted_rating"].to_numpy(),
                                   predicted[:len(listed)], atol=1e-5)
        assert set(listed["item_id"]) <= set(candidates), items
