"""Item titles: the movie files of the MovieLens sets, or a user's ``item_id,title`` CSV.

Layouts (:data:`ITEM_LAYOUTS`), guessed from the file name when not given:

``u.item``
    ML-100K: ``id|title|release date|...``, no header (any name ending in ``.item``).
``movies.dat``
    ML-1M and ML-10M: ``id::title::genres``, no header (any name ending in ``.dat``).
``csv``
    ml-latest, ML-20M and later (``movies.csv``: ``movieId,title,genres``) or any CSV with a
    header naming an ``item_id`` (or ``movieId``) column and a ``title`` column; quoted
    fields as usual. Other columns are ignored.

The MovieLens ``u.item`` and ``movies.dat`` files are Latin-1; they are read as UTF-8 when
they are valid UTF-8 and as Latin-1 otherwise. A CSV must be UTF-8 (a byte order mark is
skipped). Files may be compressed like ratings files (``.gz``, ``.bz2``, ``.xz``, ``.zip``).
Ids are found by their text, as everywhere (:mod:`autorec.data.ids`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError
from ._source import check_file, decode_error, read_source
from .ids import IdMap, InvalidIdError, id_column

__all__ = ["ITEM_LAYOUTS", "ItemTitles", "dataset_item_titles", "read_item_titles"]

ITEM_LAYOUTS: tuple[str, ...] = ("u.item", "movies.dat", "csv")
_ID_COLUMNS = ("item_id", "movieId")


@dataclass(frozen=True, eq=False)
class ItemTitles:
    """Titles by raw item id.

    Attributes
    ----------
    ids
        The item ids of the file.
    titles
        ``titles[k]`` is the title of ``ids.to_raw([k])``.
    source
        The file read.
    """

    ids: IdMap
    titles: np.ndarray
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.titles)

    def title_of(self, item_ids: Any) -> np.ndarray:
        """The title of each raw id (compared by text); ``None`` for an id not in the file."""
        index = self.ids.to_index(item_ids)
        out = np.full(len(index), None, dtype=object)
        known = index >= 0
        out[known] = self.titles[index[known]]
        return out


def read_item_titles(path: str | PathLike[str], *, layout: str | None = None) -> ItemTitles:
    """Read item titles from ``path``.

    Parameters
    ----------
    path
        A ``u.item``, ``movies.dat`` or ``movies.csv`` file, or a CSV with ``item_id`` and
        ``title`` columns.
    layout
        One of :data:`ITEM_LAYOUTS`; ``None`` guesses from the name (``.item``, ``.dat``,
        anything else CSV).

    Raises
    ------
    DataError
        Missing or unreadable file, a line without an id or title, a CSV without the columns,
        text that is not UTF-8 (CSV), an id that is not an integer or text, a repeated id;
        the file, line and field are named.
    """
    path = Path(path)
    if layout is not None and layout not in ITEM_LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(ITEM_LAYOUTS)}, got {layout!r}")
    check_file(path)
    data, name = read_source(path)
    if layout is None:
        suffix = Path(name).suffix.lower()
        layout = {".item": "u.item", ".dat": "movies.dat"}.get(suffix, "csv")
    source = str(path)
    rows = list(_csv_rows(data, source) if layout == "csv" else
                _separated_rows(data, "|" if layout == "u.item" else "::", source))
    if not rows:
        raise DataError("no items", source=source)
    lines, ids, titles = zip(*rows, strict=True)
    try:
        column = id_column(ids)
    except InvalidIdError as exc:
        raise DataError(exc.problem, source=source, line=lines[exc.position],
                        field="item id") from None
    repeated = column.duplicated().to_numpy()
    if repeated.any():
        k = int(repeated.argmax())
        first = int(np.flatnonzero((column == column.iloc[k]).to_numpy())[0])
        raise DataError(f"item id {ids[k]!r} repeated (first at line {lines[first]})",
                        source=source, line=lines[k], field="item id")
    return ItemTitles(IdMap(column), np.array(titles, dtype=object), source)


def dataset_item_file(name: str, data_dir: str | PathLike[str] | None = None) -> Path | None:
    """The item file of builtin data set ``name`` when it is there locally (looked up like its
    ratings, see :func:`autorec.data.builtin.find_local_dir`; never downloads), else
    ``None``."""
    from .builtin import DATASETS, find_local_dir

    spec = DATASETS.get(name)
    if spec is None or spec.items_file is None:
        return None
    folder = find_local_dir(name, data_dir)
    if folder is None or not (folder / spec.items_file).is_file():
        return None
    return folder / spec.items_file


def dataset_item_titles(name: str, data_dir: str | PathLike[str] | None = None
                        ) -> ItemTitles | None:
    """The titles of builtin data set ``name`` from its local item file
    (:func:`dataset_item_file`), else ``None``."""
    path = dataset_item_file(name, data_dir)
    return None if path is None else read_item_titles(path)


# -- parsing -------------------------------------------------------------------------------------
def _text(data: bytes, source: str, *, strict: bool) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not strict:
            text = data.decode("latin-1")
        else:  # lines end in \n, \r\n or \r, as the ratings reader counts them
            raise decode_error(data, exc.start, 1, source) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _separated_rows(data: bytes, sep: str, source: str) -> Iterator[tuple[int, str, str]]:
    """The line, id and title of each ``id<sep>title[<sep>...]`` line (``u.item``,
    ``movies.dat``)."""
    for number, line in enumerate(_text(data, source, strict=False).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) < 2:
            raise DataError(f"expected an id and a title separated by {sep!r}", source=source,
                            line=number)
        # movies.dat: id::title::genres (a title holding '::' keeps it)
        title = sep.join(fields[1:-1]) if sep == "::" and len(fields) > 2 else fields[1]
        yield number, fields[0].strip(" \t"), title.strip()


def _csv_rows(data: bytes, source: str) -> Iterator[tuple[int, str, str]]:
    """The line, id and title of each row of a CSV with a header naming an id column and a
    ``title`` column."""
    text = _text(data, source, strict=True)
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        header: list[str] | None = None
        previous = 0
        for row in reader:
            start, previous = previous + 1, reader.line_num
            if not any(field.strip() for field in row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                id_name = next((c for c in _ID_COLUMNS if c in header), None)
                if id_name is None or "title" not in header:
                    missing = "title" if id_name is not None else "item_id"
                    raise DataError(f"missing column (columns present: "
                                    f"{', '.join(repr(c) for c in header)}); item files need "
                                    "item_id (or movieId) and title", source=source,
                                    field=missing)
                id_at, title_at = header.index(id_name), header.index("title")
                continue
            if len(row) != len(header):
                raise DataError(f"expected {len(header)} fields, found {len(row)}",
                                source=source, line=start)
            yield start, row[id_at].strip(" \t"), row[title_at].strip()
    except csv.Error as exc:
        raise DataError(f"malformed ({exc})", source=source, line=previous + 1) from None
    if header is None:
        raise DataError("empty file", source=source)
