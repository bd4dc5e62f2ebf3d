"""The built-in synthetic streaming log: the embedded default data set.

Each user has a latent taste: 2-3 genres with Dirichlet weights and two favourite plot
tags per genre. The log mixes what a streaming platform records (notes/learnability.md
explains why the noise must be able to mislead a reasoner):

    taste     plays of movies from the user's genres (often thumbed up), binges of series
              (consecutive episodes), add-to-list of titles from those genres
    dislike   a short play of an off-taste movie, then a thumb down
    household a second viewer on some accounts, with other genres and afternoon hours
    noise     autoplay previews, trailers and accidental short plays of popular titles from
              any genre: no taste signal at all

The log of every user ends with three plays, the train, validation and test targets under
leave-last-out: each is the next episode of a series the user started (with probability
`continuation_share`) or else a *discovery*, a title from the main viewer's taste that the
user never touched. The ground truth of every row is in the extra column `origin` (taste,
dislike, household, noise) for diagnostics; it is never shown to a model.

Seeded and deterministic: the same config and seed give the same tables.
"""

from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from lit_verbrec.config.schema import SyntheticConfig
from lit_verbrec.data.synthetic_catalog import (
    GENRES,
    TAGS_PER_GENRE,
    SyntheticCatalog,
    build_catalog,
)

N_TARGETS = 3
# Non-noise activities: probability and mean events each (binge ~3.5 episodes, a thumb after some plays).
ACTIVITIES = {"movie": (0.45, 1.25), "binge": (0.25, 3.5), "list": (0.2, 1.0), "dislike": (0.1, 2.0)}
ACTIVITY_NAMES = tuple(ACTIVITIES)
_EVEN_PAIR = [0.5, 1.0]  # CDF of two equally likely genres
HOUSEHOLD_ACTIVITY = 0.35  # share of a household account's movie/binge sessions that are the other viewer's


class _Stream:
    """Uniform draws from one pre-drawn buffer: the simulation makes ~30 small draws per
    event, and a numpy Generator call per draw costs more than the rest of the work."""

    def __init__(self, rng: np.random.Generator, size: int = 1 << 16) -> None:
        self.rng, self.size = rng, size
        self.buf, self.i = rng.random(size).tolist(), 0

    def random(self) -> float:
        if self.i == self.size:
            self.buf, self.i = self.rng.random(self.size).tolist(), 0
        self.i += 1
        return self.buf[self.i - 1]

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        """An integer in [low, high)."""
        return low + min(int(self.random() * (high - low)), high - low - 1)

    def pick(self, cdf: list[float]) -> int:
        """An index drawn with probabilities given by the cumulative weights `cdf`."""
        return min(bisect.bisect_right(cdf, self.random() * cdf[-1]), len(cdf) - 1)


