"""ReasonerGRPO, stage 2 (paper section 4.4): train the reasoner on the frozen verbalizer's text.

Each training example was verbalized once by stage 1's verbalizer (training/cache.py), or
kept as the template (reasoner.input=template, the paper's "raw interactions" ablation). The
reasoner samples G answers to the reranking prompt; an answer naming the target scores +1,
anything else (a wrong candidate, or no candidate at all) -1 (paper eq. 7).

Two answer modes (`reasoner.answer`):

    free    the reasoner writes a reply, `Answer: <number>` is parsed from it (text/answers.py);
            every generated token carries the loss. What an instruction-following LLM does.
    choice  candidates are labelled A, B, ...; the completion is `Answer: ` plus one letter
            sampled among the candidates' labels by the slot sampler (rollout/slots.py), so every
            answer is valid and the policy is the softmax over the labels at that one position.
            A random-weight model never writes a parsable free answer: every reward is -1, every
            group has zero spread, and GRPO has nothing to learn from.
    listwise the same lettered prompt; each candidate gets a score where its line ends and the
            policy is the softmax over them (rl/listwise.py): one forward pass per group, and one
            hop (does this line match the history?) where the letter needs two. What the tiny
            CPU model learns with; the sampled letter is the completion, as for `choice`.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from lit_verbrec.config.console import progress
from lit_verbrec.config.train_schema import GRPOConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.rl.listwise import listwise_logprobs
from lit_verbrec.rl.rewards import reasoner_reward
from lit_verbrec.rollout.listwise import ListwiseSampler
from lit_verbrec.rollout.slots import SlotSampler, choice_slot_spec, single_token_ids
from lit_verbrec.rollout.types import Rollout, SamplingParams, greedy
from lit_verbrec.text.answers import parse_answer
from lit_verbrec.text.prompts import REASONER_USER, candidate_label, reasoner_messages
from lit_verbrec.training.grpo import GRPOModule
from lit_verbrec.training.verbalizers import chat_prompt_ids

ANSWER_PREFIX = "Answer: "
"""The fixed start of a `choice` completion; the sampled letter follows."""
CANDIDATES_HEADER = REASONER_USER.split("{candidates}")[0].split("{history}")[1]
"""The text right before the candidate lines of a reasoner prompt ("\n\nCandidates:\n")."""


def listwise_prompt(tokenizer, messages: list[dict], num_candidates: int) -> tuple[list[int], list[int]]:
    """(token ids of the chat prompt, [K] offset from the right end of the token that ends each candidate's
    line). The candidates are the K lines after the LAST header: the history before it is data a policy
    wrote and may contain anything."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, spans = encoded["input_ids"], encoded["offset_mapping"]
    start, offsets = text.rindex(CANDIDATES_HEADER) + len(CANDIDATES_HEADER), []
    token = 0
    for _ in range(num_candidates):
        end = text.index("\n", start)        # the line is text[start:end]; its last character is end - 1
        while spans[token][1] < end:          # the token holding that character
            token += 1
        offsets.append(len(ids) - 1 - token)
        start = end + 1
    return ids, offsets


