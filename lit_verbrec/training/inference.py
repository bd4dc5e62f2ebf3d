"""Trained models, frozen, for inference: stage 2's verbalization, evaluation rows, batch prediction.

Each is served by an engine chosen by name (`hf` or `vllm`, normally the engine its stage
trained with, `<stage>.grpo.engine`):

    hf     the base model with the adapter loaded (transformers `generate`), batches of
           HF_BATCH prompts (padded generation holds a batch's KV cache in the model's memory)
    vllm   the process's one vLLM engine (rollout/vllm_llm.py) with the adapter as a
           `LoRARequest`, every prompt of a call at once (vLLM schedules its own batches);
           one engine serves every adapter on the same base, switching per call

The verbalizers and reasoners that decode with the slot sampler (`verbalizer.kind=action`,
`reasoner.answer=choice`) need the model's own logits at each slot: they run on `hf` always.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from lit_verbrec.config.schema import Config, stage_size
from lit_verbrec.data.files import atomic_folder_write
from lit_verbrec.models.loading import load_adapter, load_base_model, save_dequantized_base
from lit_verbrec.rollout.hf import HFEngine
from lit_verbrec.rollout.vllm import FrozenVLLMEngine
from lit_verbrec.training.cache import adapter_hash
from lit_verbrec.training.distributed import RankInfo, rank_info
from lit_verbrec.training.reasoner import ReasonerGRPO
from lit_verbrec.training.run import RunPaths, best_adapter
from lit_verbrec.training.verbalizers import ActionVerbalizer, RewriteVerbalizer

HF_BATCH = 16
"""Prompts per transformers `generate` call at inference."""


def shared_vllm_base(model, folder: Path, tokenizer, rank: RankInfo, poll_s: float = 2.0,
                     timeout_s: float = 3600.0) -> bool:
    """The dequantized base vLLM loads, written once per run by global rank 0 and atomically
    (model.safetensors renamed in last, so a killed write never leaves a folder that looks done);
    every other rank waits for it instead of holding its own host copy of the full state.
    `model`: the policy (base + LoRA) or the plain base. Returns whether this rank wrote it.
    Files, not a collective: under Lightning's own launcher rank 0 gets here before the other
    ranks exist."""
    def done() -> bool:
        return (folder / "model.safetensors").is_file()

    wrote = False
    if rank.global_rank == 0 and not done():
        # bf16 on a GPU; on a CPU the weights keep their dtype (float32: the engine matches the trainer)
        dtype = torch.bfloat16 if torch.cuda.is_available() else None
        atomic_folder_write(folder, lambda tmp: save_dequantized_base(model, tmp, tokenizer, dtype=dtype),
                            last="model.safetensors")
        wrote = True
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank.global_rank}: rank 0 did not write {folder} within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return wrote


def vllm_base(cfg: Config, paths: RunPaths, tokenizer, model=None) -> str:
    """What vLLM loads for this run: size.model for an unquantized 8b/32b; for a tiny or nf4 run the
    run's `vllm-base` folder (written from `model`, or from a freshly loaded base, if not there yet)."""
    if cfg.size.name != "tiny" and cfg.size.quantization != "nf4":
        return cfg.size.model
    folder = paths.run / "vllm-base"
    if not (folder / "model.safetensors").is_file():
        if model is None:
            model = load_base_model(cfg.size, tokenizer, seed=cfg.run.seed, workdir=paths.stage("reasoner"))
        shared_vllm_base(model, folder, tokenizer, rank_info(cfg))
    return str(folder)


def resolve_engine(setting: str, trained_with: str) -> str:
    """eval.engine / predict.engine: `as_trained` -> the engine the stage trained with."""
    return trained_with if setting == "as_trained" else setting


def inference_grpo(cfg: Config):
    """vLLM settings for frozen models that hold both stages' prompts (verbalizer.grpo with the larger
    context and cache of the two), so that one engine serves the verbalizer and the reasoner alike."""
    first, second = cfg.verbalizer.grpo, cfg.reasoner.grpo
    cache = 0 if 0 in (first.vllm_kv_cache_mib, second.vllm_kv_cache_mib) else max(first.vllm_kv_cache_mib,
                                                                                   second.vllm_kv_cache_mib)
    return replace(first, vllm_max_model_len=max(first.vllm_max_model_len, second.vllm_max_model_len),
                   vllm_kv_cache_mib=cache, vllm_sleep_mode=False,
                   vllm_gpu_memory_utilization=max(first.vllm_gpu_memory_utilization,
                                                   second.vllm_gpu_memory_utilization))


