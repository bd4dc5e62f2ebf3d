"""GRPOModule: the LightningModule both stages subclass.

A stage says what differs — its prompts, its reward, which tokens carry the loss, an
optional decoding constraint — by overriding four methods; the optimisation is here:

    for pass in 1..mu:                                       (mu = 1: on-policy)
        for micro-batch in the B*G sequences of the rollout:    (padding-aware: rollout/micro_batches.py)
            logp  = log pi_theta(completion tokens)           memory-lean (rl/logprobs.py)
            loss  = GRPO objective, paper eq. (5)             rl/losses.py, one table of aggregations
            backward (gradients accumulate; DDP syncs on the last micro-batch only)
        clip gradients, AdamW step, learning-rate schedule step

The normaliser of every micro-batch loss is the whole step's (sequences, tokens, ...), so the
accumulated gradient equals the gradient of the loss of the full batch. Optimisation is manual
(`automatic_optimization = False`): one rollout feeds mu optimizer steps.

Checkpoints hold only the trainable (LoRA) weights plus optimizer and loop state and the data
position (`batches_done`, which training/batches.py resumes from): the 4-bit base is never
written (`on_save_checkpoint`), and loading is non-strict for the same reason.
"""

from __future__ import annotations

import math
import time

import lightning.pytorch as pl
import torch

from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rl.losses import grpo_loss, step_normalizer
from lit_verbrec.rollout.micro_batches import MicroBatch, plan_micro_batches, take
from lit_verbrec.rollout.types import Rollout, SamplingParams


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at `step`: linear warm-up, then constant or a decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return {"constant": 1.0, "linear": 1.0 - progress, "cosine": 0.5 * (1.0 + math.cos(math.pi * progress))}[schedule]


