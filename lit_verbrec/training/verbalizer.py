"""VerbalizerGRPO, stage 1 (paper section 4.3): learn to verbalize against a fixed oracle.

For each training example (a user's history and 10 candidates) the verbalizer writes G
verbalizations; the oracle reasoner reads each with the candidates and picks one; the reward
(paper eq. 6) is

    r = alpha * [oracle picked the target] + (1 - alpha) * plateau(compression ratio)

with the compression ratio = tokens(verbalization) / tokens(template text), counted with the
reasoner's tokenizer. With reward.kind=rank the oracle ranks the candidates and the first term is
1 - position / (K - 1) of the target (the paper's ranking ablation, Table 2). Everything else (advantages, the clipped objective, the KL) is the
shared GRPO engine. Logged per step: reward parts, compression ratio, the share of oracle
answers that named a candidate, and every `samples_every` steps a table of verbalizations.
"""

from __future__ import annotations

import torch

from lit_verbrec.config.train_schema import GRPOConfig, RewardConfig
from lit_verbrec.rl.rewards import rank_reward, target_position, verbalizer_reward
from lit_verbrec.rollout.types import Rollout
from lit_verbrec.training.grpo import GRPOModule


def token_counts(tokenizer, texts: list[str]) -> torch.Tensor:
    """[len(texts)] token counts (no special tokens)."""
    return torch.tensor([len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=torch.float)


def compression_ratio(tokenizer, texts: list[str], templates: list[str]) -> torch.Tensor:
    """[len(texts)] tokens of each text / tokens of its template (at least 1): the paper's compression."""
    return token_counts(tokenizer, texts) / token_counts(tokenizer, templates).clamp(min=1)


def _top1_feedback(oracle, texts: list[str], rows: list[dict]) -> dict[str, torch.Tensor]:
    choices = oracle.choose(texts, [r["candidates"] for r in rows])
    correct = torch.tensor([c is not None and c == r["target_index"] for c, r in zip(choices, rows)], dtype=torch.float)
    return {"correct": correct, "score": correct, "valid": torch.tensor([c is not None for c in choices], dtype=torch.float)}


def _rank_feedback(oracle, texts: list[str], rows: list[dict]) -> dict[str, torch.Tensor]:
    rankings = oracle.rank(texts, [r["candidates"] for r in rows])
    sizes = torch.tensor([len(r["candidates"]) for r in rows])
    position = torch.tensor([target_position(k, r["target_index"], len(r["candidates"])) for k, r in zip(rankings, rows)])
    return {"correct": (position == 0).float(), "score": rank_reward(position, sizes),
            "valid": torch.tensor([k is not None for k in rankings], dtype=torch.float)}


ORACLE_FEEDBACK = {"top1": _top1_feedback, "rank": _rank_feedback}
"""reward.kind -> fn(oracle, texts [N], rows [N]) -> {"correct": the oracle's first choice is the target,
"score": the reward's oracle term, "valid": the oracle answered}, each [N] float."""


class VerbalizerGRPO(GRPOModule):
    def __init__(self, policy, tokenizer, engine, grpo: GRPOConfig, verbalizer, oracle, reward: RewardConfig,
                 reasoner_tokenizer=None) -> None:
        super().__init__(policy, tokenizer, engine, grpo)
        self.verbalizer, self.oracle, self.reward_cfg = verbalizer, oracle, reward
        self.reasoner_tokenizer = reasoner_tokenizer or tokenizer
        self.last_samples: list[dict] = []   # the latest rollout's texts and rewards, for sample tables

    def prompts(self, batch: list[dict]) -> list[list[int]]:
        return self.verbalizer.prompts(batch)

    def compression(self, texts: list[str], examples: list[dict], group: torch.Tensor) -> torch.Tensor:
        """[N] tokens of each text / tokens of its example's template (texts[i] is of examples[group[i]])."""
        template = [self.verbalizer.template(e["history"]) for e in examples]   # the verbalizer's own input
        # each template is tokenized once per example, not once per sample
        return token_counts(self.reasoner_tokenizer, texts) / token_counts(self.reasoner_tokenizer, template).clamp(min=1)[group]

    def sample(self, batch: list[dict]) -> Rollout:
        return self.verbalizer.sample(batch, self.sampling_params())

    def allowed_token_ids(self) -> torch.Tensor | None:
        return self.verbalizer.decision_ids

    def loss_mask(self, batch: list[dict], rollout: Rollout) -> torch.Tensor | None:
        return rollout.loss_mask   # action: the decision slots (set by the sampler); rewrite: None = all

    def score(self, batch: list[dict], rollout: Rollout) -> dict[str, torch.Tensor]:
        texts = self.verbalizer.render(batch, rollout)                                   # [N]
        rows = [batch[g] for g in rollout.group.tolist()]
        feedback = ORACLE_FEEDBACK[self.reward_cfg.kind](self.oracle, texts, rows)
        correct = feedback["correct"]
        ratio = self.compression(texts, batch, rollout.group)
        parts = verbalizer_reward(correct, ratio, self.reward_cfg, feedback["score"])
        self.last_samples = [{"example_id": r["example_id"], "reward": float(parts["reward"][i]),
                              "correct": bool(correct[i]), "compression": float(ratio[i]), "text": texts[i]}
                             for i, r in enumerate(rows)]
        return {"reward": parts["reward"], "accuracy": parts["accuracy"], "length": parts["length"],
                "compression": ratio, "oracle_valid": feedback["valid"]}

    def validation_reward(self, examples: list[dict]) -> dict[str, float]:
        """Greedy verbalizations of `examples` scored by the oracle: accuracy and the full reward."""
        was_training = self.policy.training
        texts = self.verbalizer.verbalize(examples)
        self.policy.train(was_training)
        feedback = ORACLE_FEEDBACK[self.reward_cfg.kind](self.oracle, texts, examples)
        ratio = self.compression(texts, examples, torch.arange(len(examples)))
        parts = verbalizer_reward(feedback["correct"], ratio, self.reward_cfg, feedback["score"])
        return {"reward": float(parts["reward"].mean()), "accuracy": float(feedback["correct"].mean()),
                "compression": float(ratio.mean())}
