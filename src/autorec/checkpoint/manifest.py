"""A checkpoint folder's format (:mod:`autorec.checkpoint`): the fingerprint of the data and
settings, the manifest and its checksum, the safetensors files it names, and the checks of all
three before a resume."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import __version__
from .._io import (
    PARSER_ERRORS,
    OutputPathError,
    atomic_path,
    atomic_write,
    check_output_folder,
    parse_problem,
)
from ..data.ratings import sha256_of
from ..exceptions import CheckpointError, first_line

if TYPE_CHECKING:
    from ..data.ratings import Ratings
    from ..fitted import FittedModel

FORMAT = "autorec-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "checkpoint.json"
#: Temporary files a killed writer can leave: ours (``.ckpt-*`` from earlier versions), and
#: safetensors' own (``.tmpXXXXXX``).
_STALE = re.compile(r"\..*\.safetensors\..*\.tmp|\.ckpt-.*\.tmp|\.checkpoint\.json\..*\.tmp|"
                    r"\.tmp[A-Za-z0-9]{6}|\.autorec-probe-.*\.tmp")  # and the write check's
#: Files of ours that a manifest may name, and those temporaries (anything else in the folder
#: is left alone).
_OURS = re.compile(r"(net|initial)-(select|refit)-c\d+-n\d+\.safetensors|"
                   r"(train|best)-\d+\.safetensors|" + _STALE.pattern)
_CHUNK = 1 << 22


# -- fingerprints ------------------------------------------------------------------------------
def fingerprint(model: FittedModel, ratings: Ratings, eval_set: Ratings | None,
                device: torch.device, context: dict[str, Any] | None) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed by this fit.

    ``model`` is the fit in progress (its parameters and id maps set); ``ratings`` are the
    training ratings on ``model.users`` / ``model.items``.
    """
    config = {k: v for k, v in model.params.items() if k != "device"}
    config["device_type"] = device.type
    data = {"n_ratings": len(ratings), "n_users": len(model.users),
            "n_items": len(model.items),
            "sha256": sha256_of(ratings.user_idx, ratings.item_idx, ratings.rating,
                                   model.users.raw_ids, model.items.raw_ids)}
    evaluation = None
    if eval_set is not None:
        evaluation = {"n_ratings": len(eval_set), "sha256": sha256_of(
            model.users.to_index(eval_set.user_ids), model.items.to_index(eval_set.item_ids),
            eval_set.rating)}
    return _plain({"data": data, "evaluation": evaluation, "config": config,
                   "context": context or {}})


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, numpy scalars as Python's)."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} in {MANIFEST}")


def differences(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first kind of mismatch between two fingerprints, in words, or ``None``."""
    for part, what in (("config", "another configuration"), ("context", "other options")):
        old, new = saved.get(part) or {}, current[part]
        changed = [f"{key} {_show(old.get(key))} there, {_show(new.get(key))} here"
                   for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
        if changed:
            return f"made with {what}: {'; '.join(changed)}"
    if saved.get("data") != current["data"]:
        old, new = saved.get("data") or {}, current["data"]
        counts = [f"{key} {old.get(key)} there, {new[key]} here" for key in
                  ("n_ratings", "n_users", "n_items") if old.get(key) != new[key]]
        return ("made with other data: the training ratings differ (" +
                ("; ".join(counts) if counts else
                 f"SHA-256 {str(old.get('sha256'))[:12]}... there, {new['sha256'][:12]}... here")
                + ")")
    if saved.get("evaluation") != current["evaluation"]:
        return "made with another evaluation set"
    return None


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


# -- files -------------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of a writer that was killed mid-write (never part of a
    checkpoint: a file is renamed into place only once it is complete)."""
    for path in folder.iterdir():
        if _STALE.fullmatch(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()


def write_tensors(folder: Path, name: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Write ``folder/name`` in full (temporary file, fsync, rename); its size and SHA-256."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = folder / name
    try:
        with atomic_path(path) as tmp:
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp,
                      # one key: safetensors writes its metadata map in a random order
                      metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    except SafetensorError as exc:  # its I/O errors (a full disk): named, as other writes
        raise OSError(f"cannot write {path}: {first_line(exc, 200)}") from None
    return {"name": name, "size": path.stat().st_size, "sha256": _file_digest(path)}


def read_tensors(folder: Path, info: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(folder / info["name"])
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {folder}: {info['name']} is unreadable "
                              f"({first_line(exc, 200)})") from None


def _body_digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(folder: Path, *, sequence: int, complete: bool, position: str,
                   fingerprint: dict[str, Any], networks: dict[str, Any],
                   current: dict[str, Any] | None) -> None:
    """Write ``folder``'s manifest atomically (these fields, the format, the versions, the
    time and the checksum), then delete the files of ours that it does not name."""
    body = _plain({
        "format": FORMAT, "format_version": FORMAT_VERSION, "sequence": sequence,
        "complete": complete, "position": position,
        "autorec": __version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(),
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint, "networks": networks, "current": current,
    })
    text = json.dumps({**body, "sha256": _body_digest(body)}, indent=1)
    atomic_write(folder / MANIFEST, lambda handle: handle.write(text + "\n"))
    keep = {MANIFEST, *(info["name"] for info in files_of(body))}
    for path in folder.iterdir():
        if path.name not in keep and _OURS.fullmatch(path.name):
            with contextlib.suppress(OSError):
                path.unlink()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, *PARSER_ERRORS) as exc:
        why = first_line(exc, 200) if isinstance(exc, OSError) else parse_problem(exc)
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is unreadable "
                              f"({why})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is not an autorec "
                              "checkpoint manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint in {folder}: format version "
                              f"{manifest.get('format_version')!r}; this autorec reads "
                              f"{FORMAT_VERSION}")
    recorded = manifest.pop("sha256", None)
    if recorded != _body_digest(manifest):
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} was altered (its checksum "
                              "differs from the one recorded in it)")
    try:
        int(manifest["sequence"])
        for info in files_of(manifest):
            str(info["name"]), int(info["size"]), str(info["sha256"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint in {folder}: {MANIFEST} is malformed "
                              f"({first_line(exc, 200)})") from None
    return manifest


def files_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    files = [record["file"] for record in manifest["networks"].values()]
    current = manifest.get("current")
    if current is not None:
        files += [info for info in current["files"].values() if info is not None]
    return files


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    for info in files_of(manifest):
        path = folder / info["name"]
        if not path.is_file():
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is missing")
        size = path.stat().st_size
        if size != info["size"]:
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is truncated or "
                                  f"altered ({size} bytes; the manifest records {info['size']})")
        if _file_digest(path) != info["sha256"]:
            raise CheckpointError(f"checkpoint in {folder}: {info['name']} is corrupted or "
                                  "altered (its SHA-256 differs from the one recorded)")


