"""The ratings container: (user, item, rating) triples over dense indices plus id maps."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .ids import IdMap

__all__ = ["Orientation", "Ratings", "index_dtype", "sha256_of"]

Orientation = Literal["item", "user"]


def index_dtype(n: int) -> type[np.signedinteger]:
    """The dtype of dense indices into ``n`` ids: ``int32`` where it holds them, else
    ``int64``."""
    return np.int32 if n < 2**31 - 1 else np.int64


@dataclass(frozen=True, eq=False)
class Ratings:
    """Explicit ratings as parallel arrays over dense indices.

    ``user_idx[k]`` rated ``item_idx[k]`` with ``rating[k]``. The id maps translate the dense
    indices back to the raw ids of the source. Subsets made by :meth:`subset` (as the splitters
    do) share the id maps of their parent, so a train and a test part index the same users and
    items.

    Attributes
    ----------
    user_idx, item_idx
        Arrays of dense indices into ``users`` and ``items``: ``int32``, ``int64`` for an id
        map of 2**31 ids or more (:func:`index_dtype`); other integer arrays are converted.
    rating
        ``float32`` array of ratings.
    users, items
        Maps between raw ids and dense indices.
    source
        Where the ratings came from (a path, a data set name or ``"<DataFrame>"``).
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    users: IdMap
    items: IdMap
    source: str = "<memory>"

    def __post_init__(self) -> None:
        for name, ids in (("user_idx", self.users), ("item_idx", self.items)):
            values = np.asarray(getattr(self, name))
            wanted = index_dtype(len(ids))
            if values.dtype != wanted:
                object.__setattr__(self, name, values.astype(wanted))
        n = len(self.rating)
        if len(self.user_idx) != n or len(self.item_idx) != n:
            raise ValueError("user_idx, item_idx and rating must have the same length")

    def __len__(self) -> int:
        return len(self.rating)

    def __repr__(self) -> str:
        return (
            f"Ratings(n_ratings={len(self)}, n_users={self.n_users}, n_items={self.n_items}, "
            f"source={self.source!r})"
        )

    @property
    def n_users(self) -> int:
        """Number of users in the id map (some may have no rating in a subset)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items in the id map (some may have no rating in a subset)."""
        return len(self.items)

    @property
    def user_ids(self) -> np.ndarray:
        """Raw user id of every rating."""
        return self.users.to_raw(self.user_idx)

    @property
    def item_ids(self) -> np.ndarray:
        """Raw item id of every rating."""
        return self.items.to_raw(self.item_idx)

    def rating_scale(self) -> tuple[float, float]:
        """The smallest and largest rating present."""
        if len(self) == 0:
            raise ValueError("no ratings")
        return float(self.rating.min()), float(self.rating.max())

    def subset(self, index: np.ndarray) -> Ratings:
        """The ratings at ``index`` (integer positions or a boolean mask), same id maps."""
        return Ratings(
            self.user_idx[index],
            self.item_idx[index],
            self.rating[index],
            self.users,
            self.items,
            self.source,
        )

    def to_dataframe(self) -> pd.DataFrame:
        """A DataFrame with raw ``user_id``, ``item_id`` and ``rating`` columns."""
        # fresh arrays, not copied again into one block per dtype
        return pd.DataFrame({"user_id": self.user_ids, "item_id": self.item_ids,
                             "rating": self.rating.copy()}, copy=False)

    def to_csr(self, orientation: Orientation = "item") -> sp.csr_matrix:
        """The ratings as a sparse CSR matrix.

        Parameters
        ----------
        orientation
            ``"item"``: items x users (one row per item, as I-AutoRec reads them);
            ``"user"``: users x items (as U-AutoRec reads them).
        """
        if orientation == "item":
            rows, cols, shape = self.item_idx, self.user_idx, (self.n_items, self.n_users)
        elif orientation == "user":
            rows, cols, shape = self.user_idx, self.item_idx, (self.n_users, self.n_items)
        else:
            raise ValueError(f"orientation must be 'item' or 'user', got {orientation!r}")
        matrix = sp.csr_matrix((self.rating.astype(np.float32), (rows, cols)), shape=shape)
        matrix.sort_indices()
        return matrix

    @classmethod
    def from_arrays(
        cls,
        user_ids: np.ndarray | list,
        item_ids: np.ndarray | list,
        ratings: np.ndarray | list,
        source: str = "<memory>",
    ) -> Ratings:
        """Build ratings from raw ids; ids are numbered in order of first appearance.

        The arrays are taken as valid; use :func:`autorec.data.from_dataframe` to validate
        untrusted input.
        """
        users = IdMap.from_values(user_ids)
        items = IdMap.from_values(item_ids)
        return cls(
            users.to_index(np.asarray(user_ids)),
            items.to_index(np.asarray(item_ids)),
            np.asarray(ratings, dtype=np.float32),
            users,
            items,
            source,
        )


def sha256_of(*arrays: Any) -> str:
    """The SHA-256 of arrays, each with its dtype and shape: what a study and a checkpoint
    record of their data. Text ids are joined by NUL; where one holds a NUL itself, each is
    written after its length instead (``["a\\0b"]`` is not ``["a", "b"]``), so the digest is
    unambiguous and unchanged for every other text."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.asarray(array)
        if array.dtype == object:
            texts = list(map(str, array.tolist()))
            joined = "\0".join(texts)
            if joined.count("\0") != max(len(texts) - 1, 0):  # a NUL inside a text
                joined = "".join(f"{len(text)}:{text}" for text in texts)
                digest.update(b"length-prefixed|")
            array = np.frombuffer(joined.encode(), dtype=np.uint8)
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}:{array.shape}|".encode())
        digest.update(array.view(np.uint8).reshape(-1).data)
    return digest.hexdigest()
