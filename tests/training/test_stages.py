"""The stages end to end on a tiny CPU run, and their parts: verbalizers, cache, reasoner reward."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from lit_verbrec.config.train_schema import RewardConfig
from lit_verbrec.models.loading import load_policy
from lit_verbrec.oracle.lexical import LexicalOracle, lexical_ranking
from lit_verbrec.rl.logprobs import completion_logprobs
from lit_verbrec.rollout.types import Rollout, SamplingParams
from lit_verbrec.text.actions import parse_actions
from lit_verbrec.training.cache import VerbalizationCache
from lit_verbrec.training.reasoner import ReasonerGRPO
from lit_verbrec.training.verbalizer import VerbalizerGRPO
from lit_verbrec.training.verbalizers import ActionVerbalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_runs import prepared_tiny_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8",
        "verbalizer.grpo.max_steps=3", "verbalizer.grpo.prompts_per_step=2", "verbalizer.grpo.group_size=4",
        "reasoner.grpo.max_steps=2", "reasoner.grpo.prompts_per_step=2", "reasoner.grpo.group_size=4",
        "train.val_examples=4", "train.val_every_n_steps=2", "train.eval_examples=24", "train.checkpoint_every_n_steps=2",
        "eval.bootstrap=100"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return prepared_tiny_run(tmp_path_factory.mktemp("runs"), TINY)


def test_action_verbalizer_samples_are_valid_action_lists_for_any_seed(tiny_run):
    cfg, train, catalog, tokenizer = tiny_run
    for seed in range(8):
        policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=seed)
        verbalizer = ActionVerbalizer(policy, tokenizer, catalog, full_lines=seed % 2 == 0)
        rollout = verbalizer.sample(train[:3], SamplingParams(n=4, max_new_tokens=1, seed=seed))
        for text, g in zip(rollout.texts, rollout.group.tolist()):
            assert parse_actions(text, len(train[g]["history"])) is not None, text
        rendered = verbalizer.render(train[:3], rollout)
        kept = [sum(p.keep) for p in verbalizer.plans(rollout)]
        assert [len(t.splitlines()) if t else 0 for t in rendered] == kept


def test_cache_verbalizes_once_and_reuses(tmp_path, tiny_run):
    _, train, _, _ = tiny_run
    calls = []

    def verbalize(examples):
        calls.append(len(examples))
        return [f"text of {e['example_id']}" for e in examples]

    cache = VerbalizationCache(tmp_path, "action", "abc")
    first = cache.texts(train[:5], verbalize)
    again = VerbalizationCache(tmp_path, "action", "abc").texts(train[:7], verbalize)
    assert calls == [5, 2] and first[train[0]["example_id"]] == f"text of {train[0]['example_id']}"
    assert len(again) == 7
    other = VerbalizationCache(tmp_path, "action", "def")   # another adapter: nothing reused
    other.texts(train[:2], verbalize)
    assert other.computed == 2 and other.reused == 0
    assert set(pq.read_table(cache.path).column_names) >= {"example_id", "split", "verbalization", "adapter_hash"}


def test_rank_reward_scores_the_targets_place_in_the_oracles_ranking(tiny_run):
    """reward.kind=rank: the oracle term is 1 - position / 9 of the target in the lexical oracle's ranking."""
    cfg, train, catalog, tokenizer = tiny_run
    policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=0)
    verbalizer = ActionVerbalizer(policy, tokenizer, catalog, full_lines=True)
    module = VerbalizerGRPO(policy, tokenizer, None, replace(cfg.verbalizer.grpo, group_size=4), verbalizer,
                            LexicalOracle(catalog), RewardConfig(alpha=1.0, kind="rank"))
    batch = train[:4]
    rollout = verbalizer.sample(batch, SamplingParams(n=4, max_new_tokens=1, seed=0))
    scores = module.score(batch, rollout)
    texts, rows = verbalizer.render(batch, rollout), [batch[g] for g in rollout.group.tolist()]
    places = [lexical_ranking(t, r["candidates"], catalog).index(r["target_index"]) for t, r in zip(texts, rows)]
    assert scores["reward"].tolist() == pytest.approx([1 - p / 9 for p in places])
    assert scores["accuracy"].tolist() == [float(p == 0) for p in places]
    assert len(set(places)) > 1                              # the examples are not all ranked alike


def test_reasoner_reward_is_plus_one_minus_one(tiny_run):
    cfg, train, catalog, tokenizer = tiny_run
    module = ReasonerGRPO(None, tokenizer, None, cfg.reasoner.grpo, catalog, {}, True)
    batch = train[:1]
    right = batch[0]["target_index"] + 1
    texts = [f"Answer: {right}", f"Answer: {right % 10 + 1}", "no idea"]
    rollout = Rollout(torch.zeros(3, 1, dtype=torch.long), torch.ones(3, 1, dtype=torch.long), torch.zeros(3, 1, dtype=torch.long),
                      torch.ones(3, 1, dtype=torch.long), texts, torch.zeros(3, dtype=torch.long))
    scores = module.score(batch, rollout)
    assert scores["reward"].tolist() == [1.0, -1.0, -1.0]
    assert scores["valid"].tolist() == [1.0, 1.0, 0.0]


