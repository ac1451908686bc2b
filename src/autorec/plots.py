"""Figures of a run, written as image files: training curves (:func:`plot_training`) and
predicted against true ratings (:func:`plot_predictions`).

matplotlib (the extra ``autorec[plot]``) is used without pyplot (a ``Figure`` drawn by the
Agg canvas): no screen is needed and no global state is touched. Files are written
atomically: PNG, or SVG / PDF for a path ending in ``.svg`` / ``.pdf``.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ._io import atomic_write
from .exceptions import AutorecError
from .metrics import mae, rmse

__all__ = ["FORMATS", "INSTALL_HINT", "check_plot_path", "plot_predictions", "plot_training",
           "require_matplotlib"]

INSTALL_HINT = "pip install 'autorec[plot]'"
#: File formats by suffix; a path without a suffix is written as PNG.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", "": "png"}

_COLOURS = {"train_loss": "#1f77b4", "validation_rmse": "#ff7f0e", "eval_rmse": "#2ca02c"}
_LABELS = {"train_loss": "train loss (MSE)", "validation_rmse": "validation RMSE",
           "eval_rmse": "test RMSE"}
_MAX_COLUMNS = 4


def require_matplotlib() -> None:
    """Raise :class:`AutorecError` (one line, how to install it) when matplotlib is missing.

    The command line calls it before training, so that ``--plot`` fails at once.
    """
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise AutorecError(f"plotting needs matplotlib: {INSTALL_HINT}") from None


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a figure can be written to ``path``.

    Raises
    ------
    AutorecError
        matplotlib is missing, or ``path`` has a suffix other than ``.png``, ``.svg`` or
        ``.pdf``, is a folder, or sits under a file.
    """
    require_matplotlib()
    path = Path(path)
    if not str(path).strip():
        raise AutorecError("the plot needs a file name")
    _format(path)
    if path.is_dir():
        raise AutorecError(f"{path} is a folder; give a file name such as {path / 'plot.png'}")
    parent = next((parent for parent in path.parents if parent.exists()), None)
    if parent is not None and not parent.is_dir():
        raise AutorecError(f"cannot write {path}: {parent} is not a folder")
    return path


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise AutorecError(f"{path}: a plot is written as .png, .svg or .pdf, not {suffix}")
    return FORMATS[suffix]


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _wrap(text: str, width_inches: float, points: float) -> str:
    """``text`` broken into lines that fit ``width_inches`` at a font of ``points`` (a
    character is taken as 0.6 em wide: wide enough for digits and most letters); a word
    longer than a line (a path) is broken too."""
    per_line = max(10, int(width_inches * 72 / (0.6 * points)))
    return "\n".join(textwrap.wrap(text, per_line, break_on_hyphens=False)) or text


def _title(figure: Any, text: str) -> None:
    """The figure's title, wrapped to its width (a long data path is never clipped), and the
    figure made taller by the extra lines."""
    points = 12.0  # matplotlib's "large", the default size of a figure title
    width, height = figure.get_size_inches()
    wrapped = _wrap(text, width - 0.4, points)
    extra = wrapped.count("\n")
    if extra:
        figure.set_size_inches(width, height + extra * points * 1.3 / 72)
    figure.suptitle(wrapped, fontsize=points)


def _save(figure: Any, path: Path) -> Path:
    kind = _format(path)

    def write(handle: IO[bytes]) -> None:
        # a fixed date and software tag: the same figure gives the same bytes
        metadata = {"Software": None} if kind == "png" else None
        figure.savefig(handle, format=kind, metadata=metadata)

    atomic_write(path, write, binary=True)
    return path


# -- training curves ---------------------------------------------------------------------------
def _panels(history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
            best_epochs: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
            ) -> list[tuple[str, list[Mapping[str, Any]], int | None]]:
    """(title, entries, kept epoch or None) per network: grouped by ``member``, and by key for
    a mapping."""
    groups = list(history.items()) if isinstance(history, Mapping) else [("", list(history))]
    panels = []
    for name, entries in groups:
        entries = list(entries)
        kept = best_epochs.get(name) if isinstance(best_epochs, Mapping) else best_epochs
        members = sorted({int(e.get("member", 1)) for e in entries})
        for member in members:
            own = sorted((e for e in entries if int(e.get("member", 1)) == member),
                         key=lambda e: e["epoch"])
            parts = [str(name)] if name else []
            if len(members) > 1:
                parts.append(f"network {member}")
            panels.append((", ".join(parts), own,
                           int(kept[member - 1]) if kept is not None and member <= len(kept)
                           else None))
    return panels


