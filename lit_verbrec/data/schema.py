"""The canonical tables every source is turned into, and the prepared example table.

    interactions  user, item, timestamp, event, duration [, extra columns kept as they are]
    items         item, title, year, genres, tags, kind, series_id, episode
    examples      example_id, user, split, timestamp, target, target_index, candidates,
                  is_discovery, history (list of interactions, oldest first)

Ids are strings (logs use numbers, hashes or slugs alike). `timestamp` is the wall-clock
time the user saw (no time zone): the template prints it as date, weekday and hour.
`duration` is minutes watched, null where the event has none (thumbs, add to list).
A *title* is what a user discovers: the series for an episode (`series_id`), else the item.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from lit_verbrec.config.schema import EVENT_TYPES

__all__ = ["EVENT_TYPES", "INTERACTIONS", "ITEMS", "HISTORY_ENTRY", "EXAMPLES", "SPLITS", "CanonicalData", "DataError"]

SPLITS = ("train", "val", "test")

INTERACTIONS = pa.schema([
    pa.field("user", pa.string(), nullable=False),
    pa.field("item", pa.string(), nullable=False),
    pa.field("timestamp", pa.timestamp("s"), nullable=False),
    pa.field("event", pa.string(), nullable=False),      # one of EVENT_TYPES
    pa.field("duration", pa.float64()),                  # minutes; null when the event has none
])

ITEMS = pa.schema([
    pa.field("item", pa.string(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("year", pa.int32()),
    pa.field("genres", pa.list_(pa.string())),
    pa.field("tags", pa.list_(pa.string())),              # tags / plot keywords
    pa.field("kind", pa.string(), nullable=False),        # movie | series
    pa.field("series_id", pa.string()),                  # set on episodes: the title they belong to
    pa.field("episode", pa.int32()),
])

HISTORY_ENTRY = pa.struct([(f.name, f.type) for f in INTERACTIONS if f.name != "user"])

EXAMPLES = pa.schema([
    pa.field("example_id", pa.string(), nullable=False),  # "<user>/<split>/<k>", k from the oldest target
    pa.field("user", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),       # train | val | test
    pa.field("timestamp", pa.timestamp("s"), nullable=False),  # time of the target interaction
    pa.field("target", pa.string(), nullable=False),
    pa.field("target_index", pa.int16(), nullable=False),  # position of target in candidates
    pa.field("candidates", pa.list_(pa.string()), nullable=False),
    pa.field("is_discovery", pa.bool_(), nullable=False),  # target's title absent from history
    pa.field("history", pa.list_(HISTORY_ENTRY), nullable=False),  # oldest first
])


class DataError(ValueError):
    """Input that cannot be used; the message names the file, row and column."""


@dataclass
class CanonicalData:
    """Interactions sorted by (user, timestamp) and the item catalog, both schema-conformant."""

    interactions: pa.Table
    items: pa.Table

    def write(self, folder) -> None:
        """Write `interactions.parquet` and `items.parquet` into `folder`."""
        from pathlib import Path

        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.interactions, folder / "interactions.parquet")
        pq.write_table(self.items, folder / "items.parquet")
