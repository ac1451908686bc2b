"""Reading ``model.json``: its checksum, and every field checked for type and range (the tables
of rules below, applied by :meth:`Fields.record`) and for agreement with the others
(:func:`_check_info`); each failure is one line naming the file and the field."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from .._io import PARSER_ERRORS, DuplicateKeyError, parse_problem, unique_keys
from ..exceptions import ModelFileError, first_line
from ..model import ACTIVATIONS
from ..params import (
    BASELINES,
    COLD_POLICIES,
    PARAM_NAMES,
    VARIANTS,
    complete,
    network_specs,
    validate_params,
)
from ..train import OPTIMIZERS
from .checks import FLAG, FRACTION, Fields, Rule, array, integer, number, record, table, text
from .names import FORMAT, FORMAT_VERSION, JSON_FILE, READ_VERSIONS, WEIGHTS_FILE

__all__ = ["info_digest", "read_model_info"]

log = logging.getLogger(__name__)


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
        info = json.loads(json_path.read_bytes().decode("utf-8"), object_pairs_hook=unique_keys)
    except OSError as exc:
        raise ModelFileError(f"{json_path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{json_path}: not UTF-8 text; not an autorec model") from None
    except DuplicateKeyError as exc:
        raise ModelFileError(f"{json_path}: key {exc.args[0]!r} appears twice in one object; "
                             "not a model.json autorec wrote") from None
    except PARSER_ERRORS as exc:  # bad syntax, nesting past Python's stack, 4,300+ digits
        raise ModelFileError(f"{json_path}: not valid JSON ({parse_problem(exc)}); "
                             "truncated or not an autorec model") from None
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
        _settings_as_fitted(info)
    if version <= 2 and isinstance(info.get("params"), dict):
        info["params"].setdefault("ranking", "none")  # no ranking model before version 3
    _check_info(info, json_path)
    return info


def _settings_as_fitted(info: dict[str, Any]) -> None:
    """Version 1 wrote ``params`` as :meth:`get_params` gave them at save time: after
    ``set_params`` on a fitted model, not those it was fitted with. The networks' specs are,
    so the settings that shape them are taken from there (as that version's loader did);
    a file too malformed to tell is left to the checks."""
    params, members = info.get("params"), info.get("members")
    if not (isinstance(params, dict) and isinstance(members, list) and members
            and all(isinstance(m, dict) and isinstance(m.get("spec"), dict) for m in members)):
        return
    specs = [m["spec"] for m in members]
    variants = [spec.get("variant") for spec in specs]
    both = "item" in variants and "user" in variants
    if both and variants.count("item") != variants.count("user"):
        return
    fitted = {"variant": "both" if both else variants[0],
              "ensemble": len(variants) // 2 if both else len(variants),
              "hidden": specs[0].get("hidden"), "activation": specs[0].get("activation"),
              "baseline": "biases" if specs[0].get("residual") is True else "none"}
    changed = sorted(key for key, value in fitted.items() if params.get(key) != value)
    if changed:
        log.info("version-1 model.json: %s as fitted (the params were set after the fit)",
                 ", ".join(f"{key} {fitted[key]!r}" for key in changed))
    params.update(fitted)
    info.update(variant=fitted["variant"], baseline=fitted["baseline"])


def info_digest(info: dict[str, Any]) -> str:
    """The SHA-256 recorded as ``checksum`` in a version-2 ``model.json``.

    It is taken over the file's content, not its bytes: every key but ``checksum``, written
    as ``json.dumps(content, sort_keys=True, separators=(",", ":"))`` (ASCII, keys sorted, no
    spaces) and encoded as ASCII. Re-indenting the file keeps it; changing any value does not.
    """
    content = {key: value for key, value in info.items() if key != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


_SCALE = array(number(), length=2)
#: The top-level fields of ``model.json`` (``checksum`` from version 2 on and ``ranking`` from
#: version 3 on are added by :func:`_check_info`).
_INFO: dict[str, Rule] = {
    "format": None, "format_version": None, "created": text(),
    "versions": table(text()), "params": table(),
    "variant": None, "baseline": None, "cold": None,  # after params, against them
    "rating_scale": _SCALE, "global_mean": number(),
    "bias": record({"mean": number(), "reg_user": number(minimum=0.0),
                    "reg_item": number(minimum=0.0)}),
    "l2": number(minimum=0.0, null=True), "validation_rmse": number(minimum=0.0, null=True),
    "n_users": integer(1), "n_items": integer(1), "users": table(), "items": table(),
    "members": array(), "history": array(table()), "dataset": text(null=True),
    "weights": record({"file": text(WEIGHTS_FILE), "bytes": integer(0), "sha256": text()}),
}
#: A network's entry in ``members`` (``sparse_grad``: optional).
_MEMBER: dict[str, Rule] = {
    "spec": table(), "n_inputs": integer(1), "decoder_bias": FLAG,
    "inputs_shape": array(integer(0), length=2), "scale": number(positive=True),
    "best_epoch": integer(0), "history": array(table()),
}
#: A network's ``spec``: :class:`~autorec.member.NetworkSpec`'s fields (``dense_batches``:
#: optional, added after version 1 was first written).
_SPEC: dict[str, Rule] = {
    "variant": text("item", "user"), "hidden": integer(1), "activation": text(*ACTIVATIONS),
    "dropout": FRACTION, "input_dropout": FRACTION, "lr": number(positive=True),
    "weight_decay": number(minimum=0.0), "l2": number(minimum=0.0), "batch_size": integer(1),
    "optimizer": text(*OPTIMIZERS), "residual": FLAG, "patience": integer(1),
}
_RANKING_KINDS = ("ease", "vae", "rating")


def _check_info(info: dict[str, Any], where: Path) -> None:
    """Every field of ``model.json`` checked for type and range (the tables above), and
    against each other."""
    f = Fields(where)
    f.finite_everywhere(info, "")
    version = info["format_version"]
    extra = {"checksum": None} if version >= 2 else {}
    extra.update({"ranking": None} if version >= 3 else {})
    f.record(info, "", {**_INFO, **extra}, what=f"a version-{version} {JSON_FILE}")

    params = info["params"]
    ignored = sorted(set(params) - set(PARAM_NAMES))
    if ignored:
        log.warning("%s: ignoring parameters this autorec does not know: %s", where,
                    ", ".join(ignored))
    template = complete(params)
    try:
        validate_params(template)
    except ValueError as exc:
        f.fail("params", f"is invalid: {first_line(exc)}")
    device = f.text(template["device"], "params.device", null=True)
    if device is not None and not re.fullmatch(r"(cpu|cuda)(:\d+)?", device):  # as fit takes
        f.fail("params.device", f"must be 'cpu', 'cuda' or 'cuda:N' (or null), got {device!r}")
    for key, choices in (("variant", VARIANTS), ("baseline", BASELINES), ("cold", COLD_POLICIES)):
        if f.text(info[key], key, choices) != template[key]:
            f.fail(key, f"is {info[key]!r} but params.{key} is {template[key]!r}")

    low, high = map(float, info["rating_scale"])
    if low > high:
        f.fail("rating_scale", f"is reversed: low {low:g} > high {high:g}")
    declared = template["rating_scale"]
    if declared is not None and [float(v) for v in declared] != [low, high]:
        f.fail("rating_scale", f"is {[low, high]} but params.rating_scale is {declared}")
    mean = info["global_mean"]
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    if not low - slack <= mean <= high + slack:
        f.fail("global_mean", f"is {mean:g}, outside the rating scale [{low:g}, {high:g}]")
    sizes = {"users": info["n_users"], "items": info["n_items"]}
    for name, n in sizes.items():
        entry = f.record(info[name], name, {"storage": text("int64", "text")},
                         optional={"tensor": None, "ids": None})
        f.record(entry, name, {"storage": None, "tensor": text(f"{name}.ids")}
                 if entry["storage"] == "int64"
                 else {"storage": None, "ids": array(text(), length=n)})
    digest = info["weights"]["sha256"]
    if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        f.fail("weights.sha256", "must be 64 hexadecimal digits")

    if info.get("ranking") is not None:
        if template["ranking"] == "none":  # fit makes none then: the two cannot both hold
            f.fail("ranking", "holds a ranking model, but params.ranking is 'none'")
        _check_ranking(f, info["ranking"], sizes["items"], (low, high))

    members = info["members"]
    expected_specs = network_specs(template)
    variants = [spec.variant for spec in expected_specs]
    if len(members) != len(variants):
        f.fail("members", f"holds {len(members)} networks; params (variant "
               f"{template['variant']!r}, ensemble {template['ensemble']}) give "
               f"{len(variants)}")
    residual = template["baseline"] == "biases"
    for k, (entry, variant) in enumerate(zip(members, variants, strict=True)):
        at = f"members[{k}]."
        f.record(entry, at.rstrip("."), _MEMBER, optional={"sparse_grad": FLAG},
                 what="a network's entry")
        spec = f.record(entry["spec"], at + "spec", _SPEC,
                        optional={"dense_batches": FLAG}, what="a network's spec")
        if spec["variant"] != variant:
            f.fail(at + "spec.variant", f"is {spec['variant']!r}; params give {variant!r} for "
                   "this network")
        for key in ("hidden", "activation"):  # what the network computes (its arrays' shapes
            given = getattr(expected_specs[k], key)  # are checked against the spec)
            if spec[key] != given:
                f.fail(at + f"spec.{key}", f"is {spec[key]!r} but params.{key} is {given!r}")
        if spec["residual"] != residual:
            f.fail(at + "spec.residual", f"is {str(spec['residual']).lower()} but the baseline "
                   f"is {'biases' if residual else 'none'}")
        n_inputs = entry["n_inputs"]
        rows, expected_inputs = ((sizes["items"], sizes["users"]) if variant == "item"
                                 else (sizes["users"], sizes["items"]))
        if n_inputs != expected_inputs:
            f.fail(at + "n_inputs", f"is {n_inputs}, the id maps give {expected_inputs}")
        if entry["decoder_bias"] == spec["residual"]:
            f.fail(at + "decoder_bias", "disagrees with spec.residual (a network that learns "
                   "deviations from the baseline has no decoder bias)")
        if entry["inputs_shape"] != [rows, n_inputs]:
            f.fail(at + "inputs_shape", f"is {entry['inputs_shape']}, expected "
                   f"{[rows, n_inputs]}")


def _check_ranking(f: Fields, value: Any, n_items: int, scale: tuple[float, float]) -> None:
    """The ``ranking`` entry of a version-3 model.json (:class:`autorec.ranking.scorer.
    FittedRanking`'s params): its family, components, weights and arrays."""
    from ..family import FAMILIES
    from ..ranking.protocol import WEIGHTINGS

    component_rule = record({"name": text(), "kind": text(*_RANKING_KINDS),
                             "weighting": text(*WEIGHTINGS), "params": None})
    array_rule = record({"shape": array(integer(0)), "dtype": text("float32", "float64", "int64")})
    entry = f.record(value, "ranking", {
        # a ranking family, not the rating networks' ("autorec": "malformed (missing 'spec')")
        "family": text(*sorted(name for name in FAMILIES if name != "autorec")),
        "model": record({
            "rating_scale": _SCALE, "components": array(component_rule), "weights": array()}),
        "n_items": integer(1), "report": table(), "arrays": table(array_rule),
    }, what="a ranking model's entry")
    if entry["n_items"] > n_items:  # fewer: items added (fold-in) after the ranking fit
        f.fail("ranking.n_items", f"is {entry['n_items']}, more than the id maps' {n_items}")
    model = entry["model"]
    recorded = [float(v) for v in model["rating_scale"]]
    if tuple(recorded) != tuple(scale):
        f.fail("ranking.model.rating_scale", f"is {recorded}, the model's is {list(scale)}")
    components = model["components"]
    if not components:
        f.fail("ranking.model.components", "is empty")
    f.array(model["weights"], "ranking.model.weights", number(minimum=0.0), len(components))
    if not any(weight > 0 for weight in model["weights"]):  # nothing would score an item
        f.fail("ranking.model.weights", "needs a weight above 0")
    if abs(sum(model["weights"]) - 1.0) > 1e-6:  # convex (a huge one overflowed to NaN)
        f.fail("ranking.model.weights", f"sum to {sum(model['weights']):g}, not 1")
    names = set()
    for k, component in enumerate(components):
        at = f"ranking.model.components[{k}]."
        if component["name"] in names:
            f.fail(at + "name", f"repeats {component['name']!r}")
        names.add(component["name"])
        if component["kind"] == "rating":
            if component["params"] is not None:
                f.fail(at + "params", "must be null for the rating networks' component")
        else:
            f.table(component["params"], at + "params")
            problem = _component_problem(component["kind"], component["params"])
            if problem is not None:
                f.fail(at + "params", f"is invalid: {problem}")


def _component_problem(kind: str, params: dict[str, Any]) -> str | None:
    """What an EASE or Mult-DAE/VAE component's ``params`` break of its own checks."""
    from ..ranking.ease import EASE
    from ..ranking.vae import MultVAE

    try:
        (EASE if kind == "ease" else MultVAE)(**params)._validate()
    except (TypeError, ValueError) as exc:
        return first_line(exc)
    return None
