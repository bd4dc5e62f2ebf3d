"""GRPO training with the real vLLM engine (CPU): adapter sync, resume, bounded adapter folders.

A free-text task on the tiny head_dim-32 model (vllm_tiny.py): the reward counts a letter in
the completion. The learning rate is large so that every step moves the policy far enough for
a stale adapter to show: rollout/logprob_mismatch_max (engine vs trainer log-probs of the
sampled tokens) is below 1e-4 only if the engine samples from the trainer's current adapter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lit_verbrec.models.loading import load_policy, reference_policy, save_dequantized_base
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout.callback import RolloutCallback
from lit_verbrec.rollout.engines import make_engine
from lit_verbrec.training.grpo import GRPOModule

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_tiny import (  # noqa: E402
    CORPUS,
    TOLERANCE,
    VLLM_SIZE,
    environment_as_found,
    grpo,
    shut_down,
    trainer_logprobs,
)

vllm_leaves_the_environment_as_found = pytest.fixture(scope="module", autouse=True)(environment_as_found)

GRPO = dict(group_size=4, prompts_per_step=2, micro_batch_size=8, max_new_tokens=12, lr=0.05, beta=0.0, max_grad_norm=0.0)


class LetterModule(GRPOModule):
    """Prompts are texts; the reward is the share of 'e' in the completion."""

    def prompts(self, batch: list[str]) -> list[list[int]]:
        return [self.tokenizer(text)["input_ids"] for text in batch]

    def score(self, batch: list[str], rollout) -> dict[str, torch.Tensor]:
        return {"reward": torch.tensor([text.count("e") / max(1, len(text)) for text in rollout.texts])}


class Recorder(pl.Callback):
    """After each step (and its sync): the engine/trainer mismatch of the step's rollout, the policy's
    distance from the base, and the adapter folders left on disk."""

    def __init__(self, sync_dir: Path) -> None:
        self.sync_dir, self.rows = sync_dir, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        """How far the trainer's current policy is from the base on the sampled tokens (engine aside)."""
        rollout, temperature = module.rollout, module.grpo.temperature
        with reference_policy(module.policy):
            base = trainer_logprobs(module.policy, rollout, temperature)
        current = trainer_logprobs(module.policy, rollout, temperature)
        self.base_gap = float((current - base)[rollout.completion_mask.bool()].abs().max())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.rows.append({"step": trainer.global_step, "mismatch": float(module.rollout_metrics["rollout/logprob_mismatch_max"]),
                          "mean": float(module.rollout_metrics["rollout/logprob_mismatch_mean"]), "base_gap": self.base_gap,
                          "folders": sorted(p.name for p in (self.sync_dir / "rank0").iterdir()),
                          "lora_path": module.engine.lora_request.lora_path})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(tokenizer, engine): one engine for the module; each run builds its own fresh policy."""
    folder = tmp_path_factory.mktemp("vllm-train")
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    policy = load_policy(VLLM_SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    base = save_dequantized_base(policy, folder / "base", tokenizer, dtype=None)
    engine = make_engine(grpo(**GRPO), VLLM_SIZE, policy, tokenizer, seed=0, vllm_base=str(base))
    yield tokenizer, engine
    shut_down(engine)


def fit(setup, root: Path, steps: int, ckpt_path: str | None = None) -> tuple[Recorder, pl.Trainer]:
    tokenizer, engine = setup
    engine.sync_adapter(None)   # as a freshly built engine: sampling from the base
    policy = load_policy(VLLM_SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    module = LetterModule(policy, tokenizer, engine, grpo(**GRPO, max_steps=steps))
    recorder = Recorder(root / "engine-adapters")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[RolloutCallback(root / "engine-adapters"), recorder])
    prompts = [text[:20] for text in CORPUS]
    trainer.fit(module, DataLoader(prompts, batch_size=2, collate_fn=list), ckpt_path=ckpt_path)
    return recorder, trainer


def test_samples_come_from_the_latest_adapter_and_folders_stay_bounded(setup, tmp_path):
    recorder, _ = fit(setup, tmp_path, steps=4)
    rows = recorder.rows
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # step k+1 samples from adapter k: the engine's log-probs are the trainer's (which has adapter k) ...
    assert max(r["mismatch"] for r in rows) < TOLERANCE and max(r["mean"] for r in rows) < TOLERANCE
    # ... and not the base's: after a step the adapter is far from it (what a stale adapter would show)
    assert all(r["base_gap"] > 0.05 for r in rows[1:]), rows
    # one folder per rank at any time: the adapter the engine is to load next
    assert [r["folders"] for r in rows] == [[f"step-{k:07d}"] for k in (1, 2, 3, 4)]
    assert [Path(r["lora_path"]).name for r in rows] == [f"step-{k:07d}" for k in (1, 2, 3, 4)]


def test_after_a_resume_the_engine_samples_from_the_restored_adapter(setup, tmp_path):
    _, trainer = fit(setup, tmp_path / "first", steps=2)
    checkpoint = tmp_path / "step2.ckpt"
    trainer.save_checkpoint(checkpoint)
    recorder, _ = fit(setup, tmp_path / "resumed", steps=3, ckpt_path=str(checkpoint))
    (row,) = recorder.rows
    assert row["step"] == 3
    assert row["base_gap"] > 0.05                  # the restored adapter is far from the base ...
    assert row["mismatch"] < TOLERANCE             # ... and the first rollout after the resume came from it
