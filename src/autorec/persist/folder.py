"""Where a model folder is written: the path checks (never a user's file) and the atomic
writes (a new folder renamed into place, or the two files of an existing one replaced)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._io import (
    PARSER_ERRORS,
    OutputPathError,
    atomic_path,
    check_output_folder,
    current_umask,
    fsync_folder,
)
from ..exceptions import ModelFileError
from .names import _TEMPORARY, FORMAT, JSON_FILE, METRICS_FILE, WEIGHTS_FILE

__all__ = ["check_save_path", "write_model_files"]

_HEADER_LIMIT = 1 << 20  # bytes of a safetensors header read to tell autorec's weights


def write_model_files(target: Path, weights: bytes, text: bytes) -> None:
    """Write ``model.safetensors`` and ``model.json`` to ``target`` (checked by
    :func:`check_save_path`): a new folder whole, or into the existing one."""
    (_save_into if target.is_dir() else _save_new)(target, weights, text)


def check_save_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a ``path`` that :func:`save_model` would not write.

    Accepted: a new path whose nearest existing folder is writable (the missing folders are
    made), an empty writable folder, or a folder holding only autorec's files (module
    docstring). A link to a folder is followed.

    Returns
    -------
    pathlib.Path
        The folder the model will be written to (links followed).

    Raises
    ------
    ModelFileError
        ``path`` is a file or a device, sits under a file or inside another model's folder,
        cannot be written, or is a folder holding anything but an autorec model's files. The
        message names ``path``.
    """
    given = Path(path)
    try:
        target = check_output_folder(given)
    except OutputPathError as exc:
        raise ModelFileError(f"{exc}; not saving a model there") from None
    for folder in target.parents:  # a model inside another model's folder spoils that one
        if (folder / JSON_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
            raise ModelFileError(f"{given} is inside the model folder {folder}, which holds "
                                 "only autorec's files; choose a folder outside it")
    if not target.is_dir():
        return target
    names = set()
    foreign = []
    with os.scandir(target) as entries:
        for entry in entries:
            ours = entry.name in (JSON_FILE, WEIGHTS_FILE, METRICS_FILE) or _TEMPORARY.fullmatch(
                entry.name)
            if ours and entry.is_file(follow_symlinks=False):
                names.add(entry.name)
            else:
                foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    if foreign:
        shown = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ModelFileError(f"{given} is a folder that holds other files ({shown}); not "
                             "writing a model there: a model folder holds only autorec's "
                             "files (choose a new or empty folder)")
    if (WEIGHTS_FILE in names and JSON_FILE not in names
            and not _is_autorec_weights(target / WEIGHTS_FILE)):
        raise ModelFileError(f"{given} holds a {WEIGHTS_FILE} that is not an autorec model's "
                             f"and no {JSON_FILE}; not replacing it (choose a new or empty "
                             "folder)")
    if JSON_FILE in names and _json_object(target / JSON_FILE).get("format") != FORMAT:
        raise ModelFileError(f"{given / JSON_FILE} is not an autorec model's; not replacing "
                             "it (choose a new or empty folder)")
    if METRICS_FILE in names:
        versions = _json_object(target / METRICS_FILE).get("versions")
        if not (isinstance(versions, dict) and "autorec" in versions):
            raise ModelFileError(f"{given / METRICS_FILE} was not written by autorec; not "
                                 "writing a model beside it (choose a new or empty folder)")
    return target


def _is_autorec_weights(path: Path) -> bool:
    """Whether ``path`` is a safetensors file that :func:`save_model` wrote (its header's
    metadata says ``autorec-model/N``): the weights a save killed before its ``model.json``
    left alone in a folder."""
    # the header alone (not safetensors' safe_open, which refuses a file cut short: a
    # damaged save of autorec's is still autorec's to replace)
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= _HEADER_LIMIT:
                return False
            header = json.loads(handle.read(size).decode("utf-8"))
    except (OSError, *PARSER_ERRORS):
        return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return (isinstance(metadata, dict)
            and str(metadata.get("format", "")).startswith(f"{FORMAT}/"))


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when it is not one (unreadable, not JSON...)."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, *PARSER_ERRORS):
        return {}
    return value if isinstance(value, dict) else {}


def _save_new(target: Path, weights: bytes, text: bytes) -> None:
    """Write a new model folder whole, as a hidden temporary folder renamed into place."""
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        _write_file(tmp / WEIGHTS_FILE, weights)
        _write_file(tmp / JSON_FILE, text)
        os.chmod(tmp, 0o777 & ~current_umask())
        fsync_folder(tmp)
        os.rename(tmp, target)  # fails if a non-empty folder appeared there meanwhile
        tmp = None
        fsync_folder(target.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:  # also on Ctrl-C: no temporary folder left
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _save_into(folder: Path, weights: bytes, text: bytes) -> None:
    """Replace the model files in an existing folder (checked by :func:`check_save_path`):
    the weights, then ``model.json``; nothing else in the folder is touched."""
    for path in folder.iterdir():  # a killed save's leftovers (one save at a time)
        if _TEMPORARY.fullmatch(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
    weights_path = folder / WEIGHTS_FILE
    backup: Path | None = None
    if weights_path.is_file() and not weights_path.is_symlink():
        backup = folder / f".{WEIGHTS_FILE}.{os.urandom(6).hex()}.old"
        try:
            os.link(weights_path, backup)  # the old weights, to put back if model.json fails
        except OSError:
            backup = None
    switched = False
    try:
        with atomic_path(weights_path) as tmp:
            _write_file(tmp, weights)
        switched = True
        with atomic_path(folder / JSON_FILE) as tmp:
            _write_file(tmp, text)
        switched = False
    finally:  # also on Ctrl-C: the old weights back beside the old model.json
        if switched and backup is not None:
            with contextlib.suppress(OSError):
                os.replace(backup, weights_path)
                backup = None
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)


def _write_file(path: Path, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
        os.fchmod(handle.fileno(), 0o666 & ~current_umask())


