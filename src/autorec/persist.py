"""Model folders: save a fitted :class:`~autorec.estimator.AutoRec` and load it back, no pickle.

A saved model is a folder of two files:

``model.safetensors``
    Every array, in the `safetensors <https://github.com/huggingface/safetensors>`_ format (a
    JSON header and raw little-endian buffers; nothing in it is executed on load):

    * ``member.K.encoder_weight``, ``member.K.encoder_bias``, ``member.K.decoder_weight`` and,
      when the network has one, ``member.K.decoder_bias``: network ``K``'s weights (``float32``,
      ``n_inputs x hidden`` for the weight matrices);
    * ``member.K.inputs.indptr``, ``member.K.inputs.indices``, ``member.K.inputs.data``: the
      training ratings network ``K`` reconstructs from, as CSR in its orientation (items x
      users for I-AutoRec), divided by its ``scale``;
    * ``biases.user``, ``biases.item`` (``float64``): the baseline's offsets;
    * ``blend`` (``float64``): one weight per network, then the intercept;
    * ``users.ids``, ``items.ids`` (``int64``): the raw ids, when they are integers.

``model.json``
    Everything else, readable by people and other tools: ``format`` (``"autorec-model"``),
    ``format_version``, the library, torch, numpy and Python versions, the constructor
    ``params``, ``variant``, ``rating_scale``, ``global_mean``, ``cold``, ``baseline``,
    ``bias`` (global mean and penalties), ``l2``, ``validation_rmse``, the id maps (text ids
    as JSON strings; integer ids point at their tensor), each network's ``spec``, ``scale``,
    ``best_epoch`` and ``history``, the model's ``history``, an optional ``dataset`` name,
    and ``weights``: the size and SHA-256 of ``model.safetensors``. Numbers that are not
    finite (a ``NaN`` validation RMSE without a validation part) are written as ``null``, so
    that the file is standard JSON.

Loading refuses, with one line (:class:`~autorec.exceptions.ModelFileError`): a path that is
not a model folder, a missing or truncated file, a ``model.safetensors`` whose SHA-256 is not
the recorded one (tampered, or replaced by something else, such as a pickle), a format
version this autorec does not read, and arrays whose names or shapes do not fit the model.

Saving is atomic: both files are written into a hidden temporary folder next to the target
and the folder is renamed into place, so that the target holds the old model or the new one,
never a mixture or a part (a crash leaves at most a ``.NAME.*.tmp`` folder beside it). An
existing folder is replaced only when it is a model folder (it holds ``model.json``) or
empty; anything else is refused rather than deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from ._io import current_umask
from .baseline import Biases
from .data.ids import IdMap
from .exceptions import ModelFileError, NotFittedError

if TYPE_CHECKING:
    from .estimator import AutoRec

__all__ = ["FORMAT", "FORMAT_VERSION", "JSON_FILE", "WEIGHTS_FILE", "check_save_path",
           "is_model_dir", "load_model", "read_model_info", "save_model"]

log = logging.getLogger(__name__)

FORMAT = "autorec-model"
#: The version this autorec writes and the only one it reads. Raise it whenever a change
#: makes old readers misread new files (a new required key, a renamed tensor).
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
JSON_FILE = "model.json"
_NET_TENSORS = ("encoder_weight", "encoder_bias", "decoder_weight", "decoder_bias")
_CHUNK = 1 << 20


# -- saving ------------------------------------------------------------------------------------
def save_model(model: AutoRec, path: str | os.PathLike[str], *,
               dataset: str | None = None) -> Path:
    """Write a fitted model to the folder ``path`` (see the module docstring for the layout).

    Parameters
    ----------
    model
        A fitted :class:`~autorec.estimator.AutoRec`.
    path
        The model folder to create or replace. Missing parent folders are made.
    dataset
        Name of the builtin data set the model was trained on (``"ml-100k"``...), recorded so
        that ``autorec recommend`` can show its titles; ``None`` when trained on a file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    ModelFileError
        ``path`` exists and is neither a model folder nor an empty folder.
    OSError
        Writing failed (a full disk, no permission); the target is left as it was.
    """
    if not hasattr(model, "members_"):
        raise NotFittedError("this AutoRec is not fitted yet; call fit() before save()")
    target = check_save_path(path)
    tensors, info = _export(model)
    if dataset is not None:
        info["dataset"] = str(dataset)
    from safetensors.numpy import save as encode

    # one metadata key: safetensors writes a metadata map in a random order, and a re-saved
    # model must give the same bytes
    weights = encode(tensors, metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    info["weights"] = {"file": WEIGHTS_FILE, "bytes": len(weights),
                       "sha256": hashlib.sha256(weights).hexdigest()}
    text = json.dumps(_clean_json(info), indent=2, allow_nan=False) + "\n"

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
    tmp: Path | None = None
    old: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        _write_file(tmp / WEIGHTS_FILE, weights)
        _write_file(tmp / JSON_FILE, text.encode("utf-8"))
        os.chmod(tmp, 0o777 & ~current_umask())
        _fsync_folder(tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                        dir=target.parent))
            os.replace(target, old / "model")  # no model at the target until the next line
        os.replace(tmp, target)
        tmp = None
        _fsync_folder(target.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:  # also on Ctrl-C: no temporary folder left, the old model back if it was moved
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if not target.exists():
                with contextlib.suppress(OSError):
                    os.replace(old / "model", target)
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
    log.info("saved model to %s (%d bytes of arrays)", target, len(weights))
    return target


def check_save_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a ``path`` that :func:`save_model` would not replace.

    Accepted: a new path (its parent folders are made), an empty folder, or a model folder.

    Raises
    ------
    ModelFileError
        ``path`` is a file, a link, or a folder holding other files and no ``model.json``.
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise ModelFileError(f"{target} exists and is not a folder; not replacing it")
        if not is_model_dir(target) and any(target.iterdir()):
            raise ModelFileError(f"{target} is a folder that holds other files and no "
                                 f"{JSON_FILE}; not replacing it (choose a new or empty folder)")
    return target


def _export(model: AutoRec) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model's arrays (for safetensors) and everything else (for JSON)."""
    import autorec

    tensors: dict[str, np.ndarray] = {
        "biases.user": np.asarray(model.biases_.user, dtype=np.float64),
        "biases.item": np.asarray(model.biases_.item, dtype=np.float64),
        "blend": np.asarray(model.blend_, dtype=np.float64),
    }
    members = []
    for k, member in enumerate(model.members_):
        assert member.net is not None and member.matrix is not None
        for name in _NET_TENSORS:
            value = getattr(member.net, name)
            if value is not None:
                tensors[f"member.{k}.{name}"] = value.detach().cpu().numpy()
        matrix = member.matrix
        tensors[f"member.{k}.inputs.indptr"] = np.asarray(matrix.indptr)
        tensors[f"member.{k}.inputs.indices"] = np.asarray(matrix.indices)
        tensors[f"member.{k}.inputs.data"] = np.asarray(matrix.data)
        members.append({
            "spec": asdict(member.spec),
            "n_inputs": int(member.net.n_inputs),
            "decoder_bias": member.net.decoder_bias is not None,
            "sparse_grad": bool(member.net.sparse_grad),
            "inputs_shape": list(matrix.shape),
            "scale": float(member.scale),
            "best_epoch": int(member.best_epoch),
            "history": member.history,
        })
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"autorec": autorec.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "params": model.get_params(),
        "variant": model.variant,
        "baseline": model.baseline,
        "cold": model.cold,
        "rating_scale": [float(v) for v in model.rating_scale_],
        "global_mean": float(model.global_mean_),
        "bias": {"mean": float(model.biases_.mean), "reg_user": float(model.biases_.reg_user),
                 "reg_item": float(model.biases_.reg_item)},
        "l2": float(model.l2_) if hasattr(model, "l2_") else None,
        "validation_rmse": float(getattr(model, "validation_rmse_", math.nan)),
        "n_users": len(model.users_),
        "n_items": len(model.items_),
        "users": _export_ids(model.users_, "users", tensors),
        "items": _export_ids(model.items_, "items", tensors),
        "members": members,
        "history": model.history_,
        "dataset": None,
    }
    return tensors, info