def test_choice_reasoner_answers_one_letter_among_the_candidates(tiny_run):
    cfg, train, catalog, tokenizer = tiny_run
    policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=0)
    texts = {e["example_id"]: f"history of {e['example_id']}" for e in train[:3]}
    module = ReasonerGRPO(policy, tokenizer, None, replace(cfg.reasoner.grpo, group_size=8), catalog, texts,
                          answer="choice", num_candidates=10)
    assert "J. " in tokenizer.decode(module.prompts(train[:1])[0])          # candidates labelled A ... J
    rollout = module.sample(train[:3])
    assert rollout.num_sequences == 24 and rollout.loss_mask.sum(dim=1).tolist() == [1] * 24   # one decision each
    picks = module.answers(train[:3], rollout)
    assert all(t == f"Answer: {'ABCDEFGHIJ'[k]}" for t, k in zip(rollout.texts, picks.tolist()))
    assert len(set(picks.tolist())) > 1                                      # sampled, not fixed
    scores = module.score(train[:3], rollout)
    target = torch.tensor([train[g]["target_index"] for g in rollout.group.tolist()])
    assert scores["valid"].tolist() == [1.0] * 24
    assert scores["reward"].tolist() == torch.where(picks == target, 1.0, -1.0).tolist()
    assert module.predict(train[:3]).tolist() == module.predict(train[:3]).tolist()   # greedy is deterministic
    assert module.allowed_token_ids().tolist() == [tokenizer.convert_tokens_to_ids(c) for c in "ABCDEFGHIJ"]
    # Training reads the letter's log-prob from one decoder pass per group; it is the sampler's.
    shared = module.sequence_logprobs(rollout)["logprobs"][rollout.loss_mask.bool()]
    plain = completion_logprobs(policy, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                rollout.completion_mask, allowed_ids=module.label_ids)["logprobs"][rollout.loss_mask.bool()]
    assert torch.allclose(shared, plain, atol=1e-5)
    assert torch.allclose(shared, rollout.info["slot_logprobs"][:, 0], atol=1e-4)


def test_submit_both_stages_locally_leaves_a_complete_run_folder(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "submit.py"), "stage=both", "size=tiny", "cluster=local",
                             f"run.root={tmp_path}", *TINY], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "default"
    for stage in ("verbalizer", "reasoner"):
        assert (run / stage / "adapter" / "adapter_model.safetensors").is_file()
        assert (run / stage / "checkpoints" / "last.ckpt").is_file()
        assert list((run / stage / "logs").rglob("metrics.csv")) and list((run / stage / "logs").rglob("events.out.tfevents*"))
    assert list((run / "cache").glob("verbalizations-action-*.parquet"))
    results = json.loads((run / "results.json").read_text())
    assert [r["stage"] for r in results] == ["verbalizer", "reasoner"]
    assert set(results[0]["rows"]) == {"template", "keep all + enrich all", "trained action verbalizer"}
    assert "## Stage verbalizer" in (run / "results.md").read_text()
    # Stage 2 verbalized each example once and then read the texts from the cache.
    trained = results[1]["train"]["texts"]
    assert trained["input"] == "verbalized" and trained["computed"] > 0
    assert results[1]["texts"]["computed"] == 0 and results[1]["texts"]["reused"] == 24   # evaluation: all cached
    assert "stage 2 read" in result.stdout and "from the cache during training" in result.stdout
    assert "prepend your python command with `srun`" not in result.stderr   # a local run is not a Slurm job
    # the run talks: where its results went, steps out of max_steps, stage 2's verbalization counted,
    # and none of the known harmless messages (lit_verbrec/config/console.py)
    assert f"wrote {run / 'results.md'}" in result.stdout and f"reasoner adapter: {run / 'reasoner'}" in result.stdout
    assert "steps: 100%" in result.stdout and "v_num" not in result.stdout     # Lightning's bar: stdout
    assert "stage 2: verbalizing" in result.stderr and "users/s" in result.stderr
    for harmless in ("litlogger", "LeafSpec", "gemm_4bit_forward"):
        assert harmless not in result.stdout + result.stderr, harmless


def test_choice_reasoner_with_fewer_candidates_than_labels_stays_on_policy(tiny_run):
    """A prompt with 4 candidates: the sampler picks among A-D, and the trainer's softmax covers A-D too."""
    cfg, train, catalog, tokenizer = tiny_run
    policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=0)
    short = [dict(e, candidates=[e["target"], *[c for c in e["candidates"] if c != e["target"]][:3]], target_index=0)
             for e in train[:2]]
    batch = [*short, train[2]]
    texts = {e["example_id"]: f"history of {e['example_id']}" for e in batch}
    module = ReasonerGRPO(policy, tokenizer, None, replace(cfg.reasoner.grpo, group_size=8), catalog, texts,
                          answer="choice", num_candidates=10)
    rollout = module.sample(batch)
    assert rollout.allowed_mask.sum(1).tolist() == [4] * 16 + [10] * 8
    assert module.answers(batch, rollout)[:16].max() < 4
    mask = rollout.loss_mask.bool()
    shared = module.sequence_logprobs(rollout)["logprobs"][mask]
    torch.testing.assert_close(shared, rollout.info["slot_logprobs"][:, 0], rtol=0, atol=1e-4)
