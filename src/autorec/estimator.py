"""The user-facing AutoRec estimator: owns the id vocabularies, trains, predicts on raw ids.

The pieces it puts together: :mod:`autorec.baseline` (user and item biases),
:mod:`autorec.selection` (validation carve-out, early stopping), :mod:`autorec.train` (one
epoch at a time) and :mod:`autorec.model` (the network).
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .baseline import fit_biases
from .data.ids import IdMap
from .data.ratings import Ratings
from .data.readers import from_dataframe
from .exceptions import NotFittedError
from .metrics import mae, rmse
from .model import ACTIVATIONS, AutoRecNet
from .selection import train_with_early_stopping, validation_split
from .sparse import SparseBatch
from .train import OPTIMIZERS, Trainer, resolve_device, seed_streams

__all__ = ["BASELINES", "COLD_POLICIES", "VARIANTS", "AutoRec"]

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("item", "user")
COLD_POLICIES: tuple[str, ...] = ("baseline", "mean", "midpoint")
BASELINES: tuple[str, ...] = ("biases", "none")
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
    input_dropout
        Probability of hiding each observed input rating from the encoder while training,
        in ``[0, 1)`` (a denoising autoencoder; the loss still covers every rating).
    lr
        Learning rate.
    weight_decay
        Adam's coupled L2 term (optimizer ``adam`` only); the reference recipe's 1e-5.
    l2
        The paper's penalty ``(l2 / 2) (||W_enc||^2 + ||W_dec||^2)`` on the objective ``sum of
        squared errors over observed ratings``; the same value means the same objective for
        any batch size (:mod:`autorec.train`).
    epochs
        Most passes over the training data. With a validation part, training stops earlier
        when the validation RMSE has not improved for ``patience`` epochs.
    batch_size
        Input vectors per step.
    optimizer
        ``"adam"``, ``"lazy_adam"`` (updates only the weight rows a batch touches) or
        ``"rprop"`` (full batch, as in the paper).
    baseline
        ``"biases"``: the network learns each rating's deviation from ``mu + b_u + b_i``
        (regularised global mean, user and item biases) and its decoder has no bias of its own;
        ``"none"``: the network reconstructs the ratings themselves (the paper).
    validation
        Share of the training ratings held out to pick the best epoch, in ``[0, 1)``; ``0``
        trains exactly ``epochs`` epochs.
    patience
        Epochs without a better validation RMSE before training stops.
    refit
        After choosing the number of epochs on the validation part, train again from scratch
        on all training ratings for that many epochs.
    cold
        Prediction for a pair whose user or item has no training rating: ``"baseline"``
        (default: ``mu`` plus the bias of whichever of the two is known), ``"mean"`` (the
        global training mean) or ``"midpoint"`` (the middle of the training rating scale,
        3 on a 1-5 scale as in the paper).
    random_state
        Seed for the validation carve-out, the initial weights, the shuffling and the dropout
        masks. Same seed and device, same model.
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
    biases_ : Biases
        Global mean and user and item biases over the indices of ``users_`` and ``items_``.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss`` (MSE on observed training ratings), ``seconds``,
        ``validation_rmse`` when a validation part was held out, and ``eval_rmse`` /
        ``eval_mae`` when an evaluation set was given.
    best_epoch_ : int
        The epoch whose weights were kept (``0``: the untrained network, i.e. the baseline
        alone, was best on validation).
    validation_rmse_ : float
        Validation RMSE of the kept weights (``nan`` without a validation part).
    net_ : AutoRecNet
        The trained network.

    Notes
    -----
    The loss counts only observed ratings. Predictions reconstruct from all training ratings
    (the fit part and the validation part), never from the ratings being predicted. See
    :mod:`autorec.config` for the presets, among them ``reference`` (the d2l.ai chapter:
    500 sigmoid units, dropout 0.05, Adam with lr 0.002 and weight decay 1e-5, 25 epochs,
    batch 256, no validation, no baseline).

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": [1, 2, 1],
    ...                       "rating": [4.0, 3.0, 5.0]})
    >>> model = AutoRec(hidden=8, epochs=2, validation=0, random_state=0, device="cpu")
    >>> model.fit(frame).predict(["b"], [2]).shape
    (1,)
    """

    def __init__(
        self,
        variant: Literal["item", "user"] = "item",
        hidden: int = 500,
        activation: str = "sigmoid",
        dropout: float = 0.05,
        input_dropout: float = 0.25,
        lr: float = 0.002,
        weight_decay: float = 0.0,
        l2: float = 100.0,
        epochs: int = 200,
        batch_size: int = 256,
        optimizer: Literal["adam", "lazy_adam", "rprop"] = "adam",
        baseline: Literal["biases", "none"] = "biases",
        validation: float = 0.05,
        patience: int = 10,
        refit: bool = False,
        cold: Literal["baseline", "mean", "midpoint"] = "baseline",
        random_state: int | None = None,
        device: str | None = None,
    ) -> None:
        self.variant = variant
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.l2 = l2
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.baseline = baseline
        self.validation = validation
        self.patience = patience
        self.refit = refit
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
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("baseline", self.baseline, BASELINES)
        for name in ("hidden", "epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dropout", "input_dropout", "validation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int | float)
                                               and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not (_is_number(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("weight_decay", "l2"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.weight_decay and self.optimizer != "adam":
            raise ValueError(f"weight_decay is Adam's coupled L2 term (optimizer 'adam'); with "
                             f"optimizer {self.optimizer!r} use l2")
        if not isinstance(self.refit, bool):
            raise ValueError(f"refit must be True or False, got {self.refit!r}")
        if self.random_state is not None and (
                isinstance(self.random_state, bool)
                or not isinstance(self.random_state, int | np.integer) or self.random_state < 0):
            raise ValueError(f"random_state must be an integer >= 0 or None, got "
                             f"{self.random_state!r}")

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
            columns. With ``validation > 0`` a random part of them is held out to choose the
            number of epochs.
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
        split_seed, init_seed, train_seed = seed_streams(
            None if self.random_state is None else int(self.random_state), 3)

        ratings = self._index_training_ratings(ratings)
        self.global_mean_ = float(np.mean(ratings.rating, dtype=np.float64))
        self.rating_scale_ = ratings.rating_scale()
        self.device_ = device
        fit_part, val_part = ratings, None
        if self.validation > 0:
            fit_part, val_part = validation_split(ratings, self.validation, split_seed)

        eval_pairs = None
        if eval_set is not None:
            eval_set = _as_ratings(eval_set)
            eval_pairs = (self._to_index(eval_set.user_ids, eval_set.item_ids), eval_set.rating)

        def report(entry: dict[str, Any]) -> None:
            if eval_pairs is not None:
                (user_idx, item_idx), truth = eval_pairs
                predicted, _ = self._predict_index(user_idx, item_idx)
                entry["eval_rmse"] = rmse(truth, predicted)
                entry["eval_mae"] = mae(truth, predicted)
            if on_epoch_end is not None:
                on_epoch_end(entry)

        log.info("training %s-AutoRec: %d ratings (%d to fit, %d to validate), %d users, "
                 "%d items, device %s", self.variant, len(ratings), len(fit_part),
                 0 if val_part is None else len(val_part), len(self.users_), len(self.items_),
                 device)
        score = None
        if val_part is not None:
            val_idx, val_truth = (val_part.user_idx, val_part.item_idx), val_part.rating
            score = lambda: rmse(val_truth, self._predict_index(*val_idx)[0])  # noqa: E731
        run = self._train(fit_part, init_seed, train_seed, self.epochs, score, report)
        self.history_ = run.history
        self.best_epoch_ = run.best_epoch
        self.validation_rmse_ = run.best_score
        if self.refit and val_part is not None:
            log.info("refitting on all %d training ratings for %d epochs", len(ratings),
                     run.best_epoch)
            refit_run = self._train(ratings, init_seed, train_seed, run.best_epoch, None, None)
            for entry, again in zip(self.history_, refit_run.history, strict=False):
                entry["refit_train_loss"] = again["train_loss"]
                entry["refit_seconds"] = again["seconds"]
        else:
            # predict from every training rating, the validation part included
            self.matrix_ = self._orient(ratings)[0]
        self.net_.eval()
        return self

    def _index_training_ratings(self, ratings: Ratings) -> Ratings:
        """Set ``users_``/``items_`` to the ids with a training rating; ``ratings`` on them."""
        user_present = np.unique(ratings.user_idx)
        item_present = np.unique(ratings.item_idx)
        self.users_ = IdMap(ratings.users.to_raw(user_present))
        self.items_ = IdMap(ratings.items.to_raw(item_present))
        return Ratings(np.searchsorted(user_present, ratings.user_idx),
                       np.searchsorted(item_present, ratings.item_idx),
                       ratings.rating, self.users_, self.items_, ratings.source)

    def _orient(self, ratings: Ratings) -> tuple[sp.csr_matrix, np.ndarray]:
        """The ratings as CSR in the variant's orientation (items x users for I-AutoRec), and
        for each stored value the position of its rating in ``ratings``."""
        n_users, n_items = len(self.users_), len(self.items_)
        if self.variant == "item":
            rows, cols, shape = ratings.item_idx, ratings.user_idx, (n_items, n_users)
        else:
            rows, cols, shape = ratings.user_idx, ratings.item_idx, (n_users, n_items)
        order = np.lexsort((cols, rows))
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix((ratings.rating[order].astype(np.float32), cols[order], indptr),
                               shape=shape)
        return matrix, order

    def _train(self, part: Ratings, init_seed: int, train_seed: int, epochs: int,
               score: Callable[[], float] | None, report: EpochCallback | None) -> Any:
        """Fit biases and a fresh network on ``part``; returns the selection's run."""
        self.biases_ = (fit_biases(part.user_idx, part.item_idx, part.rating,
                                   len(self.users_), len(self.items_)))
        self.matrix_, order = self._orient(part)
        targets = None
        if self.baseline == "biases":
            residual = part.rating - self.biases_.predict(part.user_idx, part.item_idx)
            targets = residual[order].astype(np.float32)
        # memory check (issue 5)
        from .memory import check_training_memory

        check_training_memory(self.matrix_, hidden=self.hidden, batch_size=self.batch_size,
                              variant=self.variant, device=self.device_)
        generator = torch.Generator().manual_seed(init_seed)
        self.net_ = AutoRecNet(self.matrix_.shape[1], self.hidden, self.activation,
                               self.dropout, decoder_bias=self.baseline == "none",
                               sparse_grad=self.optimizer == "lazy_adam", generator=generator)
        if self.baseline == "biases":
            # the untrained network adds nothing: epoch 0 predicts the baseline exactly
            torch.nn.init.zeros_(self.net_.decoder_weight)
        trainer = Trainer(self.net_, self.matrix_, targets=targets, optimizer=self.optimizer,
                          lr=self.lr, weight_decay=self.weight_decay, l2=self.l2,
                          batch_size=self.batch_size, input_dropout=self.input_dropout,
                          device=self.device_, seed=train_seed)
        return train_with_early_stopping(trainer, epochs, score=score, patience=self.patience,
                                         on_epoch_end=report)

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
        """The prediction given to pairs with neither user nor item known."""
        self._check_fitted()
        if self.cold == "midpoint":
            low, high = self.rating_scale_
            return (low + high) / 2.0
        if self.cold == "baseline":
            return self.biases_.mean
        return self.global_mean_

    @torch.no_grad()
    def _predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for index pairs (``-1`` = unknown) and the mask of cold pairs."""
        cold = (user_idx < 0) | (item_idx < 0)
        predicted = np.full(len(user_idx), self.cold_value(), dtype=np.float64)
        if self.cold == "baseline" and cold.any():
            predicted[cold] = self.biases_.predict(user_idx[cold], item_idx[cold])
        warm = np.flatnonzero(~cold)
        if len(warm):
            if self.variant == "item":
                rows, outputs = item_idx[warm], user_idx[warm]
            else:
                rows, outputs = user_idx[warm], item_idx[warm]
            predicted[warm] = self._reconstruct(rows, outputs)
            if self.baseline == "biases":
                predicted[warm] += self.biases_.predict(user_idx[warm], item_idx[warm])
        low, high = self.rating_scale_
        np.clip(predicted, low, high, out=predicted)
        return predicted, cold

    def _reconstruct(self, rows: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Network output at ``outputs[k]`` of input row ``rows[k]``, unclipped."""
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
            Predictions clipped to ``rating_scale_``; pairs with an unknown user or item get
            the ``cold`` fallback.
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


def _is_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float | np.number)
            and math.isfinite(float(value)))  # type: ignore[arg-type]


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _as_ratings(data: Ratings | pd.DataFrame) -> Ratings:
    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_dataframe(data)
    raise TypeError(f"expected Ratings or a pandas DataFrame, got {type(data).__name__}")
