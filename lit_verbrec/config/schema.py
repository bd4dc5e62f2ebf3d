"""The configuration schema: one dataclass per section, a docstring per field.

`configs/config.yaml` and its groups (`size/`, `stage/`, `data/`, `oracle/`, `cluster/`)
are merged onto these defaults; `lit_verbrec.config.compose` rejects unknown keys and
wrong types, then builds these objects so that each `__post_init__` checks values.
The field docstrings are what `--help` prints (read from the sources of this module and of
`data_schema`, `train_schema` and `cluster_schema`, which hold the data/text, training and
cluster sections).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from lit_verbrec.config.checks import EVENT_TYPES, choice, require
from lit_verbrec.config.cluster_schema import GPU_MODELS, ClusterConfig, StageResources
from lit_verbrec.config.data_schema import (
    DataConfig,
    ExamplesConfig,
    InteractionColumns,
    ItemColumns,
    SyntheticConfig,
    TextConfig,
)
from lit_verbrec.config.train_schema import (
    GRPOConfig,
    OracleConfig,
    ReasonerConfig,
    RewardConfig,
    TrainConfig,
    VerbalizerConfig,
)

__all__ = [
    "EVENT_TYPES", "Config", "RunConfig", "SizeConfig", "TinyArchitecture", "LoraConfig", "StageConfig",
    "DataConfig", "SyntheticConfig", "InteractionColumns", "ItemColumns", "ExamplesConfig", "TextConfig",
    "GRPOConfig", "RewardConfig", "OracleConfig", "ClusterConfig", "EvalConfig", "VerbalizerConfig",
    "ReasonerConfig", "TrainConfig", "GPU_MODELS", "StageResources",
]


@dataclass
class RunConfig:
    name: str = "default"
    """Run name: the run folder is `<run.root>/<run.name>`."""
    root: str = "runs"
    """Folder that holds run folders."""
    seed: int = 0
    """Global seed (data sampling, bootstrap, training)."""

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name, "run.name", "must be a non-empty name without '/'")


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
    initializer_range: float = 0.2
    """Std of the random weights. The real 0.02 caps a hidden-64 model's logits near +-1.3 (final
    RMSNorm output has norm ~8, lm_head rows ~0.16), so LoRA alone could never make it confident."""
    sliding_window: int = 0
    """0: full causal attention in every layer, as the real models. N > 0: every layer attends to the N
    most recent tokens only (Qwen3's sliding-window attention). A random-weight model attends about
    uniformly, so a decision's hidden state is an average over the whole history, where a pretrained
    model can find the line it is about; a window keeps the line near (docs/experiments.md, 2026-11-22)."""
    global_layers: int = 0
    """With a sliding window: the last N layers attend to the whole sequence (Qwen3's per-layer
    `layer_types`), so a line is first read on its own and then compared with everything before it;
    0: every layer slides."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                     "intermediate_size", "initializer_range"):
            require(getattr(self, name) > 0, f"size.tiny.{name}", "must be positive")
        require(self.sliding_window >= 0, "size.tiny.sliding_window", "must be >= 0 (0: off)")
        require(0 <= self.global_layers <= self.num_hidden_layers, "size.tiny.global_layers",
                f"must be in [0, num_hidden_layers={self.num_hidden_layers}]")
        require(self.num_attention_heads % self.num_key_value_heads == 0, "size.tiny.num_key_value_heads",
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
        require(self.rank > 0, "size.lora.rank", "must be positive")
        require(0.0 <= self.dropout < 1.0, "size.lora.dropout", "must be in [0, 1)")


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
        choice(self.name, "size.name", ("tiny", "8b", "32b"))
        choice(self.quantization, "size.quantization", ("none", "nf4"))
        require(self.name == "tiny" or bool(self.model), "size.model", "a hub id or local path is required for 8b/32b")


STAGE_SETS = {"prepare": ("prepare",), "verbalizer": ("verbalizer",), "reasoner": ("reasoner",),
              "both": ("verbalizer", "reasoner"), "all": ("prepare", "verbalizer", "reasoner")}
"""stage.name -> the stages it runs, in order (each waits on the one before it)."""


@dataclass
class StageConfig:
    name: str = "both"
    """Which stages to run: prepare (the log -> <run>/data, on CPU), verbalizer (stage 1), reasoner
    (stage 2), both (stage 1 then stage 2) or all (prepare, stage 1, stage 2), in that order."""

    def __post_init__(self) -> None:
        choice(self.name, "stage.name", tuple(STAGE_SETS))

    @property
    def stages(self) -> list[str]:
        return list(STAGE_SETS[self.name])


@dataclass
class ExportConfig:
    stage: str = "verbalizer"
    """Which stage's model to export: verbalizer (stage 1) or reasoner (stage 2)."""
    what: list[str] = field(default_factory=lambda: ["adapter", "merged", "distillation"])
    """Artifacts: adapter (peft folder + tokenizer + model card), merged (bf16 checkpoint, NF4 base
    dequantized before the merge), distillation (the verbalization cache as a chat dataset; stage 1 only)."""
    min_reward: float = 0.0
    """distillation: keep rows whose stage-1 reward is at least this (0: all rows)."""

    def __post_init__(self) -> None:
        choice(self.stage, "export.stage", ("verbalizer", "reasoner"))
        for item in self.what:
            choice(item, "export.what", ("adapter", "merged", "distillation"))


@dataclass
class PredictConfig:
    input: str = ""
    """A prepared folder (examples.parquet + items.parquet, from tools/prepare_data.py) of the users to
    answer for; empty: the run's own prepared data."""
    split: str = "test"
    """Which examples of `input`: train, val, test or all."""
    reasoner: str = "trained"
    """Who picks the candidate: trained (the run's stage-2 reasoner) or oracle (oracle.*)."""
    engine: str = "as_trained"
    """What serves the models: as_trained (each stage's grpo.engine), hf or vllm (one engine, both adapters)."""
    chunk: int = 1024
    """Examples per output part file: a rerun with the same `out` skips the parts already written."""
    max_examples: int = 0
    """Answer at most this many examples (0: all)."""

    def __post_init__(self) -> None:
        choice(self.split, "predict.split", ("train", "val", "test", "all"))
        choice(self.reasoner, "predict.reasoner", ("trained", "oracle"))
        choice(self.engine, "predict.engine", ("as_trained", "hf", "vllm"))
        require(self.chunk >= 1, "predict.chunk", "must be >= 1")
        require(self.max_examples >= 0, "predict.max_examples", "must be >= 0")


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
    runs: list[str] = field(default_factory=list)
    """Run folders whose models fill the paper's rows (zero-shot, action, rewrite, trained reasoners);
    each run's own config says which rows it can fill (lit_verbrec/evaluation/paper.py)."""
    zero_shot_max_new_tokens: int = 256
    """Length limit of the zero-shot verbalizer's rewrite."""
    engine: str = "as_trained"
    """What serves the runs' models: as_trained (each stage's grpo.engine), hf, or vllm (one vLLM engine
    in the process serves every row's adapter; the action verbalizer and choice answers run on hf)."""

    def __post_init__(self) -> None:
        choice(self.split, "eval.split", ("train", "val", "test"))
        require(self.reference in self.rows, "eval.reference", f"must be one of eval.rows {self.rows}")
        require(self.bootstrap >= 100, "eval.bootstrap", "must be >= 100")
        require(0.5 < self.confidence < 1.0, "eval.confidence", "must be in (0.5, 1)")
        require(self.max_examples >= 0, "eval.max_examples", "must be >= 0")
        choice(self.engine, "eval.engine", ("as_trained", "hf", "vllm"))


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    """Run name, folder and seed."""
    size: SizeConfig = field(default_factory=SizeConfig)
    """Model size group (size=tiny|8b|32b)."""
    stage: StageConfig = field(default_factory=StageConfig)
    """Stage group (stage=prepare|verbalizer|reasoner|both|all)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data group (data=synthetic|movielens|parquet)."""
    text: TextConfig = field(default_factory=TextConfig)
    """How histories and candidates become text."""
    oracle: OracleConfig = field(default_factory=OracleConfig)
    """Oracle group (oracle=lexical|openai|model): the stage-1 reward reasoner."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Cluster group (cluster=local|slurm)."""
    verbalizer: VerbalizerConfig = field(default_factory=VerbalizerConfig)
    """Stage 1: the verbalizer and its GRPO settings."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Stage-1 reward shaping."""
    reasoner: ReasonerConfig = field(default_factory=ReasonerConfig)
    """Stage 2: the reasoner's input and its GRPO settings."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Validation, checkpoints and logging of both stages."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """tools/export.py: what to export from a finished run."""
    predict: PredictConfig = field(default_factory=PredictConfig)
    """tools/predict.py: batch answers for new users from a finished run."""
    out: str = ""
    """Output folder of the tool; empty: `<run.root>/<run.name>/<tool>`."""

    def __post_init__(self) -> None:
        # vLLM serves both stages of a tiny run from one saved base (the verbalizer's config.json): a
        # reasoner trained with another attention window would sample from a model it is not.
        require(stage_size(self, "reasoner") == self.size or self.reasoner.grpo.engine == "hf",
                "reasoner.tiny_sliding_window", "(or reasoner.tiny_global_layers) gives the reasoner other attention "
                "than size.tiny's: train it with reasoner.grpo.engine=hf, or set both to -1 for vLLM (one base "
                "serves both stages)")
        # The choice and listwise reasoners read the policy's own logits and hidden states (training/reasoner.py).
        require(self.reasoner.answer == "free" or self.reasoner.grpo.engine == "hf", "reasoner.grpo.engine",
                f"must be hf with reasoner.answer={self.reasoner.answer}: it samples from the trained model's own "
                "scores; vLLM serves reasoner.answer=free")
        # The action verbalizer's decisions are which lines to keep and which to enrich with metadata:
        # a template that already carries metadata on every line would leave it nothing to decide.
        require(not (self.text.metadata and self.verbalizer.kind == "action"), "text.metadata",
                "adds fields to every template line; with verbalizer.kind=action the verbalizer chooses "
                "per line what to enrich: leave text.metadata empty (or use verbalizer.kind=rewrite)")
        prepare = self.cluster.for_stage("prepare")
        require("prepare" not in self.stage.stages or prepare.nodes * prepare.ranks_per_node == 1, "cluster.prepare",
                f"the preparation is one process: its nodes and tasks_per_node must come to one task, got "
                f"{prepare.nodes} node(s) x {prepare.ranks_per_node} task(s)")


def stage_size(cfg: Config, stage: str) -> SizeConfig:
    """The model settings of `stage` (verbalizer | reasoner): size, with the tiny reasoner's own
    attention (reasoner.tiny_sliding_window, reasoner.tiny_global_layers; -1 keeps size.tiny's).
    The weights are the same: only which tokens each layer sees differs."""
    own = {"sliding_window": cfg.reasoner.tiny_sliding_window, "global_layers": cfg.reasoner.tiny_global_layers}
    own = {key: value for key, value in own.items() if value >= 0}
    if stage == "verbalizer" or cfg.size.name != "tiny" or not own:
        return cfg.size
    tiny = replace(cfg.size.tiny, **own)
    return cfg.size if tiny == cfg.size.tiny else replace(cfg.size, tiny=tiny)
