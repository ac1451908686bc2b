"""Builtin MovieLens data sets: found locally, or downloaded with checksums through pooch.

Lookup order for a data set ``name`` (e.g. ``"ml-100k"``):

1. ``data_dir`` when given (the CLI's ``--data-dir``), else the ``AUTOREC_DATA_DIR``
   environment variable: a folder holding ``<name>/<ratings file>``, e.g. ``ml-100k/u.data``;
2. the download cache (``AUTOREC_CACHE_DIR``, default the user's cache folder), where earlier
   downloads were unpacked;
3. a download from GroupLens (or the mirror in ``AUTOREC_DATASETS_URL``), checked against
   its SHA-256, unless ``download=False``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from ..exceptions import DatasetUnavailableError, first_line
from .ratings import Ratings
from .readers import DuplicatePolicy, LoadProgress, read_ratings

__all__ = ["DATASETS", "DatasetSpec", "IncompleteCopyError", "dataset_path", "find_local_dir",
           "load_dataset"]

log = logging.getLogger(__name__)

DATA_DIR_ENV = "AUTOREC_DATA_DIR"
CACHE_DIR_ENV = "AUTOREC_CACHE_DIR"
MIRROR_ENV = "AUTOREC_DATASETS_URL"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"


class IncompleteCopyError(DatasetUnavailableError):
    """A data dir's folder for a data set without its ratings file (a damaged copy)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a builtin data set lives and how its ratings file is laid out.

    ``items_file`` holds the item titles (read by :mod:`autorec.data.items`); ``published``
    is ``(ratings, users, items)`` as the GroupLens README of the set counts them (items: the
    movies of the catalogue, a few of which may have no rating).
    """

    name: str
    archive: str
    sha256: str
    folder: str
    ratings_file: str
    sep: str
    header: bool
    names: tuple[str, ...]
    items_file: str | None = None
    published: tuple[int, int, int] | None = None

    @property
    def url(self) -> str:
        """Download address: GroupLens, or the mirror named by ``AUTOREC_DATASETS_URL`` (it
        must serve the same archives: the SHA-256 check applies all the same)."""
        base = os.environ.get(MIRROR_ENV) or GROUPLENS_URL
        return (base if base.endswith("/") else base + "/") + self.archive


_ML_TEXT_NAMES = ("user_id", "item_id", "rating", "timestamp")
_ML_CSV_NAMES = ("userId", "movieId", "rating")


def _csv_spec(name: str, sha256: str, published: tuple[int, int, int]) -> DatasetSpec:
    return DatasetSpec(name, f"{name}.zip", sha256, name, "ratings.csv", ",", True, _ML_CSV_NAMES,
                       "movies.csv", published)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("ml-100k", "ml-100k.zip",
                    "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                    "ml-100k", "u.data", "\t", False, _ML_TEXT_NAMES, "u.item",
                    (100_000, 943, 1_682)),
        DatasetSpec("ml-1m", "ml-1m.zip",
                    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                    "ml-1m", "ratings.dat", "::", False, _ML_TEXT_NAMES, "movies.dat",
                    (1_000_209, 6_040, 3_883)),
        DatasetSpec("ml-10m", "ml-10m.zip",
                    "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
                    "ml-10M100K", "ratings.dat", "::", False, _ML_TEXT_NAMES, "movies.dat",
                    (10_000_054, 71_567, 10_681)),
        _csv_spec("ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
                  (20_000_263, 138_493, 27_278)),
        _csv_spec("ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
                  (25_000_095, 162_541, 62_423)),
        _csv_spec("ml-32m", "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
                  (32_000_204, 200_948, 87_585)),
        _csv_spec("ml-latest-small",
                  "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
                  (100_836, 610, 9_742)),
    )
}


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name).lower(), DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown data set {name!r}{hint}; choose one of: {', '.join(DATASETS)}"
        ) from None


def cache_dir() -> Path:
    """The folder where downloads are kept (``AUTOREC_CACHE_DIR`` or the user cache)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("autorec"))


