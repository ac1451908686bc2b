"""Ranking models of the AutoRec family: top-N lists from which items users rate.

* :mod:`~autorec.ranking.protocol`: the implicit users x items matrix, top-k and the
  validation/test scoring protocol (that of :func:`autorec.ranking_report`).
* :mod:`~autorec.ranking.ease`: EASE, the closed-form linear item autoencoder.
* :mod:`~autorec.ranking.vae`: Mult-VAE / Mult-DAE over a user's whole item row.
* :mod:`~autorec.ranking.blend`: standardised scores, convex weights chosen on validation.
* :mod:`~autorec.ranking.select`: :func:`fit_ranking` chooses and fits the default ranking
  model on the training ratings alone; :class:`RankingModel` scores users' rows and saves as
  arrays.
* :mod:`~autorec.ranking.scorer`: :class:`FittedRanking`, a ranking model as a fitted model's
  ``ranking`` (:class:`autorec.family.RankingScorer`, the ``"ranking"`` family), which
  :func:`autorec.fitting.fit` fits beside the rating networks (``ranking="auto"``).

Every model has ``fit``, ``score(rows) -> n x n_items float32``, ``params``, ``to_arrays`` and
``from_arrays``.
"""

from __future__ import annotations

from .ease import EASE, EASE_ITEM_LIMIT
from .model import RankingModel
from .protocol import evaluate_scores, implicit_matrix
from .select import fit_ranking
from .vae import MultVAE

__all__ = ["EASE", "EASE_ITEM_LIMIT", "MultVAE", "RankingModel", "evaluate_scores",
           "fit_ranking", "implicit_matrix"]
