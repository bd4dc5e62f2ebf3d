"""The two stages as functions of the config: build the pieces, fit, return a summary.

    stage 1  verbalizer: policy = size's model + LoRA, verbalizer = action | rewrite,
             reward from the oracle (oracle.*) and the length plateau (reward.*)
    stage 2  reasoner:   stage 1's adapter verbalizes every example once (cached), then a fresh
             LoRA on the same base learns to answer from those texts (or from the template,
             reasoner.input=template), reward +1 / -1
"""

from __future__ import annotations

import torch

from lit_verbrec.config.schema import Config, stage_size
from lit_verbrec.models.loading import load_policy
from lit_verbrec.oracle.factory import make_oracle
from lit_verbrec.rollout.engines import make_engine
from lit_verbrec.rollout.hf import HFEngine
from lit_verbrec.rollout.vllm_llm import close_llm, owns_process_group
from lit_verbrec.training.cache import VerbalizationCache, text_key
from lit_verbrec.training.callbacks import ValidationCallback
from lit_verbrec.training.distributed import rank_info, setup_rank
from lit_verbrec.training.inference import HF_BATCH, engine_name, frozen_verbalizer, vllm_base
from lit_verbrec.training.probes import DecisionProbe
from lit_verbrec.training.reasoner import ReasonerGRPO
from lit_verbrec.training.run import (
    RunPaths,
    fit,
    load_examples,
    prepared_folder,
    run_tokenizer,
    stage_callbacks,
)
from lit_verbrec.training.verbalizer import VerbalizerGRPO
from lit_verbrec.training.verbalizers import ActionVerbalizer, RewriteVerbalizer, TemplateVerbalizer

HF_CACHE_CHUNK = 64
"""Examples verbalized between two saves of stage 2's cache, on transformers."""
VLLM_CACHE_CHUNK = 1024
"""... on vLLM, which runs a chunk as one batch."""


def stage_policy(cfg: Config, grpo, tokenizer, stage_dir):
    """A fresh trainable policy (base + LoRA) of the stage `stage_dir` is for; gradient checkpointing
    only where it pays (GPU)."""
    return load_policy(stage_size(cfg, stage_dir.name), tokenizer, gradient_checkpointing=grpo.gradient_checkpointing and torch.cuda.is_available(),
                       seed=cfg.run.seed, workdir=stage_dir)


def validation_history(callbacks) -> list[dict]:
    """The validation scores recorded during fit ([] without validation)."""
    return next((c.history for c in callbacks if isinstance(c, ValidationCallback)), [])


def make_rollout_engine(cfg: Config, grpo, policy, tokenizer, paths: RunPaths):
    """hf shares the policy's weights; vllm loads the base (dequantized NF4 when the policy is QLoRA)."""
    if grpo.engine == "hf":
        return HFEngine(policy, tokenizer)
    # the engine adds its rank to the seed when it is built (inside fit, where DDP's ranks exist)
    return make_engine(grpo, cfg.size, policy, tokenizer, cfg.run.seed, vllm_base=vllm_base(cfg, paths, tokenizer, policy))


def run_verbalizer_stage(cfg: Config) -> dict:
    """Stage 1. Returns {"stage_dir", "adapter", "global_step", "validation": [...]}."""
    setup_rank(cfg)   # this rank's GPU before any model is built
    paths = RunPaths.of(cfg)
    data = prepared_folder(cfg, paths)
    train, catalog = load_examples(data, "train", cfg.train.train_examples)
    val, _ = load_examples(data, "val", cfg.train.val_examples)
    tokenizer = run_tokenizer(cfg, paths, train, catalog)
    grpo, stage_dir = cfg.verbalizer.grpo, paths.stage("verbalizer")
    policy = stage_policy(cfg, grpo, tokenizer, stage_dir)
    engine = make_rollout_engine(cfg, grpo, policy, tokenizer, paths)
    if cfg.verbalizer.kind == "action":
        verbalizer = ActionVerbalizer(policy, tokenizer, catalog, full_lines=cfg.verbalizer.action_line == "full",
                                      factorised=cfg.verbalizer.action_decoding == "factorised",
                                      max_tags=cfg.text.max_tags)
    else:
        verbalizer = RewriteVerbalizer(engine, tokenizer, catalog, "rewrite", grpo.max_new_tokens,
                                       metadata=cfg.text.metadata, max_tags=cfg.text.max_tags,
                                       length_cap=cfg.verbalizer.length_cap)
    oracle = make_oracle(cfg.oracle, catalog, paths.oracle_cache(cfg))
    module = VerbalizerGRPO(policy, tokenizer, engine, grpo, verbalizer, oracle, cfg.reward)
    callbacks = stage_callbacks(cfg, stage_dir, val)
    if cfg.verbalizer.kind == "action" and cfg.train.probe_examples:
        callbacks.append(DecisionProbe(val[:cfg.train.probe_examples], cfg.train.probe_every_n_steps))
    trainer = fit(cfg, module, train, stage_dir, grpo, callbacks)
    engine.close()   # stage 2 (same process under stage=both) builds its own
    validation = validation_history(callbacks)
    return {"stage_dir": str(stage_dir), "global_step": trainer.global_step, "validation": validation,
            "oracle": oracle.stats()}


