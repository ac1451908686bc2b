"""Options shared by ``train``, ``evaluate`` and ``tune``: data sources, model settings,
presets and configuration files, resolved in one place (:func:`resolve`).

Every option that a configuration file may set is declared with ``default=None`` so that a
flag can be told apart from an unset option. A configuration file is checked like the command
line: every key an option of the command being run, every value of the option's type and
passing the flag's own check (``nproc = 0`` is refused as ``--nproc 0`` is).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import PRESETS, read_config, resolve_params
from ..data import DATASETS
from ..data.readers import DUPLICATE_POLICIES
from ..estimator import BASELINES, COLD_POLICIES, VARIANTS, AutoRec
from ..model import ACTIVATIONS
from ..params import DEFAULTS as PARAM_DEFAULTS
from ..params import RANKINGS, validate_params
from ..split import CANONICAL_SPLITS
from ..train import OPTIMIZERS, resolve_device
from ._common import (
    at_least_two,
    data_folder,
    device_name,
    fraction,
    l2_values,
    nonnegative_float,
    positive_float,
    positive_int,
    seconds,
    seed,
    separator,
    unit_interval,
)
from ._sources import (
    DEFAULT_DATASET,
    canonical,
    check_canonical,
    check_sources,
    load_progress,
    load_ratings,
    read_file,
)

__all__ = ["CANONICAL_SPLITS", "COMMAND_DEFAULTS", "DEFAULTS", "DEFAULT_DATASET", "MODEL_OPTIONS",
           "add_data_options", "add_model_options", "at_least_two", "build_model", "canonical",
           "check_canonical", "check_sources", "load_progress", "load_ratings", "read_file",
           "recorded_settings", "resolve"]

#: Defaults of the options that are not model settings.
DEFAULTS: dict[str, Any] = {
    "columns": "user_id,item_id,rating",
    "duplicates": "error",
    "no_header": False,
    "seed": 0,
    "test_ratio": 0.1,
    "folds": 5,
    "quiet": False,
}

#: Defaults of a command's own options that a configuration file may set (declared with
#: ``default=None`` so that a flag can be told apart from an unset option).
COMMAND_DEFAULTS: dict[str, dict[str, Any]] = {
    "train": {"k": 10},
    "evaluate": {"protocol": "holdout", "repeats": 1, "k": 10},
    "tune": {"trials": 30, "study": Path("autorec-study.db"), "study_name": "autorec",
             "out": Path("best.toml"), "top": 5},
}

#: Model settings: the estimator's parameters but the seed (``--seed`` also seeds the split),
#: each an option of the same name.
MODEL_OPTIONS = tuple(name for name in PARAM_DEFAULTS if name != "random_state")


def add_data_options(parser: argparse.ArgumentParser, *, files: bool = True) -> None:
    """``--dataset``/``--data``[/``--train --test``] and how to read them."""
    source = parser.add_argument_group(
        "data (one of --dataset, --data" + (", --train/--test)" if files else ")"))
    source.add_argument("--dataset", choices=tuple(DATASETS), metavar="NAME",
                        help=f"builtin data set: {', '.join(DATASETS)} (default "
                        f"{DEFAULT_DATASET} when no file is given)")
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="one ratings file (CSV/TSV/'::'/Parquet, optionally .gz/.bz2/.xz/"
                        ".zip) to split")
    if files:
        source.add_argument("--train", type=Path, metavar="FILE", help="training ratings file")
        source.add_argument("--test", type=Path, metavar="FILE", help="test ratings file")
    source.add_argument("--data-dir", type=data_folder, metavar="DIR",
                        help="folder holding builtin data sets as DIR/<name>/... "
                        "(default: $AUTOREC_DATA_DIR)")
    source.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                        help="download a builtin data set (default: only when no local copy)")
    source.add_argument("--sep", type=separator, metavar="SEP",
                        help="field separator of the files: one character, '::' or 'tab' "
                        "(default: from the extension)")
    source.add_argument("--no-header", action="store_const", const=True, default=None,
                        help="the ratings files have no header line: user, item and "
                        "rating are their first three fields (any later ones ignored)")
    source.add_argument("--columns", metavar="U,I,R",
                        help=f"user, item and rating column names (default: "
                        f"{DEFAULTS['columns']})")
    source.add_argument("--duplicates", choices=DUPLICATE_POLICIES,
                        help="repeated (user, item) ratings: error (default), keep the last "
                        "in file order, or mean")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--preset``, ``--config`` and one flag per estimator parameter."""
    defaults = AutoRec().get_params()
    group = parser.add_argument_group(
        "model and training (defaults: the estimator's; see --preset and --config)")
    group.add_argument("--preset", choices=tuple(PRESETS),
                       help="named settings: default, reference (the d2l.ai chapter), paper "
                       "(I-AutoRec as published), best (best measured on validation)")
    group.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML or JSON file of settings (any option, by its long name with "
                       "_ for -); flags override it, it overrides --preset")

    def option(flag: str, help_text: str, **kwargs: Any) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        default = defaults.get(dest)
        shown = "" if default is None else f" (default: {default})"
        group.add_argument(flag, help=help_text + shown, **kwargs)

    option("--variant", "item: I-AutoRec; user: U-AutoRec; both: the two blended",
           choices=VARIANTS)
    option("--ensemble", "networks per variant, blended", type=positive_int, metavar="N")
    option("--hidden", "hidden units", type=positive_int, metavar="N")
    option("--activation", "encoder activation", choices=tuple(ACTIVATIONS))
    option("--dropout", "dropout on the hidden layer", type=unit_interval, metavar="F")
    option("--input-dropout", "share of input ratings hidden from the encoder (denoising)",
           type=unit_interval, metavar="F")
    option("--lr", "learning rate", type=positive_float, metavar="F")
    option("--weight-decay", "Adam's coupled L2 term (--optimizer adam)",
           type=nonnegative_float, metavar="F")
    option("--l2", "the paper's L2 penalty on the weights; several values separated by commas "
           "are each tried and chosen on validation", type=l2_values, metavar="F[,F...]")
    option("--epochs", "most epochs (fewer with early stopping)", type=positive_int,
           metavar="N")
    option("--batch-size", "input vectors per step", type=positive_int, metavar="N")
    option("--optimizer", "auto (lazy_adam or adam, from the share of rows a batch touches), "
           "adam, lazy_adam (updates only the rows a batch touches) or rprop (full batch)",
           choices=OPTIMIZERS)
    option("--baseline", "biases: learn deviations from mean + user + item biases; none: the "
           "ratings themselves", choices=BASELINES)
    option("--validation", "share of the training ratings held out to pick the epoch; 0 trains "
           "exactly --epochs", type=unit_interval, metavar="F")
    option("--patience", "epochs without a better validation RMSE before stopping",
           type=positive_int, metavar="N")
    option("--refit", "after choosing the epochs on validation, retrain on all training "
           "ratings; --no-refit keeps the networks trained without the validation part",
           action=argparse.BooleanOptionalAction)
    option("--cold", "prediction for pairs with an unseen user or item", choices=COLD_POLICIES)
    option("--rating-scale", "the ratings' scale if the training ratings may not reach its ends "
           "(Jester: -10,10; default: their range)", type=rating_scale_pair, metavar="LOW,HIGH")
    group.add_argument("--device", metavar="DEV", type=device_name,
                       help="auto (CUDA when available), cpu, cuda, cuda:N (default: auto)")
    option("--dense-batches", "densify each batch and use dense products (a GPU path; with "
           "--optimizer adam or rprop)", action=argparse.BooleanOptionalAction)
    option("--tf32", "let CUDA matrix products use TF32 while training",
           action=argparse.BooleanOptionalAction)
    option("--ranking", "the ranking model that orders recommend's lists (never predict): "
           "auto (EASE blended with the rating network, chosen on validation), ease, vae "
           "(Mult-DAE), blend (all three) or none (rank by predicted rating)",
           choices=RANKINGS)


