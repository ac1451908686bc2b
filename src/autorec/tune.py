"""Hyperparameter search with Optuna, on validation only.

Each trial fits a model (:func:`autorec.fitting.fit`) that holds out its own validation part
and reports its validation RMSE after every epoch (Optuna prunes trials behind the median);
the trial's value is the RMSE of the kept weights. The study lives in SQLite, so an
interrupted search continues where it stopped; a trial left running by a killed process is
marked failed once its heartbeat is :data:`STALE_SECONDS` old. A study file is checked before
anything is written (:func:`check_study`). Optuna is an optional extra (``autorec[tune]``).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import closing, contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from .config import settings_toml
from .data.ratings import Ratings, sha256_of
from .exceptions import AutorecError, ResourceError, TrainingError, first_line
from .params import DEFAULTS

__all__ = ["SEARCH_SPACE", "best_config_toml", "check_study", "require_optuna", "run_study",
           "search_space", "suggest"]

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

#: The study's user attribute that records the fixed settings of an autorec search.
_FIXED_ATTR = "autorec_fixed"
#: The study's user attribute recording its data, seed and settings not searched.
_CONTEXT_ATTR = "autorec_context"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: A running trial's heartbeat period, and the age at which a trial is taken as left running
#: by a dead process (Optuna's ``RDBStorage`` heartbeat and grace period).
HEARTBEAT_SECONDS, STALE_SECONDS = 10, 60
#: The trial states that count as finished (a failed trial does not: Ctrl-C, a crash).
FINISHED = ("COMPLETE", "PRUNED")


def require_optuna() -> Any:
    """Import Optuna, or raise a one-line error that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise AutorecError("tuning needs Optuna, an optional extra: "
                           "pip install 'autorec[tune]'") from None
    return optuna


def search_space(fixed: Collection[str] = ()) -> dict[str, tuple[str, Any]]:
    """:data:`SEARCH_SPACE` without the parameters in ``fixed`` (set by the user)."""
    return {name: entry for name, entry in SEARCH_SPACE.items() if name not in fixed}


