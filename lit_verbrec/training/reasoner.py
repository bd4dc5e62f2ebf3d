"""ReasonerGRPO, stage 2 (paper section 4.4): train the reasoner on the frozen verbalizer's text.

Each training example was verbalized once by stage 1's verbalizer (training/cache.py), or
kept as the template (reasoner.input=template, the paper's "raw interactions" ablation). The
reasoner samples G answers to the reranking prompt; an answer naming the target scores +1,
anything else (a wrong candidate, or no candidate at all) -1 (paper eq. 7).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.rl.rewards import reasoner_reward
from lit_verbrec.rollout.types import Rollout, greedy
from lit_verbrec.text.answers import parse_answer
from lit_verbrec.text.prompts import reasoner_messages
from lit_verbrec.training.grpo import GRPOModule
from lit_verbrec.training.verbalizers import chat_prompt_ids


class ReasonerGRPO(GRPOModule):
    def __init__(self, policy, tokenizer, engine, grpo: GRPOConfig, catalog: Catalog, texts: dict[str, str],
                 candidate_metadata: bool = True, max_tags: int = 3) -> None:
        super().__init__(policy, tokenizer, engine, grpo)
        self.catalog, self.texts = catalog, texts
        self.candidate_metadata, self.max_tags = candidate_metadata, max_tags
        self.text_lookups = 0                  # reads from the verbalization cache during training
        self.last_samples: list[dict] = []

    def prompts(self, batch: list[dict]) -> list[list[int]]:
        self.text_lookups += len(batch)
        return [chat_prompt_ids(self.tokenizer, reasoner_messages(
            self.texts[e["example_id"]], e["candidates"], self.catalog, self.candidate_metadata, self.max_tags))
            for e in batch]

    def answers(self, batch: list[dict], rollout: Rollout) -> torch.Tensor:
        """[N] chosen candidate index per completion, -1 where the answer names none."""
        rows = [batch[g] for g in rollout.group.tolist()]
        picks = [parse_answer(text, r["candidates"], self.catalog) for text, r in zip(rollout.texts, rows)]
        return torch.tensor([-1 if p is None else p for p in picks])

    def score(self, batch: list[dict], rollout: Rollout) -> dict[str, torch.Tensor]:
        pred = self.answers(batch, rollout)
        target = torch.tensor([batch[g]["target_index"] for g in rollout.group.tolist()])
        reward = reasoner_reward(pred, target)
        self.last_samples = [{"example_id": batch[g]["example_id"], "reward": float(reward[i]),
                              "answer": int(pred[i]), "target": int(target[i]), "text": rollout.texts[i]}
                             for i, g in enumerate(rollout.group.tolist())]
        return {"reward": reward, "accuracy": (pred == target).float(), "valid": (pred >= 0).float()}

    def predict(self, examples: list[dict], batch_size: int = 16) -> torch.Tensor:
        """Greedy answers: [len(examples)] candidate index, -1 for an invalid answer."""
        params = greedy(replace(self.sampling_params(), n=1))
        preds = []
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            rollout = self.engine.generate(self.prompts(chunk), params)
            preds.append(self.answers(chunk, rollout))
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)

    def validation_reward(self, examples: list[dict]) -> dict[str, float]:
        pred = self.predict(examples)
        target = torch.tensor([e["target_index"] for e in examples])
        return {"reward": float(reasoner_reward(pred, target).mean()), "accuracy": float((pred == target).float().mean()),
                "valid": float((pred >= 0).float().mean())}
