"""The user-facing AutoRec estimator: owns the id vocabularies, trains, predicts on raw ids."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from .data.ids import IdMap
from .data.ratings import Ratings
from .data.readers import from_dataframe
from .exceptions import NotFittedError
from .metrics import mae, rmse
from .model import ACTIVATIONS, AutoRecNet
from .sparse import SparseBatch
from .train import Trainer, resolve_device, seed_streams

__all__ = ["COLD_POLICIES", "VARIANTS", "AutoRec"]

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("item", "user")
COLD_POLICIES: tuple[str, ...] = ("mean", "midpoint")
EpochCallback = Callable[[dict[str, Any]], None]

_ENCODE_ROWS = 1024
_DECODE_PAIRS = 1 << 16


class AutoRec:
    """AutoRec rating predictor (Sedhain et al., WWW 2015), scikit-learn style.

    Parameters
    ----------
    variant
        ``"item"`` (I-AutoRec, default): each input is one item's ratings over users.
        ``"user"`` (U-AutoRec): each input is one user's ratings over items.
    hidden
        Hidden units.
    activation
        Encoder activation: ``sigmoid`` (default), ``relu``, ``tanh``, ``elu``, ``selu`` or
        ``identity``. The decoder is linear.
    dropout
        Dropout probability on the hidden layer while training, in ``[0, 1)``.
    lr
        Adam learning rate.
    weight_decay
        Adam's L2 penalty.
    epochs
        Passes over the training data.
    batch_size
        Input vectors per step.
    cold
        Prediction for a pair whose user or item has no training rating: ``"mean"`` (default,
        the global training mean) or ``"midpoint"`` (the middle of the training rating scale,
        3 on a 1-5 scale as in the paper).
    random_state
        Seed for the initial weights, the shuffling and the dropout masks. Same seed and
        device, same model.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.

    Attributes
    ----------
    users_, items_ : IdMap
        Raw ids of the users and items seen in training.
    global_mean_ : float
        Mean training rating.
    rating_scale_ : tuple of float
        Smallest and largest training rating; predictions are clipped to it.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (MSE on observed training ratings), ``seconds``,
        and ``eval_rmse``/``eval_mae`` when an evaluation set was given.
    net_ : AutoRecNet
        The trained network.

    Notes
    -----
    Defaults are the d2l.ai reference recipe: 500 sigmoid units, identity decoder, dropout
    0.05, Adam with lr 0.002 and weight decay 1e-5, 25 epochs, batch 256. The loss counts only
    observed ratings. Predictions reconstruct from the training ratings only.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": [1, 2, 1],
    ...                       "rating": [4.0, 3.0, 5.0]})
    >>> model = AutoRec(hidden=8, epochs=2, random_state=0, device="cpu").fit(frame)
    >>> model.predict(["b"], [2]).shape
    (1,)
    """

    def __init__(
        self,
        variant: Literal["item", "user"] = "item",
        hidden: int = 500,
        activation: str = "sigmoid",
        dropout: float = 0.05,
        lr: float = 0.002,
        weight_decay: float = 1e-5,
        epochs: int = 25,
        batch_size: int = 256,
        cold: Literal["mean", "midpoint"] = "mean",
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.variant = variant
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.cold = cold
        self.random_state = random_state
        self.device = device

    # -- scikit-learn parameter protocol -------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> AutoRec:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"unknown parameter {name!r}; valid: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    # -- scikit-learn tooling (issue 5): tags and the HTML repr, without importing sklearn ----
    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn's tooling (``sklearn.utils.get_tags``, the HTML repr).

        AutoRec takes its ratings as one table (``Ratings`` or a DataFrame with ids), not as
        ``X, y``: no target, string ids accepted, a fit needed before predicting. scikit-learn
        is imported here only, when its tooling asks.
        """
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            input_tags=InputTags(two_d_array=False, string=True),
            requires_fit=True,
            non_deterministic=self.random_state is None,
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "net_")

    def _repr_html_(self) -> str | None:
        """The HTML repr of notebooks: scikit-learn's when it is installed, else none."""
        try:
            from sklearn.utils import estimator_html_repr
        except ImportError:
            return None
        return estimator_html_repr(self)
    # -- end of scikit-learn tooling ------------------------------------------------------------

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in
                    inspect.signature(type(self).__init__).parameters.items() if name != "self"}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults[k] != v]
        return f"AutoRec({', '.join(changed)})"

    def _validate_params(self) -> None:
        _choice("variant", self.variant, VARIANTS)
        _choice("cold", self.cold, COLD_POLICIES)
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        for name in ("hidden", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, int | float) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.random_state is not None and not isinstance(self.random_state, int | np.integer):
            raise ValueError(f"random_state must be an integer or None, got {self.random_state!r}")

    # -- training -----------------------------------------------------------------------------
    def fit(
        self,
        ratings: Ratings | pd.DataFrame,
        *,
        eval_set: Ratings | pd.DataFrame | None = None,
        on_epoch_end: EpochCallback | None = None,
    ) -> AutoRec:
        """Train on ``ratings``.

        Parameters
        ----------
        ratings
            Training ratings; a DataFrame needs ``user_id``, ``item_id`` and ``rating``
            columns.
        eval_set
            Ratings scored after every epoch and recorded in ``history_``. Only reported: it
            never steers training.
        on_epoch_end
            Called after every epoch with that epoch's ``history_`` entry.

        Returns
        -------
        AutoRec
            ``self``.
        """
        self._validate_params()
        ratings = _as_ratings(ratings)
        if len(ratings) == 0:
            raise ValueError("cannot fit on zero ratings")
        device = resolve_device(self.device)
        init_seed, train_seed = seed_streams(
            None if self.random_state is None else int(self.random_state), 2)

        user_present = np.unique(ratings.user_idx)
        item_present = np.unique(ratings.item_idx)
        self.users_ = IdMap(ratings.users.to_raw(user_present))
        self.items_ = IdMap(ratings.items.to_raw(item_present))
        compact = Ratings(
            np.searchsorted(user_present, ratings.user_idx),
            np.searchsorted(item_present, ratings.item_idx),
            ratings.rating, self.users_, self.items_, ratings.source,
        )
        self.matrix_ = compact.to_csr(self.variant)
        self.global_mean_ = float(np.mean(ratings.rating, dtype=np.float64))
        self.rating_scale_ = compact.rating_scale()
        self.device_ = device

        # memory check (issue 5)
        from .memory import check_training_memory

        check_training_memory(self.matrix_, hidden=self.hidden, batch_size=self.batch_size,
                              variant=self.variant, device=device)
        generator = torch.Generator().manual_seed(init_seed)
        self.net_ = AutoRecNet(self.matrix_.shape[1], self.hidden, self.activation,
                               self.dropout, generator=generator)
        trainer = Trainer(self.net_, self.matrix_, lr=self.lr, weight_decay=self.weight_decay,
                          batch_size=self.batch_size, device=device, seed=train_seed)
        eval_pairs = None
        if eval_set is not None:
            eval_set = _as_ratings(eval_set)
            eval_pairs = (self._to_index(eval_set.user_ids, eval_set.item_ids), eval_set.rating)

        log.info("training %s-AutoRec: %d ratings, %d users, %d items, %d inputs per row, "
                 "device %s", self.variant, len(ratings), len(self.users_), len(self.items_),
                 self.matrix_.shape[1], device)
        self.history_: list[dict[str, Any]] = []
        for _ in range(self.epochs):
            stats = trainer.train_epoch()
            entry: dict[str, Any] = {"epoch": stats.epoch, "train_loss": stats.train_loss,
                                     "seconds": stats.seconds}
            if eval_pairs is not None:
                (user_idx, item_idx), truth = eval_pairs
                predicted, _ = self._predict_index(user_idx, item_idx)
                entry["eval_rmse"] = rmse(truth, predicted)
                entry["eval_mae"] = mae(truth, predicted)
            self.history_.append(entry)
            log.info("epoch %s", entry)
            if on_epoch_end is not None:
                on_epoch_end(entry)
        self.net_.eval()
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this AutoRec is not fitted yet; call fit() first")

    def _to_index(self, user_ids: Any, item_ids: Any) -> tuple[np.ndarray, np.ndarray]:
        user_idx = self.users_.to_index(user_ids)
        item_idx = self.items_.to_index(item_ids)
        if user_idx.shape != item_idx.shape:
            raise ValueError(f"user_ids and item_ids differ in length: {len(user_idx)} vs "
                             f"{len(item_idx)}")
        return user_idx, item_idx

    def cold_value(self) -> float:
        """The prediction given to pairs with an unknown user or item."""
        self._check_fitted()
        if self.cold == "midpoint":
            low, high = self.rating_scale_
            return (low + high) / 2.0
        return self.global_mean_

    @torch.no_grad()
    def _predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for index pairs (``-1`` = unknown) and the mask of cold pairs."""
        cold = (user_idx < 0) | (item_idx < 0)
        predicted = np.full(len(user_idx), self.cold_value(), dtype=np.float64)
        warm = np.flatnonzero(~cold)
        if len(warm):
            if self.variant == "item":
                rows, outputs = item_idx[warm], user_idx[warm]
            else:
                rows, outputs = user_idx[warm], item_idx[warm]
            predicted[warm] = self._reconstruct(rows, outputs)
        low, high = self.rating_scale_
        np.clip(predicted, low, high, out=predicted)
        return predicted, cold

    def _reconstruct(self, rows: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Reconstructed rating at ``outputs[k]`` of training row ``rows[k]``, unclipped."""
        net, device = self.net_, self.device_
        net.eval()
        unique_rows, position = np.unique(rows, return_inverse=True)
        codes = torch.empty((len(unique_rows), net.hidden), device=device)
        for start in range(0, len(unique_rows), _ENCODE_ROWS):
            chunk = unique_rows[start:start + _ENCODE_ROWS]
            batch = SparseBatch.from_scipy(self.matrix_[chunk], device, transpose=False)
            codes[start:start + len(chunk)] = net.encode(batch)
        position_t = torch.from_numpy(position.astype(np.int64)).to(device)
        outputs_t = torch.from_numpy(np.asarray(outputs, dtype=np.int64)).to(device)
        result = np.empty(len(rows), dtype=np.float64)
        for start in range(0, len(rows), _DECODE_PAIRS):
            stop = start + _DECODE_PAIRS
            values = net.decode_pairs(codes, position_t[start:stop], outputs_t[start:stop])
            result[start:stop] = values.double().cpu().numpy()
        return result

    def predict(
        self, user_ids: Iterable[Any], item_ids: Iterable[Any], *, return_cold: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted ratings for pairs of raw ids.

        Parameters
        ----------
        user_ids, item_ids
            Raw ids, pairwise.
        return_cold
            Also return a boolean mask of the pairs that got the cold fallback.

        Returns
        -------
        numpy.ndarray or (numpy.ndarray, numpy.ndarray)
            Predictions clipped to ``rating_scale_``; unknown users or items get
            :meth:`cold_value`.
        """
        self._check_fitted()
        predicted, cold = self._predict_index(*self._to_index(user_ids, item_ids))
        return (predicted, cold) if return_cold else predicted

    def evaluate(self, test: Ratings | pd.DataFrame) -> dict[str, float | int]:
        """RMSE and MAE over all ``test`` ratings, reconstructing from the training data.

        Returns
        -------
        dict
            ``rmse``, ``mae``, ``n`` (test ratings), ``n_cold`` (pairs given the cold
            fallback), ``seconds``.
        """
        self._check_fitted()
        test = _as_ratings(test)
        started = time.perf_counter()
        predicted, cold = self._predict_index(*self._to_index(test.user_ids, test.item_ids))
        return {
            "rmse": rmse(test.rating, predicted),
            "mae": mae(test.rating, predicted),
            "n": len(test),
            "n_cold": int(cold.sum()),
            "seconds": time.perf_counter() - started,
        }


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _as_ratings(data: Ratings | pd.DataFrame) -> Ratings:
    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_dataframe(data)
    raise TypeError(f"expected Ratings or a pandas DataFrame, got {type(data).__name__}")
