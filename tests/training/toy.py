"""A toy task with a checkable answer, for learning tests of the GRPO engine.

The prompt names a colour ("which is red"); the answer is the letter of the candidate
with that colour in a fixed table (red -> A, blue -> B, green -> C, yellow -> D). Decoding
is constrained (a logits processor, as the action verbalizer's is) to one of the letters
A-D, then EOS, so sampling starts at chance (1/4); the reward is 1 when the letter is the
right one. The loss covers the letter only. A random-init model must learn the lookup.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.utils.data import Dataset
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerFast

from lit_verbrec.training.grpo import GRPOModule

COLOURS = {"red": "A", "blue": "B", "green": "C", "yellow": "D"}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
WORDS = ["which", "is", "?", *COLOURS, *COLOURS.values(), "E", "F", "G", "H", "the", "answer"]


def toy_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   padding_side="left")


class ToyPrompts(Dataset):
    def __init__(self, size: int) -> None:
        self.colours = [list(COLOURS)[i % len(COLOURS)] for i in range(size)]

    def __len__(self) -> int:
        return len(self.colours)

    def __getitem__(self, i: int) -> str:
        return self.colours[i]


class AllowedTokens(LogitsProcessor):
    """Step k of the completion may only emit `allowed[k]` (left padding: one prompt length for all rows)."""

    def __init__(self, allowed: list[list[int]], prompt_length: int) -> None:
        self.allowed, self.prompt_length = allowed, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = min(input_ids.shape[1] - self.prompt_length, len(self.allowed) - 1)
        keep = torch.full_like(scores, float("-inf"))
        keep[:, self.allowed[step]] = 0.0
        return scores + keep


class ToyModule(GRPOModule):
    """reward_sign = -1 rewards wrong answers: training must then drive accuracy down."""

    def __init__(self, *args, reward_sign: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reward_sign = reward_sign

    def prompts(self, batch: list[str]) -> list[list[int]]:
        return [self.tokenizer(f"which is {colour}")["input_ids"] for colour in batch]

    def logits_processor(self, batch: list[str]) -> LogitsProcessorList:
        letters = self.tokenizer.convert_tokens_to_ids(list(COLOURS.values()))
        prompt_length = max(len(p) for p in self.prompts(batch))
        return LogitsProcessorList([AllowedTokens([letters, [self.tokenizer.eos_token_id]], prompt_length)])

    def loss_mask(self, batch: list[str], rollout) -> torch.Tensor:
        mask = torch.zeros_like(rollout.completion_mask)
        mask[:, 0] = 1  # the letter; the forced EOS carries no choice
        return mask

    def score(self, batch: list[str], rollout) -> dict[str, torch.Tensor]:
        answers = torch.tensor([self.tokenizer.convert_tokens_to_ids(COLOURS[c]) for c in batch])
        correct = (rollout.completion_ids[:, 0] == answers[rollout.group]).float()
        return {"reward": self.reward_sign * correct, "correct": correct}


@torch.no_grad()
def p_correct(policy, tokenizer) -> float:
    """Mean probability, under the constrained policy (letters only), of the right letter over
    the four prompts: exact, no sampling noise. Chance is 1/4."""
    letters = tokenizer.convert_tokens_to_ids(list(COLOURS.values()))
    probs = []
    for i, colour in enumerate(COLOURS):
        ids = torch.tensor([tokenizer(f"which is {colour}")["input_ids"]])
        logits = policy(input_ids=ids).logits[0, -1, letters]
        probs.append(torch.softmax(logits.float(), -1)[i].item())
    return sum(probs) / len(probs)
