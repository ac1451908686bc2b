"""The bytes of a ratings file, decompressed, and the name that decides its format.

``.gz``, ``.bz2`` and ``.xz`` files are decompressed whole; their format is that of the name
without the compression suffix (``ratings.csv.gz`` is CSV, ``u.data.gz`` tab-separated). A
``.zip`` must hold exactly one file (folders and macOS ``__MACOSX/`` entries aside), whose
name decides the format.
"""

from __future__ import annotations

import bz2
import collections
import contextlib
import csv
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..exceptions import DataError, first_line

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COMPRESSED_SUFFIXES", "NUMBER", "arrow_input", "check_columns", "check_file",
           "compression_hint", "decode_error", "held_on_error", "line_end", "not_for",
           "read_head", "read_parquet", "read_source", "readers_stopped_by_error", "unique_unused"]

_DECOMPRESS = {".gz": ("gzip", gzip.decompress), ".bz2": ("bzip2", bz2.decompress),
               ".xz": ("xz", lzma.decompress)}
COMPRESSED_SUFFIXES: tuple[str, ...] = (*_DECOMPRESS, ".zip")
_HEAD_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"
_MAGIC = {b"\x1f\x8b": ".gz", b"BZh": ".bz2", b"\xfd7zXZ\x00": ".xz", b"PK\x03\x04": ".zip"}


def check_file(path: Path) -> None:
    """Refuse a ``path`` that does not exist or is not a file."""
    if not path.exists():
        raise DataError("no such file", source=path)
    if not path.is_file():
        raise DataError("not a file", source=path)


def read_source(path: Path) -> tuple[bytes, str]:
    """The (decompressed) bytes of ``path`` and the name that decides their format."""
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot be read ({exc.strerror or exc})", source=path) from None
    if suffix == ".zip":
        return _read_zip(raw, path)
    if suffix in _DECOMPRESS:
        kind, decompress = _DECOMPRESS[suffix]
        try:
            return decompress(raw), path.stem
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
            raise DataError(f"not a valid {kind} file ({first_line(exc)})", source=path) from None
    return raw, path.name


def compression_hint(data: bytes, name: str = "") -> str:
    """``"; it looks gzip-compressed: name it .gz"`` when ``data`` starts like a compressed
    file (or a Parquet file), else ``""`` (for messages about undecodable text); for a file
    ``name``d as compressed (so ``data`` was unpacked once already), that it was compressed
    twice."""
    if data.startswith(b"PAR1"):
        return "; it looks like a Parquet file: give it the .parquet extension"
    for magic, suffix in _MAGIC.items():
        if data.startswith(magic):
            if name.lower().endswith(tuple(_MAGIC.values())):
                return (f"; once unpacked it still looks {suffix[1:]}-compressed: compressed "
                        "twice? unpack it once and give that file")
            return f"; it looks {suffix[1:]}-compressed: give it the {suffix} extension"
    return ""


def _read_zip(raw: bytes, path: Path) -> tuple[bytes, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()
                       and not info.filename.startswith("__MACOSX/")]
            if len(members) != 1:
                names = ", ".join(info.filename for info in members[:5])
                more = ", ..." if len(members) > 5 else ""
                problem = ("holds no file" if not members else
                           f"holds {len(members)} files ({names}{more}); give a zip with one "
                           "ratings file, or unpack it and name the file")
                raise DataError(problem, source=path)
            return archive.read(members[0]), Path(members[0].filename).name
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: encrypted member
        raise DataError(f"not a valid zip file ({first_line(exc)})", source=path) from None


# -- the first lines of a text file ---------------------------------------------------------
def line_end(data: bytes) -> int:
    """Where the line after the first one starts (``len(data)`` without a line end)."""
    ends = [k for k in (data.find(b"\n"), data.find(b"\r")) if k >= 0]
    if not ends:
        return len(data)
    end = min(ends)
    return end + (2 if data[end:end + 2] == b"\r\n" else 1)


def read_head(raw: BinaryIO, sep: str, source: str) -> tuple[bytes, int, list[str]]:
    """The bytes from the first non-blank line on (at least that whole line), how many blank
    lines came before it, and its fields."""
    data = raw.read(_HEAD_BYTES)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError("is UTF-16 text; save it as UTF-8", source=source)
    skipped = 0
    while True:
        end = line_end(data)
        if (end == len(data) or data[end - 1:end + 1] == b"\r") and (more := raw.read(
                _HEAD_BYTES)):
            data += more  # the line, or its "\r\n", goes on
            continue
        if data[:end].strip() or not data:
            break
        data, skipped = data[end:], skipped + 1
    if not data.strip():
        raise DataError("empty file", source=source)
    line = data[:line_end(data)].rstrip(b"\r\n")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise decode_error(line, exc.start, skipped + 1, source) from None
    if sep == "::":
        text, sep = text.replace("::", "\t"), "\t"
    try:
        fields = next(csv.reader([text], delimiter=sep, strict=False), [])
    except csv.Error:
        fields = text.split(sep)
    return data, skipped, fields


def unique_unused(names: list[str], columns: Sequence[str]) -> list[str]:
    """``names`` with a column that is not one of ``columns`` and repeats an earlier name
    renamed (``x.2``): a spreadsheet's trailing empty headers, or two unused ``note``
    columns, are fine (a used column named twice is refused by :func:`check_columns`)."""
    out: list[str] = []
    for name in names:
        new, k = name, 1
        while name not in columns and (new in out or (new != name and new in names)):
            k += 1
            new = f"{name}.{k}"
        out.append(new)
    return out