#: The options that name the data: one source, from the command line or else from the file.
_SOURCES = ("data", "train", "test", "dataset")


def resolve(args: argparse.Namespace, chosen: set[str] | None = None) -> dict[str, Any]:
    """Fill unset options from ``--config``, ``--preset`` and the defaults; returns the
    estimator parameters set anywhere.

    ``chosen`` receives the names of the estimator parameters the user set (a flag or the
    file; not a preset's). The file's keys are checked against the options of the command's
    parser (``args.parser_error``'s).
    """
    parser_error = args.parser_error
    config: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        config = _typed_config(args, parser_error)
    from_config = set()
    if config.get("preset") is not None and args.preset is None:
        args.preset = config["preset"]
        from_config.add("preset")
    # the data source is one choice: a source flag replaces the file's (data = "x.csv" in
    # the file and --dataset ml-1m on the command line is ml-1m, not "give either")
    flagged_source = any(getattr(args, dest, None) is not None for dest in _SOURCES)
    for dest, value in config.items():
        if dest in MODEL_OPTIONS or dest == "preset":
            continue
        if dest in _SOURCES and flagged_source:
            continue
        if getattr(args, dest) is None:
            setattr(args, dest, value)
            from_config.add(dest)
    # the file's model settings not given as flags too (they reach the parameters, not args)
    from_config.update(dest for dest in config
                       if dest in MODEL_OPTIONS and getattr(args, dest, None) is None)

    def named(dest: str, flag: str, value: object = None) -> str:
        if dest in from_config:
            return f"{dest} in {args.config}" if value is None else (
                f"{dest} = {value} in {args.config}")
        return flag if value is None else f"{flag} {value}"

    if getattr(args, "no_header", None) and getattr(args, "columns", None) is not None:
        parser_error(f"{named('columns', '--columns')} names header columns; with "
                     f"{named('no_header', '--no-header')} the fields are taken in order")
    args.named = named  # for the commands' own checks: a setting named where it was set
    _check_split_options(args, named)
    check_sources(args, named)
    command_defaults = COMMAND_DEFAULTS.get(getattr(args, "command", None) or "", {})
    for dest, value in {**DEFAULTS, **command_defaults}.items():
        if hasattr(args, dest) and getattr(args, dest) is None:
            setattr(args, dest, value)
    explicit = {dest: getattr(args, dest) for dest in MODEL_OPTIONS
                if getattr(args, dest, None) is not None}
    from_file = {dest: value for dest, value in config.items() if dest in MODEL_OPTIONS}
    if chosen is not None:
        chosen.update(explicit, from_file)
    params = resolve_params(args.preset, from_file, explicit,
                            source=str(args.config) if args.config else "configuration")
    if params.get("device") == "auto":
        params["device"] = None
    if not params.get("validation", PARAM_DEFAULTS["validation"]):  # they were ignored
        none = (named("validation", "--validation", 0)
                if "validation" in explicit or "validation" in from_file
                else f"{named('preset', '--preset', args.preset)} (validation 0)")
        for dest, flag in (("patience", "--patience"), ("refit", "--refit/--no-refit")):
            if dest in explicit or dest in from_file:
                parser_error(f"{named(dest, flag)} acts on the validation part, and {none} "
                             "holds none")
    if isinstance(params.get("l2"), str):
        params["l2"] = l2_values(params["l2"])
    columns = [name.strip() for name in str(args.columns).split(",")]  # as header names are
    if len(columns) != 3 or not all(columns) or len(set(columns)) != 3:
        parser_error(f"{named('columns', '--columns')} names the user, item and rating "
                     f"columns, three different ones separated by commas, got "
                     f"{args.columns!r}")
    args.columns = tuple(columns)
    return params


