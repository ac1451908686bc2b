"""A fitted model as arrays and JSON, and back: :func:`save_model` and :func:`load_model`.

Each network goes through its family's protocol (:class:`autorec.family.ScoringNetwork`:
``to_arrays`` and ``params`` out, ``from_arrays`` in), under the tensor prefix ``member.K.``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from .. import networks  # noqa: F401  (registers the rating networks' family)
from .._io import json_ready
from ..baseline import Biases
from ..data.ids import IdMap
from ..exceptions import ModelFileError, NotFittedError, first_line
from ..family import family_of
from ..fitted import FittedModel, as_fitted
from ..params import PARAM_NAMES, complete
from ..ranking import scorer  # noqa: F401  (registers the ranking models' family)
from .fields import info_digest, read_model_info
from .folder import check_save_path, write_model_files
from .names import FORMAT, FORMAT_VERSION, JSON_FILE, WEIGHTS_FILE

__all__ = ["load_model", "save_model"]

log = logging.getLogger(__name__)


def save_model(model: Any, path: str | os.PathLike[str], *,
               dataset: str | None = None) -> Path:
    """Write a fitted model to the folder ``path`` (see the module docstring for the layout).

    Parameters
    ----------
    model
        A :class:`~autorec.fitted.FittedModel`, or a fitted estimator holding one.
    path
        The model folder to create, or to write into when it is empty or holds only
        autorec's files (see the module docstring; nothing else in it is touched). Missing
        parent folders are made; a link to a folder is followed.
    dataset
        Name of the builtin data set the model was trained on (``"ml-100k"``...), recorded so
        that ``autorec recommend`` can show its titles; ``None``: the one the model records
        (a loaded model keeps its folder's), if any.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    ModelFileError
        ``path`` is not a folder, cannot be written, or holds anything but an autorec
        model's files (:func:`check_save_path`); nothing is written.
    OSError
        Writing failed (a full disk, no permission); the folder holds the old model.
    """
    try:
        fitted = as_fitted(model)
    except NotFittedError:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit() "
                             "before save()") from None
    target = check_save_path(path)
    tensors, info = _export(fitted)
    if dataset is not None:
        info["dataset"] = str(dataset)
    from safetensors.numpy import save as encode

    # one metadata key: safetensors writes a metadata map in a random order, and a re-saved
    # model must give the same bytes
    weights = encode(tensors, metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    info["weights"] = {"file": WEIGHTS_FILE, "bytes": len(weights),
                       "sha256": hashlib.sha256(weights).hexdigest()}
    info = json_ready(info)
    info["checksum"] = {"sha256": info_digest(info)}  # model.json's own content (version 2)
    text = json.dumps(info, indent=2, allow_nan=False) + "\n"

    write_model_files(target, weights, text.encode("utf-8"))
    log.info("saved model to %s (%d bytes of arrays)", target, len(weights))
    return Path(path)


def _export(model: FittedModel) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model's arrays (for safetensors) and everything else (for JSON)."""
    import autorec

    biases = model.biases
    assert biases is not None
    tensors: dict[str, np.ndarray] = {
        "biases.user": np.asarray(biases.user, dtype=np.float64),
        "biases.item": np.asarray(biases.item, dtype=np.float64),
        "blend": np.asarray(model.blend, dtype=np.float64),
    }
    members = []
    for k, member in enumerate(model.members):  # each network through its family's protocol
        for name, value in member.to_arrays().items():
            tensors[f"member.{k}.{name}"] = value
        members.append(member.params)
    ranking = None
    if model.ranking is not None:  # through the ranking family's protocol, under ranking.
        for name, value in model.ranking.to_arrays().items():
            tensors[f"ranking.{name}"] = value
        ranking = {"family": model.ranking.family, **model.ranking.params}
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"autorec": autorec.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "params": dict(model.params),
        "variant": model.variant,
        "baseline": model.baseline,
        "cold": model.cold,
        "rating_scale": [float(v) for v in model.rating_scale],
        "global_mean": float(model.global_mean),
        "bias": {"mean": float(biases.mean), "reg_user": float(biases.reg_user),
                 "reg_item": float(biases.reg_item)},
        "l2": None if model.l2 is None else float(model.l2),
        "validation_rmse": float(model.validation_rmse),
        "n_users": len(model.users),
        "n_items": len(model.items),
        "users": _export_ids(model.users, "users", tensors),
        "items": _export_ids(model.items, "items", tensors),
        "members": members,
        "ranking": ranking,
        "history": model.history,
        "dataset": model.dataset,
    }
    return tensors, info


