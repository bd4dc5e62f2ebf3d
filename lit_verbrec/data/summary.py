"""summary.json of a prepared folder, from tallies that add up over shards of users.

A tally holds counts only (users, examples and discoveries per split, history lines), so the
shards' tallies sum to the whole log's and the shares are computed once, at the end: a log
prepared in one piece or in shards gets the same summary.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from lit_verbrec.config.data_schema import ExamplesConfig
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.schema import DataError

__all__ = ["add_tallies", "empty_tally", "summarize", "tally_of"]

SPLITS = ("train", "val", "test")


def tally_of(examples: pa.Table, users: int) -> dict:
    """Counts of one shard's examples; `users`: the shard's users, with examples or not."""
    split = examples["split"].to_numpy(zero_copy_only=False)
    discovery = examples["is_discovery"].to_numpy(zero_copy_only=False)
    return {
        "users": users,
        "users_with_examples": int(pc.count_distinct(examples["user"]).as_py()) if examples.num_rows else 0,
        "examples": {s: int((split == s).sum()) for s in SPLITS},
        "discoveries": {s: int(discovery[split == s].sum()) for s in SPLITS},
        "history_lines": int(pc.sum(pc.list_value_length(examples["history"])).as_py() or 0),
    }


def empty_tally() -> dict:
    """The tally of no users: what add_tallies starts from."""
    return {"users": 0, "users_with_examples": 0, "examples": dict.fromkeys(SPLITS, 0),
            "discoveries": dict.fromkeys(SPLITS, 0), "history_lines": 0}


def add_tallies(a: dict, b: dict) -> dict:
    """The tally of two disjoint sets of users."""
    return {key: ({s: a[key][s] + b[key][s] for s in SPLITS} if isinstance(a[key], dict) else a[key] + b[key])
            for key in a}


def summarize(tally: dict, interactions: int, items: int, cfg: ExamplesConfig, report: DataReport) -> dict:
    """summary.json's dict; a DataError when no example could be built (the report says why)."""
    examples = sum(tally["examples"].values())
    if examples == 0:
        raise DataError("no examples could be built: " + ("; ".join(report.lines()) or "no interaction qualifies as a target"))
    return {
        "interactions": interactions,
        "items": items,
        # the window is recorded: a run whose size expects another refuses the folder (data/sources.py)
        "history_len": cfg.history_len,
        "users": tally["users"],
        "users_with_examples": tally["users_with_examples"],
        "examples": tally["examples"],
        "discovery_share": {s: tally["discoveries"][s] / tally["examples"][s] if tally["examples"][s] else None
                            for s in SPLITS},
        "discovery_share_all": sum(tally["discoveries"].values()) / examples,
        "mean_history_length": tally["history_lines"] / examples,
        "skipped": report.as_dict(),
    }
