"""Canonical tables -> reranking examples: the paper's task (section 5.1).

For each chosen target interaction: history = up to `history_len` most recent interactions
of the user before it (oldest first); candidates = the target plus `num_candidates - 1`
negatives, shuffled with a seeded generator. Negatives are *titles* (a movie, or a series
shown as its first episode) the user never interacted with anywhere in the log, drawn
uniformly or by play count. `is_discovery` is true when the target's title (its series,
for an episode) appears nowhere earlier in the user's log: the paper's "items the user has
not previously watched".

Targets are interactions whose event is in `target_events` (plays by default) lasting at
least `min_target_duration` minutes, with at least `min_history` interactions before them.
  leave_last_out  per user: the last target is test, the one before validation, the
                  `train_targets_per_user` before that train.
  time            global cut-offs at the end of the log's span: per user the first target
                  in the test window is test, the first in the validation window is
                  validation, the last `train_targets_per_user` before it are train.
Everything is vectorised over the whole log; the negatives and the target's position are drawn per
example from its own key (data/draws.py, data/negatives.py), so an example does not depend on the
other users prepared with it: a log prepared whole or in shards of users gives the same examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.config.schema import ExamplesConfig
from lit_verbrec.data.draws import example_keys, uniform
from lit_verbrec.data.negatives import draw_negatives, touched_pairs
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import EXAMPLES, CanonicalData
from lit_verbrec.data.summary import summarize, tally_of
from lit_verbrec.data.titles import TitleIndex
from lit_verbrec.data.user_sample import user_hashes

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@dataclass
class PreparedData:
    examples: pa.Table   # EXAMPLES schema (history structs also carry any extra interaction columns)
    items: pa.Table      # ITEMS schema + `popularity` (plays of the item's title outside val/test targets)
    summary: dict


@dataclass
class _Log:
    """Per-row arrays of a canonical log (sorted by user, then time), targets chosen."""
    user: pa.Array            # [n] user ids
    user_codes: np.ndarray    # [n] 0, 0, 1, ... (the log is sorted by user)
    user_start: np.ndarray    # [n] first row of the row's user
    title: np.ndarray         # [n] title code
    split: np.ndarray         # [n] split code of a target row, -1 elsewhere
    has_target: np.ndarray    # [n] the row could be a target (event, duration, history)


def log_span(data: CanonicalData) -> tuple[int, int]:
    """(first, last) timestamp of the log in seconds: the time split's cut-offs are shares of it."""
    ts = data.interactions["timestamp"].cast(pa.int64())
    return int(pc.min(ts).as_py()), int(pc.max(ts).as_py())


def _log(data: CanonicalData, titles: TitleIndex, cfg: ExamplesConfig, span: tuple[int, int]) -> _Log:
    inter = data.interactions
    n = inter.num_rows
    user = inter["user"].combine_chunks()
    user_codes = np.asarray(pc.dictionary_encode(user).indices)
    starts = np.flatnonzero(np.r_[True, user_codes[1:] != user_codes[:-1]])   # first row of each user
    user_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    position = np.arange(n) - user_start                                       # rows of the user before this one
    ts = inter["timestamp"].combine_chunks().cast(pa.int64()).to_numpy()
    duration = inter["duration"].combine_chunks().to_numpy(zero_copy_only=False)
    eligible = (np.isin(inter["event"].to_numpy(zero_copy_only=False), cfg.target_events)
                & ~(duration < cfg.min_target_duration))                       # NaN duration passes
    has_target = eligible & (position >= cfg.min_history)
    return _Log(user, user_codes, user_start, titles.title_of(inter["item"]),
                _assign_splits(has_target, user_codes, ts, cfg, span), has_target)


def _held_out_plays(data: CanonicalData, log: _Log, n_titles: int) -> np.ndarray:
    """[T] plays of each title, leaving out the validation and test targets themselves."""
    plays = data.interactions["event"].to_numpy(zero_copy_only=False) == "play"
    plays[log.split >= SPLIT_CODE["val"]] = False
    return np.bincount(log.title[plays], minlength=n_titles).astype(np.int64)