def _export_ids(ids: IdMap, name: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    raw = ids.raw_ids
    if raw.dtype.kind in "iu":
        tensors[f"{name}.ids"] = raw.astype(np.int64)
        return {"storage": "int64", "tensor": f"{name}.ids"}
    return {"storage": "text", "ids": [str(value) for value in raw.tolist()]}


def load_model(path: str | os.PathLike[str], *, device: str | torch.device | None = "cpu"
               ) -> FittedModel:
    """Load a model folder written by :func:`save_model`.

    Parameters
    ----------
    path
        The model folder.
    device
        Where the networks go: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, or ``None`` for
        CUDA when available.

    Returns
    -------
    FittedModel
        A fitted model that predicts exactly (bitwise) what the saved one did on the same
        device; its ``params`` are the saved ones (those this autorec knows) and its
        ``device`` is ``device``. :func:`autorec.load_model` and :meth:`AutoRec.load` wrap
        it in an estimator.

    Raises
    ------
    ModelFileError
        Not a model folder; a missing, truncated or tampered ``model.safetensors``; an
        edited ``model.json`` (checksum); an unsupported format version; a field of the wrong
        type or out of range (see :func:`read_model_info`); arrays whose names, shapes or
        types do not fit the model, or that hold NaN or infinite values. Nothing in the folder
        is ever unpickled or executed.
    ValueError
        ``device`` is not a device, or CUDA was asked for and is not available.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as decode

    from ..train import resolve_device

    info = read_model_info(path)  # every field checked
    target = resolve_device(device)
    folder = Path(path)
    weights_path = folder / WEIGHTS_FILE
    try:
        tensors = decode(_read_weights(weights_path, info["weights"]))
    except SafetensorError as exc:
        raise ModelFileError(f"{weights_path}: not a readable safetensors file "
                             f"({first_line(exc)})") from None
    arrays = _Arrays(tensors, weights_path)

    n_users, n_items = info["n_users"], info["n_items"]
    try:
        users = _import_ids(info["users"], arrays, n_users, "users", folder)
        items = _import_ids(info["items"], arrays, n_items, "items", folder)
        low, high = info["rating_scale"]
        bias = info["bias"]
        biases = Biases(float(bias["mean"]),
                        arrays.get("biases.user", (n_users,), np.float64),
                        arrays.get("biases.item", (n_items,), np.float64),
                        float(bias["reg_user"]), float(bias["reg_item"]))
        validation = info["validation_rmse"]
        family = family_of("autorec")  # the one family a version-1 or -2 folder holds
        members = [family.from_arrays(arrays.under(f"member.{k}."), entry, n_users=n_users,
                                      n_items=n_items, device=target)
                   for k, entry in enumerate(info["members"])]
        ranking = None
        if info.get("ranking") is not None:  # version 3; older folders hold none
            entry = info["ranking"]
            ranking = family_of(entry["family"]).from_arrays(
                arrays.under("ranking."), {k: v for k, v in entry.items() if k != "family"},
                n_users=n_users, n_items=n_items, device=target)
        model = FittedModel(
            params=complete({name: value for name, value in info["params"].items()
                             if name in PARAM_NAMES}),
            users=users, items=items, global_mean=float(info["global_mean"]),
            rating_scale=(float(low), float(high)), biases=biases, members=members,
            blend=arrays.get("blend", (len(members) + 1,), np.float64),
            l2=None if info["l2"] is None else float(info["l2"]),
            history=list(info["history"]),
            validation_rmse=math.nan if validation is None else float(validation),
            device=target, ranking=ranking, dataset=info["dataset"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a safety net: all checked
        what = f"missing {exc}" if isinstance(exc, KeyError) else first_line(exc)
        raise ModelFileError(f"{folder / JSON_FILE}: malformed ({what})") from None
    extra = arrays.unused()
    if extra:
        raise ModelFileError(f"{weights_path}: unexpected arrays {', '.join(extra[:5])}")
    log.info("loaded model from %s onto %s", folder, target)
    return model


def _read_weights(path: Path, recorded: dict[str, Any]) -> bytes:
    """The bytes of ``model.safetensors``, checked against the size and SHA-256 in the JSON
    (whose types :func:`read_model_info` has checked)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (a model folder holds {JSON_FILE} and "
                             f"{WEIGHTS_FILE})")
    expected_size = recorded["bytes"]
    expected_hash = recorded["sha256"]
    size = path.stat().st_size
    if size != expected_size:
        kind = "truncated" if size < expected_size else "longer than recorded"
        raise ModelFileError(f"{path}: {kind} ({size} bytes, {expected_size} recorded); "
                             "the file is damaged or was replaced")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != expected_hash.lower():
        raise ModelFileError(f"{path}: SHA-256 checksum mismatch (the file was modified or "
                             f"replaced since it was saved); refusing to load it")
    return data


class _Arrays:
    """The decoded tensors, handed out with their shape, dtype and finiteness checked; with
    ``prefix``, the arrays whose names start with it, by the rest of their name (what a
    network's ``from_arrays`` reads: :class:`autorec.family.ArraySource`)."""

    def __init__(self, tensors: dict[str, np.ndarray], source: Path, prefix: str = "",
                 used: set[str] | None = None) -> None:
        self._tensors = tensors
        self._source = source
        self._prefix = prefix
        self._used: set[str] = set() if used is None else used

    def get(self, name: str, shape: tuple[int, ...] | None = None,
            dtype: type | None = None) -> np.ndarray:
        name = self._prefix + name
        if name not in self._tensors:
            raise ModelFileError(f"{self._source}: array {name!r} is missing")
        value = self._tensors[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ModelFileError(f"{self._source}: array {name!r} has shape "
                                 f"{tuple(value.shape)}, expected {tuple(shape)}")
        if dtype is not None and value.dtype != dtype:
            raise ModelFileError(f"{self._source}: array {name!r} is {value.dtype}, "
                                 f"expected {np.dtype(dtype)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ModelFileError(f"{self._source}: array {name!r} holds NaN or infinite "
                                 "values")
        self._used.add(name)
        return np.array(value, copy=True)  # writable, owned by the model

    def unused(self) -> list[str]:
        return sorted(set(self._tensors) - self._used)

    def invalid(self, name: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self._source}: {self._prefix}{name} {problem}")

    def under(self, prefix: str) -> _Arrays:
        """The arrays under ``prefix`` (sharing what has been used)."""
        return _Arrays(self._tensors, self._source, self._prefix + prefix, self._used)


def _import_ids(entry: dict[str, Any], arrays: _Arrays, n: int, name: str,
                folder: Path) -> IdMap:
    """An id map (``entry``'s storage and length already checked by :func:`_check_info`)."""
    raw: Any = (arrays.get(str(entry["tensor"]), (n,), np.int64)
                if entry["storage"] == "int64" else entry["ids"])
    try:
        return IdMap(raw)
    except ValueError as exc:
        raise ModelFileError(f"{folder / JSON_FILE}: {name} ids: {first_line(exc)}") from None