def _check_split_options(args: argparse.Namespace, named: Callable[..., str]) -> None:
    """Refuse ``--test-ratio`` or ``--folds`` (a flag, or a key of ``--config``) where the
    chosen split or protocol does not use it (it was ignored without a word); run before the
    defaults fill in."""
    option = "protocol" if hasattr(args, "protocol") else "split"
    ratio_with, what = (("holdout", "holdout protocol's") if option == "protocol"
                        else ("random", "random split's"))
    chosen = getattr(args, option) or ratio_with
    if getattr(args, "train", None) is not None:
        chosen = "files"
    if args.test_ratio is not None and chosen != ratio_with:
        used = "--train/--test" if chosen == "files" else named(option, f"--{option}", chosen)
        args.parser_error(f"{named('test_ratio', '--test-ratio')} sets the {what} test part; "
                          f"{used} does not use it")
    if getattr(args, "folds", None) is not None and chosen != "kfold":
        args.parser_error(f"{named('folds', '--folds')} is the number of folds of --{option} "
                          "kfold")


def recorded_settings(args: argparse.Namespace, template: AutoRec, split: str
                      ) -> dict[str, Any]:
    """The ``config`` and ``model_params`` of a run's JSON record: the options, less
    ``--test-ratio`` and ``--folds`` where ``split`` did not use them (their defaults would
    mislead), and the estimator's parameters."""
    options = {key: (str(value) if isinstance(value, Path) else value)
               for key, value in vars(args).items()
               if key not in ("handler", "parser_error", "named", "command", "argv")
               and (key != "test_ratio" or split in ("random", "holdout"))
               and (key != "folds" or split == "kfold")}
    if "split" in options:  # the default's name, not null ("files" for --train/--test)
        options["split"] = split
    resolved = template.get_params()
    return {"config": {**options, **{k: v for k, v in resolved.items() if k != "random_state"}},
            "model_params": resolved}