def title_plays(data: CanonicalData, cfg: ExamplesConfig, span: tuple[int, int]) -> np.ndarray:
    """[T] one shard's part of the popularity that negatives are drawn by (shards add up)."""
    titles = TitleIndex(data.items)
    return _held_out_plays(data, _log(data, titles, cfg, span), titles.n_titles)


def build_examples(data: CanonicalData, cfg: ExamplesConfig, seed: int, report: DataReport) -> PreparedData:
    """The examples of a whole log held in memory (the sharded path: data/shards.py)."""
    span = log_span(data)
    popularity = title_plays(data, cfg, span)
    examples, tally = shard_examples(data, cfg, seed, report, span, popularity)
    items = with_popularity(data.items, popularity)
    return PreparedData(examples, items, summarize(tally, data.interactions.num_rows, data.items.num_rows, cfg, report))


def with_popularity(items: pa.Table, popularity: np.ndarray) -> pa.Table:
    return items.append_column("popularity", pa.array(popularity[TitleIndex(items).item_title]))


def shard_examples(data: CanonicalData, cfg: ExamplesConfig, seed: int, report: DataReport, span: tuple[int, int],
                   popularity: np.ndarray, by_split: bool = False) -> tuple[pa.Table, dict]:
    """(examples, tally) of the users in `data`, given what is global: the log's time span and the
    titles' popularity. Every user's examples depend on the user's own rows and these alone. Rows in
    user order, or with `by_split` the train rows first, then val, then test (each in user order)."""
    inter = data.interactions
    titles = TitleIndex(data.items)
    log = _log(data, titles, cfg, span)
    user, user_codes, title, split = log.user, log.user_codes, log.title, log.split
    users_total = int(user_codes[-1]) + 1 if len(user_codes) else 0
    report.skip("users with too little history", users_total - np.unique(user_codes[log.has_target]).size,
                f"fewer than {cfg.min_history} interactions before every target"
                f"{_first_user(user, user_codes, log.has_target)}")
    rows = np.flatnonzero(split >= 0)

    # Discovery: no earlier row of the same user on the same title.
    n = len(user_codes)
    order = np.lexsort((np.arange(n), title, user_codes))
    same = np.r_[False, (user_codes[order][1:] == user_codes[order][:-1]) & (title[order][1:] == title[order][:-1])]
    seen_before = np.zeros(n, dtype=bool)
    seen_before[order[same]] = True

    # Draws keyed by (seed, user, rank among the user's examples): the same whatever else is prepared with it.
    example_user, user_rank = user_codes[rows], _rank_within(user_codes[rows], np.zeros(len(rows), dtype=np.int8))
    user_hash = user_hashes(user.take(rows))
    negatives = draw_negatives(example_keys(seed, "negatives", user_hash, user_rank), example_user,
                               touched_pairs(user_codes, title, titles.n_titles), titles.n_titles,
                               cfg.num_candidates - 1, popularity if cfg.negatives == "popularity" else None)
    keep = negatives[:, 0] >= 0
    if not keep.all():
        first = user[int(rows[np.argmin(keep)])].as_py()
        report.skip("examples whose user touched too much of the catalog to draw negatives", int((~keep).sum()),
                    f"user '{first}': fewer than {cfg.num_candidates - 1} untouched titles")
    rows, negatives = rows[keep], negatives[keep]
    target_index = (uniform(example_keys(seed, "target_index", user_hash[keep], user_rank[keep]), 0)
                    * cfg.num_candidates).astype(np.int64)
    if by_split:   # built in this order, not reordered after: a copy of every history would double the memory
        order = np.argsort(split[rows], kind="stable")                          # SPLIT_CODE: train 0, val 1, test 2
        rows, negatives, target_index = rows[order], negatives[order], target_index[order]
    candidates = _insert(titles.rep_item_code(negatives), titles.item_code(inter["item"])[rows], target_index)

    lo = np.maximum(log.user_start[rows], rows - cfg.history_len)
    lengths = rows - lo
    flat = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
    history_struct = pa.StructArray.from_arrays(
        [inter[c].combine_chunks() for c in inter.column_names if c != "user"],
        names=[c for c in inter.column_names if c != "user"])
    split_names = np.array(list(SPLIT_CODE))[split[rows]]
    rank = _rank_within(user_codes[rows], split[rows])
    examples = pa.table({
        "example_id": pc.binary_join_element_wise(user.take(rows), pa.array(split_names), pa.array(rank.astype(str)), "/"),
        "user": user.take(rows),
        "split": pa.array(split_names),
        "timestamp": inter["timestamp"].combine_chunks().take(rows),
        "target": inter["item"].combine_chunks().take(rows),
        "target_index": pa.array(target_index.astype(np.int16)),
        "candidates": pa.ListArray.from_arrays(pa.array(np.arange(0, candidates.size + 1, cfg.num_candidates, dtype=np.int32)),
                                               titles.items.take(pa.array(candidates.ravel()))),
        "is_discovery": pa.array(~seen_before[rows]),
        "history": pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)),
                                            history_struct.take(pa.array(flat))),
    })
    _check_schema(examples)
    return examples, tally_of(examples, users_total)


