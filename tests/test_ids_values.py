"""Ids and values the same everywhere (issue 12, item 5): the Python API refuses what the
command line and the server refuse; JSON outputs are strict; a run with non-finite metrics
fails; the minor command-line items (repeated users, titles, --n, --nproc, plot titles)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import make_low_rank

from autorec import AutoRec
from autorec.cli._common import require_finite, write_json_atomic
from autorec.cli._launch import check_cpu_processes
from autorec.cli.main import main
from autorec.exceptions import TrainingError


@pytest.fixture(scope="module")
def model() -> AutoRec:
    """Integer ids: users 100..139, items 1000..1029, ratings on a 1-5 scale."""
    return AutoRec(hidden=4, epochs=2, random_state=0, device="cpu").fit(make_low_rank())


def fresh() -> AutoRec:
    return AutoRec(hidden=4, epochs=1, random_state=0, device="cpu").fit(make_low_rank())


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- ids in the Python API ----------------------------------------------------------------------
@pytest.mark.parametrize("users", [np.array([100.0]), [100.0], [np.float32(100)]])
def test_integral_float_ids_are_refused_not_cold(model: AutoRec, users: Any) -> None:
    """196.0 is not the id 196 (ids are compared by text; the server and the readers refuse
    floats too): an error, never a silent cold-start fallback."""
    with pytest.raises(ValueError, match=r"user_ids: id 100\.0 is a floating-point number.*"
                                         r"position 0"):
        model.predict(users, [1000])
    with pytest.raises(ValueError, match=r"user_ids: id 100\.0 is a floating-point"):
        model.recommend(users)


@pytest.mark.parametrize("missing", [None, math.nan, np.nan, ""])
def test_missing_ids_are_refused(model: AutoRec, missing: Any) -> None:
    with pytest.raises(ValueError, match=r"user_ids: missing value \(position 1\)"):
        model.predict([100, missing], [1000, 1001])
    with pytest.raises(ValueError, match=r"item_ids: missing value \(position 0\)"):
        model.predict([100], [missing])
    with pytest.raises(ValueError, match="user_ids: missing value"):
        model.recommend([missing])
    with pytest.raises(ValueError, match="items: missing value"):
        model.recommend([100], items=[1000, missing])


def test_valid_ids_still_predict(model: AutoRec) -> None:
    expected = model.predict([100], [1000])
    np.testing.assert_array_equal(model.predict("100", "1000"), expected)  # one id each
    np.testing.assert_array_equal(model.predict(np.array([100]), np.array(["1000"])), expected)
    _, cold = model.predict(["0100", "100.0"], [1000, 1000], return_cold=True)
    assert cold.all()  # texts that are other ids: unknown, as in files


# -- ratings of a fold-in -----------------------------------------------------------------------
@pytest.mark.parametrize("ratings", [
    {1000: "5"}, {1000: 4.0, 1001: "3"}, {1000: True}, {1000: None},
    ([1000], ["5"]), ([1000], np.array(["5"])), pd.Series(["5"], index=[1000]),
    pd.DataFrame({"item_id": [1000], "rating": ["5"]}), ([1000], [np.bool_(True)]),
])
def test_fold_in_ratings_must_be_numbers(model: AutoRec, ratings: Any) -> None:
    """As the server refuses ``{"ratings": {"50": "5"}}``."""
    with pytest.raises(ValueError, match=r"ratings: rating .* at position \d is .*not a number"):
        model.fold_in_user(ratings)


@pytest.mark.parametrize("rating", [0, 6, -1e9, 5.5, 0.999])
@pytest.mark.parametrize("side", ["user", "item"])
def test_out_of_scale_fold_in_ratings_are_refused(model: AutoRec, rating: float,
                                                  side: str) -> None:
    known = 1000 if side == "user" else 100
    fold = model.fold_in_user if side == "user" else model.fold_in_item
    with pytest.raises(ValueError, match=r"outside the model's rating scale 1 to 5"):
        fold({known: 3.0, known + 1: rating})


@pytest.mark.parametrize("rating", [math.nan, math.inf, -math.inf])
def test_non_finite_fold_in_ratings_are_refused(model: AutoRec, rating: float) -> None:
    with pytest.raises(ValueError, match="not a finite"):
        model.fold_in_user({1000: rating})


def test_ratings_at_the_ends_of_the_scale_are_taken(model: AutoRec) -> None:
    result = model.fold_in_user({1000: 1, 1001: 5.0, 1002: np.float32(3)})
    assert result.n_ratings == 3


# -- ids added by fold-in keep the map's type ---------------------------------------------------
def test_added_ids_keep_an_integer_map_integer() -> None:
    model = fresh()
    model.fold_in_item({100: 4, 101: 5}, add=True, item_id=2000)
    model.fold_in_item({100: 4, 101: 5}, add=True, item_id="2001")  # the text of an integer
    model.fold_in_item({100: 4, 101: 5}, add=True, item_id=np.int64(2002))
    raw = model.items_.raw_ids
    assert raw.dtype == np.int64 and raw[-3:].tolist() == [2000, 2001, 2002]
    for bad in ("abc", "02003", "+2003", "2003.0"):
        with pytest.raises(ValueError, match=r"item ids are integers.*must be an integer"):
            model.fold_in_item({100: 4}, add=True, item_id=bad)
    with pytest.raises(ValueError, match="floating-point"):
        model.fold_in_item({100: 4}, add=True, item_id=2003.0)
    assert len(model.items_) == 33 and model.items_.raw_ids.dtype == np.int64
    assert model.recommend([100], n=40)["item_id"].map(type).eq(int).all()


def test_added_ids_keep_a_text_map_text() -> None:
    ratings = make_low_rank(n_users=20, n_items=12, seed=1)
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in ratings.user_idx],
                          "item_id": [f"i{i}" for i in ratings.item_idx],
                          "rating": ratings.rating})
    model = AutoRec(hidden=4, epochs=1, random_state=0, device="cpu").fit(frame)
    model.fold_in_item({"u1": 4, "u2": 5}, add=True, item_id=13)
    model.fold_in_item({"u1": 4, "u2": 5}, add=True, item_id="new")
    raw = model.items_.raw_ids
    assert raw.dtype == object and raw[-2:].tolist() == ["13", "new"]
    assert all(isinstance(item, str) for item in raw)
    assert not model.predict(["u1"], [13], return_cold=True)[1][0]


# -- JSON outputs and non-finite metrics --------------------------------------------------------
def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a JSON output")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_never_hold_nan_or_infinity(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"rmse": 0.9, "validation_rmse": math.nan,
                             "ci": (np.float64(np.nan), np.float32(-np.inf)),
                             "per": [np.float64(1.5), {"x": math.inf}], "n": np.int64(3),
                             "flag": np.bool_(True), "path": tmp_path})
    payload = _strict(path.read_text())
    assert payload == {"rmse": 0.9, "validation_rmse": None, "ci": [None, None],
                       "per": [1.5, {"x": None}], "n": 3, "flag": True, "path": str(tmp_path)}


def test_non_finite_metrics_fail_the_run() -> None:
    require_finite({"test RMSE": 0.93, "test MAE": np.float32(0.7)})
    with pytest.raises(TrainingError, match=r"^test MAE is nan, not a finite number"):
        require_finite({"test RMSE": 0.93, "test MAE": np.float64(np.nan)})
    with pytest.raises(TrainingError, match="test RMSE is inf"):
        require_finite({"test RMSE": math.inf})
    assert not issubclass(TrainingError, ValueError)  # exit status 1 (a failed run), not 2


def test_train_with_non_finite_ratings_does_not_succeed(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """-3e38 is finite in float32 but its square is not: the run must not end with exit 0
    and a metrics.json holding NaN (refused at reading, or failed as a run)."""
    ratings = make_low_rank(n_users=20, n_items=10)
    lines = ["user_id,item_id,rating"] + [
        f"{u},{i},{r:g}" for u, i, r in zip(ratings.user_idx, ratings.item_idx,
                                             ratings.rating, strict=True)]
    lines.append("99,99,-3e38")
    data = tmp_path / "ratings.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "--data", data, "--hidden", 4, "--epochs", 1,
                           "--validation", 0, "--out", out)
    assert code in (1, 2), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "metrics.json").exists()


# -- the command line ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(model: AutoRec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model.save(tmp_path_factory.mktemp("ids") / "model")


def test_recommend_lists_a_repeated_user_once(model_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "top.csv"
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", 100,
                             "--user", " 100", "--user", 101, "--user", 100, "--n", 3,
                             "--output", output)
    assert code == 0, err
    headings = [line for line in out.splitlines() if line.startswith("user ")]
    assert headings == ["user 100:", "user 101:"]
    ranks = [line.split()[0] for line in out.splitlines()[1:4]]
    assert ranks == ["1", "2", "3"] and out.splitlines()[4] == "user 101:"
    table = pd.read_csv(output)
    assert table["user_id"].tolist() == [100] * 3 + [101] * 3


def test_recommend_prints_no_nan_for_missing_titles(model_dir: Path, model: AutoRec,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    top = model.recommend([100], n=3)["item_id"].tolist()
    titles = tmp_path / "titles.csv"
    titles.write_text(f"item_id,title\n{top[0]},\n{top[1]},Second\n")  # top[2]: no line
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", 100,
                             "--n", 3, "--items", titles)
    assert code == 0, err
    lines = out.splitlines()[1:4]
    assert "nan" not in out.lower()
    best = model.recommend([100], n=1).iloc[0]  # ranking score, then the predicted rating
    assert lines[0].endswith(f"  {best['score']:.4f}  {best['predicted_rating']:.2f}")
    assert lines[1].endswith("  Second")
    assert lines[2] == lines[2].rstrip() and len(lines[2].split()) == 4


def test_recommend_n_larger_than_the_catalogue(model_dir: Path, model: AutoRec,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", 100,
                             "--n", 10**20, "--include-seen")
    assert code == 0, err
    assert len(out.splitlines()) == 1 + len(model.items_)
    code, _, err = run_cli(capsys, "recommend", "--model", model_dir, "--user", 100,
                           "--n", "1e20")
    assert code == 2 and "--n" in err and len(err.strip().splitlines()) == 1
    table = model.recommend([100, 101], n=10**20)
    assert len(table) == len(model.recommend([100, 101], n=len(model.items_)))


def test_nproc_beyond_the_cores_warns_or_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert check_cpu_processes(2, cores=2) is None
    warning = check_cpu_processes(3, cores=2)
    assert warning is not None and "--nproc 3" in warning and "2 cores" in warning
    assert "\n" not in warning
    with pytest.raises(ValueError, match="--nproc 9 is more than 4 processes per core"):
        check_cpu_processes(9, cores=2)
    data = tmp_path / "r.csv"
    data.write_text("user_id,item_id,rating\n1,1,4\n1,2,3\n2,1,5\n2,2,1\n")
    code, _, err = run_cli(capsys, "train", "--data", data, "--nproc", 100_000,
                           "--hidden", 4, "--epochs", 1)
    assert code == 2 and "--nproc 100000" in err and len(err.strip().splitlines()) == 1


def test_long_plot_titles_are_not_clipped() -> None:
    pytest.importorskip("matplotlib", reason="needs the plot extra")
    from autorec.plots import _figure, _title

    long_title = ("item-AutoRec on /home/someone/data/a-very-long-folder-name/with/several/"
                  "levels/ratings-2024-final-version-two.csv, protocol kfold") * 2
    figure = _figure(5.2, 3.8)
    figure.subplots(1, 1)
    _title(figure, long_title)
    figure.canvas.draw()
    box = figure._suptitle.get_window_extent(figure.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= figure.bbox.x1
    assert box.y0 >= 0 and box.y1 <= figure.bbox.y1
    assert "\n" in figure._suptitle.get_text()  # wrapped, nothing dropped
    assert "".join(figure._suptitle.get_text().split()) == "".join(long_title.split())


@pytest.mark.parametrize(("rating", "shown"), [(0.9999999, "0.9999999"), (5.000001, "5.000001"),
                                               (6, "6"), (1e30, "1e+30")])
def test_an_out_of_scale_rating_is_shown_as_given(model: AutoRec, rating: float,
                                                  shown: str) -> None:
    # ":g" showed 0.9999999 as 1: "rating 1 ... is outside the model's rating scale 1 to 5"
    with pytest.raises(ValueError, match=rf"rating {re.escape(shown)} at position 1 is "
                                         r"outside the model's rating scale 1 to 5"):
        model.fold_in_user({1000: 3.0, 1001: rating})
