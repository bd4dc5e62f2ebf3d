"""Schema of the data and text sections: sources, column mappings, example rules, template options."""

from __future__ import annotations

from dataclasses import dataclass, field

from lit_verbrec.config.checks import EVENT_TYPES, choice, require


@dataclass
class SyntheticConfig:
    users: int = 2000
    """Number of users (main viewers) to simulate."""
    interactions_per_user: int = 100
    """Interactions per user before the three held-out plays (the train, validation and test targets)."""
    movies: int = 1500
    """Movies in the catalog."""
    series: int = 200
    """Series in the catalog; each has 4-16 episodes, each episode an item."""
    household_share: float = 0.3
    """Share of users whose account a second viewer with other tastes also uses."""
    noise_share: float = 0.35
    """Share of events that carry no taste: autoplay previews, trailers, accidental short plays."""
    continuation_share: float = 0.2
    """Chance that a held-out play continues a started series (not a discovery) instead of a new title."""
    start: str = "2025-06-01"
    """First day of the simulated log (ISO date)."""
    days: int = 90
    """Length of the simulated log in days."""

    def __post_init__(self) -> None:
        for name in ("users", "interactions_per_user", "movies", "series", "days"):
            require(getattr(self, name) > 0, f"data.synthetic.{name}", "must be positive")
        require(0.0 <= self.household_share <= 1.0, "data.synthetic.household_share", "must be in [0, 1]")
        require(0.0 <= self.noise_share < 1.0, "data.synthetic.noise_share", "must be in [0, 1)")
        require(0.0 <= self.continuation_share <= 1.0, "data.synthetic.continuation_share", "must be in [0, 1]")


@dataclass
class InteractionColumns:
    user: str = "user"
    """Source column holding the user id."""
    item: str = "item"
    """Source column holding the item id."""
    timestamp: str = "timestamp"
    """Source column holding the event time (see data.timestamp_format)."""
    event: str = "event"
    """Source column holding the event type; empty: every row is a play."""
    duration: str = "duration"
    """Source column holding the watch duration (see data.duration_unit); empty: none."""


@dataclass
class ItemColumns:
    item: str = "item"
    """Source column holding the item id."""
    title: str = "title"
    """Source column holding the title."""
    year: str = "year"
    """Release year; empty: none."""
    genres: str = "genres"
    """Genres, separated by data.list_separator; empty: none."""
    tags: str = "tags"
    """Tags / plot keywords, separated by data.list_separator; empty: none."""
    kind: str = "kind"
    """`movie` or `series`; empty: every item is a movie."""
    series_id: str = "series_id"
    """Series an episode belongs to; empty: no episodes."""
    episode: str = "episode"
    """Episode number within the series; empty: none."""


@dataclass
class ExamplesConfig:
    history_len: int = 100
    """Most recent interactions before the target kept as history."""
    num_candidates: int = 10
    """Candidates per example: the target plus num_candidates - 1 negatives."""
    negatives: str = "uniform"
    """Negative sampling over titles the user never touched: uniform or popularity (by play count)."""
    split: str = "leave_last_out"
    """leave_last_out (per user: last target = test, second last = val, earlier = train) or time (global cut-offs)."""
    val_share: float = 0.1
    """time split: share of the log's time span (the end before the test window) that is validation."""
    test_share: float = 0.1
    """time split: share of the log's time span at its end that is test."""
    target_events: list[str] = field(default_factory=lambda: ["play"])
    """Event types that can be a target (the 'next item engaged with')."""
    min_target_duration: float = 5.0
    """Plays shorter than this many minutes are not targets (accidental plays); unknown durations pass."""
    min_history: int = 5
    """A target needs at least this many interactions before it; fewer: counted skip."""
    train_targets_per_user: int = 1
    """Training examples per user (most recent targets before the validation one)."""

    def __post_init__(self) -> None:
        require(self.history_len > 0, "data.examples.history_len", "must be positive")
        require(self.num_candidates >= 2, "data.examples.num_candidates", "must be at least 2")
        choice(self.negatives, "data.examples.negatives", ("uniform", "popularity"))
        choice(self.split, "data.examples.split", ("leave_last_out", "time"))
        require(0 < self.test_share and 0 <= self.val_share and self.val_share + self.test_share < 1,
                 "data.examples.test_share", "val_share + test_share must be in (0, 1) with test_share > 0")
        for event in self.target_events:
            choice(event, "data.examples.target_events", EVENT_TYPES)
        require(self.min_history >= 1, "data.examples.min_history", "must be at least 1")
        require(self.train_targets_per_user >= 0, "data.examples.train_targets_per_user", "must be >= 0")