def suggest(trial: Any, space: Mapping[str, tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Parameters for one trial, drawn from ``space`` (default :data:`SEARCH_SPACE`)."""
    return {name: (trial.suggest_categorical(name, domain) if kind == "categorical"
                   else trial.suggest_int(name, *domain, log=True) if kind == "int_log"
                   else trial.suggest_float(name, *domain, log=kind == "float_log"))
            for name, (kind, domain) in (SEARCH_SPACE if space is None else space).items()}


def _distributions(space: Mapping[str, tuple[str, Any]]) -> dict[str, Any]:
    """The Optuna distributions :func:`suggest` draws ``space`` from."""
    from optuna import distributions as dist

    return {name: (dist.CategoricalDistribution(domain) if kind == "categorical"
                   else dist.IntDistribution(*domain, log=True) if kind == "int_log"
                   else dist.FloatDistribution(*domain, log=kind == "float_log"))
            for name, (kind, domain) in space.items()}


def _check_study_file(path: Path) -> None:
    """``path`` can hold an Optuna study: a new file in an existing folder, an empty file, or a
    sound SQLite database that is empty or holds Optuna's tables. Read only; nothing written."""
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            what = "is not a folder" if parent.exists() else "does not exist"
            raise AutorecError(f"{path}: cannot create the study file: the folder {parent} "
                               f"{what}")
        return
    if path.is_dir():
        raise AutorecError(f"{path} is a folder, not a study file (give an SQLite file, "
                           "e.g. autorec-study.db)")
    if not path.is_file():
        raise AutorecError(f"{path} is not a regular file; a study lives in an SQLite file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise AutorecError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        return  # an empty file: SQLite makes it a new database
    if head != _SQLITE_MAGIC:
        raise AutorecError(f"{path} is not an SQLite database, so not a study file; not "
                           "writing to it")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            status = db.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise AutorecError(f"{path}: damaged SQLite database ({exc}); not a usable study "
                           "file") from None
    if not status or status[0] != "ok":
        raise AutorecError(f"{path}: damaged SQLite database ({status[0] if status else '?'}"
                           "); not a usable study file")
    if tables and not {"studies", "trials"} <= tables:
        raise AutorecError(f"{path} is an SQLite database without Optuna's tables, not a "
                           "study file; not writing to it")


def _storage_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@contextmanager
def _optuna_level_kept() -> Iterator[None]:
    """Put Optuna's log level back after a study (which runs at ERROR): the user's own."""
    optuna = require_optuna()
    verbosity = optuna.logging.get_verbosity()
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@_optuna_level_kept()
def check_study(storage: str | PathLike[str], study_name: str = "autorec", *,
                fixed: Mapping[str, Any] | None = None) -> int:
    """Check, before any work, that the study ``study_name`` in ``storage`` can be run or
    continued; returns the finished (complete or pruned) trials it already holds (0 for a
    new study). Nothing is written.

    Parameters
    ----------
    storage
        The SQLite file of the study.
    study_name
        Its name within the file.
    fixed
        The searched parameters the user fixed, with their values: the search runs over
        :data:`SEARCH_SPACE` without them.

    Raises
    ------
    AutorecError
        ``storage`` is a folder, is in a missing folder, is not an SQLite file, is damaged, or
        is an SQLite file of something else; the study maximises or has several objectives;
        its trials were drawn over another search space or with other fixed settings.
    """
    optuna = require_optuna()
    path = Path(storage)
    _check_study_file(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    fixed = dict(fixed or {})
    where = f"study {study_name!r} in {path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=_storage_url(path))
        trials = study.get_trials(deepcopy=False)
        directions = study.directions
        attrs = study.user_attrs
    except KeyError:  # no such study in the file: a new one
        return 0
    except Exception as exc:  # sqlalchemy and Optuna storage errors: a damaged file
        raise AutorecError(f"{path}: cannot be read as an Optuna study file "
                           f"({first_line(exc)})") from None
    if len(directions) != 1 or directions[0] != optuna.study.StudyDirection.MINIMIZE:
        what = ("has several objectives" if len(directions) != 1
                else f"{directions[0].name.lower()}s its value")
        raise AutorecError(f"{where} {what}; autorec minimises the validation RMSE: give "
                           "another --study-name or --study file")
    recorded = attrs.get(_FIXED_ATTR)
    if recorded is not None and recorded != json.loads(json.dumps(fixed)):
        raise AutorecError(f"{where} was run with fixed settings {_shown(recorded)}, not "
                           f"{_shown(fixed)}: give another --study-name or --study file")
    expected = _distributions(search_space(fixed))
    for trial in trials:
        for name, distribution in trial.distributions.items():
            if name not in expected:
                raise AutorecError(f"{where} searched {name!r}, which this search "
                                   f"{'fixes' if name in fixed else 'does not'}: give another "
                                   "--study-name or --study file")
            if distribution != expected[name]:
                raise AutorecError(f"{where} drew {name!r} from {distribution}, this search "
                                   f"from {expected[name]}: give another --study-name or "
                                   "--study file")
        if trial.state.name in FINISHED and set(trial.distributions) != set(expected):
            missing = sorted(set(expected) - set(trial.distributions))
            raise AutorecError(f"{where} did not search {', '.join(map(repr, missing))}, which "
                               "this search does: give another --study-name or --study file")
    return sum(1 for trial in trials if trial.state.name in FINISHED)


@_optuna_level_kept()
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
    fixed: Collection[str] = (),
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
        The SQLite file of the study (checked first: :func:`check_study`).
    study_name
        Its name within the file.
    timeout
        Stop starting trials after this many seconds.
    random_state
        Seed of the sampler and of every model.
    on_trial_end
        Called with each finished trial.
    fixed
        Searched parameters not to search: they keep their value in ``base_params`` (the
        user set them).

    Returns
    -------
    optuna.Study
    """
    optuna = require_optuna()
    from .fitting import fit

    if not base_params.get("validation", DEFAULTS["validation"]):
        raise AutorecError("tuning chooses on validation: validation must be above 0")
    unknown = sorted(set(fixed) - set(SEARCH_SPACE))
    if unknown:
        raise AutorecError(f"fixed: {', '.join(unknown)} are not searched parameters")
    missing = sorted(name for name in fixed if name not in base_params)
    if missing:
        raise AutorecError(f"fixed: {', '.join(missing)} have no value in base_params")
    space = search_space(fixed)
    if not space:
        raise AutorecError("every searched parameter is fixed: nothing left to tune")
    fixed_values = {name: base_params[name] for name in sorted(fixed)}
    done = check_study(storage, study_name, fixed=fixed_values)
    # ERROR: Optuna's warning on a failed trial carries its traceback (Ctrl-C's included);
    # the command line reports an error in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(_storage_url(Path(storage)),
                                             heartbeat_interval=HEARTBEAT_SECONDS,
                                             grace_period=STALE_SECONDS)
        study = optuna.create_study(
            study_name=study_name, storage=rdb, load_if_exists=True, direction="minimize",
            # a resumed search draws on from where it stopped, not the same points again
            sampler=optuna.samplers.TPESampler(seed=random_state + done),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5))
        if _FIXED_ATTR not in study.user_attrs:
            study.set_user_attr(_FIXED_ATTR, json.loads(json.dumps(fixed_values)))
        recorded = study.user_attrs.get(_CONTEXT_ATTR)
    except Exception as exc:  # sqlalchemy and Optuna storage errors
        raise AutorecError(f"{storage}: cannot open the study ({first_line(exc)})") from None
    # the data and the settings not searched: a study's trials compare only among themselves
    data = {"ratings": len(train),
            "sha256": sha256_of(train.user_ids, train.item_ids, train.rating)}
    context = {"data": data, "seed": int(random_state), "settings": _trial_settings(base_params)}
    there = (None if recorded is None
             else {**recorded, "settings": _trial_settings(recorded.get("settings") or {})})
    if there is None:  # a new study (or one from before this record): kept from now on
        study.set_user_attr(_CONTEXT_ATTR, context)
    elif there != context:
        raise AutorecError(f"study {study_name!r} in {storage} was run "
                           f"{_difference(there, context)}: its trials would be compared "
                           "with these; give another --study-name or --study file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # left running by a killed search
    remaining = max(n_trials - done, 0)
    log.info("study %r: %d trials finished, %d to run", study_name, done, remaining)

    def objective(trial: Any) -> float:
        # a trial is judged on validation RMSE, before any refit: refitting it (or fitting a
        # ranking model, which never changes a prediction) would be wasted
        params = {**base_params, **suggest(trial, space), "random_state": random_state,
                  "refit": False, "ranking": "none"}

        candidate = {"index": 0, "epoch": 0}
        epochs = int(params.get("epochs", DEFAULTS["epochs"]))  # base_params: what was set

        def report(entry: dict[str, Any]) -> None:
            value = entry.get("validation_rmse")
            if value is None or entry.get("member", 1) != 1:
                return
            # a list of l2 values trains the first network once per value, its epochs
            # counted from 1 again: each value gets steps of its own (so that trials compare
            # the same value's epochs; a step reported twice was dropped with a warning)
            if entry["epoch"] <= candidate["epoch"]:
                candidate["index"] += 1
            candidate["epoch"] = entry["epoch"]
            trial.report(value, candidate["index"] * epochs + entry["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            model = fit(params, train, on_epoch_end=report)
        except (TrainingError, ResourceError) as exc:  # these settings diverged, or did not
            # fit in memory: a bad trial, not a bad search (unless no trial can fit: the
            # size of the network is the user's, not sampled)
            if isinstance(exc, ResourceError) and "hidden" not in space:
                raise
            log.warning("trial %d %s, pruned: %s", trial.number, "did not fit in memory"
                        if isinstance(exc, ResourceError) else "diverged", first_line(exc))
            raise optuna.TrialPruned() from None
        value = float(model.validation_rmse)
        if not math.isfinite(value):
            raise optuna.TrialPruned()
        trial.set_user_attr("best_epoch", model.best_epoch)
        return value

    callbacks = [lambda _study, trial: on_trial_end(trial)] if on_trial_end else None
    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=callbacks,
                       catch=())
    return study


def _trial_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a trial runs with that are not searched, as JSON values: ``params`` over
    the estimator's defaults (a default given or left out is the same setting), without those
    every trial sets itself (``refit``, ``ranking``) and those that do not change a fit."""
    full = json.loads(json.dumps({**DEFAULTS, **params}, default=str))
    return {name: value for name, value in sorted(full.items())
            if name not in SEARCH_SPACE and name not in _NOT_COMPARED}


#: Settings a study's trials do not depend on, or set themselves.
_NOT_COMPARED = ("device", "random_state", "refit", "ranking")


def _difference(there: dict[str, Any], here: dict[str, Any]) -> str:
    """How a study's recorded context differs from this search's, in a few words."""
    if there.get("seed") != here["seed"]:  # first: the seed draws the split (other ratings)
        return f"with --seed {there.get('seed')}, not {here['seed']}"
    if there.get("data") != here["data"]:
        counts = (there.get("data") or {}).get("ratings"), here["data"]["ratings"]
        return (f"on other training ratings ({counts[0]} there, {counts[1]} here)"
                if counts[0] != counts[1] else "on other training ratings (same count)")
    old, new = there.get("settings") or {}, here["settings"]
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            return f"with {name} {old.get(name)!r} there, {new.get(name)!r} here"
    return "in another way"


def best_config_toml(base_params: dict[str, Any], study: Any) -> str:
    """The best trial's full configuration as a TOML table that ``--config`` accepts."""
    params = {**base_params, **study.best_trial.params}
    params.pop("random_state", None)
    params.pop("device", None)
    ended = sum(trial.state.name in FINISHED for trial in study.trials)
    return settings_toml(params, f"autorec tune: best of {ended} trials, "
                                 f"validation RMSE {study.best_value:.4f} (trial "
                                 f"{study.best_trial.number})")


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) if values else "(none)"


