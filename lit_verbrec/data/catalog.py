"""The item catalog as Python objects: `catalog[item_id] -> ItemInfo`.

Every text the project builds (template lines, candidate lists, answers) needs an item's
title and metadata many times per example, so the `items` table (data/schema.py ITEMS) is
turned once into a dict of small frozen records. Building reads whole columns with
`to_pylist()`: iterating rows of pyarrow scalars is about two orders of magnitude slower.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["ItemInfo", "Catalog"]

_COLUMNS = ("item", "title", "year", "genres", "tags", "kind", "series_id", "episode")


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """One row of the items table; list columns as tuples so that the record is hashable."""

    item: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    tags: tuple[str, ...]
    kind: str
    series_id: str | None
    episode: int | None

    @property
    def display_title(self) -> str:
        """The title a person would read: "Title", or "Title, Episode 3" for an episode.

        An episode row carries its series' title (data/schema.py); without the number two
        episodes of one series would read the same in a history.
        """
        if self.episode is None:
            return self.title
        return f"{self.title}, Episode {self.episode}"


def one_line(text: str) -> str:
    """Any run of whitespace (newlines, tabs, unicode spaces) as one space, trimmed: one item is
    always one line of text, so a title cannot add lines to a history or a candidate list."""
    return " ".join(text.split())


class Catalog:
    """Item id -> ItemInfo, built from a table with the ITEMS columns."""

    def __init__(self, infos: dict[str, ItemInfo]) -> None:
        self._infos = infos

    @classmethod
    def from_table(cls, items: pa.Table) -> Catalog:
        """Build from an items table (data/schema.py ITEMS); extra columns are ignored.

        A missing column is an error rather than a silent default: the source readers are
        responsible for filling every canonical column, and a table without one is a bug.
        """
        missing = [name for name in _COLUMNS if name not in items.column_names]
        if missing:
            raise ValueError(f"items table lacks column(s) {', '.join(missing)}; "
                             f"expected {', '.join(_COLUMNS)}")
        cols = {name: items.column(name).to_pylist() for name in _COLUMNS}
        infos: dict[str, ItemInfo] = {}
        for item, title, year, genres, tags, kind, series_id, episode in zip(
            cols["item"], cols["title"], cols["year"], cols["genres"], cols["tags"],
            cols["kind"], cols["series_id"], cols["episode"], strict=True,
        ):
            # A null list means "unknown", which reads the same as "none" in every text.
            infos[item] = ItemInfo(
                item, one_line(title), year,
                tuple(one_line(g) for g in genres) if genres else (),
                tuple(one_line(t) for t in tags) if tags else (),
                kind, series_id, episode,
            )
        return cls(infos)

    def __getitem__(self, item: str) -> ItemInfo:
        try:
            return self._infos[item]
        except KeyError:
            raise KeyError(f"item {item!r} is not in the catalog ({len(self._infos):,} items)") from None

    def __contains__(self, item: object) -> bool:
        return item in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def __iter__(self):
        """Item ids, in table order."""
        return iter(self._infos)
