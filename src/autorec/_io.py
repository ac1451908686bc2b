"""Output files written atomically, and output paths checked before any work.

Every file autorec writes (``metrics.json``, predictions, plots, model and checkpoint files)
goes through :func:`atomic_write` or :func:`atomic_path`: a reader sees the old file or the
new one, never a part.

Where writes go (the rules every command follows; :func:`check_output_file` and
:func:`check_output_folder` check them before any work starts):

* only regular files are written: a path that is a character or block device, a named pipe
  or a socket is refused (the command line takes ``-`` for standard output where it makes
  sense), and so is a folder where a file is meant;
* symbolic links are written through: a link to a file has the file it points to replaced
  (atomically), and the link stays; a link to a folder is used as that folder;
* a file's folder must exist and be a writable folder (an output *folder* may be new: its
  missing folders are made, under an existing writable one); writability is probed by
  creating and removing a hidden temporary file, since ``os.access`` says yes to root even
  on a read-only mount;
* replacing a file keeps its permission bits; a new file gets ``0o666`` less the umask.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .exceptions import first_line

__all__ = ["OutputPathError", "atomic_path", "atomic_write", "check_output_file",
           "check_output_folder", "current_umask", "file_kind", "json_ready", "same_path",
           "write_target"]


class OutputPathError(ValueError):
    """An output path that autorec will not write: a device, a pipe, a folder where a file is
    meant, a missing or read-only folder. The message is one line naming the path."""


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[Any]], None],
    *,
    binary: bool = False,
    encoding: str = "utf-8",
) -> None:
    """Write ``path`` through a temporary file in the same folder and a rename.

    Parameters
    ----------
    path
        The file to create or replace; missing parent folders are made.
    write
        Called with the open temporary file (text, or binary with ``binary=True``); it
        writes the whole content.
    binary, encoding
        How the temporary file is opened.

    The content is flushed to disk before the rename; the temporary file is removed whatever
    goes wrong (permissions and links: the module docstring).

    Raises
    ------
    OutputPathError
        ``path`` is a folder, a device, a named pipe or a socket (see :func:`atomic_path`).
    OSError
        Writing failed (a full disk, no permission...); the error names ``path``.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": encoding})
                  ) as handle:
            write(handle)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` to write in full; on leaving the block it is flushed
    to disk, given the usual permissions and renamed to ``path`` (as :func:`atomic_write`,
    for writers that want a file name, such as safetensors' ``save_file``).

    Raises
    ------
    OutputPathError
        ``path`` is (or links to) something other than a regular file: a folder, a device, a
        named pipe, a socket. Nothing is written.
    OSError
        Writing failed.
    """
    given = Path(path)
    path = write_target(given)
    kind = file_kind(path)
    if kind not in (None, "a regular file"):
        raise OutputPathError(f"cannot write {given}: it is {kind}, not a regular file")
    tmp: str | None = None
    try:
        mode = (stat.S_IMODE(os.stat(path).st_mode) if kind is not None
                else 0o666 & ~current_umask())
        # links followed: a folder given as a link to one not made yet is made where it points
        Path(os.path.realpath(path.parent)).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
        fsync_folder(path.parent)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError) and not path.parent.is_dir():
            why = f"{_nearest_non_folder(path.parent)} is not a folder"  # replaced by a file?
        raise OSError(exc.errno, f"cannot write {path}: {why}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where folders can be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DuplicateKeyError(ValueError):
    """A JSON object holding one key twice; ``args[0]`` is the key."""


#: What a JSON or TOML parser raises besides its own error: ``RecursionError`` for values
#: nested thousands deep, ``ValueError`` for an integer of over 4,300 digits.
PARSER_ERRORS = (ValueError, RecursionError)


def parse_problem(exc: BaseException) -> str:
    """Why a JSON or TOML text was refused (``exc``, one of :data:`PARSER_ERRORS`), in a few
    words: a line and a reason for a syntax error, else what Python would not read."""
    if isinstance(exc, RecursionError):
        return "values nested too deeply to read"
    if "digits" in str(exc) and "integer string conversion" in str(exc):
        return "an integer of over 4,300 digits"
    lineno, msg = getattr(exc, "lineno", None), getattr(exc, "msg", None)
    return f"line {lineno}: {msg}" if lineno is not None and msg else first_line(exc, 200)



def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` refusing a key given twice in one object
    (JSON readers disagree on which copy wins), with :class:`DuplicateKeyError`."""
    table: dict[str, Any] = {}
    for key, value in pairs:
        if key in table:
            raise DuplicateKeyError(key)
        table[key] = value
    return table


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON values, for a file or a response that other JSON readers take:
    numpy scalars and arrays as Python's, tuples as lists, paths, ``torch.device`` and keys as
    text, and NaN and infinities as ``null`` (standard JSON has neither)."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(json_ready(key)): json_ready(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays (numpy is not imported here)
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path) or (type(value).__name__ == "device"
                                   and type(value).__module__.startswith("torch")):
        return str(value)
    return value


# -- output paths, checked before any work ----------------------------------------------------
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is, links followed, as :data:`_KINDS` names it (``"a special file"``
    otherwise); ``None`` when nothing is there (or a link points nowhere)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if exc.errno == errno.ENOTDIR:
            return None
        raise
    return next((name for test, name in _KINDS if test(mode)), "a special file")


#: A process's open files as paths: ``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``...
_STREAM = re.compile(r"/(dev/(stdin|stdout|stderr|fd/\d+)|proc/(self|thread-self|\d+)/fd/\d+)")


def stream_alias(path: str | os.PathLike[str]) -> str | None:
    """The ``/dev/std*``, ``/dev/fd/N`` or ``/proc/.../fd/N`` name that ``path`` is or leads
    to through symbolic links, else ``None``: a write through it would replace the file a
    shell redirected the stream to (``>> log``), appended lines and all."""
    current = os.path.abspath(path)
    for _ in range(40):
        if _STREAM.fullmatch(current):
            return current
        head, tail = os.path.split(current)
        real_head = os.path.realpath(head)  # links in the folders on the way
        if real_head != head and _STREAM.fullmatch(os.path.join(real_head, tail)):
            return os.path.join(real_head, tail)
        try:
            link = os.readlink(current)
        except OSError:
            return None
        current = os.path.normpath(os.path.join(head, link))
    return None


def write_target(path: str | os.PathLike[str]) -> Path:
    """The path a write to ``path`` replaces: the file a symbolic link points to (followed to
    the end), else ``path`` itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (hard links, symbolic links and
    ``..`` included); paths that do not exist are compared once resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, links resolved."""
    inner, outer = os.path.realpath(path), os.path.realpath(folder)
    try:
        return os.path.commonpath([inner, outer]) == outer
    except ValueError:  # different drives
        return False


def names_a_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` as given ends with a separator (``x.csv/``), which ``Path`` drops."""
    return os.fspath(path).endswith(tuple(filter(None, (os.sep, os.altsep))))


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a ``path`` that a file cannot be written to.

    Accepted: a regular file (replaced), or a new name in an existing writable folder; a
    symbolic link is checked (and later written) through.

    Returns
    -------
    pathlib.Path
        The path a write would replace (:func:`write_target`).

    Raises
    ------
    OutputPathError
        ``path`` is empty, a folder, a device, a named pipe, a socket, a stream of this
        process (``/dev/stdout``, ``/dev/fd/N``: :func:`stream_alias`); its folder does not
        exist, is not a folder, or is not writable. The message names ``path``.
    """
    given = Path(path)
    if not str(path).strip():
        raise OutputPathError("an output needs a file name")
    if names_a_folder(path):
        raise OutputPathError(f"{os.fspath(path)} ends with a separator, so it names a "
                              "folder; give a file name")
    stream = stream_alias(given)
    if stream is not None:
        raise OutputPathError(f"{given} is a stream of this process ({stream}), not a regular "
                              "file; not writing to it")
    target = write_target(given)
    kind = file_kind(target)
    if kind == "a folder":
        raise OutputPathError(f"{given} is a folder; give a file name")
    if kind not in (None, "a regular file"):
        raise OutputPathError(f"{given} is {kind}, not a regular file; not writing to it")
    folder = target.parent
    folder_kind = file_kind(folder)
    if folder_kind is None:
        raise OutputPathError(f"cannot write {given}: its folder {folder} does not exist")
    if folder_kind != "a folder":
        raise OutputPathError(f"cannot write {given}: {_nearest_non_folder(folder)} is not "
                              "a folder")
    _check_writable(folder, given)
    return target


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, a ``path`` that cannot become (or be) an output folder.

    Accepted: an existing writable folder (a link to one is used as that folder), or a new
    path whose nearest existing folder is writable (the missing ones are made when writing).
    Nothing is created here.

    Returns
    -------
    pathlib.Path
        The folder writes will go to (links followed).

    Raises
    ------
    OutputPathError
        ``path`` is empty or not a folder, sits under a file, or no folder on its way can be
        written. The message names ``path``.
    """
    given = Path(path)
    if not str(path).strip():
        raise OutputPathError("an output needs a folder name")
    target = write_target(given)
    kind = file_kind(target)
    if kind not in (None, "a folder"):
        raise OutputPathError(f"{given} is {kind}, not a folder")
    existing = target
    while file_kind(existing) is None and existing != existing.parent:
        existing = existing.parent
    if file_kind(existing) != "a folder":
        raise OutputPathError(f"cannot make the folder {given}: {existing} is not a folder")
    if ".." in target.relative_to(existing).parts:  # the system's reading, not the check's
        raise OutputPathError(f"cannot make the folder {given}: it goes up ('..') from "
                              f"{existing / target.relative_to(existing).parts[0]}, which does "
                              "not exist")
    _check_writable(existing, given)
    return target


def _nearest_non_folder(folder: Path) -> Path:
    """The first path on the way to ``folder`` that exists and is not a folder."""
    return next((part for part in reversed((folder, *folder.parents))
                 if file_kind(part) not in (None, "a folder")), folder)


def _check_writable(folder: Path, given: Path) -> None:
    """Refuse ``folder`` unless a file can be created in it (``os.access``, then a probe
    file: root passes ``os.access`` even on a read-only mount)."""
    where = "" if folder == given else f" (writing {given})"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"the folder {folder} is not writable{where}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".autorec-probe-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputPathError(f"the folder {folder} is not writable{where}: "
                              f"{exc.strerror or exc}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