@dataclass
class DataConfig:
    source: str = "synthetic"
    """Where interactions come from: synthetic (built-in streaming log), movielens, parquet (Parquet or CSV logs)."""
    path: str = ""
    """movielens: the unpacked MovieLens folder; parquet: folder of data.interactions and data.items."""
    prepared: str = ""
    """Folder written by tools/prepare_data.py (examples + items); read by evaluation and training."""
    seed: int = 0
    """Seed of the synthetic log and of negative sampling."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Settings of the built-in synthetic streaming log."""
    interactions: str = "interactions.parquet"
    """parquet source: interactions file (.parquet or .csv) relative to data.path, or a folder of such part
    files (hive `key=value` folders become text columns; lit_verbrec/data/tables.py)."""
    items: str = "items.parquet"
    """parquet source: item catalog file (.parquet or .csv) relative to data.path, or a folder of part files."""
    columns: InteractionColumns = field(default_factory=InteractionColumns)
    """parquet source: which source column is which canonical interaction column."""
    item_columns: ItemColumns = field(default_factory=ItemColumns)
    """parquet source: which source column is which canonical item column."""
    event_map: dict[str, str] = field(default_factory=dict)
    """parquet source: source event value -> canonical event (play, thumb_up, ...); canonical names map to themselves."""
    timestamp_format: str = "unix"
    """parquet source: unix (seconds), unix_ms, iso, or a strptime pattern such as %Y-%m-%d %H:%M."""
    duration_unit: str = "min"
    """parquet source: unit of the duration column: min, s or ms."""
    list_separator: str = "|"
    """Separator inside genre and tag cells of CSV files."""
    encoding: str = "utf-8"
    """Text encoding of CSV files; a byte that does not decode is an error naming file and line."""
    on_bad_row: str = "error"
    """A row that cannot be parsed (timestamp, negative duration, unknown event): error, or skip and count."""
    sample_users: float = 0.0
    """Keep only some users, chosen by a stable hash of the user id (the same users on every run and
    machine, whatever the file layout): a share in (0, 1), or a number of users (a whole number >= 1);
    0: every user. Applied while the log is read (Parquet is streamed in batches, so only the sample
    is held in memory; lit_verbrec/data/user_sample.py). The examples are built from the sampled log."""
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    """How interactions become reranking examples."""
    shard_rows: int = 2_000_000
    """parquet source: interactions per shard of users, about (a user's shard: a stable hash of the id).
    The preparation holds one shard per worker, so this and data.workers, not the log's size, set its
    peak memory; the examples are the same for any value (lit_verbrec/data/shards.py). 0: the whole
    log in memory at once."""
    workers: int = 0
    """Processes that prepare shards at once; 0: every core this process may use."""

    def __post_init__(self) -> None:
        require(self.shard_rows >= 0, "data.shard_rows", "must be >= 0 (0: the whole log in memory)")
        require(self.workers >= 0, "data.workers", "must be >= 0 (0: every core)")
        require(self.sample_users >= 0 and (self.sample_users < 1 or float(self.sample_users).is_integer()),
                "data.sample_users", f"must be 0 (every user), a share in (0, 1) or a whole number of users, "
                f"got {self.sample_users}")
        choice(self.source, "data.source", ("synthetic", "movielens", "parquet"))
        require(self.source == "synthetic" or bool(self.path), "data.path", f"is required for data.source={self.source}")
        choice(self.duration_unit, "data.duration_unit", ("min", "s", "ms"))
        choice(self.on_bad_row, "data.on_bad_row", ("error", "skip"))
        require(self.timestamp_format in ("unix", "unix_ms", "iso") or "%" in self.timestamp_format,
                 "data.timestamp_format", "expected unix, unix_ms, iso or a strptime pattern with %")
        for source_value, event in self.event_map.items():
            choice(event, f"data.event_map.{source_value}", EVENT_TYPES)


@dataclass
class TextConfig:
    metadata: list[str] = field(default_factory=list)
    """Item fields the template appends to each line: any of year, genres, tags (the paper's raw format shows year and plot)."""
    max_tags: int = 3
    """At most this many tags per item in any text."""
    candidate_metadata: bool = True
    """Show year, genres and plot tags next to each labelled candidate in the reasoner prompt."""
    candidate_tags: int = -1
    """At most this many plot tags per candidate line of the reasoner prompt; -1: max_tags. The oracle's
    prompt keeps max_tags."""

    @property
    def reasoner_candidate_tags(self) -> int:
        """The plot tags a reasoner-prompt candidate line shows."""
        return self.max_tags if self.candidate_tags < 0 else self.candidate_tags

    def __post_init__(self) -> None:
        for name in self.metadata:
            choice(name, "text.metadata", ("year", "genres", "tags"))
        require(self.max_tags >= 0, "text.max_tags", "must be >= 0")
        require(self.candidate_tags >= -1, "text.candidate_tags", "must be -1 (text.max_tags) or >= 0")
