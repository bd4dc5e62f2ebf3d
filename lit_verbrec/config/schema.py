"""The configuration schema: one dataclass per section, a docstring per field.

`configs/config.yaml` and its groups (`size/`, `stage/`, `data/`, `oracle/`, `cluster/`)
are merged onto these defaults; `lit_verbrec.config.compose` rejects unknown keys and
wrong types, then builds these objects so that each `__post_init__` checks values.
The field docstrings are what `--help` prints (read from this file's source).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_TYPES = ("play", "thumb_up", "thumb_down", "add_to_list", "trailer", "autoplay_preview")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ValueError(f"{key}: {message}")


def _choice(value: str, key: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, key, f"got {value!r}, expected one of {', '.join(choices)}")


@dataclass
class RunConfig:
    name: str = "default"
    """Run name: the run folder is `<run.root>/<run.name>`."""
    root: str = "runs"
    """Folder that holds run folders."""
    seed: int = 0
    """Global seed (data sampling, bootstrap, training)."""

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name, "run.name", "must be a non-empty name without '/'")


@dataclass
class TinyArchitecture:
    hidden_size: int = 64
    """Hidden width of the random-weight Qwen3 (real one: 4096 for 8B)."""
    num_hidden_layers: int = 2
    """Decoder layers (real one: 36 for 8B)."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention, as in Qwen3)."""
    head_dim: int = 16
    """Width of one attention head."""
    intermediate_size: int = 128
    """MLP width."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size"):
            _require(getattr(self, name) > 0, f"size.tiny.{name}", "must be positive")
        _require(self.num_attention_heads % self.num_key_value_heads == 0, "size.tiny.num_key_value_heads",
                 "must divide size.tiny.num_attention_heads")


@dataclass
class LoraConfig:
    rank: int = 16
    """LoRA rank r."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / rank)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""

    def __post_init__(self) -> None:
        _require(self.rank > 0, "size.lora.rank", "must be positive")
        _require(0.0 <= self.dropout < 1.0, "size.lora.dropout", "must be in [0, 1)")


@dataclass
class SizeConfig:
    name: str = "tiny"
    """Model size: tiny (random-weight Qwen3 on CPU), 8b, 32b."""
    model: str = ""
    """Hub id or local folder of the base model; empty for `tiny`, which is built from `size.tiny`."""
    tokenizer: str = "Qwen/Qwen3-8B"
    """Hub id or local folder of the tokenizer (offline: a folder such as ../shared/qwen3-tokenizer)."""
    quantization: str = "none"
    """`nf4` for QLoRA (bitsandbytes 4-bit, double quant, bf16 compute) or `none`."""
    tiny: TinyArchitecture = field(default_factory=TinyArchitecture)
    """Architecture of the random-weight model used when size.name is tiny."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapter on all projection layers."""

    def __post_init__(self) -> None:
        _choice(self.name, "size.name", ("tiny", "8b", "32b"))
        _choice(self.quantization, "size.quantization", ("none", "nf4"))
        _require(self.name == "tiny" or bool(self.model), "size.model", "a hub id or local path is required for 8b/32b")


@dataclass
class StageConfig:
    name: str = "both"
    """Which stages to run: verbalizer (stage 1), reasoner (stage 2) or both, in that order."""

    def __post_init__(self) -> None:
        _choice(self.name, "stage.name", ("verbalizer", "reasoner", "both"))

    @property
    def stages(self) -> list[str]:
        return ["verbalizer", "reasoner"] if self.name == "both" else [self.name]


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
            _require(getattr(self, name) > 0, f"data.synthetic.{name}", "must be positive")
        _require(0.0 <= self.household_share <= 1.0, "data.synthetic.household_share", "must be in [0, 1]")
        _require(0.0 <= self.noise_share < 1.0, "data.synthetic.noise_share", "must be in [0, 1)")
        _require(0.0 <= self.continuation_share <= 1.0, "data.synthetic.continuation_share", "must be in [0, 1]")


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
        _require(self.history_len > 0, "data.examples.history_len", "must be positive")
        _require(self.num_candidates >= 2, "data.examples.num_candidates", "must be at least 2")
        _choice(self.negatives, "data.examples.negatives", ("uniform", "popularity"))
        _choice(self.split, "data.examples.split", ("leave_last_out", "time"))
        _require(0 < self.test_share and 0 <= self.val_share and self.val_share + self.test_share < 1,
                 "data.examples.test_share", "val_share + test_share must be in (0, 1) with test_share > 0")
        for event in self.target_events:
            _choice(event, "data.examples.target_events", EVENT_TYPES)
        _require(self.min_history >= 1, "data.examples.min_history", "must be at least 1")
        _require(self.train_targets_per_user >= 0, "data.examples.train_targets_per_user", "must be >= 0")


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
    """parquet source: interactions file (.parquet or .csv), relative to data.path."""
    items: str = "items.parquet"
    """parquet source: item catalog file (.parquet or .csv), relative to data.path."""
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
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    """How interactions become reranking examples."""

    def __post_init__(self) -> None:
        _choice(self.source, "data.source", ("synthetic", "movielens", "parquet"))
        _require(self.source == "synthetic" or bool(self.path), "data.path", f"is required for data.source={self.source}")
        _choice(self.duration_unit, "data.duration_unit", ("min", "s", "ms"))
        _choice(self.on_bad_row, "data.on_bad_row", ("error", "skip"))
        _require(self.timestamp_format in ("unix", "unix_ms", "iso") or "%" in self.timestamp_format,
                 "data.timestamp_format", "expected unix, unix_ms, iso or a strptime pattern with %")
        for source_value, event in self.event_map.items():
            _choice(event, f"data.event_map.{source_value}", EVENT_TYPES)


