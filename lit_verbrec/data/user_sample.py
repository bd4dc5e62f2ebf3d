"""Users sampled by a stable hash of their id (`data.sample_users`).

A user is kept when the first 8 bytes of BLAKE2b(user id), read as an unsigned integer, fall below
a threshold: share * 2^64 for a share, or just past the count-th smallest hash for a number of
users. The hash depends on the id alone, so a team gets the same users from a CSV, a Parquet file
or a folder of part files, on every machine and run, and a 1% sample of a 1% sample's log is the
same 1% of users. Ids are hashed as text (an integer id 42 as "42"), once per distinct id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["UserSample", "user_hashes"]

FULL = 2**64


def user_hashes(users: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """[n] uint64 hash of each row's user id (nulls hash as the empty id)."""
    encoded = pc.dictionary_encode(pc.fill_null(pc.cast(users, pa.string()), ""))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    per_id = np.array([int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little")
                       for u in encoded.dictionary.to_pylist()], dtype=np.uint64)
    return per_id[encoded.indices.to_numpy(zero_copy_only=False)]


class UserSample:
    """Which users `data.sample_users` keeps; `mask(users)` per batch of rows."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold    # keep hash < threshold

    @classmethod
    def of(cls, setting: float, user_batches: Iterable[pa.Array] | None = None) -> UserSample | None:
        """None for 0 (every user); a share in (0, 1); a count, for which `user_batches` (every user
        id of the log, batch by batch) is read once to find the threshold."""
        if setting == 0:
            return None
        if setting < 1:
            return cls(int(setting * FULL))
        count = int(setting)
        if user_batches is None:
            raise ValueError("a number of users needs the log's user ids to find them")
        hashes = np.unique(np.concatenate([np.unique(user_hashes(b)) for b in user_batches] or [np.zeros(0, np.uint64)]))
        return cls(FULL if count >= len(hashes) else int(hashes[count]))

    def mask(self, users: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """[n] bool: the row's user is in the sample."""
        hashes = user_hashes(users)
        return np.ones(len(hashes), dtype=bool) if self.threshold >= FULL else hashes < np.uint64(self.threshold)
