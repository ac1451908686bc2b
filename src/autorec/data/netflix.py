"""The Netflix Prize's rating files: a block per movie, ``MOVIE:`` then ``CUSTOMER,RATING,DATE``.

The prize's ``combined_data_1.txt`` .. ``combined_data_4.txt`` (and each
``training_set/mv_NNNNNNN.txt``) hold, for each movie, a line ``123:`` and then one line per
rating of that movie (the date is ignored)::

    1:
    1488844,3,2005-09-06
    822109,5,2005-05-13

:func:`read_ratings <autorec.data.readers.read_ratings>` recognises the format by its first
line. pyarrow streams the file a block of lines at a time; the movie of each rating is the
last ``MOVIE:`` line above it; ids are integers or text as in every reader (``0100`` and
``100`` are two ids). The ratings then go through :func:`~autorec.data.readers.from_dataframe`,
whose errors are given the file's line numbers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from ..exceptions import DataError
from ._csv import LoadProgress, report
from ._id_blocks import canonical_integers
from ._source import NUMBER, decode_error

__all__ = ["is_netflix", "read_netflix", "read_netflix_frame"]

_HEADER = re.compile(rb"\s*\d+:\s*")
#: Bytes pyarrow reads a block at a time.
BLOCK_BYTES = 1 << 24
COLUMNS = ("user_id", "item_id", "rating")


def is_netflix(first_line: bytes) -> bool:
    """Whether a file whose first non-blank line is ``first_line`` is in the prize's format
    (``MOVIE:``, an integer and a colon)."""
    return _HEADER.fullmatch(first_line) is not None


def read_netflix_frame(open_file: Callable[[], Any], source: str, *, pairs: bool = False,
                       on_block: Callable[[int, int], None] | None = None
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """The ratings of a Netflix Prize file as a ``user_id, item_id, rating`` DataFrame, and
    the 1-based file line of each row. ``open_file()`` opens its (decompressed) bytes as a
    pyarrow file (:func:`autorec.data._source.arrow_input`). With ``pairs``, only the
    customers are read (``customer[,...]`` lines: the prize's ``probe.txt`` and
    ``qualifying.txt`` too); the ratings are 0. ``on_block(bytes, rows)`` is called after
    each block with the bytes read so far (line ends counted as one) and the rows.

    Raises
    ------
    DataError
        Text that is not UTF-8, a rating line before the first movie, a movie line that is
        not an integer and a colon, or a line that is not ``customer,rating[,date]`` or
        whose rating is not a number; named by file and line.
    """
    parts: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []
    # the movie of each rating as an index into the movie lines' texts (and their integers)
    state: dict[str, Any] = {"movie": -1, "lines": 0, "texts": [], "ids": [],
                             "canonical": True, "pairs": pairs}
    with open_file() as raw:
        try:  # one column: every line whole (no field holds the byte 0x01)
            reader = csv.open_csv(raw, read_options=csv.ReadOptions(
                column_names=["line"], block_size=BLOCK_BYTES),
                parse_options=csv.ParseOptions(delimiter="\x01", quote_char=False,
                                               newlines_in_values=False,
                                               ignore_empty_lines=False),
                convert_options=csv.ConvertOptions(column_types={"line": pa.string()}))
            done = rows = 0
            for batch in reader:
                parts.append(_block(batch.column(0), state, source))
                if on_block is not None:
                    done += len(batch) + (pc.sum(pc.binary_length(batch.column(0))).as_py() or 0)
                    rows += len(parts[-1][1])
                    on_block(done, rows)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if "UTF8" in str(exc) or isinstance(exc, UnicodeDecodeError):
                error = _utf8_error(open_file, source)
                if error is not None:
                    raise error from None
            raise DataError(f"not a readable Netflix Prize file ({str(exc).splitlines()[0]})",
                            source=source) from None
    movie_ids = (np.asarray(state["ids"], dtype=np.int64) if state["canonical"]
                 else np.asarray(state["texts"], dtype=object))
    # the file holds a MOVIE: line (is_netflix), so pyarrow gave at least one block
    user, movie, rating, lines = (np.concatenate(column) for column in zip(*parts, strict=True))
    frame = pd.DataFrame({"user_id": user, "item_id": movie_ids[movie], "rating": rating},
                         columns=list(COLUMNS), copy=False)  # fresh arrays: no second copy
    return frame, lines


def _block(column: Any, state: dict[str, int], source: str
           ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """One block of lines: its ratings' customer ids, movie ids, ratings and file lines;
    ``state`` carries the current movie and the lines read over to the next block."""
    lines = pc.utf8_trim(pc.fill_null(column, ""), " \t\r")
    header = pc.ends_with(lines, ":").to_numpy(zero_copy_only=False)
    blank = pc.equal(pc.binary_length(lines), 0).to_numpy(zero_copy_only=False)
    number = state["lines"] + np.arange(1, len(header) + 1)
    state["lines"] += len(header)

    def fail(problem: str, at: int, field: str | None = None) -> DataError:
        return DataError(problem, source=source, line=int(number[at]), field=field)

    heads = np.flatnonzero(header)
    movies = pc.utf8_rtrim(pc.filter(lines, pa.array(header)), ":")
    movie_ids = canonical_integers(movies) if len(movies) else np.empty(0, np.int64)
    if movie_ids is None:  # digits kept as text ("01:"; past int64), anything else refused
        digits = pc.match_substring_regex(movies, r"^\d+$").to_numpy(zero_copy_only=False)
        if not digits.all():
            bad = int(np.flatnonzero(~digits)[0])
            raise fail(f"{movies[bad].as_py()!r}: a movie line is an integer id and a colon",
                       int(heads[bad]))
        state["canonical"] = False
    texts = movies.to_pylist()
    first = len(state["texts"])
    state["texts"] += texts
    if state["canonical"]:
        state["ids"] += movie_ids.tolist()
    # the movie of each line (an index into state's lists): the last header above it, or
    # the one carried over
    block = np.cumsum(header)
    movie_of = np.concatenate([[state["movie"]], first + np.arange(len(texts))])[block]
    if len(texts):
        state["movie"] = first + len(texts) - 1
    rows = ~header & ~blank
    early = np.flatnonzero(rows & (movie_of < 0))
    if len(early):
        raise fail("a rating before the first 'MOVIE:' line", int(early[0]))
    at = np.flatnonzero(rows)
    fields = pc.split_pattern(pc.filter(lines, pa.array(rows)), ",")
    counts = pc.list_value_length(fields).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero((counts < (1 if state["pairs"] else 2)) | (counts > 3))
    if len(wrong):
        raise fail(f"expected 'customer,rating,date' (3 fields), found {counts[wrong[0]]}",
                   int(at[wrong[0]]))
    customers = pc.utf8_trim(pc.list_element(fields, 0), " \t")
    user: Any = canonical_integers(customers)
    if user is None:  # text ids ("c-9", "0100"): kept as text (compared by text, as everywhere)
        user = customers.to_numpy(zero_copy_only=False)
    if state["pairs"]:  # what follows the customer (a rating, a date) is not read
        return user, movie_of[rows], np.zeros(len(at)), number[rows]
    rating_text = pc.utf8_trim(pc.list_element(fields, 1), " \t")
    try:
        rating = pc.cast(rating_text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # the first text pyarrow refuses (pandas takes "3\v", pyarrow not)
        plain = pc.fill_null(pc.match_substring_regex(rating_text,
                                                           f"^{NUMBER.pattern}$"), True)
        texts = rating_text.to_numpy(zero_copy_only=False)
        odd = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
        bad = int(odd[0]) if len(odd) else 0
        for k in odd:
            try:
                pc.cast(pa.array([texts[k]]), pa.float64())
            except pa.ArrowInvalid:
                bad = int(k)
                break
        raise fail(f"{rating_text[bad].as_py()!r} is not a number", int(at[bad]),
                   "rating") from None
    return user, movie_of[rows], rating, number[rows]


def _utf8_error(open_file: Callable[[], Any], source: str) -> DataError | None:
    """The error naming the line of the file's first byte that is not UTF-8, if any."""
    with open_file() as raw:
        data = raw.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return decode_error(data, exc.start, 1, source)
    return None


