"""HFEngine: the Rollout contract (shapes, groups, padding, EOS and stop-string masks, seeds)."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessor

from lit_verbrec.config.schema import GRPOConfig, LoraConfig, SizeConfig
from lit_verbrec.models.loading import load_policy
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout.engines import make_engine
from lit_verbrec.rollout.hf import HFEngine, cut_at_stop
from lit_verbrec.rollout.types import SamplingParams

CORPUS = [f"The user watched Alien ({1970 + i % 30}) and rated it {i % 5} stars; hello world." for i in range(60)]
SIZE = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0))


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(CORPUS, vocab_size=400)


@pytest.fixture
def model(tokenizer):
    return load_policy(SIZE, tokenizer, gradient_checkpointing=True, seed=0)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    texts = ["hi", "The user watched Alien (1979) and rated it 5 stars.", "hello world"]
    return [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                          return_dict=False) for text in texts]


class ForceTokens(LogitsProcessor):
    """Makes `tokens[t]` certain at completion step t for the rows in `rows` (all if None);
    `forbid` is impossible everywhere else."""

    def __init__(self, prompt_width: int, tokens: list[int], rows: set[int] | None = None,
                 forbid: int | None = None) -> None:
        self.prompt_width, self.tokens, self.rows, self.forbid = prompt_width, tokens, rows, forbid

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_width
        scores = scores.clone()
        if self.forbid is not None:
            scores[:, self.forbid] = -float("inf")
        for row in range(scores.shape[0]):
            if step < len(self.tokens) and (self.rows is None or row in self.rows):
                scores[row] = -float("inf")
                scores[row, self.tokens[step]] = 0.0
        return scores


def is_prefix_of_ones(mask: torch.Tensor) -> bool:
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


def test_shapes_groups_and_left_padded_prompts(model, tokenizer, prompts):
    rollout = HFEngine(model, tokenizer).generate(prompts, SamplingParams(n=4, max_new_tokens=8, seed=0))
    width = max(len(p) for p in prompts)
    assert rollout.prompt_ids.shape == rollout.prompt_mask.shape == (12, width)
    assert rollout.completion_ids.shape == rollout.completion_mask.shape
    assert rollout.completion_ids.shape[0] == 12 and 1 <= rollout.completion_ids.shape[1] <= 8
    assert rollout.group.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and len(rollout.texts) == 12
    for row in range(12):
        prompt = prompts[row // 4]
        assert rollout.prompt_ids[row, width - len(prompt):].tolist() == prompt
        assert rollout.prompt_mask[row].tolist() == [0] * (width - len(prompt)) + [1] * len(prompt)
        assert (rollout.prompt_ids[row, :width - len(prompt)] == tokenizer.pad_token_id).all()
    assert is_prefix_of_ones(rollout.completion_mask)
    assert (rollout.completion_ids[rollout.completion_mask == 0] == tokenizer.pad_token_id).all()


def test_completion_ends_at_the_first_eos(model, tokenizer, prompts):
    eos, width = tokenizer.eos_token_id, max(len(p) for p in prompts)
    filler = tokenizer.convert_tokens_to_ids("a")
    # rows 0, 2, 4 get EOS at step 2; EOS is forbidden everywhere else
    forced = ForceTokens(width, [filler, filler, eos], rows={0, 2, 4}, forbid=eos)
    rollout = HFEngine(model, tokenizer).generate(prompts[:3], SamplingParams(n=2, max_new_tokens=6, seed=0),
                                                  logits_processor=forced)
    assert rollout.completion_ids.shape == (6, 6)
    for row in range(6):
        if row in {0, 2, 4}:
            assert rollout.completion_mask[row].tolist() == [1, 1, 1, 0, 0, 0]
            assert rollout.completion_ids[row, 2] == eos and rollout.texts[row] == "aa"
        else:
            assert rollout.completion_mask[row].tolist() == [1] * 6
            assert eos not in rollout.completion_ids[row].tolist()


def test_stop_string_cuts_after_the_completing_token(model, tokenizer, prompts):
    width = max(len(p) for p in prompts)
    script = tokenizer.encode("hello world and more text")
    stop = "wor"  # ends inside a token: the token is kept, the text is cut at the string's end
    completing = next(k for k in range(1, len(script) + 1) if stop in tokenizer.decode(script[:k]))
    rollout = HFEngine(model, tokenizer).generate(
        prompts, SamplingParams(n=2, max_new_tokens=len(script) + 3, stop=(stop,), seed=0),
        logits_processor=ForceTokens(width, script, forbid=tokenizer.eos_token_id))
    assert rollout.completion_ids.shape[1] == completing  # generation ended there for every row
    assert (rollout.completion_mask == 1).all()
    assert rollout.completion_ids[0].tolist() == script[:completing]
    assert rollout.texts == ["hello wor"] * 6


def test_cut_at_stop_takes_the_earliest_stop(tokenizer):
    tokens = tokenizer.encode("rated it 5 stars; hello world.")
    kept, text = cut_at_stop(tokens, ("world", "stars"), tokenizer)
    assert text == "rated it 5 stars" and tokenizer.decode(kept).startswith(text)
    assert cut_at_stop(tokens, ("absent",), tokenizer) == (tokens, tokenizer.decode(tokens))


def test_same_seed_same_samples(model, tokenizer, prompts):
    engine = HFEngine(model, tokenizer)
    first = engine.generate(prompts, SamplingParams(n=3, max_new_tokens=10, seed=7))
    second = engine.generate(prompts, SamplingParams(n=3, max_new_tokens=10, seed=7))
    other = engine.generate(prompts, SamplingParams(n=3, max_new_tokens=10, seed=8))
    assert torch.equal(first.completion_ids, second.completion_ids) and first.texts == second.texts
    assert not torch.equal(first.completion_ids[:, :2], other.completion_ids[:, :2])
    assert len({tuple(row) for row in first.completion_ids.tolist()}) > 1  # samples of a group differ


def test_each_prompt_is_encoded_once_for_its_samples(model, tokenizer, prompts, monkeypatch):
    calls, prefills = [], []
    real_generate = model.generate

    def spy(**kwargs):
        calls.append((tuple(kwargs["input_ids"].shape), kwargs["generation_config"].num_return_sequences,
                      kwargs["past_key_values"].get_seq_length()))
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    embed = model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda m, args, out: prefills.append(tuple(args[0].shape)))
    rollout = HFEngine(model, tokenizer).generate(prompts, SamplingParams(n=5, max_new_tokens=4, seed=0))
    hook.remove()
    width = max(len(p) for p in prompts)
    assert prefills[0] == (3, width - 1)              # all but the last prompt token, once per prompt
    assert prefills[1] == (15, 1)                     # then generate starts from the last prompt token
    assert calls == [((15, width), 1, width - 1)]
    assert rollout.num_sequences == 15


def test_shared_prefill_samples_what_generate_samples(model, tokenizer, prompts):
    """The same tokens as transformers' own n-fold expansion, from the same seed."""
    from lit_verbrec.rollout.hf import left_pad

    params = SamplingParams(n=3, max_new_tokens=6, seed=11)
    engine = HFEngine(model, tokenizer)
    ours = engine.generate(prompts, params)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(11)
        plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=engine.generation_config(params),
                               tokenizer=tokenizer)[:, ids.shape[1]:]
    for row, completion in zip(plain.tolist(), ours.completion_ids.tolist()):
        tokens = row[:row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row
        assert completion[:len(tokens)] == tokens


def test_mode_and_checkpointing_are_restored(model, tokenizer, prompts):
    def no_checkpointing(*args, **kwargs):
        raise AssertionError("gradient checkpointing ran during generation")

    layers = model.get_base_model().model.layers
    real = [layer._gradient_checkpointing_func for layer in layers]
    for layer in layers:
        layer._gradient_checkpointing_func = no_checkpointing
    model.train()
    HFEngine(model, tokenizer).generate(prompts, SamplingParams(n=2, max_new_tokens=4, seed=0))
    assert model.training and model.is_gradient_checkpointing
    for layer, func in zip(layers, real):
        layer._gradient_checkpointing_func = func
    model.eval()
    HFEngine(model, tokenizer).generate(prompts, SamplingParams(n=2, max_new_tokens=4, seed=0))
    assert not model.training


def test_make_engine_picks_from_grpo_engine(model, tokenizer):
    engine = make_engine(GRPOConfig(engine="hf"), SIZE, model, tokenizer, seed=0)
    assert isinstance(engine, HFEngine) and engine.model is model and not engine.needs_adapter_sync
    engine.sync_adapter(None)  # shares the trainer's weights: nothing to load
