"""Shared fixtures: isolated cache folder, the MovieLens-100K location, tiny synthetic data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autorec import Ratings

#: Where the shared data sets live relative to this checkout (``<root>/shared/data``).
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_root() -> Path:
    env = os.environ.get("AUTOREC_DATA_DIR")
    return Path(env) if env else REPO_DATA_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                    ) -> Path:
    """Point the download cache at a temporary folder so no test writes to the user cache."""
    cache = tmp_path_factory.mktemp("autorec-cache")
    monkeypatch.setenv("AUTOREC_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The data folder that holds ``ml-100k/u.data`` (pass it as ``data_dir``).

    ``AUTOREC_DATA_DIR`` when set, else ``../shared/data`` next to the repository. Tests that
    use it are skipped when MovieLens-100K is not there, except under ``CI=true``, where the
    data is always laid out and its absence fails them.
    """
    root = _data_root()
    if not (root / "ml-100k" / "u.data").is_file():
        reason = (f"MovieLens-100K not found at {root / 'ml-100k'} "
                  "(set AUTOREC_DATA_DIR to a folder holding ml-100k/)")
        if os.environ.get("CI") == "true":  # CI has ../shared/data: a skip there hides a break
            pytest.fail(reason)
        pytest.skip(reason)
    return root


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` to ``tmp_path / name`` (bytes exactly as given) and return the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        return path

    return write


def make_low_rank(
    n_users: int = 40, n_items: int = 30, rank: int = 2, density: float = 0.5, seed: int = 0
) -> Ratings:
    """Ratings sampled from a rank-``rank`` matrix on a 1-5 scale, about ``density`` observed.

    Every user and every item gets at least one rating.
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, rank))
    items = rng.normal(size=(n_items, rank))
    full = np.clip(3.0 + users @ items.T, 1.0, 5.0)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    order = rng.permutation(len(u))
    u, i = u[order], i[order]
    return Ratings.from_arrays(u + 100, i + 1000, full[u, i].astype(np.float32),
                               source="<low-rank>")


@pytest.fixture
def low_rank() -> Ratings:
    """A small synthetic rating set with low-rank structure (40 users x 30 items)."""
    return make_low_rank()


@pytest.fixture
def make_ratings() -> Callable[..., Ratings]:
    """The factory behind :func:`low_rank`, for tests that need other sizes or seeds."""
    return make_low_rank