def frozen_engine(cfg: Config, paths: RunPaths, grpo, tokenizer, adapter: Path | None, engine: str,
                  stage: str = "verbalizer"):
    """(engine, model) serving `adapter` (None: the base) greedily, with `stage`'s model settings;
    model is None on vllm, whose engine settings come from both stages (`inference_grpo`), not from
    `grpo`."""
    if engine == "vllm":
        base = vllm_base(cfg, paths, tokenizer)
        return FrozenVLLMEngine(base, tokenizer, cfg.size, inference_grpo(cfg), cfg.run.seed, adapter), None
    model = load_base_model(stage_size(cfg, stage), tokenizer, seed=cfg.run.seed, workdir=paths.stage("reasoner"))
    if adapter is not None:
        model = load_adapter(model, adapter)
    model.eval()
    return HFEngine(model, tokenizer), model


def engine_name(engine) -> str:
    """"vllm" or "hf": what serves a verbalizer's or reasoner's engine (recorded with results)."""
    return "vllm" if isinstance(engine, FrozenVLLMEngine) else "hf"


def inference_batch(engine) -> int:
    """Prompts per sampling call: all of them for vLLM (0), HF_BATCH for transformers."""
    return 0 if isinstance(engine, FrozenVLLMEngine) else HF_BATCH


def _adapter(stage_dir: Path, what: str) -> Path:
    adapter = best_adapter(stage_dir)
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no {what} adapter in {stage_dir}: run stage={stage_dir.name} first"
                                + (" (or reasoner.input=template to train on the template text)"
                                   if stage_dir.name == "verbalizer" else ""))
    return adapter


def frozen_verbalizer(cfg: Config, paths: RunPaths, tokenizer, catalog, engine: str | None = None):
    """Stage 1's verbalizer with its best adapter, frozen, and the adapter's hash.
    `engine`: hf | vllm (default verbalizer.grpo.engine; the action verbalizer runs on hf)."""
    adapter = _adapter(paths.stage("verbalizer"), "stage-1")
    grpo = cfg.verbalizer.grpo
    if cfg.verbalizer.kind == "action":
        _, model = frozen_engine(cfg, paths, grpo, tokenizer, adapter, "hf")
        verbalizer = ActionVerbalizer(model, tokenizer, catalog, full_lines=cfg.verbalizer.action_line == "full",
                                      factorised=cfg.verbalizer.action_decoding == "factorised",
                                      max_tags=cfg.text.max_tags)
    else:
        served, _ = frozen_engine(cfg, paths, grpo, tokenizer, adapter, engine or grpo.engine)
        verbalizer = RewriteVerbalizer(served, tokenizer, catalog, "rewrite", grpo.max_new_tokens,
                                       batch_size=inference_batch(served), metadata=cfg.text.metadata,
                                       max_tags=cfg.text.max_tags, length_cap=cfg.verbalizer.length_cap)
    return verbalizer, adapter_hash(adapter)


def trained_reasoner(cfg: Config, paths: RunPaths, tokenizer, catalog, texts: dict[str, str],
                     engine: str | None = None, trained: bool = True) -> ReasonerGRPO:
    """Stage 2's reasoner with its best adapter, frozen, for evaluation and prediction; with
    `trained=False` the same model and prompts without the adapter (the reasoner before stage 2:
    the like-for-like reference of a trained one). `engine`: hf | vllm (default
    reasoner.grpo.engine; `reasoner.answer=choice` runs on hf)."""
    adapter = _adapter(paths.stage("reasoner"), "stage-2") if trained else None
    grpo = cfg.reasoner.grpo
    name = "hf" if cfg.reasoner.answer != "free" else engine or grpo.engine
    if name == "vllm" and stage_size(cfg, "reasoner") != cfg.size:
        raise ValueError(f"engine=vllm cannot serve this reasoner: it has its own attention "
                         f"(reasoner.tiny_sliding_window={cfg.reasoner.tiny_sliding_window}, reasoner.tiny_global_layers="
                         f"{cfg.reasoner.tiny_global_layers}) and vLLM serves the verbalizer's base; use engine=hf")
    served, model = frozen_engine(cfg, paths, grpo, tokenizer, adapter, name, stage="reasoner")
    return ReasonerGRPO(model, tokenizer, served, grpo, catalog, texts, cfg.text.candidate_metadata,
                        cfg.text.reasoner_candidate_tags, cfg.reasoner.answer, cfg.data.examples.num_candidates, batch_size=inference_batch(served))
