"""The RolloutCallback both stages share: sample, score, normalise, hand over a Rollout.

Before each training step (one batch of B prompts on this rank):

    rollout   = module.sample(batch)                      B prompts -> N = B*G completions, groups contiguous
    scores    = module.score(batch, rollout)              {"reward": [N], other reward parts: [N]}
    A         = (r - mean_group) / (std_group + eps)      over the rewards of all ranks (rl/advantages.py)
    old, ref  = log-probs under the current policy (only when mu > 1) and with the adapter
                disabled (only when beta > 0), computed by the trainer's own model, never the engine
    module.rollout = rollout

At the start of fit (so a resumed run samples from its restored adapter, not the base) and
after each training step the callback hands the adapter to the engine (adapter-only sync:
vLLM loads the LoRA from a folder, the transformers engine shares the weights and needs
nothing). Only the newest folder is kept: vLLM holds an adapter in memory once loaded and
never asks for an older one again. When the engine reports its log-probs of the sampled
tokens (vLLM), their difference to the trainer's is logged as rollout/logprob_mismatch_{max,mean}.
Each rank samples its own prompt shard, so a group never spans ranks.

Every step is seeded: the rollout's sampling seed, and torch's global RNG (the transformers
engine, LoRA dropout), are a function of (run seed, rank, data position). A seeded run draws
the same samples each time it runs, and a resumed run the same samples an uninterrupted one
would have drawn, with no RNG state in the checkpoint.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from lit_verbrec.models.loading import reference_policy, save_adapter
from lit_verbrec.rl.advantages import group_advantages
from lit_verbrec.rollout.micro_batches import take
from lit_verbrec.rollout.types import Rollout


def step_seed(seed: int, rank: int, position: int) -> int:
    """The 31-bit seed of one rollout, from (run seed, rank, batches done): distinct per rank and
    per step (numpy's SeedSequence hashes the triple), the same on every run and after a resume."""
    return int(np.random.SeedSequence([seed, rank, position]).generate_state(1)[0] >> 1)


class RolloutCallback(pl.Callback):
    def __init__(self, sync_dir: str | Path | None = None, seed: int = 0) -> None:
        """`sync_dir`: where adapters for the engine are written after each step (engines that need it).
        `seed`: the run's seed; each step's sampling seed derives from it (`step_seed`)."""
        self.sync_dir = Path(sync_dir) if sync_dir else None
        self.seed = seed
        self.syncs = 0

    def on_train_batch_start(self, trainer: pl.Trainer, module, batch, batch_idx: int) -> None:
        cfg = module.grpo
        t0 = time.perf_counter()
        module.sampling_seed = step_seed(self.seed, trainer.global_rank, module.batches_done)
        torch.manual_seed(module.sampling_seed)  # also seeds every CUDA device
        module.policy.eval()  # no dropout while sampling and scoring the old/reference policies
        # every pass of the policy in the precision the training step runs in (bf16-mixed: autocast)
        precision = trainer.precision_plugin.train_step_context
        with precision():
            rollout = module.sample(batch)
        t_generate = time.perf_counter() - t0
        # scored where the engine built it (the CPU), then moved: the trainer's passes and the
        # collectives (NCCL takes CUDA tensors only) run on the model's device
        scores = {k: v.to(module.device) for k, v in module.score(batch, rollout).items()}
        rollout = rollout.to(module.device)
        rewards = scores["reward"].float()                                     # [N]
        all_rewards = module.all_gather(rewards).reshape(-1)                    # [world * N], rank-major
        stats = group_advantages(all_rewards, cfg.group_size, cfg.scale_rewards, cfg.advantage_eps)
        rank = trainer.global_rank if trainer.world_size > 1 else 0
        n = rollout.num_sequences
        rollout.rewards = rewards
        rollout.advantages = stats["advantages"][rank * n:(rank + 1) * n].to(rewards.device)
        mask = module.loss_mask(batch, rollout)
        rollout.loss_mask = rollout.completion_mask if mask is None else mask
        t_score = time.perf_counter() - t0 - t_generate
        with torch.no_grad(), precision():
            if cfg.mu > 1:  # with one pass the ratio's denominator is the current policy itself
                rollout.old_logprobs = self._logprobs(module, rollout)
            if cfg.beta > 0:
                with reference_policy(module.policy):
                    rollout.ref_logprobs = self._logprobs(module, rollout)
            check = rollout.engine_logprobs is not None and cfg.vllm_logprob_check
            mismatch = self._mismatch(module, rollout) if check else {}
        module.policy.train()
        parts = {f"reward/{k}": all_v.float().mean() for k, v in scores.items() if k != "reward"
                 for all_v in [module.all_gather(v.float()).reshape(-1)]}
        module.rollout = rollout
        module.rollout_metrics = {
            "reward/mean": stats["reward_mean"], "reward/std": stats["reward_std"],
            "reward/zero_spread_groups": stats["zero_spread_fraction"], "advantage/std": stats["advantage_std"],
            "completion/length": rollout.completion_mask.sum(1).float().mean(),
            "tokens/step": (rollout.prompt_mask.sum() + rollout.completion_mask.sum()).float(),   # B*G sequences
            "time/generate_s": t_generate, "time/score_s": t_score,
            "time/old_ref_logprobs_s": time.perf_counter() - t0 - t_generate - t_score, **parts, **mismatch,
        }

    @staticmethod
    def _logprobs(module, rollout: Rollout) -> torch.Tensor:
        """[N, C] log-probs of the sampled completions, in padding-aware micro-batches (0 past a row's end)."""
        out = None
        for part in module.micro_batches(rollout):
            logprobs = module.sequence_logprobs(take(rollout, part))["logprobs"]            # [n, C']
            if out is None:
                out = logprobs.new_zeros(rollout.completion_ids.shape)                     # [N, C]
            out[part.rows, :logprobs.shape[1]] = logprobs
        return out

    def _mismatch(self, module, rollout: Rollout) -> dict[str, torch.Tensor]:
        """Max and mean |engine - trainer| log-prob over the sampled tokens (all ranks)."""
        ours = rollout.old_logprobs if rollout.old_logprobs is not None else self._logprobs(module, rollout)
        mask = rollout.completion_mask.bool()
        diff = (ours.float() - rollout.engine_logprobs.to(ours.device))[mask].abs()          # [tokens]
        stats = torch.stack([diff.max() if diff.numel() else diff.new_zeros(()), diff.sum(), diff.new_tensor(diff.numel())])
        stats = module.all_gather(stats).reshape(-1, 3)                                      # [world, 3]
        return {"rollout/logprob_mismatch_max": stats[:, 0].max(),
                "rollout/logprob_mismatch_mean": stats[:, 1].sum() / stats[:, 2].sum().clamp(min=1)}

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        """The engine samples from the policy as it starts: fresh, or the adapter a resume restored."""
        self._sync(trainer, module)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx: int) -> None:
        module.rollout = None
        self._sync(trainer, module)

    def _sync(self, trainer: pl.Trainer, module) -> None:
        """Save the adapter, hand it to the engine, delete the folders of older syncs (engines that need it)."""
        if not module.engine.needs_adapter_sync:
            return
        if self.sync_dir is None:
            raise ValueError("this rollout engine needs adapter sync: give RolloutCallback a sync_dir")
        self.syncs += 1
        rank_dir = self.sync_dir / f"rank{trainer.global_rank}"
        folder = save_adapter(module.policy, rank_dir / f"step-{trainer.global_step:07d}")
        module.engine.sync_adapter(folder)
        for old in rank_dir.iterdir():   # the engine has loaded (or will never ask for) every older one
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