def disable_dropout(model: torch.nn.Module) -> None:
    """p = 0 for every dropout layer of `model` (LoRA's included), in place."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class GRPOModule(pl.LightningModule):
    def __init__(self, policy: torch.nn.Module, tokenizer, engine, grpo: GRPOConfig) -> None:
        super().__init__()
        self.policy = policy
        if grpo.disable_dropout and policy is not None:
            disable_dropout(policy)
        self.tokenizer = tokenizer
        self.engine = engine
        self.grpo = grpo
        self.automatic_optimization = False
        self.strict_loading = False          # checkpoints hold the trainable weights only
        self.rollout: Rollout | None = None  # set by RolloutCallback before each step
        self.rollout_metrics: dict = {}
        self.sampling_seed: int | None = None  # set by RolloutCallback before each step (None: unseeded)
        self.batches_done = 0                # prompt batches trained on; where a resumed run's data continues

    # --- what a stage defines --------------------------------------------------------------
    def prompts(self, batch) -> list[list[int]]:
        """Token ids of the B prompts of `batch`."""
        raise NotImplementedError

    def score(self, batch, rollout: Rollout) -> dict[str, torch.Tensor]:
        """{"reward": [N], ...other reward parts [N], logged as reward/<name>} for the rollout."""
        raise NotImplementedError

    def loss_mask(self, batch, rollout: Rollout) -> torch.Tensor | None:
        """[N, C] tokens that carry the loss; None: every generated token."""
        return None

    def logits_processor(self, batch):
        """A transformers LogitsProcessorList constraining decoding, or None."""
        return None

    def allowed_token_ids(self) -> torch.Tensor | None:
        """[K] tokens a constrained decoder chooses among at the loss positions: the policy is the
        softmax over these only (on-policy for that decoder). None: the whole vocabulary."""
        return None

    def sample(self, batch) -> Rollout:
        """G completions for each prompt of `batch` from the rollout engine."""
        return self.engine.generate(self.prompts(batch), self.sampling_params(),
                                    logits_processor=self.logits_processor(batch))

    def sequence_logprobs(self, rollout: Rollout, with_entropy: bool = False) -> dict[str, torch.Tensor]:
        """Per-token log-probs (and entropy) of the rollout's completions under the current policy."""
        return completion_logprobs(self.policy, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                   rollout.completion_mask, self.grpo.temperature, self.grpo.logprob_chunk,
                                   with_entropy=with_entropy, allowed_ids=self.allowed_token_ids(),
                                   target_ids=rollout.target_ids,
                                   # factorised sampling: a group's rows share their inputs, one forward each;
                                   # free sampling: they share the prompt, encoded once per group
                                   input_groups=rollout.group if rollout.target_ids is not None else None,
                                   prompt_groups=rollout.group if rollout.target_ids is None else None,
                                   allowed_mask=rollout.allowed_mask)

    def sampling_params(self) -> SamplingParams:
        g = self.grpo
        return SamplingParams(n=g.group_size, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                              top_p=g.top_p, top_k=g.top_k, seed=self.sampling_seed)

    # --- optimisation ------------------------------------------------------------------------
    def micro_batches(self, rollout: Rollout) -> list[MicroBatch]:
        """Padding-aware micro-batches of `grpo.micro_batch_size` rows (rollout/micro_batches.py)."""
        return plan_micro_batches(rollout.prompt_mask, rollout.completion_mask, rollout.group, self.grpo.micro_batch_size)

    def mean_over_ranks(self, value: float) -> float:
        if self.trainer.world_size == 1:
            return value
        return float(self.trainer.strategy.reduce(torch.tensor(value, device=self.device), reduce_op="mean"))

    def training_step(self, batch, batch_idx: int) -> None:
        rollout, g = self.rollout, self.grpo
        started = time.perf_counter()
        if rollout is None:
            raise RuntimeError("no rollout: add RolloutCallback to the Trainer's callbacks")
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        n = rollout.num_sequences
        normalizer = step_normalizer(g.loss_type, rollout.loss_mask, g.max_new_tokens, self.mean_over_ranks)
        parts = self.micro_batches(rollout)
        for _ in range(g.mu):
            sums: dict[str, torch.Tensor] = {}   # on the device: no host sync inside the micro-batch loop
            for i, part in enumerate(parts):
                mb = take(rollout, part)
                with optimizer.toggle_model(sync_grad=i == len(parts) - 1):
                    out = self.sequence_logprobs(mb, with_entropy=True)
                    old = mb.old_logprobs if mb.old_logprobs is not None else out["logprobs"].detach()
                    result = grpo_loss(out["logprobs"], old, mb.advantages, mb.loss_mask, loss_type=g.loss_type,
                                       epsilon=g.epsilon, epsilon_high=g.epsilon_high, beta=g.beta,
                                       ref_logprobs=mb.ref_logprobs, entropy=out["entropy"],
                                       entropy_coef=g.entropy_coef, max_completion_length=g.max_new_tokens,
                                       normalizer=normalizer)
                    self.manual_backward(result["loss"])
                share = part.size / n
                for key, value in result.items():   # loss: already a share of the step; metrics: weighted by rows
                    weighted = value.detach() * (1.0 if key == "loss" else share)
                    sums[key] = sums[key] + weighted if key in sums else weighted
            if g.max_grad_norm > 0:
                self.clip_gradients(optimizer, gradient_clip_val=g.max_grad_norm, gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()   # the step's kernels, not their launch, in time/train_s
        metrics = {f"train/{k}": v for k, v in sums.items()} | self.rollout_metrics
        metrics["time/train_s"] = time.perf_counter() - started
        metrics["train/lr"] = scheduler.get_last_lr()[0]
        self.log_dict({k: float(v) for k, v in metrics.items()}, prog_bar=False, sync_dist=False,
                      batch_size=len(parts))
        # the bar's short name for reward/mean; not logged twice (a file store cannot hold "reward" beside "reward/")
        self.log("reward", float(self.rollout_metrics["reward/mean"]), prog_bar=True, logger=False, batch_size=1)
        self.batches_done += 1

    def configure_optimizers(self):
        g = self.grpo
        params = [p for p in self.policy.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the policy has no trainable parameters (is the LoRA adapter attached?)")
        optimizer = torch.optim.AdamW(params, lr=g.lr, weight_decay=g.weight_decay)
        total = g.max_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, g.warmup_steps, total, g.lr_schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- checkpoints: trainable weights only, and the data position ----------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["batches_done"] = self.batches_done

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.batches_done = checkpoint["batches_done"]