#: The JSON/TOML type a configuration value must have, by the option's argparse ``type``
#: (options without one, and those not listed, take a string).
def rating_scale_pair(text: str) -> list[float]:
    """``LOW,HIGH``: two numbers, low below high."""
    try:
        low, high = (float(part) for part in text.split(","))
        validate_params({"rating_scale": [low, high]})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, two finite numbers with LOW < "
                                         f"HIGH, got {text!r}") from None
    return [low, high]


_INTEGER_TYPES = (positive_int, at_least_two, seed)
_NUMBER_TYPES = (positive_float, nonnegative_float, fraction, unit_interval, seconds)


def _typed_config(args: argparse.Namespace, parser_error: Any) -> dict[str, Any]:
    """The ``--config`` file's settings, by option dest, each checked against the command's
    own option: known to this command, of the right type, and passing the flag's check."""
    path = args.config
    command = getattr(args, "command", None) or "this command"
    actions = {action.dest: action for action in parser_error.__self__._actions}
    settable = {dest: action for dest, action in actions.items()
                if dest not in (argparse.SUPPRESS, "help", "config")}
    settings: dict[str, Any] = {}
    for key, value in read_config(path).items():
        dest = key.replace("-", "_")
        where = f"{path}: setting {key!r}"
        if dest in settings:
            parser_error(f"{where} is set twice (with _ and with -)")
        if dest == "preset":
            if not isinstance(value, str) or value not in PRESETS:
                parser_error(f"{path}: unknown preset {value!r}; choose one of "
                             f"{', '.join(PRESETS)}")
            settings[dest] = value
            continue
        if dest == "config":
            parser_error(f"{where}: a configuration file cannot name another one")
        action = settable.get(dest)
        if action is None:
            hint = ("; --help is a flag, not a setting" if dest in actions
                    else _elsewhere(dest, command, list(settable)))
            parser_error(f"{path}: unknown setting {key!r} for autorec {command}{hint}")
        settings[dest] = _config_value(where, value, action, parser_error)
    return settings


def _config_value(where: str, value: Any, action: argparse.Action, parser_error: Any) -> Any:
    """``value`` for ``action``'s option, converted and checked as the flag would be."""
    if action.nargs == 0:  # a switch: --quiet, --resume, --refit/--no-refit...
        if not isinstance(value, bool):
            parser_error(f"{where} must be true or false, got {value!r}")
        return value
    kind = getattr(action.type, "__name__", "")
    if action.type is l2_values:  # one penalty, a list of them, or "1,10" as on the command line
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int | float | str) and not isinstance(v, bool)
                                 for v in values):
            parser_error(f"{where} must be a number or a list of numbers, got {value!r}")
        try:
            return l2_values(",".join(v if isinstance(v, str) else repr(v) for v in values))
        except argparse.ArgumentTypeError as exc:
            parser_error(f"{where}: {exc}")
    if action.type is rating_scale_pair and not isinstance(value, str):  # [low, high]
        if not (isinstance(value, list) and all(isinstance(v, int | float)
                                                and not isinstance(v, bool) for v in value)):
            parser_error(f"{where} must be [low, high], two numbers, got {value!r}")
        value = ",".join(map(repr, value))
    if action.type in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            parser_error(f"{where} must be an integer, got {value!r}")
    elif action.type in _NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            parser_error(f"{where} must be a number, got {value!r}")
    elif not isinstance(value, str):
        what = " (a path)" if kind in ("Path", "output_dir", "output_file") else ""
        parser_error(f"{where} must be a string{what}, got {value!r}")
    converted = value
    if action.type is not None:
        try:
            converted = action.type(value if isinstance(value, str) else repr(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            parser_error(f"{where}: {exc}")
    if action.choices is not None and converted not in action.choices:
        parser_error(f"{where} must be one of {', '.join(map(str, action.choices))}, got "
                     f"{value!r}")
    return converted


#: Every command's parser by name, filled by :func:`autorec.cli.main.build_parser` (so that this
#: module, below it, never imports it).
COMMAND_PARSERS: dict[str, argparse.ArgumentParser] = {}


def _elsewhere(dest: str, command: str, valid: list[str]) -> str:
    """For an unknown setting: the other commands that take it, or the closest valid names."""
    users = [name for name, parser in COMMAND_PARSERS.items()
             if name != command and any(a.dest == dest for a in parser._actions)]
    if users:
        return (f" (an option of autorec {' and autorec '.join(users)}; autorec {command} "
                "does not use it)")
    close = difflib.get_close_matches(dest, valid, n=3)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def build_model(params: dict[str, Any], random_state: int) -> AutoRec:
    """The estimator for ``params``, validated before any data is read."""
    model = AutoRec(**{**params, "random_state": random_state})
    model._validate_params()
    resolve_device(model.device)
    return model
