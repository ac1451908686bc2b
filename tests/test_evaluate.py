"""Evaluation protocols (splits, intervals, cold counting), the ranking report, and the
``autorec evaluate`` and ``autorec tune`` commands."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from autorec import AutoRec, Ratings, random_split, ranking_metrics
from autorec.cli.main import main
from autorec.evaluate import (
    PAPER_REPEATS,
    confidence_interval,
    default_threshold,
    ranking_report,
    splits,
    summarise,
)

FAST = ["--hidden", "8", "--epochs", "3", "--device", "cpu", "--quiet"]
#: lists by predicted rating (the ranking model's lists: tests/test_ranking_integration.py)
RANKED_FAST = {"hidden": 8, "epochs": 3, "batch_size": 16, "random_state": 0, "device": "cpu",
               "ranking": "none"}


@pytest.fixture
def ratings_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    lines = ["user_id,item_id,rating"]
    for u in range(40):
        for i in range(25):
            if rng.random() < 0.4:
                lines.append(f"u{u},i{i},{rng.integers(1, 6)}")
    lines.append("newcomer,i1,4")  # a user with one rating: cold whenever it is tested
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_confidence_interval_matches_student_t() -> None:
    values = [0.91, 0.90, 0.93, 0.89, 0.92]
    low, high = confidence_interval(values)
    mean, sem = np.mean(values), stats.sem(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    assert (low, high) == pytest.approx(expected)
    assert all(math.isnan(x) for x in confidence_interval([0.9]))


def test_summarise_pools_and_averages() -> None:
    results = [{"rmse": 1.0, "mae": 0.8, "n_test": 10, "n_cold": 1, "fit_seconds": 1.0},
               {"rmse": 2.0, "mae": 1.0, "n_test": 30, "n_cold": 2, "fit_seconds": 2.0}]
    summary = summarise(results)
    assert summary["mean_rmse"] == 1.5 and summary["mean_mae"] == pytest.approx(0.9)
    assert summary["pooled_rmse"] == pytest.approx(math.sqrt((10 * 1 + 30 * 4) / 40))
    assert summary["n_cold"] == 3 and summary["n_test"] == 40
    assert summary["std_rmse"] == pytest.approx(math.sqrt(0.5))
    one = summarise(results[:1])  # was 0.0 beside an interval of nan
    assert math.isnan(one["std_rmse"]) and all(map(math.isnan, one["ci95_rmse"]))


def test_paper_protocol_five_documented_splits(low_rank) -> None:
    parts = list(splits("paper", lambda: low_rank, seed=7))
    assert [p.seed for p in parts] == list(range(7, 7 + PAPER_REPEATS))
    for part in parts:
        assert len(part.test) == round(0.1 * len(low_rank))
        assert len(part.train) + len(part.test) == len(low_rank)
    assert parts[0].test.user_idx.tolist() != parts[1].test.user_idx.tolist()
    again = list(splits("paper", lambda: low_rank, seed=7))
    assert again[3].test.item_idx.tolist() == parts[3].test.item_idx.tolist()


def test_kfold_and_holdout_repeats(low_rank) -> None:
    folds = list(splits("kfold", lambda: low_rank, folds=4, repeats=2))
    assert len(folds) == 8 and {f.seed for f in folds} == {0, 1}
    assert sum(len(f.test) for f in folds[:4]) == len(low_rank)
    holdout = list(splits("holdout", lambda: low_rank, test_ratio=0.25, repeats=3, seed=2))
    assert [h.seed for h in holdout] == [2, 3, 4]
    with pytest.raises(ValueError, match="protocol"):
        list(splits("bootstrap", lambda: low_rank))
    # named ValueErrors (were TypeErrors, or an error naming random_state), and the options
    # a protocol does not use refused as the command line refuses them (were ignored)
    for kwargs, needle in [({"repeats": 1.5}, "repeats must be an integer >= 1"),
                           ({"repeats": "2"}, "repeats must be"), ({"seed": None}, "seed must"),
                           ({"seed": -1}, "seed must be an integer >= 0"),
                           ({"test_ratio": 0.5}, "test_ratio applies to the holdout protocol"),
                           ({"folds": 3}, "folds applies to the kfold protocol")]:
        with pytest.raises(ValueError, match=needle):
            list(splits("paper", lambda: low_rank, **kwargs))
    with pytest.raises(ValueError, match="folds applies"):
        list(splits("holdout", lambda: low_rank, folds=3))


def test_a_declared_scale_sets_the_threshold_and_no_figures_print_no_nan(
        capsys, tmp_path: Path, ratings_csv: Path, low_rank: Ratings) -> None:
    """A test rating outside --rating-scale moved the relevance threshold (6 on 1-5: 4.75,
    not 4); with no relevant test rating in any split the mean line said 'precision nan'."""
    from autorec.evaluate import Split, split_threshold

    train, test = random_split(low_rank, 0.2, 0)
    test = Ratings(test.user_idx, test.item_idx, np.where(np.arange(len(test)) == 0, 6.0,
                                                           test.rating), test.users, test.items)
    split = Split("seed 0", train, test, 0)
    assert split_threshold(split) == 4.75  # the data's own scale: 1 to 6
    assert split_threshold(split, (1, 5)) == 4.0  # the declared one, whatever the test holds
    code = main(["evaluate", "--data", str(ratings_csv), "--protocol", "holdout",
                 "--rating-scale", "0,10", *FAST, "--out", str(tmp_path / "e")])
    out = capsys.readouterr().out
    assert code == 0
    assert "no split has a test user with a relevant rating (at least 7.5); no figures" in out
    assert "nan" not in out


def test_evaluate_cli_paper_protocol(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    out = tmp_path / "eval"
    code = main(["evaluate", "--data", str(ratings_csv), "--protocol", "paper", "--out",
                 str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert results["n_splits"] == PAPER_REPEATS and len(results["splits"]) == PAPER_REPEATS
    rmses = [s["rmse"] for s in results["splits"]]
    assert results["mean_rmse"] == pytest.approx(np.mean(rmses))
    low, high = results["ci95_rmse"]
    assert low < results["mean_rmse"] < high
    assert results["mean_mae"] == pytest.approx(np.mean([s["mae"] for s in results["splits"]]))
    assert [s["seed"] for s in results["splits"]] == [0, 1, 2, 3, 4]
    assert results["model_params"]["hidden"] == 8 and results["protocol"] == "paper"
    assert not {"test_ratio", "folds"} & results["config"].keys()  # defaults it does not use
    # cold pairs are counted per split: the newcomer's one rating is cold where it is tested
    assert results["n_cold"] == sum(s["n_cold"] for s in results["splits"])
    assert all(not math.isnan(s["validation_rmse"]) for s in results["splits"])
    assert "95% CI" in captured.out and captured.out.count("seed ") == PAPER_REPEATS
    # ranking metrics at --k (10) per split and averaged
    assert results["splits"][0]["k"] == 10
    for name in ("precision", "recall", "ndcg", "map", "hit_rate"):
        per_split = [s[f"{name}@10"] for s in results["splits"]]
        assert all(0.0 <= value <= 1.0 for value in per_split)
        assert results[f"mean_{name}@10"] == pytest.approx(np.mean(per_split))
    assert "ranking at 10" in captured.out


def test_evaluate_cli_kfold_and_errors(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    code = main(["evaluate", "--data", str(ratings_csv), "--protocol", "kfold", "--folds", "3",
                 *FAST])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("fold ")] == ["1/3", "2/3", "3/3"]
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--data", str(ratings_csv), "--protocol", "u1"])
    assert info.value.code == 2
    assert "--protocol u1" in capsys.readouterr().err
    # bad data: one line on stderr and nothing before it (the table's header was printed)
    bad = tmp_path / "repeats.csv"
    bad.write_text("user_id,item_id,rating\n1,2,3\n1,2,4\n")
    assert main(["evaluate", "--data", str(bad), *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "line 3" in captured.err


@pytest.mark.real_data
def test_evaluate_cli_canonical_split(capsys, tmp_path: Path, ml100k_dir: Path) -> None:
    out = tmp_path / "u1"
    code = main(["evaluate", "--data-dir", str(ml100k_dir), "--protocol", "u1",
                 "--out", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["n_test"] == 20_000 and results["n_splits"] == 1


# -- tune ----------------------------------------------------------------------------------------
def test_tune_resumes_and_writes_a_config_train_accepts(capsys, tmp_path: Path,
                                                        ratings_csv: Path) -> None:
    pytest.importorskip("optuna")
    study, best = tmp_path / "study.db", tmp_path / "best.toml"
    args = ["tune", "--data", str(ratings_csv), "--epochs", "3", "--study", str(study),
            "--out", str(best), "--quiet"]
    assert main([*args, "--trials", "2"]) == 0
    first = capsys.readouterr().out
    assert "top 2 of 2 trials" in first
    assert main([*args, "--trials", "3"]) == 0  # one more trial, not three
    assert "top 3 of 3 trials" in capsys.readouterr().out

    import optuna

    trials = optuna.load_study(study_name="autorec", storage=f"sqlite:///{study}").trials
    assert len(trials) == 3
    assert trials[2].params != trials[0].params  # the resumed search drew a new point
    text = best.read_text()
    assert "variant =" in text and "l2 =" in text
    out = tmp_path / "run"
    assert main(["train", "--data", str(ratings_csv), "--config", str(best), "--epochs", "2",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    chosen = min((t for t in trials if t.value is not None), key=lambda t: t.value)
    params = json.loads((out / "metrics.json").read_text())["model_params"]
    assert params["hidden"] == chosen.params["hidden"]
    assert params["variant"] == chosen.params["variant"]


def test_tune_never_scores_the_test_part(tmp_path: Path, ratings_csv: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("optuna")
    from autorec import fitted, fitting, tune

    # every trial fits through autorec.fitting.fit (what AutoRec.fit runs)
    seen: list[int] = []
    original = fitting.fit

    def spy(params, ratings, **kwargs):
        seen.append(len(ratings))
        return original(params, ratings, **kwargs)

    monkeypatch.setattr(fitting, "fit", spy)
    evaluated: list[int] = []
    monkeypatch.setattr(AutoRec, "evaluate", lambda self, test: evaluated.append(1))
    monkeypatch.setattr(fitted.FittedModel, "evaluate",
                        lambda self, test: evaluated.append(1))
    assert main(["tune", "--data", str(ratings_csv), "--epochs", "2", "--trials", "2",
                 "--study", str(tmp_path / "s.db"), "--out", str(tmp_path / "b.toml"),
                 "--quiet"]) == 0
    n_total = len(ratings_csv.read_text().splitlines()) - 1
    assert seen and all(n == n_total - round(0.1 * n_total) for n in seen)
    assert not evaluated
    assert tune.SEARCH_SPACE


def test_tune_without_optuna_says_how_to_install(capsys, monkeypatch: pytest.MonkeyPatch,
                                                 ratings_csv: Path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    code = main(["tune", "--data", str(ratings_csv)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'autorec[tune]'" in err


def test_evaluate_plot(capsys, tmp_path: Path, ratings_csv: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "eval.png"
    code = main(["evaluate", "--data", str(ratings_csv), "--protocol", "kfold", "--folds", "2",
                 "--plot", str(plot), *FAST])
    assert code == 0, capsys.readouterr().err
    for path in (plot, tmp_path / "eval-predictions.png"):
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_default_threshold_is_the_upper_part_of_the_scale() -> None:
    assert default_threshold((1.0, 5.0)) == 4.0
    assert default_threshold((-10.0, 10.0)) == 5.0


def test_ranking_report_matches_lists_from_recommend(low_rank: Ratings) -> None:
    train, test = random_split(low_rank, test_ratio=0.3, random_state=1)
    model = AutoRec(variant="item", validation=0.0, **RANKED_FAST).fit(train)
    report = ranking_report(model, train, test, k=5)
    assert report == ranking_report(model, None, test, k=5)  # the model's own training items

    frame = test.to_dataframe()
    frame = frame[(frame["rating"] >= 4.0) & frame["item_id"].isin(model.items_.raw_ids)]
    users = list(pd.unique(frame["user_id"]))
    table = model.recommend(users, n=5)
    recommended = [list(table[table["user_id"] == u]["item_id"]) for u in users]
    relevant = [set(frame[frame["user_id"] == u]["item_id"]) for u in users]
    expected = ranking_metrics(recommended, relevant, k=5)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value), key
    assert report["n_users"] == len(users) > 0
    assert report["threshold"] == 4.0 and report["k"] == 5
    assert report["n_relevant"] == len(frame)
    assert all(0.0 <= report[f"{m}@5"] <= 1.0 for m in ("precision", "recall", "ndcg", "map",
                                                         "hit_rate"))


def test_a_k_past_the_items_is_scored_without_lists_k_long(low_rank: Ratings) -> None:
    """--k 3000000000 allocated users x k (a MemoryError traceback after training) and
    --k 1e20 an OverflowError: no list is longer than the items, and the figures at any k
    past them are those of lists of every item, precision over k."""
    train, test = random_split(low_rank, test_ratio=0.3, random_state=1)
    model = AutoRec(variant="item", validation=0.0, **RANKED_FAST).fit(train)
    n_items = len(model.items_)
    every = ranking_report(model, train, test, k=n_items)
    for k in (n_items + 1, 3_000_000_000, 10**20):
        report = ranking_report(model, train, test, k=k)
        for name in ("recall", "ndcg", "map", "hit_rate"):
            assert report[f"{name}@{k}"] == pytest.approx(every[f"{name}@{n_items}"]), name
        assert report[f"precision@{k}"] == pytest.approx(
            every[f"precision@{n_items}"] * n_items / k)
    # the plain function agrees: lists shorter than k are padded with misses
    lists, wanted = [[3, 1, 2], [5]], [{1, 7}, {5, 6, 8}]
    padded = ranking_metrics(lists, wanted, k=40)
    huge = ranking_metrics(lists, wanted, k=10**20)
    assert padded["recall@40"] == huge["recall@100000000000000000000"] == pytest.approx(
        (1 / 2 + 1 / 3) / 2)
    assert padded["ndcg@40"] == pytest.approx(huge["ndcg@100000000000000000000"])


def test_ranking_report_counts_unknown_users_with_the_fallback(low_rank: Ratings) -> None:
    model = AutoRec(variant="item", validation=0.0, **RANKED_FAST).fit(low_rank)
    popular = model.recommend(["stranger"], n=3)["item_id"].tolist()
    test = pd.DataFrame({"user_id": ["stranger", "stranger"], "item_id": [popular[1], 99999],
                         "rating": [5.0, 5.0]})
    report = ranking_report(model, None, test, k=3)
    assert report["n_users"] == 1 and report["n_users_unknown"] == 1
    assert report["n_relevant"] == 1  # the unknown item cannot be recommended: not counted
    assert report["hit_rate@3"] == 1.0 and report["recall@3"] == 1.0
    assert report["ndcg@3"] == pytest.approx(1 / math.log2(3))


def test_ranking_report_reads_data_frames_as_fit_and_evaluate_do(low_rank: Ratings) -> None:
    """A DataFrame's columns were read as they came: float ids (a blank cell in a CSV) made
    every user unknown and dropped the training pairs, 7 and "7" were two users, and a
    missing column was a bare KeyError."""
    from autorec.exceptions import DataError

    train, test = random_split(low_rank, test_ratio=0.3, random_state=1)
    model = AutoRec(variant="item", validation=0.0, **RANKED_FAST).fit(train)
    frame, train_frame = test.to_dataframe(), train.to_dataframe()
    assert ranking_report(model, train_frame, frame, k=5) == ranking_report(model, train, test,
                                                                           k=5)
    with pytest.raises(DataError, match="floating-point"):
        ranking_report(model, None, frame.astype({"user_id": float}), k=5)
    with pytest.raises(DataError, match="floating-point"):
        ranking_report(model, train_frame.astype({"item_id": float}), frame, k=5)
    with pytest.raises(DataError, match="rating"):
        ranking_report(model, None, frame.drop(columns="rating"), k=5)
    user, item = frame["user_id"].iloc[0], frame["item_id"].iloc[0]
    other = next(i for i in frame["item_id"] if i != item)
    mixed = pd.DataFrame({"user_id": pd.Series([user, str(user)], dtype=object),
                          "item_id": [item, other], "rating": [5.0, 5.0]})
    assert ranking_report(model, None, mixed, k=5)["n_users"] == 1


def test_ranking_report_samples_users_beyond_max_users(low_rank) -> None:
    train, test = random_split(low_rank, 0.3, random_state=0)
    model = AutoRec(hidden=8, epochs=2, validation=0.0, random_state=0, device="cpu",
                    ranking="none").fit(train)
    full = ranking_report(model, train, test, k=5, max_users=None)
    sampled = ranking_report(model, train, test, k=5, max_users=10)
    assert sampled["n_users"] == 10 and sampled["n_test_users"] == full["n_users"] > 10
    assert ranking_report(model, train, test, k=5, max_users=10) == sampled  # seeded
    # max_users=-1 failed in numpy ("negative dimensions"); threshold=nan gave NaN figures
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="max_users must be a positive integer"):
            ranking_report(model, train, test, k=5, max_users=bad)
    for bad in (float("nan"), float("inf"), "4", True):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            ranking_report(model, train, test, k=5, threshold=bad)


def test_every_split_counts_relevance_on_the_data_sets_scale(capsys, tmp_path: Path) -> None:
    """The threshold came from each split's training ratings: the fold whose training part
    missed the data's only 1 counted 4.25 and up as relevant, the others 4."""
    rng = np.random.default_rng(2)
    lines = ["user_id,item_id,rating"] + [
        f"{u},{i},{1 if (u, i) == (1, 1) else rng.integers(2, 6)}"
        for u in range(1, 31) for i in range(1, 7)]
    data = tmp_path / "one1.csv"
    data.write_text("\n".join(lines) + "\n")
    code = main(["evaluate", "--data", str(data), "--protocol", "kfold", "--folds", "3",
                 "--out", str(tmp_path / "o"), *FAST])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [s["threshold"] for s in results["splits"]] == [4.0, 4.0, 4.0]
    # and each split names the ranking model it chose (train's folds did, evaluate's not)
    assert all(s["ranking_model"].startswith("ranking model ") for s in results["splits"])


def test_splits_name_what_a_protocol_needs() -> None:
    from autorec.evaluate import splits

    # were bare AssertionErrors
    with pytest.raises(ValueError, match="the canonical split u1 needs canonical"):
        list(splits("u1"))
    with pytest.raises(ValueError, match="the kfold protocol needs ratings"):
        list(splits("kfold"))


def test_resume_without_a_checkpoint_folder_is_refused() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [1, 2, 1, 2],
                          "rating": [1.0, 2.0, 3.0, 4.0]})
    # it trained from the beginning without a word
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        AutoRec(hidden=2, epochs=1, device="cpu").fit(frame, resume=True)