def _series(entries: list[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """The epochs with a finite ``key``, and its values."""
    epochs = np.asarray([int(entry["epoch"]) for entry in entries])
    values = np.asarray([math.nan if entry.get(key) is None else float(entry[key])
                         for entry in entries])
    keep = np.isfinite(values)
    return epochs[keep], values[keep]


def plot_training(
    history: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    best_epochs: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Training curves: train loss, validation RMSE and test RMSE per epoch.

    Parameters
    ----------
    history
        ``AutoRec.history_`` (or ``metrics.json["history"]``): one entry per network and
        epoch with ``epoch``, ``train_loss`` and, when they were measured,
        ``validation_rmse`` and ``eval_rmse`` (the test RMSE); ``member`` numbers the
        networks. A mapping ``{label: history}`` (one per fold or split) gets panels labelled
        by its keys.
    path
        The image file (``.png``, ``.svg`` or ``.pdf``), replaced atomically.
    title
        Above the figure.
    best_epochs
        The epoch whose weights each network kept, in network order
        (``[m.best_epoch for m in model.members_]``, ``metrics.json["best_epochs"]``); a
        mapping ``{label: best_epochs}`` goes with a mapping ``history``. It is marked instead
        of the plotted epoch of least validation RMSE, which is not the kept one when the
        untrained network (epoch 0, which has no history entry) scored best.

    Returns
    -------
    pathlib.Path
        ``path``.

    Each network gets a panel, four to a row: the training loss (the MSE over the observed
    training ratings, in the network's units: with ``baseline="biases"`` the residuals over
    their standard deviation) on the left axis, the validation and test RMSE (in ratings) on
    the right one, the kept epoch marked and named in the legend.

    Raises
    ------
    AutorecError
        matplotlib is missing, or the history has no epoch.
    """
    path = Path(path)
    _format(path)
    panels = _panels(history, best_epochs)
    if not panels:
        raise AutorecError("nothing to plot: the training history has no epoch")
    columns = min(len(panels), _MAX_COLUMNS)
    rows = math.ceil(len(panels) / columns)
    figure = _figure(4.6 * columns + 0.6, 3.4 * rows + (0.4 if title else 0.0))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, (name, entries, kept) in zip(axes.flat, panels, strict=False):
        _draw_panel(axis, name, entries, kept)
    for axis in axes.flat[len(panels):]:  # empty cells of the last row
        axis.set_visible(False)
    if title:
        _title(figure, title)
    return _save(figure, path)


def _draw_panel(loss_axis: Any, name: str, entries: list[Mapping[str, Any]],
                kept: int | None = None) -> None:
    lines = []
    epochs, loss = _series(entries, "train_loss")
    # no validation part: the kept epoch (the last) is marked on the loss, it was unmarked
    unchosen = kept is not None and not len(_series(entries, "validation_rmse")[0])
    if unchosen:
        loss_axis.axvline(kept, color=_COLOURS["train_loss"], linestyle=":", alpha=0.7)
    if len(epochs):
        note = f" (kept: epoch {kept}, no validation part)" if unchosen else ""
        lines += loss_axis.plot(epochs, loss, color=_COLOURS["train_loss"], marker=".",
                                label=_LABELS["train_loss"] + note)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel(_LABELS["train_loss"], color=_COLOURS["train_loss"])
    loss_axis.grid(True, alpha=0.3)
    rmse_axis = loss_axis.twinx()
    rmse_axis.set_ylabel("RMSE")
    marked: list[int] = []
    for key in ("validation_rmse", "eval_rmse"):
        epochs, values = _series(entries, key)
        if not len(epochs):
            continue
        label = _LABELS[key]
        if key == "validation_rmse":
            label += _mark_kept(rmse_axis, epochs, values, kept, marked)
        lines += rmse_axis.plot(epochs, values, color=_COLOURS[key], marker=".", label=label)
    all_epochs = [int(e["epoch"]) for e in entries] + marked
    if max(all_epochs) - min(all_epochs) <= 12:
        loss_axis.set_xticks(sorted(set(all_epochs)))
    if name:
        loss_axis.set_title(_wrap(name, 4.0, 12.0))  # a panel is 4.6 inches wide
    if lines:
        loss_axis.legend(lines, [line.get_label() for line in lines], loc="upper right",
                         fontsize=8)


def _mark_kept(axis: Any, epochs: np.ndarray, values: np.ndarray, kept: int | None,
               marked: list[int]) -> str:
    """Mark the kept epoch (the least validation RMSE plotted when ``kept`` is unknown), add
    it to ``marked`` and return its legend text."""
    if kept is None or (kept != 0 and kept not in epochs):
        kept = int(epochs[int(np.argmin(values))])
    marked.append(kept)
    axis.axvline(kept, color=_COLOURS["validation_rmse"], linestyle=":", alpha=0.7)
    if kept == 0:
        return " (kept: epoch 0, the untrained network)"
    return f" (best {values[list(epochs).index(kept)]:.4f}, epoch {kept})"


# -- predicted against true ratings --------------------------------------------------------------
def plot_predictions(
    y_true: Iterable[float] | np.ndarray,
    y_pred: Iterable[float] | np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """The distribution of predicted ratings against that of the true ones.

    Parameters
    ----------
    y_true, y_pred
        True and predicted ratings, pairwise (e.g. a test set's ``rating`` and
        ``model.predict`` of its pairs).
    path
        The image file (``.png``, ``.svg`` or ``.pdf``), replaced atomically.
    title
        Above the figure (default: the RMSE and MAE of the pairs).

    Returns
    -------
    pathlib.Path
        ``path``.

    Two panels: the distributions of the true and the predicted ratings (on a scale of at most
    20 distinct true values, such as stars, bars per value with each prediction counted at
    the nearest one; else histograms on common bins); and the predictions for each true
    rating (box plots for at most 20 distinct true values, else a 2-D histogram), with the
    diagonal ``prediction = truth``.

    Raises
    ------
    AutorecError
        matplotlib is missing.
    ValueError
        The arrays differ in length, are empty, or hold a value that is not finite.
    """
    path = Path(path)
    _format(path)
    truth, predicted = (np.asarray(y if isinstance(y, np.ndarray) else list(y),
                                   dtype=np.float64).reshape(-1) for y in (y_true, y_pred))
    if truth.shape != predicted.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(truth)} vs "
                         f"{len(predicted)}")
    if not len(truth):
        raise ValueError("nothing to plot: no ratings")
    if not (np.isfinite(truth).all() and np.isfinite(predicted).all()):
        raise ValueError("y_true and y_pred must hold finite numbers")
    figure = _figure(11.0, 4.2)
    hist_axis, box_axis = figure.subplots(1, 2)
    levels = np.unique(truth)
    low = float(min(truth.min(), predicted.min()))
    high = float(max(truth.max(), predicted.max()))
    if len(levels) <= 20:  # a star scale: side-by-side bars, predictions to the nearest level
        nearest = np.abs(predicted[:, None] - levels[None, :]).argmin(axis=1)
        counts_true = np.array([(truth == level).sum() for level in levels])
        counts_pred = np.bincount(nearest, minlength=len(levels))
        step = float(np.min(np.diff(levels))) if len(levels) > 1 else 1.0
        width = 0.4 * step
        hist_axis.bar(levels - width / 2, counts_true, width=width, label="true",
                      color="#1f77b4")
        hist_axis.bar(levels + width / 2, counts_pred, width=width,
                      label="predicted (to the nearest rating)", color="#ff7f0e")
        box_axis.boxplot([predicted[truth == level] for level in levels], positions=levels,
                         widths=0.6 * step, showfliers=False, manage_ticks=False)
        for axis in (hist_axis, box_axis):
            axis.set_xticks(levels, [f"{v:g}" for v in levels])
    else:
        bins = np.linspace(low, high, 41) if high > low else np.array([low - 0.5, low + 0.5])
        hist_axis.hist(truth, bins=bins, alpha=0.55, label="true", color="#1f77b4")
        hist_axis.hist(predicted, bins=bins, alpha=0.55, label="predicted", color="#ff7f0e")
        box_axis.hist2d(truth, predicted, bins=40, cmap="Blues")
    hist_axis.set(xlabel="rating", ylabel="ratings", title="distribution")
    hist_axis.legend(fontsize=8)
    hist_axis.grid(True, alpha=0.3)
    box_axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1,
                  label="prediction = truth")
    box_axis.set(xlabel="true rating", ylabel="predicted rating",
                 title="predictions by true rating")
    box_axis.legend(fontsize=8, loc="upper left")
    box_axis.grid(True, alpha=0.3)
    figures = f"RMSE {rmse(truth, predicted):.4f}, MAE {mae(truth, predicted):.4f}"
    _title(figure, title if title is not None else f"{len(truth):,} ratings: {figures}")
    return _save(figure, path)
