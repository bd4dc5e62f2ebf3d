"""Random draws keyed by (seed, user, example, draw) instead of taken from one sequential stream.

An example's negatives and its target's position must not depend on which other users were
prepared with it, or in which order: a log prepared whole, in one shard or in a hundred (by a
job array on other machines) gives the same examples for a seed. So every draw is a pure function
of its key: splitmix64 (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number
generators"; the finaliser of Java's SplittableRandom) mixes the seed, a stream name, the user's
id hash (data/user_sample.py) and a counter into 64 random bits. Vectorised over numpy uint64
arrays, whose multiplication wraps modulo 2^64 as the algorithm needs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAMS", "example_keys", "mix", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
STREAMS = {"negatives": 0, "target_index": 1}
"""One independent stream per kind of draw, so adding a draw of one kind never moves another."""


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 with full avalanche."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def example_keys(seed: int, stream: str, user_hash: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """[E] uint64 key of each example's draws: its user's id hash and its rank among the user's
    examples (0, 1, ... in time order), under `seed` and the named stream."""
    base = mix(np.array([(seed & 0xFFFFFFFF) << 8 | STREAMS[stream]], dtype=np.uint64))
    return mix(mix(user_hash.astype(np.uint64) ^ base) ^ rank.astype(np.uint64))


def uniform(keys: np.ndarray, counter: np.ndarray | int) -> np.ndarray:
    """Floats in [0, 1), one per (key, counter) pair (broadcast): the counter-th draw of a key."""
    with np.errstate(over="ignore"):
        bits = mix(keys ^ mix(np.asarray(counter, dtype=np.uint64) * _GOLDEN))
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
