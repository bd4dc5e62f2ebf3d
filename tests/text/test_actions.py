"""Action lists: the fixed skeleton, rendering, parsing and deterministic execution."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from lit_verbrec.data.catalog import Catalog
from lit_verbrec.text.actions import (
    ActionPlan,
    action_segments,
    execute_actions,
    parse_actions,
    render_actions,
)

HISTORY = [
    {"item": "1", "timestamp": datetime(2025, 6, 8, 14, 5), "event": "play", "duration": 80.0},
    {"item": "2", "timestamp": datetime(2025, 6, 8, 21, 0), "event": "autoplay_preview", "duration": 0.5},
    {"item": "1", "timestamp": datetime(2025, 6, 9, 9, 30), "event": "thumb_up", "duration": None},
]


@pytest.fixture()
def catalog() -> Catalog:
    return Catalog.from_table(pa.table({
        "item": ["1", "2"], "title": ["Silent River", "Glass Tower"],
        "year": pa.array([2016, 2001], pa.int32()), "genres": [["Horror"], ["Comedy"]],
        "tags": [["curse", "cult"], ["satire"]], "kind": ["movie", "movie"],
        "series_id": pa.array([None, None], pa.string()), "episode": pa.array([None, None], pa.int32()),
    }))


def test_segments_surround_two_slots_per_line():
    segments = action_segments(HISTORY)
    assert len(segments) == 2 * len(HISTORY) + 1
    assert segments[0] == "20250608 2 PM, 1, "
    assert segments[1] == ", "
    assert segments[2] == ",\n20250608 9 PM, 2, "
    assert segments[-1] == ","


def test_render_then_parse_round_trips():
    plan = ActionPlan.from_slots([1, 1, 0, 0, 1, 0])
    text = render_actions(HISTORY, plan)
    assert text == "20250608 2 PM, 1, 1, 1,\n20250608 9 PM, 2, 0, 0,\n20250609 9 AM, 1, 1, 0,"
    assert parse_actions(text, 3) == plan
    assert parse_actions(text, 2) is None
    assert parse_actions(text.replace("1, 1,", "1, 2,"), 3) is None


def test_execute_keeps_and_enriches(catalog):
    plan = ActionPlan(keep=(1, 0, 1), enrich=(1, 1, 0))
    assert execute_actions(HISTORY, plan, catalog).splitlines() == [
        "20250608, Sunday, 2 PM, ID: 1, Silent River, year: 2016, genres: Horror, plot: curse, cult, Play, Duration: 80.00 min",
        "20250609, Monday, 9 AM, ID: 1, Silent River, Thumb Up",
    ]
    assert execute_actions(HISTORY, ActionPlan((0, 0, 0), (1, 1, 1)), catalog) == ""


def test_bad_plans_are_rejected(catalog):
    with pytest.raises(ValueError, match="equal-length 0/1"):
        ActionPlan((1, 2), (0, 0))
    with pytest.raises(ValueError, match="2 decisions for 3 interactions"):
        execute_actions(HISTORY, ActionPlan((1, 1), (0, 0)), catalog)


def test_full_lines_put_the_whole_template_line_before_the_decisions(catalog):
    plan = ActionPlan.from_slots([1, 0, 0, 0, 1, 1])
    text = render_actions(HISTORY, plan, catalog)
    assert text.splitlines()[1] == "20250608, Sunday, 9 PM, ID: 2, Glass Tower, Autoplay Preview, Duration: 0.50 min, 0, 0,"
    assert parse_actions(text, 3) == plan