#: A number written in plain decimal (``3``, ``-.5``, ``1e3``): a header of such names is
#: a line of data; the Netflix reader tries the others one by one on an error.
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def check_columns(present: Sequence[Any], columns: Sequence[str], source: str | Path, *,
                  hint: bool = True, line: int | None = None) -> None:
    """Refuse a missing column, naming those present, and a column named twice (on the
    header's ``line``, when given); with ``hint``, a lone column that holds a separator asks
    whether ``--sep`` is right."""
    names = [str(name) for name in present]
    for col in columns:
        if (count := list(present).count(col)) > 1:
            raise DataError(f"{count} columns have this name: which one holds the values is "
                            "unclear", source=source, line=line, field=col)
        if col not in present:
            shown = ", ".join(repr(name[:40] + "..." if len(name) > 40 else name)
                              for name in names[:10])
            if len(names) > 10:
                shown += f" and {len(names) - 10:,} more"
            binary = any(c < " " and c not in "\t" for name in names for c in name)
            wrong_sep = hint and len(names) == 1 and any(c in names[0] for c in "\t;|,: ")
            # a file without a header read with one: its first ratings taken as names
            data_line = hint and all(isinstance(name, str) and NUMBER.fullmatch(name.strip())
                                     for name in present)
            if binary:  # no names to show: a binary file read as text
                kind = ("it looks like a Parquet file: give it the .parquet extension"
                        if names[0].startswith("PAR1") else
                        "an archive (.tar?) or another binary file?")
                raise DataError(f"missing column: the first line is not text; {kind}",
                                source=source, field=col)
            comment = hint and names[0].lstrip(" \t").startswith("#")
            why = ("; the first line starts with '#', but files have no comments: remove the "
                   "comment line, or the '#' before a header" if comment else
                   "; is the field separator right? (--sep)" if wrong_sep else
                   "; is the first line data, not a header? (--no-header)" if data_line else "")
            raise DataError(f"missing column (columns present: {shown}){why}", source=source,
                            field=col)


def decode_error(data: bytes, position: int, first_line: int, source: str) -> DataError:
    """The error for the byte at ``position`` of ``data`` (which starts on ``first_line``)."""
    if first_line == 1 and data.startswith((b"\xff\xfe", b"\xfe\xff")):  # its mark
        return DataError("is UTF-16 text; save it as UTF-8", source=source)
    line = first_line + data.count(b"\n", 0, position) + data.count(b"\r", 0, position) \
        - data.count(b"\r\n", 0, position)
    return DataError(f"not UTF-8 text (byte 0x{data[position]:02x}); save the file as "
                     f"UTF-8{compression_hint(data, source)}", source=source, line=line)


def arrow_input(path: Path, open_raw: Callable[[], BinaryIO]) -> Any:
    """The (decompressed) bytes of ``path`` as a file of pyarrow's own (``OSFile``, or a
    ``BufferReader`` over a copy), for a reader that needs no Python-side checks: a reader
    stopped by an error while reading a Python file object can abort the process at shutdown
    (see :func:`held_on_error`).
    """

    import pyarrow as pa

    if path.suffix.lower() in COMPRESSED_SUFFIXES:
        with open_raw() as raw:
            sink = pa.BufferOutputStream()
            sink.write(raw.read())
        return pa.BufferReader(sink.getvalue())
    return pa.OSFile(str(path), "rb")


#: The Python file objects of pyarrow readers stopped by an error (the last few): see
#: :func:`held_on_error`.
_HELD: collections.deque[Any] = collections.deque(maxlen=16)


def readers_stopped_by_error() -> bool:
    """Whether a reader stopped by an error holds Python objects (:func:`held_on_error`):
    the interpreter's shutdown may then still abort the process (the command line ends
    without it, :func:`autorec.cli.main.cli`)."""
    return bool(_HELD)


@contextlib.contextmanager
def held_on_error(objects: list[Any], stream: Any = None) -> Iterator[None]:
    """On an error mid-file, keep ``objects`` (the ``pyarrow.PythonFile`` a reader reads,
    and the reader, appended once made) referenced from Python until the process ends.

    A pyarrow reader stopped by an error drops its last references to the Python file in one
    of its threads when its read-ahead completes; if the interpreter is shutting down by then,
    that release aborts the process (status 134, "terminate called without an active
    exception"). Held here, the last release is the interpreter's own. With ``stream`` (the
    ``_csv`` reader's: ``stopped``, ``ended``), the rest reads as empty, and a read in flight
    is given up to half a second to end.
    """
    try:
        yield
    except BaseException:
        _HELD.append(list(objects))
        if stream is not None:  # a read in flight ends; the next one sees the end
            stream.stopped = True
            stream.ended.wait(0.5)  # at once where the file was read to its end
        raise


def not_for(path: Path, kind: str, **given: Any) -> None:
    """Refuse the text-file options given for a file of another format (they would be
    ignored without a word): ``header`` counts when ``False``, the others when not
    ``None``."""
    used = [name for name, value in given.items()
            if (value is False if name == "header" else value is not None)]
    if used:
        flags = {"sep": "--sep", "header": "--no-header", "names": "names",
                 "columns": "--columns"}
        shown = ", ".join(f"{name} ({flags[name]})" if flags[name] != name else name
                          for name in used)
        raise ValueError(f"{path} is {kind}, read in its own format: {shown} "
                         f"{'does' if len(used) == 1 else 'do'} not apply")


def read_parquet(open_raw: Callable[[], BinaryIO], path: Path) -> pd.DataFrame:
    """A Parquet file's table, read through pyarrow's own files (:func:`arrow_input`)."""
    import pyarrow.parquet as pq

    try:
        with arrow_input(path, open_raw) as source:
            # the columns as stored: pandas' metadata would turn a saved index into the
            # frame's index, and a ratings column saved as the index would go missing
            return pq.read_table(source).to_pandas(ignore_metadata=True)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"not a readable Parquet file ({type(exc).__name__})",
                        source=path) from None