def find_local_dir(name: str, data_dir: str | PathLike[str] | None = None) -> Path | None:
    """The local folder holding data set ``name``'s files, or ``None`` when there is none.

    Looks in ``data_dir`` (else ``AUTOREC_DATA_DIR``), then in the download cache. A folder
    counts when it holds the ratings file, named either after the data set (``ml-10m``) or
    after the folder inside the GroupLens archive (``ml-10M100K``).
    """
    spec = _spec(name)
    roots: list[Path] = []
    given = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if given is not None:
        if not str(given) or not Path(given).is_dir():  # a misspelt folder: passed over
            named = "data dir" if data_dir is not None else f"{DATA_DIR_ENV}="
            what = ("an empty path" if not str(given) else "not a folder"
                    if Path(given).exists() else "no such folder")
            raise DatasetUnavailableError(
                f"{named}{'' if data_dir is None else ' '}{given!s} is {what}")
        roots.append(Path(given))
    roots.append(cache_dir())
    for given_root, root in zip((given is not None, False), roots, strict=False):
        folders = [root / folder for folder in dict.fromkeys((spec.name, spec.folder))]
        for folder in folders:
            if (folder / spec.ratings_file).is_file():
                return folder
        damaged = [folder for folder in folders if folder.is_dir()]
        if given_root and damaged:  # a damaged copy (under either name): not passed over
            ratings = damaged[0] / spec.ratings_file
            what = ("a folder" if ratings.is_dir() else "a broken link"
                    if ratings.is_symlink() else "missing")
            raise IncompleteCopyError(f"{ratings} is {what}: the copy of {name} in "
                                      f"{root} is incomplete")
    return None


def dataset_path(
    name: str,
    data_dir: str | PathLike[str] | None = None,
    *,
    download: bool | None = None,
) -> Path:
    """The folder holding data set ``name``, downloading it when allowed and needed.

    Parameters
    ----------
    name
        One of :data:`DATASETS`.
    data_dir
        A folder holding ``<name>/...``; defaults to ``AUTOREC_DATA_DIR``.
    download
        ``None`` (default): download only when no local copy exists. ``True``: fetch into the
        cache even if a local copy exists (skipped when the cached archive's checksum already
        matches). ``False``: never touch the network.

    Raises
    ------
    DatasetUnavailableError
        No local copy and the download is not allowed or fails; the message says how to give
        a local copy.
    """
    spec = _spec(name)
    if download is not None and not isinstance(download, bool):
        raise ValueError(f"download must be None, True or False, got {download!r}")
    local = None if download else find_local_dir(name, data_dir)
    if local is not None:
        return local
    if download is False:
        raise DatasetUnavailableError(_how_to_supply(spec, data_dir, "downloads are disabled"))
    return _download(spec, data_dir, forced=bool(download))


def load_dataset(
    name: str,
    data_dir: str | PathLike[str] | None = None,
    *,
    download: bool | None = None,
    duplicates: DuplicatePolicy = "error",
    progress: Callable[[LoadProgress], None] | None = None,
) -> Ratings:
    """Load a builtin MovieLens data set as :class:`Ratings` (see :func:`dataset_path`;
    ``progress`` as for :func:`autorec.data.read_ratings`)."""
    spec = _spec(name)
    folder = dataset_path(name, data_dir, download=download)
    ratings = read_ratings(
        folder / spec.ratings_file,
        sep=spec.sep,
        header=spec.header,
        names=None if spec.header else spec.names,
        columns=spec.names[:3],
        duplicates=duplicates,
        progress=progress,
    )
    log.info("loaded %s: %d ratings, %d users, %d items from %s",
             name, len(ratings), ratings.n_users, ratings.n_items, folder)
    return ratings