@dataclass
class TextConfig:
    metadata: list[str] = field(default_factory=list)
    """Item fields the template appends to each line: any of year, genres, tags (the paper's raw format shows year and plot)."""
    max_tags: int = 3
    """At most this many tags per item in any text."""
    candidate_metadata: bool = True
    """Show year and genres next to each numbered candidate in the reasoner prompt."""

    def __post_init__(self) -> None:
        for name in self.metadata:
            _choice(name, "text.metadata", ("year", "genres", "tags"))
        _require(self.max_tags >= 0, "text.max_tags", "must be >= 0")


@dataclass
class OracleConfig:
    kind: str = "lexical"
    """Stage-1 reward reasoner: lexical (deterministic metadata overlap, for CPU and tests), openai (any OpenAI-compatible endpoint), model (an LLM in-process)."""
    base_url: str = ""
    """openai: endpoint base URL, e.g. http://127.0.0.1:8000/v1 for `vllm serve`."""
    model: str = ""
    """openai: served model name; model: hub id or local folder."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself is never in a config)."""
    concurrency: int = 16
    """openai: requests in flight at once."""
    timeout_s: float = 60.0
    """openai: seconds before a request is abandoned and retried."""
    max_retries: int = 5
    """openai: retries on timeouts, 429 and 5xx (exponential backoff with jitter)."""

    def __post_init__(self) -> None:
        _choice(self.kind, "oracle.kind", ("lexical", "openai", "model"))
        _require(self.concurrency > 0, "oracle.concurrency", "must be positive")
        _require(self.timeout_s > 0, "oracle.timeout_s", "must be positive")
        _require(self.max_retries >= 0, "oracle.max_retries", "must be >= 0")


@dataclass
class ClusterConfig:
    kind: str = "local"
    """local (stages one after another on this machine) or slurm (dependent jobs via submitit)."""
    partition: str = ""
    """slurm: partition; empty: the cluster default."""
    account: str = ""
    """slurm: account to charge; empty: none."""
    qos: str = ""
    """slurm: quality of service; empty: none."""
    time_min: int = 1440
    """slurm: time limit per stage job, minutes."""
    nodes: int = 1
    """slurm: nodes per stage job."""
    gpus_per_node: int = 8
    """slurm: GPUs per node; also the tasks per node (one rank per GPU)."""
    cpus_per_task: int = 8
    """slurm: CPU cores per rank."""
    mem_gb: int = 0
    """slurm: memory per node in GB; 0: the cluster default."""
    constraint: str = ""
    """slurm: node feature constraint, e.g. h100; empty: none."""
    extra_sbatch: list[str] = field(default_factory=list)
    """slurm: extra `#SBATCH` lines, written as given, e.g. --exclusive."""
    setup: list[str] = field(default_factory=list)
    """slurm: shell lines run before the job, e.g. module load cuda; source .venv/bin/activate."""

    def __post_init__(self) -> None:
        _choice(self.kind, "cluster.kind", ("local", "slurm"))
        for name in ("time_min", "nodes", "cpus_per_task"):
            _require(getattr(self, name) > 0, f"cluster.{name}", "must be positive")
        _require(self.gpus_per_node >= 0 and self.mem_gb >= 0, "cluster.gpus_per_node", "must be >= 0")


@dataclass
class EvalConfig:
    split: str = "test"
    """Which prepared split to score: train, val or test."""
    rows: list[str] = field(default_factory=lambda: ["random", "popularity", "lexical/template", "lexical/template+metadata",
                                                     "lexical/taste-lines+metadata"])
    """Systems to score, each `reasoner` or `reasoner/verbalization` (see tools/evaluate.py --help)."""
    reference: str = "lexical/template"
    """Row that relative changes are measured against (the paper's template baseline)."""
    bootstrap: int = 1000
    """Bootstrap resamples for the confidence intervals."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    max_examples: int = 0
    """Score at most this many examples (0: all)."""

    def __post_init__(self) -> None:
        _choice(self.split, "eval.split", ("train", "val", "test"))
        _require(self.reference in self.rows, "eval.reference", f"must be one of eval.rows {self.rows}")
        _require(self.bootstrap >= 100, "eval.bootstrap", "must be >= 100")
        _require(0.5 < self.confidence < 1.0, "eval.confidence", "must be in (0.5, 1)")
        _require(self.max_examples >= 0, "eval.max_examples", "must be >= 0")


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    """Run name, folder and seed."""
    size: SizeConfig = field(default_factory=SizeConfig)
    """Model size group (size=tiny|8b|32b)."""
    stage: StageConfig = field(default_factory=StageConfig)
    """Stage group (stage=verbalizer|reasoner|both)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data group (data=synthetic|movielens|parquet)."""
    text: TextConfig = field(default_factory=TextConfig)
    """How histories and candidates become text."""
    oracle: OracleConfig = field(default_factory=OracleConfig)
    """Oracle group (oracle=lexical|openai|model): the stage-1 reward reasoner."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Cluster group (cluster=local|slurm)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    out: str = ""
    """Output folder of the tool; empty: `<run.root>/<run.name>/<tool>`."""