def _export_ids(ids: IdMap, name: str, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    raw = ids.raw_ids
    if raw.dtype.kind in "iu":
        tensors[f"{name}.ids"] = raw.astype(np.int64)
        return {"storage": "int64", "tensor": f"{name}.ids"}
    return {"storage": "text", "ids": [str(value) for value in raw.tolist()]}


def _write_file(path: Path, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
        os.fchmod(handle.fileno(), 0o666 & ~current_umask())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _clean_json(value: Any) -> Any:
    """``value`` with numpy scalars made plain and NaN/infinity written as ``null``."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in {JSON_FILE}")


# -- loading -----------------------------------------------------------------------------------
def is_model_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a ``model.json`` (not whether that loads)."""
    path = Path(path)
    return path.is_dir() and (path / JSON_FILE).is_file()


def read_model_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked contents of ``path/model.json`` (format and version), without the arrays.

    Raises
    ------
    ModelFileError
        ``path`` is not a model folder, ``model.json`` is not JSON or not an autorec model's,
        or its format version is not one this autorec reads.
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
        info = json.loads(text)
    except OSError as exc:
        raise ModelFileError(f"{json_path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{json_path}: not UTF-8 text; not an autorec model") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{json_path}: not valid JSON (line {exc.lineno}: {exc.msg}); "
                             "truncated or not an autorec model") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelFileError(f"{json_path}: not an autorec model (no \"format\": \"{FORMAT}\")")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ModelFileError(
            f"{json_path}: model format version {version!r} is not supported (this autorec "
            f"reads version {FORMAT_VERSION}){'; upgrade autorec to load it' if newer else ''}")
    return info


def load_model(path: str | os.PathLike[str], *, device: str | torch.device | None = "cpu"
               ) -> AutoRec:
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
    AutoRec
        A fitted model that predicts exactly (bitwise) what the saved one did on the same
        device. Its constructor parameters are the saved ones; ``device_`` is ``device``.

    Raises
    ------
    ModelFileError
        Not a model folder; a missing, truncated or tampered ``model.safetensors``; an
        unsupported format version; arrays that do not fit the model. Nothing in the folder
        is ever unpickled or executed.
    ValueError
        ``device`` is not a device, or CUDA was asked for and is not available.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load as decode

    from .estimator import AutoRec
    from .member import Member, NetworkSpec
    from .model import AutoRecNet
    from .train import resolve_device

    info = read_model_info(path)
    target = resolve_device(device)
    folder = Path(path)
    weights_path = folder / WEIGHTS_FILE
    recorded = _field(info, "weights", dict, folder)
    data = _read_weights(weights_path, recorded)
    try:
        tensors = decode(data)
    except SafetensorError as exc:
        raise ModelFileError(f"{weights_path}: not a readable safetensors file "
                             f"({_first_line(exc)})") from None
    del data
    arrays = _Arrays(tensors, weights_path)

    params = _field(info, "params", dict, folder)
    known = set(AutoRec._param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        log.warning("%s: ignoring parameters this autorec does not know: %s", folder,
                    ", ".join(unknown))
    model = AutoRec(**{name: value for name, value in params.items() if name in known})
    try:
        n_users = int(_field(info, "n_users", int, folder))
        n_items = int(_field(info, "n_items", int, folder))
        model.users_ = _import_ids(_field(info, "users", dict, folder), arrays, n_users,
                                   "users", folder)
        model.items_ = _import_ids(_field(info, "items", dict, folder), arrays, n_items,
                                   "items", folder)
        low, high = _field(info, "rating_scale", list, folder)
        model.rating_scale_ = (float(low), float(high))
        model.global_mean_ = float(_field(info, "global_mean", float, folder))
        bias = _field(info, "bias", dict, folder)
        model.biases_ = Biases(float(bias["mean"]), arrays.get("biases.user", (n_users,)),
                               arrays.get("biases.item", (n_items,)),
                               float(bias["reg_user"]), float(bias["reg_item"]))
        l2 = info.get("l2")
        if l2 is not None:
            model.l2_ = float(l2)
        validation = info.get("validation_rmse")
        model.validation_rmse_ = math.nan if validation is None else float(validation)
        model.history_ = list(_field(info, "history", list, folder))
        model.device_ = target
        members = []
        spec_names = {f.name for f in fields(NetworkSpec)}
        for k, entry in enumerate(_field(info, "members", list, folder)):
            spec = NetworkSpec(**{name: value for name, value in entry["spec"].items()
                                  if name in spec_names})
            member = Member(spec, n_users, n_items, target)
            n_inputs = int(entry["n_inputs"])
            if n_inputs != member.n_inputs:
                raise ModelFileError(f"{folder / JSON_FILE}: network {k + 1} reads {n_inputs} "
                                     f"inputs, the id maps give {member.n_inputs}")
            net = AutoRecNet(n_inputs, spec.hidden, spec.activation, spec.dropout,
                             decoder_bias=bool(entry["decoder_bias"]),
                             sparse_grad=bool(entry.get("sparse_grad", False)),
                             dense_batches=spec.dense_batches)
            with torch.no_grad():
                for name in _NET_TENSORS:
                    parameter = getattr(net, name)
                    if parameter is not None:
                        value = arrays.get(f"member.{k}.{name}", tuple(parameter.shape),
                                           np.float32)
                        parameter.data = torch.from_numpy(value)
            member.net = net.to(target).eval()
            shape = tuple(int(v) for v in entry["inputs_shape"])
            n_rows = n_items if spec.variant == "item" else n_users
            if shape != (n_rows, n_inputs):
                raise ModelFileError(f"{folder / JSON_FILE}: network {k + 1}'s inputs are "
                                     f"{shape}, expected {(n_rows, n_inputs)}")
            member.matrix = _import_csr(arrays, f"member.{k}.inputs", shape)
            member.scale = float(entry["scale"])
            member.best_epoch = int(entry["best_epoch"])
            member.history = list(entry["history"])
            members.append(member)
        if not members:
            raise ModelFileError(f"{folder / JSON_FILE}: the model has no network")
        model.blend_ = arrays.get("blend", (len(members) + 1,))
        model.members_ = members
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else _first_line(exc)
        raise ModelFileError(f"{folder / JSON_FILE}: malformed ({what})") from None
    extra = arrays.unused()
    if extra:
        raise ModelFileError(f"{weights_path}: unexpected arrays {', '.join(extra[:5])}")
    log.info("loaded model from %s onto %s", folder, target)
    return model


def _read_weights(path: Path, recorded: dict[str, Any]) -> bytes:
    """The bytes of ``model.safetensors``, checked against the size and SHA-256 in the JSON."""
    if not path.is_file():
        raise ModelFileError(f"{path}: missing (a model folder holds {JSON_FILE} and "
                             f"{WEIGHTS_FILE})")
    expected_size = recorded.get("bytes")
    expected_hash = recorded.get("sha256")
    if not isinstance(expected_size, int) or not isinstance(expected_hash, str):
        raise ModelFileError(f"{path.parent / JSON_FILE}: no size and SHA-256 recorded for "
                             f"{WEIGHTS_FILE}")
    size = path.stat().st_size
    if size != expected_size:
        kind = "truncated" if size < expected_size else "longer than recorded"
        raise ModelFileError(f"{path}: {kind} ({size} bytes, {expected_size} recorded); "
                             "the file is damaged or was replaced")
    digest = hashlib.sha256()
    chunks = []
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                chunks.append(chunk)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if digest.hexdigest() != expected_hash.lower():
        raise ModelFileError(f"{path}: SHA-256 checksum mismatch (the file was modified or "
                             f"replaced since it was saved); refusing to load it")
    return b"".join(chunks)


class _Arrays:
    """The decoded tensors, handed out with their shape and dtype checked."""

    def __init__(self, tensors: dict[str, np.ndarray], source: Path) -> None:
        self._tensors = tensors
        self._source = source
        self._used: set[str] = set()

    def get(self, name: str, shape: tuple[int, ...] | None = None,
            dtype: type | None = None) -> np.ndarray:
        if name not in self._tensors:
            raise ModelFileError(f"{self._source}: array {name!r} is missing")
        value = self._tensors[name]
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ModelFileError(f"{self._source}: array {name!r} has shape "
                                 f"{tuple(value.shape)}, expected {tuple(shape)}")
        if dtype is not None and value.dtype != dtype:
            raise ModelFileError(f"{self._source}: array {name!r} is {value.dtype}, "
                                 f"expected {np.dtype(dtype)}")
        self._used.add(name)
        return np.array(value, copy=True)  # writable, owned by the model

    def unused(self) -> list[str]:
        return sorted(set(self._tensors) - self._used)


def _import_ids(entry: dict[str, Any], arrays: _Arrays, n: int, name: str,
                folder: Path) -> IdMap:
    storage = entry.get("storage")
    if storage == "int64":
        raw: Any = arrays.get(str(entry["tensor"]), (n,), np.int64)
    elif storage == "text":
        raw = entry["ids"]
        if not isinstance(raw, list) or len(raw) != n or not all(isinstance(v, str)
                                                                 for v in raw):
            raise ModelFileError(f"{folder / JSON_FILE}: {name} ids are not {n} strings")
    else:
        raise ModelFileError(f"{folder / JSON_FILE}: unknown id storage {storage!r} for "
                             f"{name}")
    try:
        return IdMap(raw)
    except ValueError as exc:
        raise ModelFileError(f"{folder / JSON_FILE}: {name} ids: {_first_line(exc)}") from None


def _import_csr(arrays: _Arrays, prefix: str, shape: tuple[int, ...]) -> sp.csr_matrix:
    indptr = arrays.get(f"{prefix}.indptr", (shape[0] + 1,))
    indices = arrays.get(f"{prefix}.indices")
    data = arrays.get(f"{prefix}.data", (len(indices),), np.float32)
    if (indptr.dtype.kind != "i" or indices.dtype.kind != "i" or indptr[0] != 0
            or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0)
            or (len(indices) and (indices.min() < 0 or indices.max() >= shape[1]))):
        raise ModelFileError(f"{arrays._source}: {prefix} is not a valid CSR matrix of shape "
                             f"{shape}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)


def _field(info: dict[str, Any], key: str, kind: type, folder: Path) -> Any:
    if key not in info:
        raise ModelFileError(f"{folder / JSON_FILE}: malformed (missing {key!r})")
    value = info[key]
    allowed = (int, float) if kind is float else (kind,)
    if isinstance(value, bool) or not isinstance(value, allowed):
        what = {float: "a number", int: "an integer", dict: "an object", list: "a list"}
        raise ModelFileError(f"{folder / JSON_FILE}: malformed ({key!r} is not "
                             f"{what.get(kind, kind.__name__)})")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
