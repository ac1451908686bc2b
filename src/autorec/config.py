"""Presets and configuration files: everything resolves into :class:`~autorec.AutoRec`'s
parameters, in one place.

Precedence, lowest first: the estimator's defaults, a preset (:data:`PRESETS`), a
configuration file (TOML or JSON, :func:`read_config`), explicit settings (command-line
flags). :func:`resolve_params` applies it.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from ._io import PARSER_ERRORS, DuplicateKeyError, parse_problem, unique_keys
from .exceptions import AutorecError

__all__ = ["PAPER_L2_GRID", "PRESETS", "ConfigError", "read_config", "resolve_params",
           "settings_toml"]

#: The paper's grid for the L2 penalty, chosen on validation by ``--preset paper``.
PAPER_L2_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 100.0, 1000.0)

#: Named parameter sets. ``default`` is the estimator's own defaults (see README: the most
#: robust across the benchmark data sets). ``reference`` is the d2l.ai chapter's recipe,
#: unchanged. ``paper`` is I-AutoRec as published. ``best`` measured best on validation across
#: the benchmark data sets (BENCHMARKS.md).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "reference": {
        "variant": "item", "ensemble": 1, "hidden": 500, "activation": "sigmoid",
        "dropout": 0.05, "input_dropout": 0.0, "lr": 0.002, "weight_decay": 1e-5, "l2": 0.0,
        "epochs": 25, "batch_size": 256, "optimizer": "adam", "baseline": "none",
        "validation": 0.0, "refit": False, "cold": "mean",
    },
    "paper": {
        "variant": "item", "ensemble": 1, "hidden": 500, "activation": "sigmoid",
        "dropout": 0.0, "input_dropout": 0.0, "lr": 0.01, "weight_decay": 0.0,
        "l2": list(PAPER_L2_GRID), "epochs": 500, "batch_size": 4096, "optimizer": "rprop",
        "baseline": "none", "validation": 0.1, "patience": 25, "refit": False,
        "cold": "midpoint",
    },
    "best": {
        "variant": "both", "ensemble": 3, "refit": True,
    },
}


class ConfigError(AutorecError):
    """A configuration file or preset is invalid."""


def read_config(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a flat TOML (``.toml``) or JSON (``.json``) table of settings.

    Raises
    ------
    ConfigError
        The file is missing, not valid TOML/JSON, or not a flat table of settings (a nested
        table or list, a key given twice, a number that is not finite).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a configuration file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark, as data files
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    if suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
        except DuplicateKeyError as exc:
            raise ConfigError(f"{path}: setting {exc.args[0]!r} is given twice") from None
        except PARSER_ERRORS as exc:  # nesting past Python's stack, 4,300+ digits
            raise ConfigError(f"{path}: cannot be read as JSON ({parse_problem(exc)})") from None
    elif suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        except PARSER_ERRORS as exc:
            raise ConfigError(f"{path}: cannot be read as TOML ({parse_problem(exc)})") from None
    else:
        raise ConfigError(f"{path}: a configuration file must end in .toml or .json")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings, got {type(data).__name__}")
    for key, value in data.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: setting {key!r} is a table; settings are flat "
                              "(name = value)")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{path}: setting {key!r} is not finite")
            if isinstance(item, dict | list):
                raise ConfigError(f"{path}: setting {key!r} holds a nested "
                                  f"{'table' if isinstance(item, dict) else 'list'}; "
                                  "settings are flat (name = value or a list of values)")
    return data


def resolve_params(
    preset: str | None = None,
    config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    source: str = "configuration",
) -> dict[str, Any]:
    """The estimator parameters of ``preset``, then ``config``, then ``overrides``.

    Keys of ``config`` and ``overrides`` must be :class:`~autorec.AutoRec` parameters; values
    are checked when the estimator fits.

    Raises
    ------
    ConfigError
        Unknown preset or parameter name (naming ``source`` for ``config``).
    """
    from .params import DEFAULTS as valid

    params: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        params.update(copy.deepcopy(PRESETS[preset]))  # a caller's edit left the preset
    for where, layer in ((source, config), ("settings", overrides)):
        for key, value in (layer or {}).items():
            if key not in valid:
                raise ConfigError(f"{where}: unknown setting {key!r}; valid: "
                                  f"{', '.join(valid)}")
            params[key] = value
    return params


def settings_toml(settings: Mapping[str, Any], comment: str = "") -> str:
    """``settings`` as the flat TOML table that :func:`read_config` reads back, keys sorted,
    under a ``# comment`` line."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"{key} = {_toml_value(settings[key])}" for key in sorted(settings)]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy: Python values
        value = value.tolist()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
