"""A straightforward per-user implementation of the example rules (leave-last-out only).

Two uses: the peer that `tools/bench.py data` times against the vectorised builder, and an
independent oracle the tests compare the builder with (targets, history, discovery flags).
Negatives follow the same rule but a different random stream, so only their validity
(distinct, untouched, right count) is comparable.
"""

from __future__ import annotations

import random

import pandas as pd

from lit_verbrec.config.schema import ExamplesConfig


def naive_examples(interactions: pd.DataFrame, items: pd.DataFrame, cfg: ExamplesConfig, seed: int) -> dict[str, dict]:
    """example_id -> {user, split, target, candidates, is_discovery, history (interaction dicts)}.

    Cleans the log the way the canonical step does (exact duplicates and unknown items
    dropped, stable sort by user and time), so that a benchmark of it does the same work.
    """
    if cfg.split != "leave_last_out":
        raise ValueError("the reference implements data.examples.split=leave_last_out only")
    title_of = {row.item: (f"series:{row.series_id}" if isinstance(row.series_id, str) else f"item:{row.item}")
                for row in items.itertuples()}
    reps: dict[str, str] = {}
    for row in items.sort_values("episode", na_position="first", kind="stable").itertuples():
        reps.setdefault(title_of[row.item], row.item)
    all_titles = list(reps)
    rng = random.Random(seed)
    log = interactions.drop_duplicates(["user", "item", "timestamp", "event"])
    log = log[log["item"].isin(title_of)].sort_values(["user", "timestamp"], kind="stable")
    fields = [c for c in log.columns if c != "user"]
    out: dict[str, dict] = {}
    for user, rows in log.groupby("user", sort=True):
        records = rows[fields].to_dict("records")
        items_seq = rows["item"].tolist()
        titles_seq = [title_of[i] for i in items_seq]
        durations = rows["duration"].tolist()
        events = rows["event"].tolist()
        targets = [i for i in range(len(items_seq))
                   if events[i] in cfg.target_events and not durations[i] < cfg.min_target_duration
                   and i >= cfg.min_history]
        touched = set(titles_seq)
        untouched = [t for t in all_titles if t not in touched]
        chosen = {"test": targets[-1:], "val": targets[-2:-1],
                  "train": targets[max(0, len(targets) - 2 - cfg.train_targets_per_user):max(0, len(targets) - 2)]}
        for split, positions in chosen.items():
            for rank, i in enumerate(positions):  # k counts from the oldest, as in the builder
                negatives = [reps[t] for t in rng.sample(untouched, cfg.num_candidates - 1)]
                out[f"{user}/{split}/{rank}"] = {
                    "user": user,
                    "split": split,
                    "target": items_seq[i],
                    "history": records[max(0, i - cfg.history_len):i],
                    "is_discovery": titles_seq[i] not in titles_seq[:i],
                    "candidates": negatives + [items_seq[i]],
                }
    return out
