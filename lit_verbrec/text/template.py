"""The paper's template verbalization: one line per interaction, fields concatenated.

Section 3 of the paper gives the format by example:

    20250608, Monday, 2 PM, ID: 123456, Stranger Things, Play, Duration: 80.08 min

date (YYYYMMDD), weekday, hour on a 12-hour clock without minutes, item id, title, event,
and the watched minutes where the event has a duration (thumbs and add-to-list have none).
With item metadata (the raw example of Table 3) the item's fields follow the title, in the
order year, genres, plot (= tags):

    ..., Stranger Things, year: 2016, genres: Sci-Fi, Horror, plot: nostalgic, supernatural, Play, ...

This is the baseline every verbalizer is compared against, and the input the verbalizers
rewrite; its length is the denominator of the compression ratio.

Speed: it runs over 100-line histories for tens of thousands of examples, so the item part
of a line ("ID: ..., title, metadata") is built once per distinct item per call, and dates
are formatted with integer f-strings (strftime is slower and depends on the locale).
"""

from __future__ import annotations

from collections.abc import Sequence

from lit_verbrec.config.schema import EVENT_TYPES
from lit_verbrec.data.catalog import Catalog, ItemInfo

__all__ = ["EVENT_NAMES", "METADATA_FIELDS", "template_line", "item_fragment", "verbalize_template"]

EVENT_NAMES = {
    "play": "Play",
    "thumb_up": "Thumb Up",
    "thumb_down": "Thumb Down",
    "add_to_list": "Add to List",
    "trailer": "Trailer",
    "autoplay_preview": "Autoplay Preview",
}
"""Canonical event -> the words the template prints (the paper writes "Play", "Thumb Up")."""

METADATA_FIELDS = ("year", "genres", "tags")
"""Item fields the template may add, in the order they are printed (Table 3: year, then plot)."""

# Monday first: datetime.weekday() returns 0 for Monday.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# 0 -> "12 AM" (midnight), 12 -> "12 PM" (noon): the 12-hour clock has no hour 0.
HOURS_12 = tuple(f"{(h % 12) or 12} {'AM' if h < 12 else 'PM'}" for h in range(24))


def _check_metadata(metadata: Sequence[str]) -> None:
    unknown = [name for name in metadata if name not in METADATA_FIELDS]
    if unknown:
        raise ValueError(f"unknown metadata field(s) {unknown}; expected any of {', '.join(METADATA_FIELDS)}")


def item_fragment(info: ItemInfo, metadata: Sequence[str] = (), max_tags: int = 3) -> str:
    """The item part of a line: "ID: 123456, Stranger Things[, year: 2016, genres: ..., plot: ...]".

    Fields print in METADATA_FIELDS order whatever order `metadata` names them in, so that
    one configuration always yields one format. A field without a value is left out rather
    than printed empty ("year: None" would be noise the reasoner has to learn to skip).
    """
    parts = [f"ID: {info.item}", info.display_title]
    if "year" in metadata and info.year is not None:
        parts.append(f"year: {info.year}")
    if "genres" in metadata and info.genres:
        parts.append(f"genres: {', '.join(info.genres)}")
    if "tags" in metadata and max_tags > 0 and info.tags:
        # The paper calls tags "plot" (Table 3: "plot: nostalgic, supernatural").
        parts.append(f"plot: {', '.join(info.tags[:max_tags])}")
    return ", ".join(parts)


def _event_part(entry: dict) -> str:
    event = entry["event"]
    if event not in EVENT_NAMES:
        raise ValueError(f"unknown event {event!r} (item {entry['item']!r}); expected one of {', '.join(EVENT_TYPES)}")
    duration = entry["duration"]
    if duration is None:
        return EVENT_NAMES[event]
    return f"{EVENT_NAMES[event]}, Duration: {duration:.2f} min"


def _time_part(ts) -> str:
    """"20250608, Monday, 2 PM" from a datetime (or anything with the same attributes)."""
    return f"{ts.year:04d}{ts.month:02d}{ts.day:02d}, {_WEEKDAYS[ts.weekday()]}, {HOURS_12[ts.hour]}"


def template_line(entry: dict, info: ItemInfo, metadata: Sequence[str] = (), max_tags: int = 3) -> str:
    """One history entry (keys item, timestamp, event, duration) as the paper's template line."""
    _check_metadata(metadata)
    return f"{_time_part(entry['timestamp'])}, {item_fragment(info, metadata, max_tags)}, {_event_part(entry)}"


def verbalize_template(
    history: list[dict], catalog: Catalog, metadata: Sequence[str] = (), max_tags: int = 3
) -> str:
    """The whole history, one line per entry, oldest first (the order the examples table keeps)."""
    _check_metadata(metadata)
    # Histories repeat items (episodes of one series, replays): build each item part once.
    fragments: dict[str, str] = {}
    lines = []
    for entry in history:
        item = entry["item"]
        if item not in fragments:
            fragments[item] = item_fragment(catalog[item], metadata, max_tags)
        lines.append(f"{_time_part(entry['timestamp'])}, {fragments[item]}, {_event_part(entry)}")
    return "\n".join(lines)