def stage2_texts(cfg: Config, paths: RunPaths, examples: list[dict], tokenizer, catalog,
                 engine: str | None = None) -> tuple[dict[str, str], dict]:
    """example_id -> the reasoner's input text (verbalized once and cached, or the template).
    `engine`: what serves the frozen verbalizer (default verbalizer.grpo.engine)."""
    if cfg.reasoner.input == "template":
        template = TemplateVerbalizer(catalog, cfg.text.max_tags, cfg.text.metadata)
        return dict(zip([e["example_id"] for e in examples], template.verbalize(examples))), {"input": "template"}
    verbalizer, key = frozen_verbalizer(cfg, paths, tokenizer, catalog, engine)
    cache = VerbalizationCache(paths.cache, verbalizer.kind, text_key(key, cfg.text.metadata))
    # The ranks of a Slurm job split the work and save it chunk by chunk; a preemption signal stops here.
    from lit_verbrec.training.preemption import exit_if_signalled, job_rank

    # vLLM batches a whole chunk at once: larger chunks keep it busy, at the price of more redone on a requeue
    chunk = VLLM_CACHE_CHUNK if getattr(verbalizer, "batch_size", HF_BATCH) == 0 else HF_CACHE_CHUNK
    texts = cache.texts(examples, verbalizer.verbalize, shard=job_rank(), chunk=chunk,
                        after_chunk=lambda saved: exit_if_signalled(f"stage-2 verbalization: {saved}",
                                                                    cfg.cluster.max_requeues))
    if isinstance(verbalizer, RewriteVerbalizer):
        verbalizer.engine.close()   # the verbalizer's weights are not needed again in this stage
    served_by = engine_name(verbalizer.engine) if isinstance(verbalizer, RewriteVerbalizer) else "hf"
    return texts, {"input": "verbalized", "cache": str(cache.path), "computed": cache.computed, "reused": cache.reused,
                   "engine": served_by}


def run_reasoner_stage(cfg: Config) -> dict:
    """Stage 2. Returns {"stage_dir", "global_step", "validation", "texts": cache counters, "text_lookups"}."""
    setup_rank(cfg)   # this rank's GPU before the frozen verbalizer is built
    paths = RunPaths.of(cfg)
    data = prepared_folder(cfg, paths)
    train, catalog = load_examples(data, "train", cfg.train.train_examples)
    val, _ = load_examples(data, "val", cfg.train.val_examples)
    test, _ = load_examples(data, "test", cfg.train.eval_examples)
    tokenizer = run_tokenizer(cfg, paths, train, catalog)
    texts, text_info = stage2_texts(cfg, paths, train + val + test, tokenizer, catalog)
    if owns_process_group() and rank_info(cfg).world_size > 1:
        close_llm()   # the verbalizer's engine started a world of one: DDP's ranks would each train alone in it
    print(f"stage 2 input: {text_info}", flush=True)
    grpo, stage_dir = cfg.reasoner.grpo, paths.stage("reasoner")
    policy = stage_policy(cfg, grpo, tokenizer, stage_dir)
    engine = make_rollout_engine(cfg, grpo, policy, tokenizer, paths)
    module = ReasonerGRPO(policy, tokenizer, engine, grpo, catalog, texts, cfg.text.candidate_metadata,
                          cfg.text.reasoner_candidate_tags, cfg.reasoner.answer, cfg.data.examples.num_candidates)
    callbacks = stage_callbacks(cfg, stage_dir, val)
    trainer = fit(cfg, module, train, stage_dir, grpo, callbacks)
    engine.close()
    validation = validation_history(callbacks)
    print(f"stage 2 read {module.text_lookups:,} texts from the cache during training "
          f"(verbalized {text_info.get('computed', 0):,}, reused {text_info.get('reused', 0):,})", flush=True)
    return {"stage_dir": str(stage_dir), "global_step": trainer.global_step, "validation": validation,
            "texts": text_info, "text_lookups": module.text_lookups}
