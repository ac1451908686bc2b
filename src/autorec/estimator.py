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
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from .data.ratings import Ratings
from .data.readers import as_ratings
from .exceptions import NotFittedError
from .member import NetworkSpec
from .metrics import mae, rmse
from .model import ACTIVATIONS
from .train import OPTIMIZERS

if TYPE_CHECKING:
    pass

__all__ = ["BASELINES", "COLD_POLICIES", "VARIANTS", "AutoRec"]

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("item", "user", "both")
COLD_POLICIES: tuple[str, ...] = ("baseline", "mean", "midpoint")
BASELINES: tuple[str, ...] = ("biases", "none")
EpochCallback = Callable[[dict[str, Any]], None]


class AutoRec:
    """AutoRec rating predictor (Sedhain et al., WWW 2015), scikit-learn style.

    Parameters
    ----------
    variant
        ``"item"`` (I-AutoRec, default): each input is one item's ratings over users.
        ``"user"`` (U-AutoRec): each input is one user's ratings over items.
        ``"both"``: I-AutoRec and U-AutoRec networks side by side, blended.
    ensemble
        Networks per variant, each from its own seed; their outputs are blended with weights
        fitted on the validation part (by least squares), or averaged without one.
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
        any batch size (:mod:`autorec.train`). A list of values: each is trained and the one
        with the best validation RMSE is kept (``l2_``).
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
        on all training ratings for that many epochs (default; it lowered the test RMSE on
        every data set measured, for 50-80 % more time: BENCHMARKS.md). ``False`` keeps the
        networks trained on the part outside validation.
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
    dense_batches
        Densify each batch (never the whole matrix) and use dense matrix products: a path for
        GPUs, where it can be faster than the sparse kernels; same values (optimizer ``adam``
        or ``rprop``). Not measured on a GPU yet (BENCHMARKS.md, "GPU").
    tf32
        Let CUDA matrix products use TF32 (10-bit mantissa inputs, float32 accumulation)
        while fitting; no effect on the CPU.

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
        Per network and epoch: ``member`` (1-based), ``epoch``, ``train_loss`` (MSE on observed
        training ratings), ``seconds``, ``validation_rmse`` (that network's alone) when a
        validation part was held out, and ``eval_rmse`` / ``eval_mae`` when an evaluation set
        was given.
    best_epoch_ : int
        The epoch whose weights were kept for the first network (``0``: the untrained
        network, i.e. the baseline alone, was best on validation); every network's is in
        ``members_[k].best_epoch``.
    validation_rmse_ : float
        Validation RMSE of the final (blended) predictor (``nan`` without a validation part).
    validation_mean_rmse_ : float
        Validation RMSE of predicting the mean rating of the fit part everywhere: the bar any
        model must clear (``nan`` without a validation part).
    l2_ : float
        The L2 penalty used (the one chosen on validation when ``l2`` is a list).
    members_ : list of Member
        The trained networks.
    blend_ : numpy.ndarray
        Weight of each network's output, then the intercept.

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
        variant: Literal["item", "user", "both"] = "item",
        ensemble: int = 1,
        hidden: int = 500,
        activation: str = "sigmoid",
        dropout: float = 0.05,
        input_dropout: float = 0.25,
        lr: float = 0.002,
        weight_decay: float = 0.0,
        l2: float | list[float] = 100.0,
        epochs: int = 200,
        batch_size: int = 256,
        optimizer: Literal["adam", "lazy_adam", "rprop"] = "lazy_adam",
        baseline: Literal["biases", "none"] = "biases",
        validation: float = 0.05,
        patience: int = 10,
        refit: bool = True,
        cold: Literal["baseline", "mean", "midpoint"] = "baseline",
        random_state: int | None = None,
        device: str | None = None,
        dense_batches: bool = False,
        tf32: bool = False,
    ) -> None:
        self.variant = variant
        self.ensemble = ensemble
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
        self.dense_batches = dense_batches
        self.tf32 = tf32

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
        return hasattr(self, "members_")

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
        for name in ("ensemble", "hidden", "epochs", "batch_size", "patience"):
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
        if not (_is_number(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        l2_values = self.l2 if isinstance(self.l2, list | tuple) else [self.l2]
        if not l2_values or not all(_is_number(v) and v >= 0 for v in l2_values):
            raise ValueError(f"l2 must be a number >= 0 or a list of them, got {self.l2!r}")
        if len(l2_values) > 1 and not self.validation:
            raise ValueError("l2 lists several values to choose from on validation: it needs "
                             "validation > 0")
        if self.weight_decay and self.optimizer != "adam":
            raise ValueError(f"weight_decay is Adam's coupled L2 term (optimizer 'adam'); with "
                             f"optimizer {self.optimizer!r} use l2")
        for name in ("refit", "dense_batches", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.dense_batches and self.optimizer == "lazy_adam":
            raise ValueError("dense_batches gives dense gradients: use optimizer 'adam' or "
                             "'rprop', not 'lazy_adam'")
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
        checkpoint_dir: str | PathLike[str] | None = None,
        resume: bool = False,
        checkpoint_context: dict[str, Any] | None = None,
        on_batch_end: Callable[[int, int], None] | None = None,
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
        checkpoint_dir
            Folder to save a checkpoint in after every epoch (atomically: model, optimizer,
            early stopping and random states); needs an integer ``random_state``. See
            :mod:`autorec.checkpoint`.
        resume
            Continue from the checkpoint in ``checkpoint_dir`` (refused, with
            :class:`~autorec.exceptions.CheckpointError`, when it is corrupted or was made
            with other data or settings); the fit ends as an uninterrupted one would, bitwise
            on the same device. Without a checkpoint there, train from the beginning.
            Without ``resume``, a folder holding a checkpoint is refused.
        checkpoint_context
            More settings (JSON values) a resumed checkpoint must have been made with, such
            as the command line's split options.
        on_batch_end
            Called after every batch with (batches done, batches in the epoch): progress
            within long epochs.

        Returns
        -------
        AutoRec
            ``self``.
        """
        if self.tf32 and torch.cuda.is_available():
            previous = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                return self._fit(ratings, eval_set=eval_set, on_epoch_end=on_epoch_end,
                                 checkpoint_dir=checkpoint_dir, resume=resume,
                                 checkpoint_context=checkpoint_context,
                                 on_batch_end=on_batch_end)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = previous
        return self._fit(ratings, eval_set=eval_set, on_epoch_end=on_epoch_end,
                         checkpoint_dir=checkpoint_dir, resume=resume,
                         checkpoint_context=checkpoint_context, on_batch_end=on_batch_end)

    def _fit(self, ratings: Ratings | pd.DataFrame, **options: Any) -> AutoRec:
        from .fitting import fit_estimator

        return fit_estimator(self, ratings, **options)

    def _network_specs(self) -> list[NetworkSpec]:
        from .fitting import network_specs

        return network_specs(self)

    def _offsets(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """What the networks' outputs are added to: the baseline, or 0."""
        if self.baseline == "biases":
            return self.biases_.predict(user_idx, item_idx)
        return np.zeros(len(user_idx))

    @property
    def best_epoch_(self) -> int:
        self._check_fitted()
        return self.members_[0].best_epoch

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
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

    def _predict_index(self, user_idx: np.ndarray, item_idx: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for index pairs (``-1`` = unknown) and the mask of cold pairs."""
        cold = (user_idx < 0) | (item_idx < 0)
        predicted = np.full(len(user_idx), self.cold_value(), dtype=np.float64)
        if self.cold == "baseline" and cold.any():
            predicted[cold] = self.biases_.predict(user_idx[cold], item_idx[cold])
        warm = np.flatnonzero(~cold)
        if len(warm):
            predicted[warm] = self._blend(user_idx[warm], item_idx[warm])
        low, high = self.rating_scale_
        np.clip(predicted, low, high, out=predicted)
        return predicted, cold

    def _blend(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Baseline (if any) plus the blended network outputs for known pairs, unclipped."""
        out = self._offsets(user_idx, item_idx) + self.blend_[-1]
        for weight, member in zip(self.blend_[:-1], self.members_, strict=False):
            if weight != 0.0:
                out += weight * member.reconstruct(user_idx, item_idx)
        return out

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
        test = as_ratings(test)
        started = time.perf_counter()
        predicted, cold = self._predict_index(*self._to_index(test.user_ids, test.item_ids))
        return {
            "rmse": rmse(test.rating, predicted),
            "mae": mae(test.rating, predicted),
            "n": len(test),
            "n_cold": int(cold.sum()),
            "seconds": time.perf_counter() - started,
        }

    # -- persistence and recommendation (issue 7): see autorec.persist, autorec.recommend --
    def save(self, path: str | PathLike[str], *, dataset: str | None = None) -> Path:
        """Save the fitted model to the folder ``path`` (safetensors + JSON, no pickle;
        atomic). See :func:`autorec.persist.save_model`."""
        from .persist import save_model

        return save_model(self, path, dataset=dataset)

    @classmethod
    def load(cls, path: str | PathLike[str], *, device: str | None = "cpu") -> AutoRec:
        """Load a model folder written by :meth:`save` onto ``device`` (default the CPU).
        See :func:`autorec.persist.load_model`."""
        from .persist import load_model

        return load_model(path, device=device)

    def recommend(self, user_ids: Iterable[Any] | Any, n: int = 10, *,
                  exclude_seen: bool = True, items: Iterable[Any] | None = None
                  ) -> pd.DataFrame:
        """Top-``n`` items for each raw user id: a DataFrame with ``user_id``, ``rank``,
        ``item_id``, ``score`` and ``fallback`` (an unknown user: items ranked by the
        baseline). Items rated in training are left out unless ``exclude_seen=False``.
        See :func:`autorec.recommend.recommend`; :func:`autorec.recommend.top_n` is the
        array API on dense indices."""
        from .recommend import recommend

        return recommend(self, user_ids, n, exclude_seen=exclude_seen, items=items)
    # -- end of persistence and recommendation -----------------------------------------------

    # -- fold-in (issue 7): new users and items without retraining, see autorec.foldin -----
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
        from .foldin import fold_in

        return fold_in(self, "user", ratings, new_id=user_id, n=n, exclude_rated=exclude_rated,
                       add=add, reg=reg)

    def fold_in_item(self, ratings: Any, add: bool = False, *, item_id: Any = None,
                     reg: float | None = None) -> Any:
        """Scores of every known user for a new item, from its ratings by known users.

        ``ratings``: ``{user_id: rating}``, a Series, a DataFrame (``user_id``, ``rating``) or
        ``(user_ids, ratings)``; otherwise as :meth:`fold_in_user`.
        """
        from .foldin import fold_in

        return fold_in(self, "item", ratings, new_id=item_id, n=None, add=add, reg=reg)
    # -- end of fold-in ---------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float | np.number)
            and math.isfinite(float(value)))  # type: ignore[arg-type]


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