def _assign_splits(ok: np.ndarray, user_codes: np.ndarray, ts: np.ndarray, cfg: ExamplesConfig,
                   span: tuple[int, int]) -> np.ndarray:
    """[n] split code of each row chosen as a target, -1 elsewhere; `span`: the whole log's (first, last)."""
    split = np.full(len(ok), -1, dtype=np.int8)
    idx = np.flatnonzero(ok)
    u = user_codes[idx]
    if cfg.split == "leave_last_out":
        from_end = _rank_within(u[::-1], np.zeros(len(u), dtype=np.int8))[::-1]  # 0 = user's last target
        split[idx[from_end == 0]] = SPLIT_CODE["test"]
        split[idx[from_end == 1]] = SPLIT_CODE["val"]
        split[idx[(from_end >= 2) & (from_end < 2 + cfg.train_targets_per_user)]] = SPLIT_CODE["train"]
        return split
    first, last = span
    t_test = last - cfg.test_share * (last - first)
    t_val = t_test - cfg.val_share * (last - first)
    window = np.where(ts[idx] >= t_test, 2, np.where(ts[idx] >= t_val, 1, 0))
    from_start = _rank_within(u, window)                                      # 0 = first in window
    from_end = _rank_within(u[::-1], window[::-1])[::-1]                      # 0 = last in window
    split[idx[(window == 2) & (from_start == 0)]] = SPLIT_CODE["test"]
    split[idx[(window == 1) & (from_start == 0)]] = SPLIT_CODE["val"]
    split[idx[(window == 0) & (from_end < cfg.train_targets_per_user)]] = SPLIT_CODE["train"]
    return split


def _rank_within(keys: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Occurrence number (0, 1, ...) of each element among equal (key, sub) pairs, in order."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(keys)), sub, keys))
    k, s = keys[order], sub[order]
    new = np.r_[True, (k[1:] != k[:-1]) | (s[1:] != s[:-1])]
    group_start = np.maximum.accumulate(np.where(new, np.arange(len(k)), 0))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(k)) - group_start
    return rank


def _insert(negatives: np.ndarray, target: np.ndarray, position: np.ndarray) -> np.ndarray:
    """[E, k] + [E] at [E] -> [E, k + 1] with the target at `position` in each row."""
    e, k = negatives.shape
    out = np.empty((e, k + 1), dtype=np.int64)
    slot = np.arange(k + 1)[None, :]
    before = slot < position[:, None]
    out[before] = negatives[:, :k][before[:, :k]]
    after = slot > position[:, None]
    out[after] = negatives[after[:, 1:]]
    out[np.arange(e), position] = target
    return out


def _first_user(user: pa.Array, user_codes: np.ndarray, ok: np.ndarray) -> str:
    without = np.setdiff1d(np.unique(user_codes), np.unique(user_codes[ok]))
    if len(without) == 0:
        return ""
    return f"; e.g. user '{user[int(np.flatnonzero(user_codes == without[0])[0])].as_py()}'"


def _check_schema(examples: pa.Table) -> None:
    for f in EXAMPLES:
        got = examples.schema.field(f.name).type
        if f.name != "history" and got != f.type:
            raise AssertionError(f"examples.{f.name}: built as {got}, schema says {f.type}")
