"""Negative candidates: titles the example's user never touched, drawn per example from its own key.

Each example draws `2k + 8` titles per attempt (uniformly, or by play count + 1 so titles nobody
played can still be drawn), keeps those its user never touched and not already chosen, in draw
order, until it has k; an example still short after 49 attempts (its user touched nearly every
likely title) takes the rest from its untouched titles in a keyed random order. The draws come from
data/draws.py keyed by (seed, user, example rank), so an example's negatives do not depend on the
other users prepared with it. Vectorised over examples, in blocks that bound the memory.
"""

from __future__ import annotations

import numpy as np

from lit_verbrec.data.draws import uniform

__all__ = ["draw_negatives", "touched_pairs"]

ATTEMPTS = 50
BLOCK = 1 << 15
"""Examples drawn together: the work arrays hold BLOCK x (3k + 8) integers."""
_FALLBACK_COUNTER = 1 << 40   # the keyed order of the last attempt: counters no attempt reaches


def touched_pairs(user_codes: np.ndarray, title: np.ndarray, n_titles: int) -> np.ndarray:
    """Sorted unique user_code * n_titles + title of every row: who touched which title."""
    return np.unique(user_codes.astype(np.int64) * n_titles + title)


def draw_negatives(keys: np.ndarray, example_user: np.ndarray, touched: np.ndarray, n_titles: int, k: int,
                   popularity: np.ndarray | None) -> np.ndarray:
    """[E, k] title codes; a row of -1 where the user left fewer than k titles untouched.

    keys: [E] data/draws.example_keys; example_user: [E] user code of each example (as in `touched`);
    touched: touched_pairs(); popularity: [T] play counts, or None for uniform draws."""
    out = np.full((len(keys), k), -1, dtype=np.int64)
    users, first = np.unique(touched // n_titles, return_index=True)
    n_touched = np.zeros(max(int(example_user.max(initial=-1)), int(users.max(initial=-1))) + 1, dtype=np.int64)
    n_touched[users] = np.diff(np.r_[first, len(touched)])
    cdf = None if popularity is None else np.cumsum(popularity + 1.0)
    possible = np.flatnonzero(n_titles - n_touched[example_user] >= k)
    for start in range(0, len(possible), BLOCK):
        block = possible[start:start + BLOCK]
        out[block] = _draw_block(keys[block], example_user[block], touched, n_titles, k, cdf)
    return out


def _draw_block(keys, users, touched, n_titles, k, cdf) -> np.ndarray:
    chosen = np.full((len(keys), k), -1, dtype=np.int64)
    pending = np.arange(len(keys))
    size = 2 * k + 8
    for attempt in range(ATTEMPTS - 1):
        if len(pending) == 0:
            return chosen
        u = uniform(keys[pending, None], attempt * size + np.arange(size, dtype=np.uint64)[None, :])   # [P, size]
        draw = (u * n_titles).astype(np.int64) if cdf is None else np.searchsorted(cdf, u * cdf[-1], side="right")
        chosen[pending] = _merge(chosen[pending], draw, users[pending], touched, n_titles, k)
        pending = pending[chosen[pending, -1] < 0]
    for p in pending:   # rare: the user touched nearly every likely title
        mine = touched[np.searchsorted(touched, users[p] * n_titles):np.searchsorted(touched, (users[p] + 1) * n_titles)]
        rest = np.setdiff1d(np.arange(n_titles), mine - users[p] * n_titles)
        order = np.argsort(uniform(keys[p], _FALLBACK_COUNTER + np.arange(len(rest), dtype=np.uint64)), kind="stable")
        chosen[p] = _merge(chosen[p:p + 1], rest[order][None, :], users[p:p + 1], touched, n_titles, k)[0]
    return chosen


def _merge(chosen: np.ndarray, draw: np.ndarray, users: np.ndarray, touched: np.ndarray, n_titles: int,
           k: int) -> np.ndarray:
    """[P, k]: per row, the chosen titles then the new draws the user never touched, each title
    once, in that order, the first k of them (-1 pads a row still short)."""
    cand = np.concatenate([chosen, draw], axis=1)                                  # [P, W]
    p, w = cand.shape
    pair = users[:, None] * n_titles + cand
    at = np.searchsorted(touched, pair).clip(max=max(len(touched) - 1, 0))
    valid = (cand >= 0) & ~(touched[at] == pair if len(touched) else np.zeros_like(cand, dtype=bool))
    # the first occurrence of each title in its row: sort by (row, title, position)
    flat_row = np.repeat(np.arange(p), w)
    order = np.lexsort((np.tile(np.arange(w), p), cand.ravel(), flat_row))
    repeat_sorted = np.r_[False, (flat_row[order][1:] == flat_row[order][:-1])
                          & (cand.ravel()[order][1:] == cand.ravel()[order][:-1])]
    repeat = np.empty(p * w, dtype=bool)
    repeat[order] = repeat_sorted
    valid &= ~repeat.reshape(p, w)
    slot = np.cumsum(valid, axis=1) - 1
    take = valid & (slot < k)
    out = np.full((p, k), -1, dtype=np.int64)
    out[np.nonzero(take)[0], slot[take]] = cand[take]
    return out
