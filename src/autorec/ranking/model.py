"""The fitted ranking model (:class:`RankingModel`: components, their input weightings, blend
weights) and :func:`weight_rows`, rating rows as a component's input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .blend import blend_scores, standardise
from .ease import EASE
from .protocol import WEIGHTINGS, relevance_threshold
from .vae import MultVAE

__all__ = ["RankingModel", "modelled_by", "weight_rows"]


def modelled_by(item_sets: Sequence[np.ndarray | None], n_items: int) -> np.ndarray:
    """Boolean mask of the ``n_items`` items in every one of ``item_sets`` (``None``: every
    item)."""
    mask = np.ones(n_items, dtype=bool)
    for items in item_sets:
        if items is not None:
            mask &= np.isin(np.arange(n_items), items)
    return mask


def weight_rows(rows: sp.csr_matrix, weighting: str, rating_scale: tuple[float, float]
                ) -> sp.csr_matrix:
    """Users' rating rows (values = ratings) as a model's input rows (see
    :data:`autorec.ranking.protocol.Weighting`)."""
    rows = sp.csr_matrix(rows, dtype=np.float32, copy=True)
    low, high = rating_scale
    if weighting == "binary":
        rows.data[:] = 1.0
    elif weighting == "rating":
        rows.data /= np.float32(max(abs(high), 1e-9))
        rows.data[rows.data < 0] = 0.0
    elif weighting == "positive":
        rows.data = (rows.data >= relevance_threshold((low, high))).astype(np.float32)
    else:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    rows.eliminate_zeros()
    return rows


class RankingModel:
    """A fitted ranking model: components, their input weightings, blend weights.

    Parameters
    ----------
    components
        ``name -> (kind, weighting, model)``; ``kind`` is ``"ease"``, ``"vae"`` or
        ``"rating"`` (the rating network's predictions, given at scoring time; ``model`` is
        ``None``).
    weights
        Blend weight of each component (same order).
    rating_scale
        The training scale (for the weightings).
    popularity
        Training ratings per item: the ranking of a user with an empty row.
    """

    def __init__(self, components: dict[str, tuple[str, str, EASE | MultVAE | None]],
                 weights: Sequence[float], rating_scale: tuple[float, float],
                 popularity: np.ndarray) -> None:
        self.components = components
        self.weights = tuple(float(w) for w in weights)
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        self.popularity = np.asarray(popularity, dtype=np.float32)
        if len(self.weights) != len(components):
            raise ValueError("one weight per component")

    @property
    def needs_rating_scores(self) -> bool:
        """Whether :meth:`score` needs the rating network's predictions."""
        return any(kind == "rating" and w > 0 for (kind, _, _), w in
                   zip(self.components.values(), self.weights, strict=True))

    @property
    def params(self) -> dict[str, Any]:
        """Everything but the arrays (JSON values)."""
        return {
            "rating_scale": list(self.rating_scale),
            "components": [{"name": name, "kind": kind, "weighting": weighting,
                            "params": None if model is None else model.params}
                           for name, (kind, weighting, model) in self.components.items()],
            "weights": list(self.weights),
        }

    def score(self, rows: sp.csr_matrix, rating_scores: np.ndarray | None = None) -> np.ndarray:
        """Blended scores of a batch of users (``n x n_items`` float32, higher is better).

        Parameters
        ----------
        rows
            ``n x n_items`` CSR of the users' ratings (values = ratings): their training
            rows, or a new user's ratings (fold-in). The rated items are not masked here.
        rating_scores
            ``n x n_items`` predicted ratings of the rating network, needed when its blend
            weight is not 0; without that weight, used (when given) for the users below.

        Items some component does not model (even with a zero weight, as when the weights
        were chosen) get ``-inf``, and so do items a weighed rating network gives no score;
        each weighed component is standardised over the items left. A user that no weighed
        component knows anything of (an empty row, or one that EASE's and Mult-DAE's input
        weighting empties: a Jester user with only negative ratings) would score every item
        alike. Such a user with ratings gets the items by the predicted ratings of
        ``rating_scores`` when given; one without (or without ``rating_scores``), by training
        popularity.
        """
        rows = sp.csr_matrix(rows)
        offered = self.offered(rows.shape[1])
        parts, weights = [], []
        informed = np.zeros(rows.shape[0], dtype=bool)
        for (kind, weighting, model), w in zip(self.components.values(), self.weights,
                                               strict=True):
            if w <= 0:
                continue
            if kind == "rating":
                if rating_scores is None:
                    raise ValueError("rating_scores are needed: the blend weighs the rating "
                                     "network's predictions")
                raw = np.where(np.isnan(rating_scores), -np.inf, rating_scores)
                informed |= np.diff(rows.indptr) > 0
            else:
                assert model is not None
                weighted = weight_rows(rows, weighting, self.rating_scale)
                raw = model.score(weighted)
                informed |= weighted[:, model.items_].getnnz(axis=1) > 0
            if not offered.all():
                raw = np.array(raw, dtype=np.float32)
                raw[:, ~offered] = -np.inf
            parts.append(standardise(raw, rows))
            weights.append(w)
        out = blend_scores(parts, weights)
        if not informed.all():  # the popular items among those offered
            popular = np.where(offered, self.popularity, -np.inf).astype(np.float32)
            out[~informed] = standardise(popular[None, :])[0]
            rated = ~informed & (np.diff(rows.indptr) > 0)
            if rating_scores is not None and rated.any():  # their own predicted ratings
                own = np.where(np.isnan(rating_scores[rated]), -np.inf, rating_scores[rated])
                own[:, ~offered] = -np.inf
                out[rated] = standardise(own, rows[rated])
        return out

    def offered(self, n_items: int) -> np.ndarray:
        """Boolean mask of the ``n_items`` items every item model (EASE, Mult-DAE) models."""
        return modelled_by([getattr(model, "items_", None)
                            for _, _, model in self.components.values()], n_items)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named arrays (``<component>.<array>``, ``popularity``) for safetensors."""
        arrays = {"popularity": self.popularity}
        for name, (_, _, model) in self.components.items():
            if model is not None:
                arrays.update({f"{name}.{key}": value for key, value in
                               model.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]
                    ) -> RankingModel:
        """Rebuild from :meth:`to_arrays` and :attr:`params`."""
        components: dict[str, tuple[str, str, EASE | MultVAE | None]] = {}
        for entry in params["components"]:
            name, kind = entry["name"], entry["kind"]
            own = {key[len(name) + 1:]: value for key, value in arrays.items()
                   if key.startswith(f"{name}.")}
            model: EASE | MultVAE | None
            if kind == "ease":
                model = EASE.from_arrays(own, entry["params"])
            elif kind == "vae":
                model = MultVAE.from_arrays(own, entry["params"])
            elif kind == "rating":
                model = None
            else:
                raise ValueError(f"unknown ranking component kind {kind!r}")
            components[name] = (kind, entry["weighting"], model)
        return cls(components, params["weights"], tuple(params["rating_scale"]),
                   arrays["popularity"])
