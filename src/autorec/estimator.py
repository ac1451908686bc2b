"""The user-facing AutoRec estimator: scikit-learn's face over a :class:`FittedModel`.

:class:`AutoRec` holds its parameters (checked by :mod:`autorec.params`) and ``fit``
(:func:`autorec.fitting.fit`); what it does once fitted comes from
:class:`autorec.predictor.FittedPredictor`.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from typing import Any, Literal

import pandas as pd
import torch

from . import fitting
from .data.ratings import Ratings
from .fitting import EpochCallback
from .member import NetworkSpec
from .params import BASELINES, COLD_POLICIES, DEFAULTS, VARIANTS, network_specs, validate_params
from .persist import save_model
from .predictor import FittedPredictor

__all__ = ["BASELINES", "COLD_POLICIES", "VARIANTS", "AutoRec", "load_model", "save_model"]


class AutoRec(FittedPredictor):
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
        ``"auto"`` (one of the next two, chosen per network from the share of weight rows a
        batch touches: :func:`autorec.optim.choose_optimizer`), ``"adam"``, ``"lazy_adam"``
        (updates only the weight rows a batch touches) or ``"rprop"`` (full batch, as in the
        paper).
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
        on all training ratings for that many epochs (default: a lower test RMSE for 50-80 %
        more time, BENCHMARKS.md). ``False`` keeps the networks trained on the part outside
        validation.
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
        or ``rprop``).
    tf32
        Let CUDA matrix products use TF32 (10-bit mantissa inputs, float32 accumulation)
        while fitting; no effect on the CPU.
    ranking
        The ranking model fitted beside the rating networks, which orders ``recommend``'s
        lists (and fold-in's and the server's) and never changes a predicted rating:
        ``"auto"`` (default) EASE on the rating-weighted rows blended with the networks'
        predicted ratings (EASE over the 20,000 most-rated items past that many), ``"ease"`` or
        ``"vae"`` (Mult-DAE) alone, ``"blend"`` all three, ``"none"`` (lists by predicted
        rating). Its choices (EASE's input weighting and lambda, the blend weights) are made
        on the validation part by NDCG@10 (:mod:`autorec.ranking`).
    rating_scale
        ``(low, high)``: the scale the ratings are on, where the training ratings may not
        reach its ends (Jester's -10..10). Predictions are clipped to it, fold-in takes
        ratings within it, ``cold="midpoint"`` and the ranking metrics' relevance threshold
        are read from it. ``None`` (default): the smallest and largest training rating.

    Attributes
    ----------
    users_, items_ : IdMap
        Raw ids of the users and items seen in training.
    global_mean_ : float
        Mean training rating.
    rating_scale_ : tuple of float
        ``rating_scale`` when given, else the smallest and largest training rating;
        predictions are clipped to it.
    biases_ : Biases
        Global mean and user and item biases over the indices of ``users_`` and ``items_``.
    history_ : list of dict
        Per network and epoch: ``member`` (1-based), ``epoch``, ``train_loss`` (MSE on observed
        training ratings, in the units the network learns: with ``baseline="biases"`` the
        ratings less their biases over their standard deviation), ``seconds``,
        ``validation_rmse`` (that network's alone) when a validation part was held out, and
        ``eval_rmse`` / ``eval_mae`` when an evaluation set was given; with a list of ``l2``
        values, the kept value's epochs.
    epoch_seconds_ : float
        Seconds in the fit's training epochs: every network, every ``l2`` value tried and the
        refit (``0`` for a loaded model).
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
    ranking_ : FittedRanking or None
        The ranking model (``None`` with ``ranking="none"`` or a model folder saved without
        one).

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
        optimizer: Literal["auto", "adam", "lazy_adam", "rprop"] = "auto",
        baseline: Literal["biases", "none"] = "biases",
        validation: float = 0.05,
        patience: int = 10,
        refit: bool = True,
        cold: Literal["baseline", "mean", "midpoint"] = "baseline",
        random_state: int | None = None,
        device: str | None = None,
        dense_batches: bool = False,
        tf32: bool = False,
        ranking: Literal["auto", "ease", "vae", "blend", "none"] = "auto",
        rating_scale: tuple[float, float] | None = None,
    ) -> None:
        arguments = locals()
        for name in DEFAULTS:  # the signature's parameters, in order (tests/test_architecture)
            setattr(self, name, arguments[name])

    # -- scikit-learn parameter protocol (DEFAULTS: the signature's names, in order) ----------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {name: getattr(self, name) for name in DEFAULTS}

    def set_params(self, **params: Any) -> AutoRec:
        """Set constructor parameters; unknown names raise ``ValueError``."""
        for name, value in params.items():
            if name not in DEFAULTS:
                raise ValueError(f"unknown parameter {name!r}; valid: {', '.join(DEFAULTS)}")
            setattr(self, name, value)
        return self

    # -- scikit-learn tooling (issue 5): tags and the HTML repr, without importing sklearn ----
    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn's tooling (``sklearn.utils.get_tags``, the HTML repr): the
        ratings come as one table of ids (no ``X, y``), a fit is needed before predicting."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            input_tags=InputTags(two_d_array=False, string=True),
            requires_fit=True,
            non_deterministic=self.random_state is None,
        )

    def __sklearn_is_fitted__(self) -> bool:
        return self.__dict__.get("fitted_") is not None

    def _repr_html_(self) -> str | None:
        """The HTML repr of notebooks: scikit-learn's when it is installed, else none."""
        try:
            from sklearn.utils import estimator_html_repr
        except ImportError:
            return None
        return estimator_html_repr(self)

    def __repr__(self) -> str:
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if _differs(DEFAULTS[k], v)]
        return f"AutoRec({', '.join(changed)})"

    def _validate_params(self) -> None:
        validate_params(self.get_params())

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
        self.fitted_ = fitting.fit(
            self.get_params(), ratings, eval_set=eval_set, on_epoch_end=on_epoch_end,
            checkpoint_dir=checkpoint_dir, resume=resume,
            checkpoint_context=checkpoint_context, on_batch_end=on_batch_end)
        return self

    def _network_specs(self) -> list[NetworkSpec]:
        return network_specs(self.get_params())


def load_model(path: str | PathLike[str], *, device: str | torch.device | None = "cpu"
               ) -> AutoRec:
    """Load a model folder as an :class:`AutoRec` (:func:`autorec.persist.load_model` reads
    it; see there for the checks)."""
    return AutoRec.load(path, device=device)


def _differs(default: Any, value: Any) -> bool:
    """Whether a parameter differs from its default, for ``repr`` (which never raises: an
    array compares element by element, and is shown)."""
    try:
        return bool(default != value)
    except (TypeError, ValueError):
        return True
