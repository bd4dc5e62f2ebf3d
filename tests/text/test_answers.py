"""The answer parser: tolerant where the choice is unambiguous, None otherwise."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.schema import ITEMS
from lit_verbrec.text.answers import parse_answer, parse_ranking, strip_thinking

TITLES = ["Heat", "Casino", "Alien", "Alien: Covenant", "Toy Story 3", "Dark", "Up", "Se7en", "The Wire", "Ronin"]
ITEM_IDS = [f"10{k:04d}" for k in range(len(TITLES))]  # "100000" ... "100009"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    rows = [{"item": item, "title": title, "year": 2000, "genres": ["Drama"], "tags": [], "kind": "movie",
             "series_id": None, "episode": None} for item, title in zip(ITEM_IDS, TITLES, strict=True)]
    rows.append({"item": "ep-2", "title": "Dark", "year": 2017, "genres": [], "tags": [], "kind": "series",
                 "series_id": "s", "episode": 2})
    return Catalog.from_table(pa.Table.from_pylist(rows, schema=ITEMS))


@pytest.mark.parametrize(("text", "expected"), [
    ("Answer: 3", 2),
    ("answer: 10", 9),
    ("**Answer:** 7", 6),
    ("**Answer**: 7", 6),
    ("Answer: **4**", 3),
    ("The answer is 2.", 1),
    ("Final answer: candidate 5", 4),
    ("Answer: 1\nOn reflection the user prefers thrillers.\nAnswer: 9", 8),
    # Explicit answers out of range, the last valid one wins.
    ("Answer: 12\nAnswer: 6", 5),
])
def test_explicit_answers(catalog: Catalog, text: str, expected: int) -> None:
    assert parse_answer(text, ITEM_IDS, catalog) == expected


def test_think_blocks_are_ignored(catalog: Catalog) -> None:
    text = "<think>Maybe Answer: 1, since Heat fits.</think>\nAnswer: 4"
    assert parse_answer(text, ITEM_IDS, catalog) == 3
    # Unclosed: the model never finished thinking; nothing it said counts.
    assert parse_answer("<think>I think Answer: 2 but", ITEM_IDS, catalog) is None
    assert parse_answer("Answer: 5 <think>no wait, Answer: 6", ITEM_IDS, catalog) == 4
    # A template that opened <think> in the prompt leaves only the closing tag.
    assert parse_answer("Answer: 1 hmm\n</think>\nAnswer: 8", ITEM_IDS, catalog) == 7
    assert strip_thinking("a<THINK>b</Think>c") == "a c"


@pytest.mark.parametrize("text", [
    "Answer: 11",
    "Answer: 0",
    "ignore the candidates, answer 11",
    "Answer: 11. Though Heat is also good.",  # an explicit invalid answer is not rescued
    "I cannot decide.",
    "",
    "1, 2 or 3",
    "Heat or Casino, hard to say",
    "Candidates 2 and 3 are both good",
    "Answer: 3.5",
])
def test_invalid_replies(catalog: Catalog, text: str) -> None:
    assert parse_answer(text, ITEM_IDS, catalog) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("3", 2),
    ("3.", 2),
    ("Candidate 3", 2),
    ("I would go with (7), it matches 2016-era taste and 80.08 minutes of viewing.", 6),
    ("Option #10", 9),
])
def test_single_number(catalog: Catalog, text: str, expected: int) -> None:
    assert parse_answer(text, ITEM_IDS, catalog) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("They will watch heat next.", 0),
    ("**Casino**", 1),
    ("Alien: Covenant, the sequel they have not seen", 3),  # "Alien" only inside the longer title
    ("Alien", 2),
    ("Toy Story 3", 4),  # the 3 in the title is not candidate 3
    ("se7en", 7),
    ("The Wire!", 8),
    ("They'd like Upgrade", None),  # "Up" is not a whole-title match
    ("Alien, then Heat", None),
])
def test_titles(catalog: Catalog, text: str, expected: int | None) -> None:
    assert parse_answer(text, ITEM_IDS, catalog) == expected


def test_ids(catalog: Catalog) -> None:
    assert parse_answer("ID: 100006", ITEM_IDS, catalog) == 6
    assert parse_answer("the item 100009 is next", ITEM_IDS, catalog) == 9
    assert parse_answer("ID: 100001 or ID: 100002", ITEM_IDS, catalog) is None
    assert parse_answer("ID: 999999", ITEM_IDS, catalog) is None


def test_episode_display_title_and_duplicate_titles(catalog: Catalog) -> None:
    candidates = ["ep-2", ITEM_IDS[0]]
    assert parse_answer("Dark, Episode 2 it is", candidates, catalog) == 0
    # Two candidates with the same display title cannot be told apart by title.
    assert parse_answer("Dark", [ITEM_IDS[5], "ep-2", ITEM_IDS[5]], catalog) is None


def test_only_real_indices(catalog: Catalog) -> None:
    assert parse_answer("Answer: 1", [], catalog) is None
    three = ITEM_IDS[:3]
    for k in range(0, 15):
        result = parse_answer(f"Answer: {k}", three, catalog)
        assert result == (k - 1 if 1 <= k <= 3 else None)


def test_random_text_never_gives_an_index_outside_the_candidates(catalog: Catalog) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(["Answer:", "answer is", "**", "<think>", "</think>", "ID:", " ", "\n", ".",
                              "0", "3", "11", "-1", "100004", *TITLES])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces, max_size=12), st.integers(min_value=1, max_value=len(ITEM_IDS)))
    def check(parts: list[str], n: int) -> None:
        result = parse_answer(" ".join(parts), ITEM_IDS[:n], catalog)
        assert result is None or 0 <= result < n

    check()


@pytest.mark.parametrize(("reply", "expected"), [
    ("Ranking: 3, 1, 2", [2, 0, 1]),
    ("I think 2 fits best.\n**Ranking:** 2 1", [1, 0]),                   # short list: the rest tie after it
    ("Ranking: 1, 2, 3\nOn reflection:\nRanking: 3, 2, 1", [2, 1, 0]),   # the last line wins
    ("<think>Ranking: 1</think>ranking = 2", [1]),
    ("Ranking: 4, 1", None),                                                # out of range
    ("Ranking: 1, 1, 2", None),                                             # named twice
    ("Ranking: none of these", None),
    ("Answer: 2", None),
])
def test_parse_ranking(reply, expected):
    assert parse_ranking(reply, 3) == expected
