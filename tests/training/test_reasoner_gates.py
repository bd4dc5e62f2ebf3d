"""Gates of stage 2 before any RL: the tiny reasoner's answer must depend on its prompt.

With the verbalizer's 16-token window the letter after `Answer: ` sees only the prompt's fixed tail
(instruction, chat markers), so every prompt got the same letter distribution (differences of ~1e-6)
and stage 2 could not rise above chance whatever it trained on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_verbrec.config.schema import stage_size
from lit_verbrec.models.loading import load_policy
from lit_verbrec.text.template import verbalize_template
from lit_verbrec.training.reasoner import ANSWER_PREFIX, ReasonerGRPO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_runs import prepared_tiny_run  # noqa: E402

TINY = ["data.synthetic.users=20", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8"]


def letter_probabilities(cfg, stage: str, examples, catalog, tokenizer) -> torch.Tensor:
    """[B, K] the stage's fresh policy's probabilities of the candidate letters after `Answer: `."""
    policy = load_policy(stage_size(cfg, stage), tokenizer, gradient_checkpointing=False, seed=0).eval()
    texts = {e["example_id"]: verbalize_template(e["history"], catalog) for e in examples}
    module = ReasonerGRPO(policy, tokenizer, None, cfg.reasoner.grpo, catalog, texts, answer="choice")
    prefix = tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
    rows = []
    with torch.no_grad():
        for ids in module.prompts(examples):                          # one at a time: no padding involved
            logits = policy(input_ids=torch.tensor([ids + prefix])).logits[0, -1]     # [V]
            rows.append(logits[module.label_ids].softmax(-1))
    return torch.stack(rows)                                          # [B, K]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg, train, catalog, tokenizer = prepared_tiny_run(tmp_path_factory.mktemp("runs"), TINY)
    return cfg, train[:4], catalog, tokenizer


def test_the_reasoners_answer_depends_on_the_prompt(tiny):
    cfg, examples, catalog, tokenizer = tiny
    probs = letter_probabilities(cfg, "reasoner", examples, catalog, tokenizer)
    assert (probs - probs[0]).abs().max() > 1e-2


def test_within_the_verbalizers_window_it_would_not(tiny):
    cfg, examples, catalog, tokenizer = tiny
    reasoner = stage_size(cfg, "reasoner").tiny
    assert cfg.size.tiny.sliding_window == 16 and (reasoner.sliding_window, reasoner.global_layers) == (16, 1)
    probs = letter_probabilities(cfg, "verbalizer", examples, catalog, tokenizer)   # the window of 16
    assert (probs - probs[0]).abs().max() < 1e-4


def test_vllm_cannot_serve_a_reasoner_with_its_own_window():
    from lit_verbrec.config.compose import ConfigError, compose

    with pytest.raises(ConfigError, match="reasoner.tiny_sliding_window"):
        compose(["reasoner.grpo.engine=vllm"])
    cfg = compose(["reasoner.grpo.engine=vllm", "reasoner.tiny_global_layers=-1", "reasoner.answer=free"])
    assert cfg.reasoner.grpo.engine == "vllm"
