"""The lexical debugging reasoner: presence scoring, title bonus, lowest-index ties."""

from __future__ import annotations

import pyarrow as pa

from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.lexical import TITLE_WEIGHT, lexical_choice, lexical_scores, normalize


def _catalog() -> Catalog:
    return Catalog.from_table(pa.table({
        "item": ["a", "b", "c", "d"],
        "title": ["Silent River", "Glass Tower", "Iron Meadow", "Lost Echo"],
        "year": pa.array([2001, 2002, 2003, 2004], pa.int32()),
        "genres": [["Horror"], ["Sci-Fi"], ["Sci-Fi", "Drama"], ["Comedy"]],
        "tags": [["haunted house", "curse"], ["time loop", "aliens"], ["aliens", "grief"], ["satire"]],
        "kind": ["movie"] * 4,
        "series_id": pa.array([None] * 4, pa.string()),
        "episode": pa.array([None] * 4, pa.int32()),
    }))


def test_normalize_pads_and_lowercases():
    assert normalize("Sci-Fi, Time LOOP!") == " sci fi time loop "


def test_presence_not_count():
    text = "genres: Sci-Fi, plot: aliens, aliens, aliens. genres: Sci-Fi"
    # b: sci-fi + aliens = 2 (time loop absent); c: sci-fi + aliens = 2 (drama, grief absent).
    assert lexical_scores(text, ["a", "b", "c", "d"], _catalog()) == [0, 2, 2, 0]


def test_whole_words_only():
    # "curses" and "grieflessness" are not the tags "curse" and "grief".
    assert lexical_scores("curses grieflessness", ["a", "c"], _catalog()) == [0, 0]


def test_title_bonus_and_tie_break():
    catalog = _catalog()
    assert lexical_scores("watched Iron Meadow", ["a", "c"], catalog) == [0, TITLE_WEIGHT]
    assert lexical_choice("nothing relevant", ["d", "a", "b"], catalog) == 0
    assert lexical_choice("grief drama", ["b", "a", "c"], catalog) == 2
