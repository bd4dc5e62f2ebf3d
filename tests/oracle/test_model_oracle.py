"""The in-process LLM oracle with a tiny random-weight Qwen3 and the real Qwen3 tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import make_catalog, make_examples  # noqa: E402

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.oracle.factory import make_oracle
from lit_verbrec.oracle.model import ModelOracle, generate_replies

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer"
CATALOG = make_catalog()


@pytest.fixture(scope="module")
def tiny():
    if not TOKENIZER.is_dir():
        pytest.skip(f"no tokenizer at {TOKENIZER}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER), padding_side="left")
    torch.manual_seed(0)
    config = transformers.Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                      intermediate_size=128)
    return {"model": transformers.Qwen3ForCausalLM(config), "tokenizer": tokenizer}


def test_random_model_gives_one_valid_or_none_per_example(tiny):
    examples = make_examples(CATALOG, 5)
    cfg = OracleConfig(kind="model", max_tokens=6)
    oracle = make_oracle(cfg, CATALOG, Path("unused"), model=tiny["model"], tokenizer=tiny["tokenizer"])
    assert isinstance(oracle, ModelOracle)
    oracle.batch_size = 2  # 3 batches, the last one short
    tiny["model"].train()
    results = oracle.choose(examples["verbalizations"], examples["candidates"])
    assert tiny["model"].training  # the caller's mode is restored
    assert len(results) == 5
    assert all(r is None or 0 <= r < 10 for r in results)
    stats = oracle.stats()
    assert stats["examples"] == stats["requests"] == 5
    assert stats["invalid_answers"] == results.count(None)
    assert stats["failures"] == stats["retries"] == stats["cache_hits"] == 0
    assert stats["prompt_tokens"] > 5 * 100 and 5 <= stats["completion_tokens"] <= 5 * 6
    # Greedy: the same prompts give the same answers, whatever the batching.
    oracle.batch_size = 5
    assert oracle.choose(examples["verbalizations"], examples["candidates"]) == results


def test_replies_are_read_from_the_new_tokens_of_a_left_padded_batch(tiny, monkeypatch):
    tokenizer = tiny["tokenizer"]
    replies = ["Answer: 2", "<think>maybe 4</think>Answer: 11", "I pick 7."]
    scripted = [tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for text in replies]
    width = max(len(tokens) for tokens in scripted) + 2

    def fake_generate(input_ids, attention_mask, **kwargs):
        assert (attention_mask[:, -1] == 1).all()  # left padding: every prompt ends in the last column
        assert kwargs["do_sample"] is False and kwargs["max_new_tokens"] == 32
        rows = [tokens + [tokenizer.pad_token_id] * (width - len(tokens)) for tokens in scripted]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)

    monkeypatch.setattr(tiny["model"], "generate", fake_generate)
    examples = make_examples(CATALOG, 3)
    oracle = ModelOracle(tiny["model"], tokenizer, CATALOG, OracleConfig(kind="model", max_tokens=32))
    assert oracle.choose(examples["verbalizations"], examples["candidates"]) == [1, None, 6]
    assert oracle.stats()["completion_tokens"] == sum(len(tokens) for tokens in scripted)
    conversation = [{"role": "user", "content": "hi"}]
    reply = generate_replies(tiny["model"], tokenizer, [conversation] * 3, 32)[0]
    assert reply.text == "Answer: 2" and reply.completion_tokens == len(scripted[0])


def test_model_oracle_needs_a_model():
    with pytest.raises(ValueError, match="needs a loaded model"):
        make_oracle(OracleConfig(kind="model"), CATALOG, Path("unused"))
