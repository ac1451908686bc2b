"""Output files written atomically: a reader sees the old file or the new one, never a part.

Every file autorec writes (``metrics.json`` today; predictions and model files later) goes
through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "current_umask"]


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

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the
    umask), its content is flushed to disk before the rename, and the temporary file is
    removed whatever goes wrong.

    Raises
    ------
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
    to disk, given the usual permissions and renamed to ``path``.

    For writers that want a file name rather than an open file (safetensors' ``save_file``
    streams tensors to disk). The temporary file is removed whatever goes wrong; an
    ``OSError`` names ``path`` (see :func:`atomic_write`).
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
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


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (where folders can be opened)."""
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
