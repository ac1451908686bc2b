"""A :class:`~autorec.ranking.model.RankingModel` as the fitted model's ranking model
(:class:`autorec.family.RankingScorer`): what :mod:`autorec.recommend`, :mod:`autorec.foldin`,
:mod:`autorec.persist` and :mod:`autorec.serve` use, registered as the ``"ranking"`` family.

Saved arrays are the ranking model's own (:meth:`RankingModel.to_arrays`: ``popularity`` and
``<component>.<array>``); :attr:`FittedRanking.params` records the model's parameters and every
array's name, shape and dtype, so that loading asks for exactly those and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from ..family import FAMILIES, ArraySource
from .model import RankingModel

__all__ = ["FittedRanking"]

_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}


class FittedRanking:
    """A ranking model over the fitted model's item indices.

    Parameters
    ----------
    model
        The fitted :class:`RankingModel`.
    n_items
        Items of the fitted model it ranks: the first ``n_items`` indices (items added to
        the fitted model later, by fold-in, are never ranked; saved and loaded so).
    report
        What was chosen on validation (:func:`~autorec.ranking.select.fit_ranking`'s report,
        JSON-able; saved with the model).
    """

    family = "ranking"

    def __init__(self, model: RankingModel, n_items: int,
                 report: dict[str, Any] | None = None) -> None:
        self.model = model
        self.n_items = int(n_items)
        self.report = report or {}

    @property
    def needs_predictions(self) -> bool:
        return self.model.needs_rating_scores

    def score_rows(self, rows: sp.csr_matrix, predictions: np.ndarray | None) -> np.ndarray:
        rows = sp.csr_matrix(rows)
        width = rows.shape[1]  # items folded in after the fit (past n_items): never ranked
        if predictions is not None:  # for the blend, or users it knows nothing of
            predictions = np.asarray(predictions[:, :self.n_items], dtype=np.float32)
        scores = self.model.score(rows[:, :self.n_items], predictions)
        if width > self.n_items:
            scores = np.pad(scores, ((0, 0), (0, width - self.n_items)),
                            constant_values=-np.inf)
        return scores

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "ranking"}
        for (name, (_, weighting, model)), weight in zip(
                self.model.components.items(), self.model.weights, strict=True):
            entry: dict[str, Any] = {"weight": weight, "input": weighting}
            if model is not None:
                entry.update(model.params)
            out[name] = entry
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(value)
                for name, value in self.model.to_arrays().items()}

    @property
    def params(self) -> dict[str, Any]:
        return {"model": self.model.params, "n_items": self.n_items, "report": self.report,
                "arrays": {name: {"shape": list(value.shape), "dtype": str(value.dtype)}
                           for name, value in sorted(self.to_arrays().items())}}

    @classmethod
    def from_arrays(cls, arrays: ArraySource, params: dict[str, Any], *, n_users: int,
                    n_items: int, device: torch.device) -> FittedRanking:
        """The ranking model ``params`` describes (its fields checked by
        :mod:`autorec.persist`), its arrays read with the recorded shapes and dtypes."""
        ranked = int(params["n_items"])  # fewer than n_items: items added after its fit
        if ranked > n_items:
            arrays.invalid("ranking", f"ranks {ranked} items; the model has {n_items}")
        values = {}
        for name, entry in params["arrays"].items():
            dtype = _DTYPES.get(entry["dtype"])
            if dtype is None:
                arrays.invalid(name, f"has dtype {entry['dtype']!r}, which a ranking model "
                               "does not use")
            values[name] = arrays.get(name, tuple(int(v) for v in entry["shape"]), dtype)
        if values.get("popularity", np.empty(0)).shape != (ranked,):
            arrays.invalid("popularity", f"must hold {ranked} values")
        try:
            model = RankingModel.from_arrays(values, params["model"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            arrays.invalid("arrays", "do not fit model.json's ranking entry "
                           f"({' '.join(str(exc).split())[:160]})")
        for name, (_, _, component) in model.components.items():
            width = getattr(component, "n_items_", ranked)
            if width != ranked:
                arrays.invalid(f"{name}.n_items", f"is {width}; the ranking model has "
                               f"{ranked} items")
            items = getattr(component, "items_", None)  # indexes scores and rows: checked
            if items is not None and len(items) and (
                    items[0] < 0 or items[-1] >= ranked or np.any(np.diff(items) <= 0)):
                arrays.invalid(f"{name}.items", f"must be increasing item indices from 0 to "
                               f"{ranked - 1}")
        return cls(model, ranked, params.get("report"))


FAMILIES[FittedRanking.family] = FittedRanking
