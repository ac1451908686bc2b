"""Hyperparameter search with Optuna, on validation only.

Each trial fits :class:`~autorec.AutoRec` on the training ratings it is given; the estimator
holds out its own validation part, reports the validation RMSE after every epoch (Optuna
prunes trials that fall behind the median) and the trial's value is the RMSE of the kept
weights. The study lives in SQLite, so an interrupted search continues where it stopped.
Optuna is an optional dependency (``pip install 'autorec[tune]'``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any

from .data.ratings import Ratings
from .exceptions import AutorecError

__all__ = ["SEARCH_SPACE", "best_config_toml", "require_optuna", "run_study", "suggest"]

log = logging.getLogger(__name__)

#: The searched parameters and their ranges (``log`` ranges are sampled on a log scale).
SEARCH_SPACE: dict[str, tuple[str, Any]] = {
    "variant": ("categorical", ["item", "user"]),
    "hidden": ("int_log", (64, 1024)),
    "activation": ("categorical", ["sigmoid", "elu", "tanh"]),
    "dropout": ("float", (0.0, 0.5)),
    "input_dropout": ("float", (0.0, 0.6)),
    "l2": ("float_log", (1.0, 1000.0)),
    "lr": ("float_log", (3e-4, 1e-2)),
    "batch_size": ("categorical", [64, 128, 256, 512]),
}


def require_optuna() -> Any:
    """Import Optuna, or raise a one-line error that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise AutorecError("tuning needs Optuna, an optional extra: "
                           "pip install 'autorec[tune]'") from None
    return optuna


def suggest(trial: Any) -> dict[str, Any]:
    """Parameters for one trial, drawn from :data:`SEARCH_SPACE`."""
    params: dict[str, Any] = {}
    for name, (kind, domain) in SEARCH_SPACE.items():
        if kind == "categorical":
            params[name] = trial.suggest_categorical(name, domain)
        elif kind == "int_log":
            params[name] = trial.suggest_int(name, *domain, log=True)
        elif kind == "float_log":
            params[name] = trial.suggest_float(name, *domain, log=True)
        else:
            params[name] = trial.suggest_float(name, *domain)
    return params


def run_study(
    train: Ratings,
    *,
    base_params: dict[str, Any],
    n_trials: int,
    storage: str | PathLike[str],
    study_name: str = "autorec",
    timeout: float | None = None,
    random_state: int = 0,
    on_trial_end: Callable[[Any], None] | None = None,
) -> Any:
    """Run (or continue) a study until it holds ``n_trials`` finished trials.

    Parameters
    ----------
    train
        The ratings to tune on: a training part, never a test set.
    base_params
        Fixed estimator parameters; the searched ones override them. ``validation`` must be
        above 0.
    n_trials
        Finished (complete or pruned) trials the study should hold; trials already in the
        study count, so rerunning an interrupted search finishes it.
    storage
        The SQLite file of the study.
    study_name
        Its name within the file.
    timeout
        Stop starting trials after this many seconds.
    random_state
        Seed of the sampler and of every model.
    on_trial_end
        Called with each finished trial.

    Returns
    -------
    optuna.Study
    """
    optuna = require_optuna()
    from .estimator import AutoRec

    if not base_params.get("validation", AutoRec().validation):
        raise AutorecError("tuning chooses on validation: validation must be above 0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{Path(storage).resolve()}"
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = 0
    try:
        done = len(optuna.load_study(study_name=study_name, storage=url)
                   .get_trials(deepcopy=False, states=finished))
    except KeyError:  # a new study
        pass
    study = optuna.create_study(
        study_name=study_name,
        storage=url,
        load_if_exists=True,
        direction="minimize",
        # a resumed search draws on from where it stopped, not the same points again
        sampler=optuna.samplers.TPESampler(seed=random_state + done),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
    )
    remaining = max(n_trials - done, 0)
    log.info("study %r: %d trials finished, %d to run", study_name, done, remaining)

    def objective(trial: Any) -> float:
        # a trial is judged on validation, before any refit: refitting it would be wasted
        params = {**base_params, **suggest(trial), "random_state": random_state,
                  "refit": False}

        def report(entry: dict[str, Any]) -> None:
            value = entry.get("validation_rmse")
            if value is None or entry.get("member", 1) != 1:
                return
            trial.report(value, entry["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        model = AutoRec(**params).fit(train, on_epoch_end=report)
        value = float(model.validation_rmse_)
        if not math.isfinite(value):
            raise optuna.TrialPruned()
        trial.set_user_attr("best_epoch", model.best_epoch_)
        return value

    callbacks = [lambda _study, trial: on_trial_end(trial)] if on_trial_end else None
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=callbacks,
                       catch=())
    return study


def best_config_toml(base_params: dict[str, Any], study: Any) -> str:
    """The best trial's full configuration as a TOML table that ``--config`` accepts."""
    params = {**base_params, **study.best_trial.params}
    params.pop("random_state", None)
    params.pop("device", None)
    lines = [f"# autorec tune: best of {len(study.trials)} trials, validation RMSE "
             f"{study.best_value:.4f} (trial {study.best_trial.number})"]
    for key in sorted(params):
        lines.append(f"{key} = {_toml_value(params[key])}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
