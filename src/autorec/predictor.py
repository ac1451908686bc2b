"""The fitted half of the estimator: the learned attributes of :class:`autorec.AutoRec`
(``users_``, ``biases_``..., parts of its :class:`~autorec.fitted.FittedModel` ``fitted_``,
absent before ``fit``) and the methods that hand prediction, recommendation, fold-in and
saving to the lower modules. Nothing here imports the estimator.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from . import foldin, persist
from . import recommend as recommending
from .data.ratings import Ratings
from .exceptions import NotFittedError
from .fitted import FittedModel

__all__ = ["FittedPredictor"]

_Self = TypeVar("_Self", bound="FittedPredictor")


def _learned(name: str, doc: str | None = None, *, unset: bool = False) -> property:
    """The learned attribute ``name_``: ``fitted_.name`` (``AttributeError`` before ``fit``,
    and with ``unset`` while it is ``None``: a loaded model that did not record it)."""

    def get(self: FittedPredictor) -> Any:
        value = getattr(self._fitted(name + "_"), name)
        if unset and value is None:
            raise AttributeError(name + "_")
        return value

    def set_(self: FittedPredictor, value: Any) -> None:
        setattr(self._fitted(), name, value)

    return property(get, set_, doc=doc)


class FittedPredictor:
    """The learned attributes and the methods that need a fitted model (see the module
    docstring); the base of :class:`autorec.AutoRec`, whose constructor takes the
    parameters."""

    fitted_: FittedModel

    def _fitted(self, attribute: str | None = None) -> FittedModel:
        """``fitted_``; before ``fit``, ``NotFittedError``, or for a learned ``attribute``
        a plain ``AttributeError`` naming it (``hasattr`` is False)."""
        fitted = self.__dict__.get("fitted_")
        if fitted is None:
            if attribute is not None:
                raise AttributeError(attribute)
            raise NotFittedError("this AutoRec is not fitted yet; call fit() first")
        return fitted

    users_ = _learned("users", "Raw ids of the users seen in training (IdMap).")
    items_ = _learned("items", "Raw ids of the items seen in training (IdMap).")
    global_mean_ = _learned("global_mean")
    rating_scale_ = _learned("rating_scale")
    biases_ = _learned("biases")
    members_ = _learned("members")
    blend_ = _learned("blend")
    ranking_ = _learned("ranking")
    history_ = _learned("history")
    epoch_seconds_ = _learned("epoch_seconds")
    validation_rmse_ = _learned("validation_rmse")
    device_ = _learned("device")
    l2_ = _learned("l2", unset=True)
    validation_mean_rmse_ = _learned("validation_mean_rmse", unset=True)

    @property
    def best_epoch_(self) -> int:
        return self._fitted().best_epoch

    # -- prediction ---------------------------------------------------------------------------
    def cold_value(self) -> float:
        """The prediction given to pairs with neither user nor item known."""
        return self._fitted().cold_value()

    def predict(
        self, user_ids: Iterable[Any], item_ids: Iterable[Any], *, return_cold: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted ratings for pairs of raw ids.

        Parameters
        ----------
        user_ids, item_ids
            Raw ids, pairwise (integers or text, compared by text: ``196`` and ``"196"`` are
            one id, ``"196.0"`` another).
        return_cold
            Also return a boolean mask of the pairs that got the cold fallback.

        Returns
        -------
        numpy.ndarray or (numpy.ndarray, numpy.ndarray)
            Predictions clipped to ``rating_scale_``; pairs with an unknown user or item get
            the ``cold`` fallback.

        Raises
        ------
        ValueError
            An id that is missing (``None``, NaN, empty text) or cannot be an id: a float,
            even an integral one (``196.0`` is refused, not looked up as ``196``), a boolean...
        """
        return self._fitted().predict(user_ids, item_ids, return_cold=return_cold)

    def evaluate(self, test: Ratings | pd.DataFrame) -> dict[str, float | int]:
        """RMSE and MAE over all ``test`` ratings, reconstructing from the training data.

        Returns
        -------
        dict
            ``rmse``, ``mae``, ``n`` (test ratings), ``n_cold`` (pairs given the cold
            fallback), ``seconds``.
        """
        return self._fitted().evaluate(test)

    # -- persistence and recommendation: see autorec.persist, autorec.recommend --------------
    def save(self, path: str | PathLike[str], *, dataset: str | None = None) -> Path:
        """Save the fitted model to the folder ``path`` (safetensors + JSON, no pickle;
        atomic). See :func:`autorec.persist.save_model`."""
        return persist.save_model(self, path, dataset=dataset)

    @classmethod
    def load(cls: type[_Self], path: str | PathLike[str], *, device: str | None = "cpu"
             ) -> _Self:
        """Load a model folder written by :meth:`save` onto ``device`` (default the CPU).
        See :func:`autorec.persist.load_model`."""
        return cls.from_fitted(persist.load_model(path, device=device))

    @classmethod
    def from_fitted(cls: type[_Self], fitted: FittedModel) -> _Self:
        """An estimator holding ``fitted``, with the parameters it was fitted with."""
        model = cls(**fitted.params)  # type: ignore[call-arg]
        model.fitted_ = fitted
        return model

    def recommend(self, user_ids: Iterable[Any] | Any, n: int = 10, *,
                  exclude_seen: bool = True, items: Iterable[Any] | None = None
                  ) -> pd.DataFrame:
        """Top-``n`` items for each raw user id: a DataFrame with ``user_id``, ``rank``,
        ``item_id``, ``score``, ``predicted_rating`` and ``fallback`` (an unknown user: items
        ranked by the baseline). Items rated in training are left out unless
        ``exclude_seen=False``. See :func:`autorec.recommend.recommend`;
        :func:`autorec.recommend.top_n` is the array API on dense indices."""
        return recommending.recommend(self._fitted(), user_ids, n, exclude_seen=exclude_seen,
                                      items=items)

    # -- fold-in: new users and items without retraining, see autorec.foldin ------------------
    def fold_in_user(self, ratings: Any, n: int | None = 10, add: bool = False, *,
                     user_id: Any = None, exclude_rated: bool = True,
                     reg: float | None = None) -> Any:
        """Scores and top-``n`` recommendations for a new user, from its ratings of known items.

        ``ratings``: ``{item_id: rating}``, a Series, a DataFrame (``item_id``, ``rating``) or
        ``(item_ids, ratings)``; unknown items are ignored and counted. ``add=True`` adds the
        user (``user_id``, new) to the model. ``reg``: ridge penalty of the fitted decoder
        rows (default ``l2_ / 2``). Returns a :class:`autorec.foldin.FoldIn`; see
        :func:`autorec.foldin.fold_in` for the method.
        """
        return foldin.fold_in(self._fitted(), "user", ratings, new_id=user_id, n=n,
                              exclude_rated=exclude_rated, add=add, reg=reg)

    def fold_in_item(self, ratings: Any, add: bool = False, *, item_id: Any = None,
                     reg: float | None = None) -> Any:
        """Scores of every known user for a new item, from its ratings by known users.

        ``ratings``: ``{user_id: rating}``, a Series, a DataFrame (``user_id``, ``rating``) or
        ``(user_ids, ratings)``; otherwise as :meth:`fold_in_user`.
        """
        return foldin.fold_in(self._fitted(), "item", ratings, new_id=item_id, n=None, add=add,
                              reg=reg)
