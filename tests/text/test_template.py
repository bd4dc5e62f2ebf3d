"""The template verbalization reproduces the paper's line format exactly."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from lit_verbrec.config.schema import EVENT_TYPES
from lit_verbrec.data.catalog import Catalog, ItemInfo
from lit_verbrec.data.schema import ITEMS
from lit_verbrec.text.template import EVENT_NAMES, template_line, verbalize_template


def _catalog() -> Catalog:
    rows = [
        {"item": "123456", "title": "Stranger Things", "year": 2016, "genres": ["Sci-Fi", "Horror"],
         "tags": ["nostalgic", "supernatural", "friendship", "80s"], "kind": "series",
         "series_id": None, "episode": None},
        {"item": "ep-3", "title": "Stranger Things", "year": 2016, "genres": ["Sci-Fi"], "tags": [],
         "kind": "series", "series_id": "123456", "episode": 3},
        {"item": "42", "title": "Heat", "year": None, "genres": None, "tags": None, "kind": "movie",
         "series_id": None, "episode": None},
    ]
    return Catalog.from_table(pa.Table.from_pylist(rows, schema=ITEMS))


def _entry(item: str, ts: datetime, event: str = "play", duration: float | None = 80.08) -> dict:
    return {"item": item, "timestamp": ts, "event": event, "duration": duration}


def test_paper_example_line_exactly() -> None:
    # The paper's line reads "20250608, Monday", but 2025-06-08 was a Sunday (its examples
    # are illustrative; Table 3's "20261022 Wednesday" is a Thursday too). The weekday is
    # computed, never copied, so the paper's line is reproduced on the Monday after.
    catalog = _catalog()
    entry = _entry("123456", datetime(2025, 6, 9, 14, 37, 12))
    assert template_line(entry, catalog["123456"]) == (
        "20250609, Monday, 2 PM, ID: 123456, Stranger Things, Play, Duration: 80.08 min"
    )
    entry = _entry("123456", datetime(2025, 6, 8, 14, 37, 12))
    assert template_line(entry, catalog["123456"]) == (
        "20250608, Sunday, 2 PM, ID: 123456, Stranger Things, Play, Duration: 80.08 min"
    )


@pytest.mark.parametrize(("hour", "shown"), [(0, "12 AM"), (1, "1 AM"), (11, "11 AM"), (12, "12 PM"), (23, "11 PM")])
def test_twelve_hour_clock(hour: int, shown: str) -> None:
    line = template_line(_entry("42", datetime(2025, 6, 10, hour, 59)), _catalog()["42"])
    assert line == f"20250610, Tuesday, {shown}, ID: 42, Heat, Play, Duration: 80.08 min"


def test_metadata_line_in_table3_order_whatever_the_order_asked() -> None:
    entry = _entry("123456", datetime(2025, 6, 9, 14, 0))
    expected = ("20250609, Monday, 2 PM, ID: 123456, Stranger Things, year: 2016, genres: Sci-Fi, Horror, "
                "plot: nostalgic, supernatural, Play, Duration: 80.08 min")
    info = _catalog()["123456"]
    assert template_line(entry, info, metadata=("year", "genres", "tags"), max_tags=2) == expected
    assert template_line(entry, info, metadata=("tags", "year", "genres"), max_tags=2) == expected


def test_tags_capped_and_missing_fields_omitted() -> None:
    catalog = _catalog()
    entry = _entry("123456", datetime(2025, 6, 9, 14, 0), "thumb_up", None)
    assert template_line(entry, catalog["123456"], metadata=("tags",)) == (
        "20250609, Monday, 2 PM, ID: 123456, Stranger Things, plot: nostalgic, supernatural, friendship, Thumb Up"
    )
    assert template_line(entry, catalog["123456"], metadata=("tags",), max_tags=0) == (
        "20250609, Monday, 2 PM, ID: 123456, Stranger Things, Thumb Up"
    )
    heat = _entry("42", datetime(2025, 6, 9, 14, 0), "add_to_list", None)
    assert template_line(heat, catalog["42"], metadata=("year", "genres", "tags")) == (
        "20250609, Monday, 2 PM, ID: 42, Heat, Add to List"
    )


def test_events_without_duration_and_display_names() -> None:
    catalog = _catalog()
    ts = datetime(2025, 6, 14, 9, 5)
    assert template_line(_entry("42", ts, "thumb_down", None), catalog["42"]) == (
        "20250614, Saturday, 9 AM, ID: 42, Heat, Thumb Down"
    )
    assert template_line(_entry("42", ts, "autoplay_preview", 0.5), catalog["42"]) == (
        "20250614, Saturday, 9 AM, ID: 42, Heat, Autoplay Preview, Duration: 0.50 min"
    )
    assert tuple(EVENT_NAMES) == EVENT_TYPES
    assert [EVENT_NAMES[e] for e in EVENT_TYPES] == [
        "Play", "Thumb Up", "Thumb Down", "Add to List", "Trailer", "Autoplay Preview"]


def test_episode_shows_display_title() -> None:
    catalog = _catalog()
    assert catalog["ep-3"].display_title == "Stranger Things, Episode 3"
    line = template_line(_entry("ep-3", datetime(2025, 6, 15, 21, 0), duration=51.0), catalog["ep-3"])
    assert line == "20250615, Sunday, 9 PM, ID: ep-3, Stranger Things, Episode 3, Play, Duration: 51.00 min"


def test_verbalize_history_oldest_first_from_arrow_rows() -> None:
    catalog = _catalog()
    history = pa.array(
        [_entry("42", datetime(2025, 6, 7, 20, 10), "trailer", 2.0),
         _entry("123456", datetime(2025, 6, 9, 14, 1), "play", 80.08),
         _entry("42", datetime(2025, 6, 9, 23, 59), "thumb_up", None)],
        type=pa.struct([("item", pa.string()), ("timestamp", pa.timestamp("s")),
                        ("event", pa.string()), ("duration", pa.float64())]),
    ).to_pylist()
    assert verbalize_template(history, catalog) == (
        "20250607, Saturday, 8 PM, ID: 42, Heat, Trailer, Duration: 2.00 min\n"
        "20250609, Monday, 2 PM, ID: 123456, Stranger Things, Play, Duration: 80.08 min\n"
        "20250609, Monday, 11 PM, ID: 42, Heat, Thumb Up"
    )
    assert verbalize_template([], catalog) == ""


def test_unknown_names_are_errors() -> None:
    catalog = _catalog()
    entry = _entry("42", datetime(2025, 6, 9, 14, 0), "rewind", None)
    with pytest.raises(ValueError, match="rewind"):
        template_line(entry, catalog["42"])
    with pytest.raises(ValueError, match="plot"):
        verbalize_template([], catalog, metadata=("plot",))
    with pytest.raises(KeyError, match="nope"):
        verbalize_template([_entry("nope", datetime(2025, 6, 8))], catalog)


def test_catalog_from_table_fields() -> None:
    n = 1_000
    table = pa.table({
        "item": [f"i{k}" for k in range(n)], "title": [f"T{k}" for k in range(n)],
        "year": pa.array([1990 + k % 30 if k % 7 else None for k in range(n)], pa.int32()),
        "genres": [["Drama", "Comedy"] if k % 2 else None for k in range(n)],
        "tags": [["dark"]] * n, "kind": ["movie"] * n, "series_id": [None] * n,
        "episode": pa.array([None] * n, pa.int32()),
    }).cast(ITEMS)
    catalog = Catalog.from_table(table)
    assert len(catalog) == n and "i5" in catalog and "x" not in catalog
    assert catalog["i1"] == ItemInfo("i1", "T1", 1991, ("Drama", "Comedy"), ("dark",), "movie", None, None)
    assert catalog["i0"].year is None and catalog["i0"].genres == ()
    with pytest.raises(ValueError, match="episode"):
        Catalog.from_table(table.drop_columns(["episode"]))