def describe(folder: str | os.PathLike[str]) -> str | None:
    """Where the checkpoint in ``folder`` stands, in words (``None``: no checkpoint there).
    Reads only the manifest; :meth:`Session.open` does the checking."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return str(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["position"])
    except (OSError, ValueError, KeyError, TypeError):
        return "an unreadable checkpoint"


def _foreign(folder: Path) -> Path | None:
    """The first entry of ``folder`` that autorec did not write there, if any. Its own: the
    manifest and the files it names, network files marked as a checkpoint's (a fit killed
    before its next manifest leaves them), a killed writer's temporaries, and ``fold-K``
    folders (:mod:`autorec.evaluate`'s) of the same kind. An unreadable manifest names
    nothing: the resume says why."""
    named = {MANIFEST}
    if (folder / MANIFEST).is_file():
        with contextlib.suppress(CheckpointError):
            named |= {str(info["name"]) for info in files_of(read_manifest(folder))}
    for path in sorted(folder.iterdir()):
        if re.fullmatch(r"fold-\d+", path.name) and path.is_dir() and not path.is_symlink():
            inner = _foreign(path)
            if inner is not None:
                return inner
        elif not (path.is_file() and (path.name in named or _STALE.fullmatch(path.name)
                                      or _written_here(path))):
            return path
    return None


def _written_here(path: Path) -> bool:
    """Whether ``path`` is a checkpoint's network file (named as one, and marked so inside by
    :func:`write_tensors`): one a fit killed before its first manifest leaves."""
    if not _OURS.fullmatch(path.name) or not path.name.endswith(".safetensors"):
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as handle:
            marked = (handle.metadata() or {}).get("format", "")
    except (SafetensorError, OSError, ValueError):
        return False
    return marked.startswith(f"{FORMAT}/")


def check_folder(folder: str | os.PathLike[str], *, resume: bool,
                 folds: bool | None = None) -> None:
    """Fail early when ``folder`` cannot take checkpoints: it is not a folder, sits under a
    file, cannot be written, holds files autorec did not write there (:func:`_foreign`: a
    new manifest deletes the files of ours it does not name), or (without ``resume``) it, or
    a ``fold-K`` folder in it, already holds a checkpoint. With ``resume`` and ``folds``
    known (checkpoints in ``fold-K`` folders, or in ``folder`` itself), a checkpoint of the
    other layout is refused too (else it would be passed over as "no checkpoint")."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} exists and is not a folder")
    try:
        check_output_folder(folder)
    except OutputPathError as exc:
        raise CheckpointError(f"checkpoint folder: {exc}") from None
    foreign = _foreign(folder) if folder.is_dir() else None
    if foreign is not None:
        raise CheckpointError(
            f"checkpoint folder {folder} holds {foreign.relative_to(folder)}, which autorec "
            "did not write there (its files would be written beside it, and a file named as "
            "one of them replaced or deleted); give a new or empty folder")
    if resume and folds is not None and folder.is_dir():
        other = folder / MANIFEST if folds else min(folder.glob(f"fold-*/{MANIFEST}"),
                                                     default=None)
        if other is not None and other.is_file():
            raise CheckpointError(
                f"{other.parent} holds a checkpoint of "
                f"{'one split' if folds else 'k-fold training'}, not of "
                f"{'k-fold training' if folds else 'one split'}; resume it with the split "
                "it was made with, or give another checkpoint folder")
    if not resume and folder.is_dir():
        for manifest in [folder / MANIFEST, *sorted(folder.glob(f"fold-*/{MANIFEST}"))]:
            if manifest.is_file():
                where = describe(manifest.parent)
                raise CheckpointError(
                    f"{manifest.parent} already holds a checkpoint ({where}); resume it "
                    "(--resume, resume=True) or give another checkpoint folder")
