"""Figures: training curves and predicted-vs-true ratings, as real PNG files."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autorec.exceptions import AutorecError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, checking its signature and its IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def history(members: int = 1, epochs: int = 6, validation: bool = True,
            test: bool = True) -> list[dict[str, Any]]:
    entries = []
    for member in range(1, members + 1):
        for epoch in range(1, epochs + 1):
            entry: dict[str, Any] = {"member": member, "epoch": epoch,
                                     "train_loss": 1.0 / epoch + 0.1 * member, "seconds": 0.1}
            if validation:
                entry["validation_rmse"] = 0.9 + 0.01 * (epoch - 3) ** 2
            if test:
                entry["eval_rmse"] = 0.92 + 0.01 * (epoch - 3) ** 2
                entry["eval_mae"] = 0.7
            entries.append(entry)
    return entries


@pytest.fixture(autouse=True)
def _needs_matplotlib() -> None:
    pytest.importorskip("matplotlib", reason="needs the plot extra: pip install 'autorec[plot]'")


def test_training_curves_png(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    path = plot_training(history(), tmp_path / "curves.png", title="ML-100K")
    assert path == tmp_path / "curves.png"
    width, height = png_size(path)
    assert 300 <= width <= 3000 and 200 <= height <= 3000
    assert 5_000 < path.stat().st_size < 2_000_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_training_curves_one_panel_per_network(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    one = png_size(plot_training(history(1), tmp_path / "one.png"))
    three = png_size(plot_training(history(3), tmp_path / "three.png"))
    six = png_size(plot_training(history(6), tmp_path / "six.png"))
    assert three[0] > 2 * one[0] and three[1] == one[1]  # side by side
    assert six[1] > 1.5 * one[1]  # four to a row: a second row
    folds = png_size(plot_training({"fold-1": history(), "fold-2": history()},
                                   tmp_path / "folds.png"))
    assert folds[0] > 1.5 * one[0]


def test_training_curves_without_validation_or_test(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    png_size(plot_training(history(validation=False, test=False), tmp_path / "loss.png"))
    entries = history()
    entries[2]["validation_rmse"] = float("nan")  # a NaN (null in JSON) is skipped
    entries[3]["eval_rmse"] = None
    png_size(plot_training(entries, tmp_path / "gaps.png"))


def test_training_curves_of_a_real_fit(tmp_path: Path) -> None:
    from conftest import make_low_rank

    from autorec import AutoRec
    from autorec.plots import plot_training
    from autorec.split import random_split

    train, test = random_split(make_low_rank(), test_ratio=0.2, random_state=0)
    model = AutoRec(variant="both", hidden=4, epochs=3, random_state=0, device="cpu")
    model.fit(train, eval_set=test)
    png_size(plot_training(model.history_, tmp_path / "fit.png"))


def test_svg_and_pdf_by_suffix(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    assert plot_training(history(), tmp_path / "c.svg").read_bytes().lstrip().startswith(b"<")
    assert plot_training(history(), tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(AutorecError, match=r"\.png, \.svg or \.pdf"):
        plot_training(history(), tmp_path / "c.jpg")


def test_empty_history_is_refused(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    with pytest.raises(AutorecError, match="no epoch"):
        plot_training([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_predictions_png(tmp_path: Path) -> None:
    from autorec.plots import plot_predictions

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, 2_000).astype(float)
    predicted = np.clip(truth + rng.normal(0, 0.8, len(truth)), 1, 5)
    width, height = png_size(plot_predictions(truth, predicted, tmp_path / "stars.png"))
    assert 500 <= width <= 3000 and 200 <= height <= 2000
    # a continuous scale (Jester's -10..10): a 2-D histogram instead of box plots
    truth = rng.uniform(-10, 10, 1_000)
    png_size(plot_predictions(truth, truth + rng.normal(0, 2, 1_000), tmp_path / "jester.png"))
    # one distinct value
    png_size(plot_predictions([4.0, 4.0], [3.5, 4.5], tmp_path / "flat.png"))


def test_predictions_are_checked(tmp_path: Path) -> None:
    from autorec.plots import plot_predictions

    with pytest.raises(ValueError, match="differ in length"):
        plot_predictions([1.0, 2.0], [1.0], tmp_path / "p.png")
    with pytest.raises(ValueError, match="no ratings"):
        plot_predictions([], [], tmp_path / "p.png")
    with pytest.raises(ValueError, match="finite"):
        plot_predictions([1.0, np.nan], [1.0, 2.0], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_replaces_atomically(tmp_path: Path) -> None:
    from autorec.plots import plot_training

    path = tmp_path / "out" / "curves.png"  # missing folders are made
    plot_training(history(1), path)
    before = path.read_bytes()
    plot_training(history(2), path)
    assert path.read_bytes() != before
    png_size(path)


def test_check_plot_path(tmp_path: Path) -> None:
    from autorec.plots import check_plot_path

    assert check_plot_path(tmp_path / "a.png") == tmp_path / "a.png"
    with pytest.raises(AutorecError, match="is a folder"):
        check_plot_path(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(AutorecError, match="not a folder"):
        check_plot_path(tmp_path / "file" / "a.png")
    with pytest.raises(AutorecError, match=r"\.png, \.svg or \.pdf"):
        check_plot_path(tmp_path / "a.gif")


def test_without_matplotlib_says_how_to_install(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from autorec.plots import check_plot_path, plot_predictions, plot_training

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for call in (lambda: plot_training(history(), tmp_path / "a.png"),
                 lambda: plot_predictions([1.0], [1.0], tmp_path / "b.png"),
                 lambda: check_plot_path(tmp_path / "c.png")):
        with pytest.raises(AutorecError) as error:
            call()
        message = str(error.value)
        assert "\n" not in message
        assert "pip install 'autorec[plot]'" in message
    assert not list(tmp_path.iterdir())


def _legend_and_marks(entries: list[dict[str, Any]], kept: int | None) -> tuple[list[str],
                                                                                   list[float]]:
    """The legend texts of one drawn panel and the x of its vertical marks."""
    from matplotlib.figure import Figure

    from autorec.plots import _draw_panel

    axis = Figure().subplots()
    _draw_panel(axis, "", entries, kept)
    texts = [t.get_text() for t in axis.get_legend().get_texts()]
    rmse_axis = next(a for a in axis.figure.axes if a is not axis)
    marks = [float(line.get_xdata()[0]) for line in [*axis.get_lines(), *rmse_axis.get_lines()]
             if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]
    return texts, marks


def test_the_kept_epoch_is_marked_even_when_it_is_the_untrained_network() -> None:
    # the history has epochs 1..6 and its least validation RMSE at epoch 3; the model kept
    # epoch 0 (its untrained network scored better): that, not epoch 3, must be marked
    texts, marks = _legend_and_marks(history(), kept=0)
    assert marks == [0.0]
    assert any("kept: epoch 0" in text for text in texts)
    assert not any("epoch 3" in text for text in texts)
    texts, marks = _legend_and_marks(history(), kept=5)  # the kept one, whatever plotted least
    assert marks == [5.0] and any("best 0.9400, epoch 5" in text for text in texts)
    texts, marks = _legend_and_marks(history(), kept=None)  # unknown: the least plotted
    assert marks == [3.0] and any("best 0.9000, epoch 3" in text for text in texts)


def test_the_kept_epoch_is_marked_without_a_validation_part() -> None:
    """With validation 0 the kept epoch (the last) had no mark: only the validation curve
    carried one."""
    texts, marks = _legend_and_marks(history(validation=False), kept=6)
    assert marks == [6.0]
    assert any("kept: epoch 6, no validation part" in text for text in texts)
    assert _legend_and_marks(history(validation=False), kept=None)[1] == []


def test_best_epochs_go_to_their_panels(tmp_path: Path) -> None:
    from autorec.plots import _panels

    panels = _panels({"fold-1": history(2), "fold-2": history(2)},
                     {"fold-1": [0, 4], "fold-2": [2, 3]})
    assert [(name, kept) for name, _, kept in panels] == [
        ("fold-1, network 1", 0), ("fold-1, network 2", 4),
        ("fold-2, network 1", 2), ("fold-2, network 2", 3)]
    assert [kept for *_, kept in _panels(history(2), [1, 6])] == [1, 6]
    assert [kept for *_, kept in _panels(history(2))] == [None, None]
    from autorec.plots import plot_training

    png_size(plot_training(history(2), tmp_path / "kept.png", best_epochs=[0, 4]))