class ReasonerGRPO(GRPOModule):
    def __init__(self, policy, tokenizer, engine, grpo: GRPOConfig, catalog: Catalog, texts: dict[str, str],
                 candidate_metadata: bool = True, candidate_tags: int = 3, answer: str = "free",
                 num_candidates: int = 10, batch_size: int = 16) -> None:
        super().__init__(policy, tokenizer, engine, grpo)
        self.batch_size = batch_size           # examples per `predict` sampling call; 0: all at once (vLLM)
        self.catalog, self.texts = catalog, texts
        self.candidate_metadata, self.candidate_tags, self.answer = candidate_metadata, candidate_tags, answer
        self.text_lookups = 0                  # reads from the verbalization cache during training
        self.last_samples: list[dict] = []
        if answer in ("choice", "listwise"):
            self.labels = [candidate_label(i, "letters") for i in range(num_candidates)]
            self.label_ids = torch.tensor(single_token_ids(self.labels, tokenizer))   # [K]
            self.sampler = SlotSampler(policy, tokenizer) if answer == "choice" else ListwiseSampler(
                policy, tokenizer.eos_token_id, tokenizer.pad_token_id, self.label_ids, self.labels)

    def messages(self, example: dict) -> list[dict]:
        labels = "numbers" if self.answer == "free" else "letters"
        return reasoner_messages(self.texts[example["example_id"]], example["candidates"], self.catalog,
                                 self.candidate_metadata, self.candidate_tags, labels)

    def prompts(self, batch: list[dict]) -> list[list[int]]:
        self.text_lookups += len(batch)
        return [chat_prompt_ids(self.tokenizer, self.messages(e)) for e in batch]

    def sample(self, batch: list[dict], params: SamplingParams | None = None, is_greedy: bool = False) -> Rollout:
        params = params or self.sampling_params()
        if self.answer == "free":
            return self.engine.generate(self.prompts(batch), greedy(params) if is_greedy else params,
                                        logits_processor=self.logits_processor(batch))
        if self.answer == "listwise":
            self.text_lookups += len(batch)
            prompts, offsets = zip(*(listwise_prompt(self.tokenizer, self.messages(e), len(e["candidates"]))
                                     for e in batch))
            return self.sampler.generate(list(prompts), list(offsets), params, greedy=is_greedy)
        specs = [choice_slot_spec(ANSWER_PREFIX, self.labels[:len(e["candidates"])], self.tokenizer) for e in batch]
        rollout = self.sampler.generate(self.prompts(batch), specs, params, greedy=is_greedy)
        # A group's rows differ only in the last token (the letter), which is scored but never fed:
        # naming it as the target lets the trainer run the decoder once per group (rl/logprobs.py).
        rollout.target_ids = rollout.completion_ids
        # The sampler chose among this prompt's own labels (fewer than K when it has fewer
        # candidates): the trainer's softmax must cover the same labels to stay on-policy.
        counts = torch.tensor([len(batch[g]["candidates"]) for g in rollout.group.tolist()])    # [N]
        rollout.allowed_mask = torch.arange(len(self.labels))[None, :] < counts[:, None]        # [N, K]
        return rollout

    def sequence_logprobs(self, rollout: Rollout, with_entropy: bool = False) -> dict[str, torch.Tensor]:
        if self.answer != "listwise":
            return super().sequence_logprobs(rollout, with_entropy)
        choices = (rollout.completion_ids[:, :1] == self.label_ids.to(rollout.completion_ids.device)).long().argmax(-1)
        return listwise_logprobs(self.policy, rollout.prompt_ids, rollout.prompt_mask, rollout.score_offsets, choices,
                                 rollout.group, self.tokenizer.eos_token_id, self.grpo.temperature,
                                 rollout.allowed_mask, with_entropy)

    def allowed_token_ids(self) -> torch.Tensor | None:
        return self.label_ids if self.answer == "choice" else None

    def loss_mask(self, batch: list[dict], rollout: Rollout) -> torch.Tensor | None:
        return rollout.loss_mask   # choice: the letter (set by the sampler); free: None = every token

    def answers(self, batch: list[dict], rollout: Rollout) -> torch.Tensor:
        """[N] chosen candidate index per completion, -1 where the answer names none."""
        if self.answer != "free":
            return rollout.info["slots"][:, 0].long()      # the slot's index into the labels = candidate index
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

    def predict(self, examples: list[dict], batch_size: int | None = None) -> torch.Tensor:
        """Greedy answers: [len(examples)] candidate index, -1 for an invalid answer."""
        params = replace(self.sampling_params(), n=1)
        batch_size = (self.batch_size if batch_size is None else batch_size) or max(1, len(examples))
        preds = []
        with progress(len(examples) if len(examples) > batch_size else 0, "reasoner", leave=False) as bar:
            for i in range(0, len(examples), batch_size):
                chunk = examples[i:i + batch_size]
                preds.append(self.answers(chunk, self.sample(chunk, params, is_greedy=True)))
                bar.update(len(chunk))
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)

    def validation_reward(self, examples: list[dict]) -> dict[str, float]:
        pred = self.predict(examples)
        target = torch.tensor([e["target_index"] for e in examples])
        return {"reward": float(reasoner_reward(pred, target).mean()), "accuracy": float((pred == target).float().mean()),
                "valid": float((pred >= 0).float().mean())}
