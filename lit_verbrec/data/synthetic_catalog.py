"""The synthetic streaming catalog: movies and series with genres, plot tags and popularity.

Titles are random word pairs that say nothing about the content, so a reasoner that
sees only the template's titles cannot tell a thriller from a comedy: genres and tags
(metadata) must reach it through the verbalization. Tag vocabularies are disjoint
across genres, so a tag names its genre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GENRE_TAGS: dict[str, tuple[str, ...]] = {
    "Action": ("car chase", "heist", "martial arts", "explosions", "revenge", "bodyguard", "mercenary", "shootout"),
    "Comedy": ("slapstick", "satire", "road trip", "misfits", "parody", "awkward romance", "office", "prank"),
    "Drama": ("family secrets", "grief", "coming of age", "redemption", "addiction", "courtroom", "sacrifice", "ambition"),
    "Thriller": ("conspiracy", "paranoia", "double cross", "hostage", "stalker", "cover-up", "whistleblower", "manhunt"),
    "Horror": ("haunted house", "possession", "slasher", "curse", "zombies", "cult", "creature", "isolation"),
    "Sci-Fi": ("space travel", "time loop", "artificial intelligence", "dystopia", "aliens", "cyberpunk", "clones", "terraforming"),
    "Romance": ("second chance", "forbidden love", "wedding", "long distance", "first love", "love triangle", "holiday romance", "soulmates"),
    "Documentary": ("nature", "true crime", "history", "biography", "wildlife", "investigation", "science", "sports legends"),
    "Animation": ("talking animals", "magic kingdom", "toys", "superpowers", "dragons", "robots", "friendship", "quest"),
    "Crime": ("mafia", "detective", "drug cartel", "serial killer", "corruption", "prison", "bank robbery", "undercover"),
    "Fantasy": ("wizards", "mythical creatures", "prophecy", "enchanted forest", "sword and sorcery", "fairy tale", "dark lord", "portal"),
    "War": ("world war", "resistance", "soldiers", "battlefield", "occupation", "navy", "prisoners of war", "veterans"),
    "Mystery": ("whodunit", "missing person", "locked room", "amateur sleuth", "small town", "cold case", "amnesia", "puzzle"),
    "Western": ("frontier", "outlaws", "gold rush", "sheriff", "cattle drive", "duel", "ranch", "bounty hunter"),
    "Musical": ("broadway", "dance battle", "band", "singing competition", "jukebox", "opera", "choir", "talent show"),
    "Reality": ("cooking contest", "dating show", "makeover", "survival", "island", "renovation", "talent search", "competition"),
}
GENRES = tuple(GENRE_TAGS)
TAGS_PER_GENRE = 8
assert all(len(tags) == TAGS_PER_GENRE for tags in GENRE_TAGS.values())

_ADJECTIVES = (
    "Silent Crimson Hollow Golden Broken Distant Frozen Hidden Restless Bitter Velvet Burning Quiet Wild "
    "Fading Iron Paper Electric Midnight Scarlet Lonely Gentle Savage Endless Silver Twisted Shallow Hungry "
    "Northern Secret Falling Painted Stolen Wandering Crooked Sleeping Bright Rusty Glass Tender Faint Copper "
    "Marble Lucky Cold Sudden Amber Narrow Heavy Clever Nameless Blue Empty Last Final Open Western Little Lost"
).split()
_NOUNS = (
    "River Harbor Garden Window Letter Signal Mirror Orchard Lantern Bridge Meadow Station Compass Ladder "
    "Hallway Canyon Anchor Island Violin Engine Kingdom Candle Feather Harvest Passage Tower Shadow Summer "
    "Ribbon Highway Valley Chapel Forest Circus Frontier Pilgrim Voyage Monument Horizon Thread Cellar Parade "
    "Fountain Archive Quarry Beacon Ember Canvas Saddle Glacier Tide Lighthouse Rooftop Market Orbit Echo Dune"
).split()


@dataclass
class SyntheticCatalog:
    """Column arrays for every item; episodes share their series' title, genres and tags."""

    item: list[str]
    title: list[str]
    year: np.ndarray          # [I] int
    genre: np.ndarray         # [I] primary genre index
    genres: list[list[str]]
    tags: list[list[str]]
    tag_ids: list[np.ndarray]  # [I] x [n_tags] indices into the flat tag vocabulary
    kind: list[str]
    series_id: list[str | None]
    episode: list[int | None]
    popularity: np.ndarray    # [I] sampling weight of the item (an episode: its series' weight)
    n_movies: int
    series_first: np.ndarray  # [S] item index of each series' episode 1
    series_len: np.ndarray    # [S] episodes per series


def _titles(rng: np.random.Generator, n: int) -> list[str]:
    pairs = [f"{a} {b}" for a in _ADJECTIVES for b in _NOUNS]
    order = rng.permutation(len(pairs))
    # More titles than word pairs: a sequel number keeps titles unique.
    return [pairs[order[i % len(pairs)]] + (f" {i // len(pairs) + 1}" if i >= len(pairs) else "") for i in range(n)]


def build_catalog(rng: np.random.Generator, n_movies: int, n_series: int) -> SyntheticCatalog:
    tag_vocab = [t for g in GENRES for t in GENRE_TAGS[g]]
    per_genre = TAGS_PER_GENRE
    titles = _titles(rng, n_movies + n_series)
    # Zipf-like popularity over a random order: a few hits, a long tail.
    weight = 1.0 / np.power(rng.permutation(n_movies + n_series) + 1.0, 0.9)
    primary = rng.integers(0, len(GENRES), n_movies + n_series)
    second = np.where(rng.random(n_movies + n_series) < 0.4, rng.integers(0, len(GENRES), n_movies + n_series), -1)
    series_len = rng.integers(4, 17, n_series)

    cat = SyntheticCatalog([], [], np.zeros(0, int), np.zeros(0, int), [], [], [], [], [], [], np.zeros(0), n_movies,
                           np.zeros(n_series, int), series_len)
    years, genre_idx, pops = [], [], []
    for t in range(n_movies + n_series):
        g = [int(primary[t])] + ([int(second[t])] if second[t] >= 0 and second[t] != primary[t] else [])
        tags = rng.choice(per_genre, size=3, replace=False) + g[0] * per_genre
        if len(g) > 1:
            tags = np.append(tags[:2], rng.integers(0, per_genre) + g[1] * per_genre)
        year = int(rng.integers(1975, 2026))
        is_series = t >= n_movies
        n_items = int(series_len[t - n_movies]) if is_series else 1
        if is_series:
            cat.series_first[t - n_movies] = len(cat.item)
        for e in range(n_items):
            cat.item.append(str((300000 + len(cat.item)) if is_series else (100000 + t)))
            cat.title.append(titles[t])
            cat.genres.append([GENRES[i] for i in g])
            cat.tags.append([tag_vocab[i] for i in tags])
            cat.tag_ids.append(tags)
            cat.kind.append("series" if is_series else "movie")
            cat.series_id.append(str(200000 + t - n_movies) if is_series else None)
            cat.episode.append(e + 1 if is_series else None)
            years.append(year)
            genre_idx.append(g[0])
            pops.append(weight[t])
    cat.year, cat.genre, cat.popularity = np.array(years), np.array(genre_idx), np.array(pops)
    return cat
