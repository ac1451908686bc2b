"""Ranking models of the AutoRec family: top-N lists from which items users rate.

:mod:`~autorec.ranking.protocol` (the implicit matrix, the validation/test protocol),
:mod:`~autorec.ranking.ease` (EASE), :mod:`~autorec.ranking.vae` (Mult-VAE / Mult-DAE),
:mod:`~autorec.ranking.blend` (standardised scores, convex weights),
:mod:`~autorec.ranking.select` (:func:`fit_ranking`, choices on the training ratings alone),
:mod:`~autorec.ranking.model` (:class:`RankingModel`) and :mod:`~autorec.ranking.scorer`
(:class:`FittedRanking`, the ``"ranking"`` family that :func:`autorec.fitting.fit` fits).
Every model has ``fit``, ``score(rows) -> n x n_items float32``, ``params``, ``to_arrays``
and ``from_arrays``.
"""

from __future__ import annotations

from .ease import EASE, EASE_ITEM_LIMIT
from .model import RankingModel
from .protocol import evaluate_scores, implicit_matrix
from .select import fit_ranking
from .vae import MultVAE

__all__ = ["EASE", "EASE_ITEM_LIMIT", "MultVAE", "RankingModel", "evaluate_scores",
           "fit_ranking", "implicit_matrix"]
