"""Reading ``model.json``: its checksum, and every field checked for type, range and agreement
with the others (one line naming the file and the field)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

from .._io import DuplicateKeyError, unique_keys
from ..exceptions import ModelFileError
from ..params import BASELINES, COLD_POLICIES, PARAM_NAMES, VARIANTS, complete, validate_params
from .names import FORMAT, FORMAT_VERSION, JSON_FILE, READ_VERSIONS, WEIGHTS_FILE, _first_line

__all__ = ["info_digest", "is_model_dir", "read_model_info"]

log = logging.getLogger(__name__)


def is_model_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a ``model.json`` (not whether that loads)."""
    path = Path(path)
    return path.is_dir() and (path / JSON_FILE).is_file()


def read_model_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked contents of ``path/model.json``, without the arrays.

    A version-2 file must match the SHA-256 of its content that it records (``checksum``); a
    version-1 file (written before model.json had a checksum) is read without it. In both,
    every field is type- and range-checked, and the fields must agree with each other.

    Raises
    ------
    ModelFileError
        ``path`` is not a model folder; ``model.json`` is not JSON or not an autorec model's;
        its format version is not one this autorec reads; its checksum does not match (the
        file was edited); a field is missing, of the wrong type or out of range (one line
        naming the file and the field).
    """
    folder = Path(path)
    if not folder.exists():
        raise ModelFileError(f"{folder}: no such model folder")
    if not folder.is_dir():
        hint = " (give the folder that holds it)" if folder.name in (JSON_FILE,
                                                                      WEIGHTS_FILE) else ""
        raise ModelFileError(f"{folder} is a file, not a model folder{hint}")
    json_path = folder / JSON_FILE
    if not json_path.is_file():
        raise ModelFileError(f"{folder} is not an autorec model folder (no {JSON_FILE})")
    try:
        text = json_path.read_bytes().decode("utf-8")
        info = json.loads(text, object_pairs_hook=unique_keys)
    except OSError as exc:
        raise ModelFileError(f"{json_path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{json_path}: not UTF-8 text; not an autorec model") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{json_path}: not valid JSON (line {exc.lineno}: {exc.msg}); "
                             "truncated or not an autorec model") from None
    except DuplicateKeyError as exc:
        raise ModelFileError(f"{json_path}: key {exc.args[0]!r} appears twice in one object; "
                             "not a model.json autorec wrote") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(f"{json_path}: not an autorec model (no \"format\": \"{FORMAT}\")")
    version = info.get("format_version")
    if type(version) is not int or version not in READ_VERSIONS:
        newer = type(version) is int and version > FORMAT_VERSION
        raise ModelFileError(
            f"{json_path}: model format version {version!r} is not supported (this autorec "
            f"reads versions {', '.join(map(str, READ_VERSIONS))})"
            f"{'; upgrade autorec to load it' if newer else ''}")
    if version >= 2:
        recorded = info.get("checksum")
        digest = recorded.get("sha256") if isinstance(recorded, dict) else None
        if not isinstance(digest, str):
            raise ModelFileError(f"{json_path}: field 'checksum' is missing or malformed (a "
                                 f"version-{version} {JSON_FILE} records the SHA-256 of its "
                                 "content)")
        if digest.lower() != info_digest(info):
            raise ModelFileError(f"{json_path}: checksum mismatch (the file was edited or "
                                 "damaged since it was saved); refusing to load it")
    else:
        log.info("%s: format version %d has no checksum of its own; its fields are checked",
                 json_path, version)
    _check_info(info, json_path)
    return info


def info_digest(info: dict[str, Any]) -> str:
    """The SHA-256 recorded as ``checksum`` in a version-2 ``model.json``.

    It is taken over the file's content, not its bytes: every key but ``checksum``, written
    as ``json.dumps(content, sort_keys=True, separators=(",", ":"))`` (ASCII, keys sorted, no
    spaces) and encoded as ASCII. Re-indenting the file keeps it; changing any value does not.
    """
    content = {key: value for key, value in info.items() if key != "checksum"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()




#: The top-level keys of ``model.json`` (``checksum`` from version 2 on).
_INFO_KEYS = ("format", "format_version", "created", "versions", "params", "variant",
              "baseline", "cold", "rating_scale", "global_mean", "bias", "l2",
              "validation_rmse", "n_users", "n_items", "users", "items", "members", "history",
              "dataset", "weights")
_MEMBER_KEYS = ("spec", "n_inputs", "decoder_bias", "inputs_shape", "scale", "best_epoch",
                "history")


class _Fields:
    """Type and range checks of ``model.json``'s fields; each failure is one line naming the
    file and the field (``members[1].scale``)."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self.where}: field {field!r} {problem}")

    def get(self, table: dict[str, Any], key: str, prefix: str = "") -> Any:
        if key not in table:
            self.fail(prefix + key, "is missing")
        return table[key]

    def table(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, got {_shown(value)}")
        return value

    def items(self, value: Any, field: str, length: int | None = None) -> list[Any]:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, got {_shown(value)}")
        if length is not None and len(value) != length:
            self.fail(field, f"must hold {length} values, got {len(value)}")
        return value

    def text(self, value: Any, field: str, choices: tuple[str, ...] | None = None,
             null: bool = False) -> str | None:
        if value is None and null:
            return None
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {_shown(value)}")
        if choices is not None and value not in choices:
            self.fail(field, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def flag(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {_shown(value)}")
        return value

    def integer(self, value: Any, field: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {_shown(value)}")
        if minimum is not None and value < minimum:
            self.fail(field, f"must be an integer >= {minimum}, got {value}")
        return value

    def number(self, value: Any, field: str, minimum: float | None = None,
               positive: bool = False, null: bool = False) -> float | None:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(field, f"must be a number, got {_shown(value)}")
        if not math.isfinite(value):
            self.fail(field, f"must be a finite number, got {value!r}")
        if positive and value <= 0:
            self.fail(field, f"must be a number > 0, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(field, f"must be a number >= {minimum:g}, got {value!r}")
        return float(value)

    def finite_everywhere(self, value: Any, field: str) -> None:
        """No NaN or infinity anywhere (the writer stores them as ``null``)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field, f"holds {value!r}, which is not a JSON number")
        if isinstance(value, dict):
            for key, item in value.items():
                self.finite_everywhere(item, f"{field}.{key}" if field else str(key))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                self.finite_everywhere(item, f"{field}[{k}]")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_info(info: dict[str, Any], where: Path) -> None:
    """Every field of ``model.json`` checked for type and range, and against each other."""
    from ..model import ACTIVATIONS
    from ..train import OPTIMIZERS

    f = _Fields(where)
    f.finite_everywhere(info, "")
    for key in _INFO_KEYS:
        f.get(info, key)
    version = info["format_version"]
    if version >= 3:
        f.get(info, "ranking")
    expected = (set(_INFO_KEYS) | ({"checksum"} if version >= 2 else set())
                | ({"ranking"} if version >= 3 else set()))
    unknown = sorted(set(info) - expected)
    if unknown:
        f.fail(unknown[0], f"is not a field of a version-{info['format_version']} "
               f"{JSON_FILE}")
    f.text(info["created"], "created")
    for key, value in f.table(info["versions"], "versions").items():
        f.text(value, f"versions.{key}")

    params = f.table(info["params"], "params")
    ignored = sorted(set(params) - set(PARAM_NAMES))
    if ignored:
        log.warning("%s: ignoring parameters this autorec does not know: %s", where,
                    ", ".join(ignored))
    template = complete(params)
    try:
        validate_params(template)
    except ValueError as exc:
        f.fail("params", f"is invalid: {_first_line(exc)}")
    f.text(template["device"], "params.device", null=True)
    for key in ("variant", "baseline", "cold"):
        choices = {"variant": VARIANTS, "baseline": BASELINES, "cold": COLD_POLICIES}[key]
        value = f.text(info[key], key, choices)
        if value != template[key]:
            f.fail(key, f"is {value!r} but params.{key} is {template[key]!r}")

    low, high = (f.number(v, f"rating_scale[{k}]")
                 for k, v in enumerate(f.items(info["rating_scale"], "rating_scale", 2)))
    assert low is not None and high is not None
    if low > high:
        f.fail("rating_scale", f"is reversed: low {low:g} > high {high:g}")
    mean = f.number(info["global_mean"], "global_mean")
    assert mean is not None
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    if not low - slack <= mean <= high + slack:
        f.fail("global_mean", f"is {mean:g}, outside the rating scale [{low:g}, {high:g}]")
    bias = f.table(info["bias"], "bias")
    f.number(f.get(bias, "mean", "bias."), "bias.mean")
    for key in ("reg_user", "reg_item"):
        f.number(f.get(bias, key, "bias."), f"bias.{key}", minimum=0.0)
    f.number(info["l2"], "l2", minimum=0.0, null=True)
    f.number(info["validation_rmse"], "validation_rmse", minimum=0.0, null=True)
    sizes = {"users": f.integer(info["n_users"], "n_users", minimum=1),
             "items": f.integer(info["n_items"], "n_items", minimum=1)}
    for name, n in sizes.items():
        entry = f.table(info[name], name)
        storage = f.text(f.get(entry, "storage", f"{name}."), f"{name}.storage",
                         ("int64", "text"))
        if storage == "int64":
            f.text(f.get(entry, "tensor", f"{name}."), f"{name}.tensor", (f"{name}.ids",))
        else:
            ids = f.items(f.get(entry, "ids", f"{name}."), f"{name}.ids", n)
            for k, value in enumerate(ids):
                f.text(value, f"{name}.ids[{k}]")
    for k, entry in enumerate(f.items(info["history"], "history")):
        f.table(entry, f"history[{k}]")
    f.text(info["dataset"], "dataset", null=True)
    weights = f.table(info["weights"], "weights")
    f.text(f.get(weights, "file", "weights."), "weights.file", (WEIGHTS_FILE,))
    f.integer(f.get(weights, "bytes", "weights."), "weights.bytes", minimum=0)
    digest = f.text(f.get(weights, "sha256", "weights."), "weights.sha256")
    if len(str(digest)) != 64 or any(c not in "0123456789abcdefABCDEF" for c in str(digest)):
        f.fail("weights.sha256", "must be 64 hexadecimal digits")

    if info.get("ranking") is not None:
        _check_ranking(f, f.table(info["ranking"], "ranking"), sizes["items"], (low, high))

    members = f.items(info["members"], "members")
    variants = ("item", "user") if template["variant"] == "both" else (template["variant"],)
    specs = [variant for variant in variants for _ in range(template["ensemble"])]
    if len(members) != len(specs):
        f.fail("members", f"holds {len(members)} networks; params (variant "
               f"{template['variant']!r}, ensemble {template['ensemble']}) give {len(specs)}")
    for k, (entry, variant) in enumerate(zip(members, specs, strict=True)):
        at = f"members[{k}]."
        f.table(entry, at.rstrip("."))
        for key in _MEMBER_KEYS:
            f.get(entry, key, at)
        spec = f.table(entry["spec"], at + "spec")
        _check_spec(f, spec, at + "spec.", variant, template["baseline"] == "biases",
                    ACTIVATIONS, OPTIMIZERS)
        n_inputs = f.integer(entry["n_inputs"], at + "n_inputs", minimum=1)
        expected_inputs = sizes["users"] if variant == "item" else sizes["items"]
        if n_inputs != expected_inputs:
            f.fail(at + "n_inputs", f"is {n_inputs}, the id maps give {expected_inputs}")
        if f.flag(entry["decoder_bias"], at + "decoder_bias") == spec["residual"]:
            f.fail(at + "decoder_bias", "disagrees with spec.residual (a network that learns "
                   "deviations from the baseline has no decoder bias)")
        if "sparse_grad" in entry:
            f.flag(entry["sparse_grad"], at + "sparse_grad")
        shape = [f.integer(v, f"{at}inputs_shape[{j}]", minimum=0)
                 for j, v in enumerate(f.items(entry["inputs_shape"], at + "inputs_shape", 2))]
        rows = sizes["items"] if variant == "item" else sizes["users"]
        if shape != [rows, n_inputs]:
            f.fail(at + "inputs_shape", f"is {shape}, expected {[rows, n_inputs]}")
        f.number(entry["scale"], at + "scale", positive=True)
        f.integer(entry["best_epoch"], at + "best_epoch", minimum=0)
        for j, item in enumerate(f.items(entry["history"], at + "history")):
            f.table(item, f"{at}history[{j}]")
        unknown = sorted(set(entry) - {*_MEMBER_KEYS, "sparse_grad"})
        if unknown:
            f.fail(at + unknown[0], "is not a field of a network's entry")


_RANKING_KEYS = ("family", "model", "n_items", "report", "arrays")
_RANKING_KINDS = ("ease", "vae", "rating")


def _check_ranking(f: _Fields, entry: dict[str, Any], n_items: int,
                   scale: tuple[float, float]) -> None:
    """The ``ranking`` entry of a version-3 model.json (:class:`autorec.ranking.scorer.
    FittedRanking`'s params): its family, components, weights and arrays."""
    from ..family import FAMILIES
    from ..ranking.protocol import WEIGHTINGS

    for key in _RANKING_KEYS:
        f.get(entry, key, "ranking.")
    unknown = sorted(set(entry) - set(_RANKING_KEYS))
    if unknown:
        f.fail("ranking." + unknown[0], "is not a field of a ranking model's entry")
    f.text(entry["family"], "ranking.family", tuple(sorted(FAMILIES)))
    if f.integer(entry["n_items"], "ranking.n_items", minimum=1) != n_items:
        f.fail("ranking.n_items", f"is {entry['n_items']}, the id maps give {n_items}")
    f.table(entry["report"], "ranking.report")
    model = f.table(entry["model"], "ranking.model")
    for key in ("rating_scale", "components", "weights"):
        f.get(model, key, "ranking.model.")
    recorded = [f.number(v, f"ranking.model.rating_scale[{k}]") for k, v in
                enumerate(f.items(model["rating_scale"], "ranking.model.rating_scale", 2))]
    if tuple(recorded) != tuple(scale):
        f.fail("ranking.model.rating_scale", f"is {recorded}, the model's is {list(scale)}")
    components = f.items(model["components"], "ranking.model.components")
    if not components:
        f.fail("ranking.model.components", "is empty")
    weights = f.items(model["weights"], "ranking.model.weights", len(components))
    for k, value in enumerate(weights):
        f.number(value, f"ranking.model.weights[{k}]", minimum=0.0)
    names = set()
    for k, component in enumerate(components):
        at = f"ranking.model.components[{k}]."
        f.table(component, at.rstrip("."))
        name = f.text(f.get(component, "name", at), at + "name")
        if name in names:
            f.fail(at + "name", f"repeats {name!r}")
        names.add(name)
        kind = f.text(f.get(component, "kind", at), at + "kind", _RANKING_KINDS)
        f.text(f.get(component, "weighting", at), at + "weighting", WEIGHTINGS)
        params = f.get(component, "params", at)
        if kind == "rating":
            if params is not None:
                f.fail(at + "params", "must be null for the rating networks' component")
        else:
            f.table(params, at + "params")
    for name, spec in f.table(entry["arrays"], "ranking.arrays").items():
        at = f"ranking.arrays.{name}."
        f.table(spec, at.rstrip("."))
        for j, v in enumerate(f.items(f.get(spec, "shape", at), at + "shape")):
            f.integer(v, f"{at}shape[{j}]", minimum=0)
        f.text(f.get(spec, "dtype", at), at + "dtype", ("float32", "float64", "int64"))


def _check_spec(f: _Fields, spec: dict[str, Any], at: str, variant: str, residual: bool,
                activations: Any, optimizers: tuple[str, ...]) -> None:
    """One network's ``spec`` (:class:`~autorec.member.NetworkSpec`'s fields)."""
    from ..member import NetworkSpec

    names = [item.name for item in fields(NetworkSpec)]
    for name in names:
        if name != "dense_batches":  # added after version 1 was first written
            f.get(spec, name, at)
    unknown = sorted(set(spec) - set(names))
    if unknown:
        f.fail(at + unknown[0], "is not a field of a network's spec")
    if f.text(spec["variant"], at + "variant", ("item", "user")) != variant:
        f.fail(at + "variant", f"is {spec['variant']!r}; params give {variant!r} for this "
               "network")
    f.integer(spec["hidden"], at + "hidden", minimum=1)
    f.text(spec["activation"], at + "activation", tuple(activations))
    for name in ("dropout", "input_dropout"):
        value = f.number(spec[name], at + name, minimum=0.0)
        if value is not None and value >= 1:
            f.fail(at + name, f"must be in [0, 1), got {value!r}")
    f.number(spec["lr"], at + "lr", positive=True)
    f.number(spec["weight_decay"], at + "weight_decay", minimum=0.0)
    f.number(spec["l2"], at + "l2", minimum=0.0)
    f.integer(spec["batch_size"], at + "batch_size", minimum=1)
    f.text(spec["optimizer"], at + "optimizer", optimizers)
    if f.flag(spec["residual"], at + "residual") != residual:
        f.fail(at + "residual", f"is {str(spec['residual']).lower()} but the baseline is "
               f"{'biases' if residual else 'none'}")
    f.integer(spec["patience"], at + "patience", minimum=1)
    if "dense_batches" in spec:
        f.flag(spec["dense_batches"], at + "dense_batches")