def _download(spec: DatasetSpec, data_dir: str | PathLike[str] | None,
              forced: bool = False) -> Path:
    import pooch

    target = cache_dir()
    log.info("downloading %s from %s into %s", spec.name, spec.url, target)
    pooch_log = pooch.get_logger()
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)  # the library logs; pooch would print to stderr
    try:
        with _cache_lock(target):  # one process of several fetches and unpacks; the others wait
            if (target / spec.folder / spec.ratings_file).is_file() and not forced:
                return target / spec.folder  # unpacked by another process meanwhile
            archive = pooch.retrieve(spec.url, known_hash=f"sha256:{spec.sha256}",
                                     fname=spec.archive, path=target, progressbar=False)
            _unpack(Path(archive), target)
    except zipfile.BadZipFile:
        reason = f"{spec.archive} from {spec.url} is not a readable zip archive"
        raise DatasetUnavailableError(_how_to_supply(spec, data_dir, reason)) from None
    except ValueError as exc:  # pooch's checksum mismatch, or a URL it cannot fetch
        log.debug("download of %s failed", spec.url, exc_info=True)
        if "protocol" in str(exc).lower():  # file://, a bare path...: nothing was fetched
            reason = (f"{spec.url} cannot be downloaded: pooch fetches http, https, ftp, "
                      "sftp and doi addresses (AUTOREC_DATASETS_URL)")
        elif "url" in type(exc).__name__.lower() or "url" in str(exc).lower():
            reason = (f"{spec.url} is not a valid address ({first_line(exc, 120)}; "
                      f"{MIRROR_ENV})")
        else:
            reason = (f"the file from {spec.url} does not match its SHA-256 checksum "
                      f"({'hash' if 'hash' in str(exc).lower() else type(exc).__name__}); "
                      "it was not kept")
        raise DatasetUnavailableError(_how_to_supply(spec, data_dir, reason)) from None
    except Exception as exc:  # network errors come in many types; all mean "not available"
        log.debug("download of %s failed", spec.url, exc_info=True)
        # a server's answer (HTTPError: 404...) or a local error is not being offline
        # a local error (a read-only or full disk) has an errno; a network one has none
        local = isinstance(exc, OSError) and exc.errno is not None and not \
            type(exc).__module__.startswith(("requests", "urllib3"))
        answered = type(exc).__name__ == "HTTPError" or local or isinstance(
            exc, FileNotFoundError | NotADirectoryError | PermissionError | IsADirectoryError)
        reason = (f"download from {spec.url} failed ({type(exc).__name__}"
                  f"{': ' + first_line(exc, 120) if answered else '; offline?'}"
                  f"{f'; cache {target}' if local else ''})")
        raise DatasetUnavailableError(_how_to_supply(spec, data_dir, reason)) from None
    finally:
        pooch_log.setLevel(level)
    folder = target / spec.folder
    if not (folder / spec.ratings_file).is_file():
        raise DatasetUnavailableError(f"{spec.archive} did not contain {spec.folder}/"
                                      f"{spec.ratings_file}")
    return folder


@contextlib.contextmanager
def _cache_lock(target: Path) -> Iterator[None]:
    """Hold the cache's lock file (``fcntl.flock``; none where there is no ``fcntl``):
    processes that use a data set for the first time at once (``train --nproc``) took each
    other's unpacking folders away."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".autorec-download.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_UNPACKING = ".unpacking-"


def _unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` whole or not at all (an unpack cut short left a
    truncated ratings file): into a temporary folder beside, whose top folders are then renamed
    into place. Folders left by an unpack that was cut short are removed first."""
    for stale in target.glob(f"{_UNPACKING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=_UNPACKING, dir=target))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(work)
        for entry in sorted(work.iterdir()):
            place = target / entry.name
            if place.is_dir() and not place.is_symlink():  # an older unpack (--download)
                old = work / f"{_UNPACKING}old-{entry.name}"
                place.rename(old)
            elif place.exists() or place.is_symlink():
                place.unlink()
            entry.rename(place)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _how_to_supply(spec: DatasetSpec, data_dir: object, reason: str) -> str:
    looked = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or "(not set)"
    try:
        local = find_local_dir(spec.name, data_dir)  # there, but a download was asked for
    except DatasetUnavailableError:  # a bad data dir: the download's failure is the news
        local = None
    if local is not None:
        return (f"data set {spec.name!r} could not be downloaded: {reason}. A local copy is "
                f"in {local}: without --download (download=True) it is used")
    return (
        f"data set {spec.name!r} is not available: {reason}. Looked in data dir {looked} and "
        f"cache {cache_dir()}. Give a local copy with --data-dir DIR or {DATA_DIR_ENV}=DIR, "
        f"where DIR/{spec.name}/{spec.ratings_file} exists (unpack {spec.url} into DIR)."
    )