class _Pools:
    """Per-genre item pools with popularity CDFs for fast weighted draws."""

    def __init__(self, cat: SyntheticCatalog) -> None:
        movies = np.arange(cat.n_movies)
        self.movies = [movies[cat.genre[movies] == g] for g in range(len(GENRES))]
        self.movie_cdf = [np.cumsum(cat.popularity[m]).tolist() for m in self.movies]
        self.series = [np.flatnonzero(cat.genre[cat.series_first] == g) for g in range(len(GENRES))]
        self.by_tag = [[m for m in self.movies[t // TAGS_PER_GENRE] if t in cat.tag_ids[m]]
                       for t in range(len(GENRES) * TAGS_PER_GENRE)]
        self.all_titles = np.concatenate([movies, cat.series_first])  # movies and episode 1 of each series
        self.all_cdf = np.cumsum(cat.popularity[self.all_titles]).tolist()
        self.series_first = cat.series_first.tolist()
        self.cat = cat


def generate(cfg: SyntheticConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the log: (interactions with an `origin` column, items), canonical column names."""
    rng = np.random.default_rng(seed)
    cat = build_catalog(rng, cfg.movies, cfg.series)
    pools = _Pools(cat)
    mix_p = np.array([p for p, _ in ACTIVITIES.values()])
    mean_events = float(mix_p @ np.array([m for _, m in ACTIVITIES.values()]))
    stream = _Stream(rng)
    # Probability of a noise activity so that noise is cfg.noise_share of all *events*.
    p_noise = cfg.noise_share * mean_events / (1 - cfg.noise_share + cfg.noise_share * mean_events)
    start = pd.Timestamp(cfg.start).value // 10**9

    cols: dict[str, list] = {"user": [], "item": [], "ts": [], "event": [], "duration": [], "origin": []}
    for u in range(cfg.users):
        _simulate_user(stream, rng, pools, cfg, str(u + 1), p_noise, np.cumsum(mix_p).tolist(), start, cols)

    interactions = pd.DataFrame({
        "user": cols["user"], "item": [cat.item[i] for i in cols["item"]],
        "timestamp": pd.to_datetime(np.array(cols["ts"], dtype="int64"), unit="s"),
        "event": cols["event"], "duration": np.round(np.array(cols["duration"], dtype=float), 2),
        "origin": cols["origin"],
    })
    items = pd.DataFrame({
        "item": cat.item, "title": cat.title, "year": cat.year, "genres": cat.genres, "tags": cat.tags,
        "kind": cat.kind, "series_id": cat.series_id, "episode": pd.array(cat.episode, dtype="Int32"),
    })
    return interactions, items


def _simulate_user(st: _Stream, rng, pools: _Pools, cfg: SyntheticConfig, user: str, p_noise: float,
                   mix_cdf: list[float], start: int, cols: dict[str, list]) -> None:
    cat = pools.cat
    n_genres = len(GENRES)
    taste = rng.choice(n_genres, size=int(rng.integers(2, 4)), replace=False)
    taste_cdf = np.cumsum(rng.dirichlet(np.full(len(taste), 2.0))).tolist()
    fav_tags = [int(g * TAGS_PER_GENRE + t) for g in taste for t in rng.choice(TAGS_PER_GENRE, 2, replace=False)]
    others = np.setdiff1d(np.arange(n_genres), taste)
    household = rng.choice(others, size=2, replace=False) if rng.random() < cfg.household_share else None
    progress: dict[int, int] = {}  # series index -> next episode (0-based)

    def title_of(item: int) -> int:
        """Movie index, or n_movies + series index for an episode."""
        return item if item < cat.n_movies else cat.n_movies + bisect.bisect_right(pools.series_first, item) - 1

    def taste_movie(genres, cdf) -> int:
        g = int(genres[st.pick(cdf)])
        liked = [t for t in fav_tags if t // TAGS_PER_GENRE == g]
        if liked and st.random() < 0.6:
            pool = pools.by_tag[liked[st.integers(0, len(liked))]]
            if pool:
                return int(pool[st.integers(0, len(pool))])
        return int(pools.movies[g][st.pick(pools.movie_cdf[g])])

    def series_first_episode(genres, cdf) -> int:
        """Episode 1 of a series from the genres; a movie when the genre has no series."""
        g = int(genres[st.pick(cdf)])
        if not len(pools.series[g]):
            return taste_movie(genres, cdf)
        return int(cat.series_first[pools.series[g][st.integers(0, len(pools.series[g]))]])

    def binge(genres, cdf) -> list[int]:
        """2-5 consecutive episodes, usually of a series already started, else a new one."""
        g = int(genres[st.pick(cdf)])
        started = [s for s, e in progress.items() if cat.genre[cat.series_first[s]] == g and e < cat.series_len[s]]
        if started and st.random() < 0.7:
            s = started[0]
        elif len(pools.series[g]):
            s = int(pools.series[g][st.integers(0, len(pools.series[g]))])
        else:
            return [taste_movie(genres, cdf)]
        first = progress.get(s, 0)
        if first >= cat.series_len[s]:
            first = 0  # a rewatch from the start
        last = min(first + st.integers(2, 6), int(cat.series_len[s]))
        progress[s] = last
        return [int(cat.series_first[s]) + e for e in range(first, last)]

    events: list[tuple[int, int, str, float, str]] = []  # (session, item, event, minutes, origin)
    session = 0
    while len(events) < cfg.interactions_per_user:
        session += 1
        if st.random() < p_noise:  # no taste: a popular title from any genre
            item = int(pools.all_titles[st.pick(pools.all_cdf)])
            r = st.random()
            if r < 0.5:
                events.append((session, item, "autoplay_preview", st.uniform(0.1, 0.9), "noise"))
            elif r < 0.7:
                events.append((session, item, "trailer", st.uniform(1.0, 2.5), "noise"))
            else:
                events.append((session, item, "play", st.uniform(0.2, 2.0), "noise"))
            continue
        activity = ACTIVITY_NAMES[st.pick(mix_cdf)]
        viewer, genres, cdf = "taste", taste, taste_cdf
        if household is not None and activity in ("movie", "binge") and st.random() < HOUSEHOLD_ACTIVITY:
            viewer, genres, cdf = "household", household, _EVEN_PAIR
        if activity == "movie":
            item = taste_movie(genres, cdf)
            events.append((session, item, "play", st.uniform(0.5, 1.0) * st.uniform(85, 150), viewer))
            if st.random() < 0.25:
                events.append((session, item, "thumb_up", np.nan, viewer))
        elif activity == "binge":
            runtime = st.uniform(22, 55)
            events.extend((session, ep, "play", runtime * st.uniform(0.9, 1.0), viewer) for ep in binge(genres, cdf))
        elif activity == "list":
            item = taste_movie(genres, cdf) if st.random() < 0.7 else series_first_episode(genres, cdf)
            events.append((session, item, "add_to_list", np.nan, viewer))
        else:  # dislike: sampled an off-taste movie, stopped, thumbed it down
            g = int(others[st.integers(0, len(others))])
            item = int(pools.movies[g][st.pick(pools.movie_cdf[g])])
            events.append((session, item, "play", st.uniform(3, 15), "dislike"))
            events.append((session, item, "thumb_down", np.nan, "dislike"))
    events = events[: cfg.interactions_per_user]
    touched = {title_of(e[1]) for e in events}

    # Sessions on sorted days before the target days; evenings for the main viewer, afternoons
    # for the household's; a session never starts before the previous one ended.
    n_sessions = events[-1][0]
    span_days = max(cfg.days - N_TARGETS, 1)
    days = np.sort(rng.integers(0, span_days, n_sessions + 1))
    evening = start + days * 86400 + rng.integers(18 * 3600, 24 * 3600, n_sessions + 1)
    afternoon = start + days * 86400 + rng.integers(14 * 3600, 18 * 3600, n_sessions + 1)
    clock, current = 0, 0
    for session, item, event, minutes, origin in events:
        if session != current:
            begin = afternoon[session] if origin == "household" else evening[session]
            current, clock = session, max(int(begin), clock + 600)
        cols["user"].append(user)
        cols["item"].append(item)
        cols["ts"].append(clock)
        cols["event"].append(event)
        cols["duration"].append(minutes)
        cols["origin"].append(origin)
        clock += int((minutes if minutes == minutes else 0.5) * 60) + 30  # NaN minutes: a click

    # The next plays: usually a discovery (a title from the main taste the user never touched),
    # sometimes the next episode of a series the main viewer has started (not a discovery).
    for k in range(N_TARGETS):
        unfinished = [s for s, e in progress.items() if e < cat.series_len[s]]
        if unfinished and st.random() < cfg.continuation_share:
            s = unfinished[st.integers(0, len(unfinished))]
            item, progress[s] = int(cat.series_first[s]) + progress[s], progress[s] + 1
        else:
            for _ in range(50):
                item = taste_movie(taste, taste_cdf) if st.random() < 0.8 else series_first_episode(taste, taste_cdf)
                if title_of(item) not in touched:
                    break
        touched.add(title_of(item))
        cols["user"].append(user)
        cols["item"].append(item)
        cols["ts"].append(max(start + (span_days + k) * 86400 + st.integers(19 * 3600, 23 * 3600), clock + 600))
        clock = cols["ts"][-1] + 7200
        cols["event"].append("play")
        cols["duration"].append(st.uniform(60, 140))
        cols["origin"].append("taste")