def read_netflix(open_file: Callable[[], Any], source: str,
                 convert: Callable[[pd.DataFrame], Any], what: str = "ratings", *,
                 pairs: bool = False, progress: Callable[[LoadProgress], None] | None = None,
                 total: int = 0, started: float = 0.0) -> Any:
    """``convert`` of a Netflix Prize file's frame (:func:`read_netflix_frame`), its errors
    named by file line; ``progress`` hears about every tenth of the ``total`` bytes."""
    reported = [0]

    def on_block(done: int, rows: int) -> None:
        if done >= reported[0] + total / 10 or done >= total:
            reported[0] = done
            assert progress is not None
            progress(LoadProgress(source, "reading", min(done, total), total, rows,
                                  time.perf_counter() - started))

    # the blocks' bytes are counted only for a progress report
    frame, lines = read_netflix_frame(open_file, source, pairs=pairs,
                                      on_block=None if progress is None else on_block)
    report(progress, source, "checking", total, len(frame), started)
    if len(frame) == 0:
        raise DataError(f"no {what}", source=source)
    try:
        return convert(frame)
    except DataError as exc:
        if exc.line is None:
            raise
        problem = re.sub(r"\(first at row (\d+)\)",
                         lambda m: f"(first at line {lines[int(m.group(1))]})", exc.problem)
        raise DataError(problem, source=source, line=int(lines[exc.line]),
                        field=exc.field) from None
