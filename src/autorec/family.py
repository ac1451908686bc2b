"""The seam between a fitted model and its model family: what a scoring network must do.

A :class:`~autorec.fitted.FittedModel` holds trained networks and reaches them only through
:class:`ScoringNetwork`; so do :mod:`autorec.recommend`, :mod:`autorec.foldin`,
:mod:`autorec.persist` and :mod:`autorec.serve`, which never ask which kind of network they
hold. The rating networks (:class:`autorec.networks.RatingNetwork`, an AutoRec autoencoder
per variant and seed) are one family; a ranking model (EASE, Mult-VAE:
:mod:`autorec.ranking`) plugs in by satisfying the same protocol (an adapter from its
``score(user_rows)`` / ``to_arrays`` / ``from_arrays`` to the methods below) and registering
its class in :data:`FAMILIES`.

Everything is on dense indices (``user_idx``, ``item_idx`` over the fitted model's id maps);
raw ids, biases, blending and clipping are the fitted model's business.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["FAMILIES", "ArraySource", "RankingScorer", "ScoringNetwork", "family_of"]


class ArraySource(Protocol):
    """Where a network's saved arrays come from: ``get`` hands one out, checked against the
    shape and dtype given, and ``invalid`` refuses one; both raise
    :class:`~autorec.exceptions.ModelFileError` naming the file and the array."""

    def get(self, name: str, shape: tuple[int, ...] | None = None,
            dtype: type | None = None) -> np.ndarray: ...

    def invalid(self, name: str, problem: str) -> NoReturn: ...


class Stored(Protocol):
    """What a model folder asks of any family: its arrays and settings out, and back in."""

    def describe(self) -> dict[str, Any]:
        """A few JSON-able facts for people (``GET /model``, ``autorec train``): its kind and
        size."""
        ...

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its arrays, for a model folder (names without a prefix)."""
        ...

    @property
    def params(self) -> dict[str, Any]:
        """Everything else needed to rebuild it, JSON-able."""
        ...

    @classmethod
    def from_arrays(cls, arrays: ArraySource, params: dict[str, Any], *, n_users: int,
                    n_items: int, device: torch.device) -> Stored:
        """Rebuild what :meth:`to_arrays` and :attr:`params` described."""
        ...


@runtime_checkable
class ScoringNetwork(Stored, Protocol):
    """One trained network of a fitted model, as the layers above it use it.

    Attributes
    ----------
    family
        The name it is registered under in :data:`FAMILIES`.
    n_users, n_items
        Sizes of the index spaces it scores.
    device
        Where its weights live (and where :meth:`score_block` adds its scores).
    best_epoch, history
        The epoch whose weights were kept, and the per-epoch training record.
    """

    family: str
    n_users: int
    n_items: int
    device: torch.device
    best_epoch: int
    history: list[dict[str, Any]]

    def predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Its output for known (user, item) pairs: ``float64``, unclipped, in rating units,
        without the fitted model's baseline."""
        ...

    def score_block(self, users: np.ndarray, items: np.ndarray, out: torch.Tensor,
                    weight: float) -> None:
        """Add ``weight`` times its output for every pair of ``users x items`` to ``out``
        (``float32``, ``len(users) x len(items)``, on :attr:`device`), in place: a batch of
        users' candidate items scored at once."""
        ...

    def seen(self) -> sp.csr_matrix:
        """The users x items training ratings it reads, values the ratings (its pattern is
        what recommendations leave out by default; the rows are what a ranking model scores
        a known user from)."""
        ...

    def fold_in(self, side: str, index: np.ndarray, values: np.ndarray, targets: np.ndarray,
                reg: float) -> tuple[np.ndarray, Any]:
        """A newcomer's output for every counterpart, from its row alone.

        ``side`` is what the newcomer is (``"user"`` or ``"item"``); ``index`` the sorted
        dense indices of the counterparts it rated, ``values`` those ratings and ``targets``
        the ratings minus the fitted model's offsets; ``reg`` a ridge penalty for whatever
        has to be fitted. Returns the outputs (``float64``, one per counterpart, rating
        units) and what :meth:`grow` needs to make the newcomer part of the network.
        """
        ...

    def grow(self, side: str, index: np.ndarray, growth: Any) -> None:
        """Add the newcomer that :meth:`fold_in` scored, so that later scores know it and
        every earlier score stays as it was."""
        ...


@runtime_checkable
class RankingScorer(Stored, Protocol):
    """A ranking model beside the rating networks (:attr:`FittedModel.ranking
    <autorec.fitted.FittedModel>`): it orders a user's candidate items for top-N lists, and
    never changes a predicted rating.

    :mod:`autorec.recommend` (``recommend``, ``ranking_report``), :mod:`autorec.foldin` and
    :mod:`autorec.serve` rank through :meth:`score_rows` when a fitted model holds one, and by
    the predicted rating when it holds none; :mod:`autorec.persist` saves it through
    :meth:`to_arrays` / :attr:`params` and rebuilds it with :meth:`from_arrays` of the class
    registered in :data:`FAMILIES` under :attr:`family`.

    Attributes
    ----------
    family
        The name it is registered under in :data:`FAMILIES`.
    n_items
        Items it was fitted over (the fitted model's item indices; items added later by
        fold-in are never in its lists).
    needs_predictions
        Whether :meth:`score_rows` needs the rating networks' predicted ratings.
    """

    family: str
    n_items: int
    needs_predictions: bool

    def score_rows(self, rows: sp.csr_matrix, predictions: np.ndarray | None) -> np.ndarray:
        """Ranking scores (``float32``, ``rows.shape[0] x rows.shape[1]``, higher is better;
        ``-inf`` for an item it cannot rank) of users given by their rating rows (users x
        items, values the ratings: training rows, or a newcomer's ratings), with their
        predicted ratings of every item (``float32`` or ``float64``, same shape) when
        :attr:`needs_predictions`, and otherwise when the caller has them (a user the ranking
        model knows nothing of is then ranked by them)."""
        ...


#: Network families by name: the class :mod:`autorec.persist` rebuilds a saved network with.
#: A model folder without a family name holds rating networks (``"autorec"``).
FAMILIES: dict[str, type] = {}


def family_of(name: str) -> type:
    """The registered class of family ``name`` (a family registers itself when its module
    is imported: the rating networks, ``"autorec"``, in :mod:`autorec.networks`)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: "
                         f"{', '.join(sorted(FAMILIES))}") from None
