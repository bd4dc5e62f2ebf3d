"""The decision probe: per-class keep/enrich probabilities equal the factorised policy's own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_verbrec.models.loading import load_policy
from lit_verbrec.rollout.types import SamplingParams
from lit_verbrec.training.probes import decision_probabilities, line_class
from lit_verbrec.training.verbalizers import ActionVerbalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_runs import prepared_tiny_run  # noqa: E402

TINY = ["data.synthetic.users=20", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg, train, catalog, tokenizer = prepared_tiny_run(tmp_path_factory.mktemp("runs"), TINY)
    policy = load_policy(cfg.size, tokenizer, gradient_checkpointing=False, seed=0)
    return ActionVerbalizer(policy, tokenizer, catalog, full_lines=True, factorised=True), train[:4]


def test_line_class_is_the_origin_else_the_event():
    assert line_class({"event": "play", "origin": "noise"}) == "noise"
    assert line_class({"event": "trailer"}) == "trailer"


def test_probabilities_are_the_sampled_policy_averaged_per_class(setup):
    verbalizer, examples = setup
    probs = decision_probabilities(verbalizer, examples)
    classes = {line_class(h) for e in examples for h in e["history"]}
    assert set(probs) == {f"p_{d}/{c}" for d in ("keep", "enrich") for c in classes}
    # the same numbers from the sampler's own per-slot log-probs (the chosen "1"s of a greedy-free rollout)
    rollout = verbalizer.sample(examples, SamplingParams(n=2000, max_new_tokens=1, seed=0))
    slots = torch.as_tensor(rollout.info["slots"]).float().view(len(examples), 2000, -1).mean(1)   # [B, 2L]
    sums: dict[str, list[float]] = {}
    for e, row in zip(examples, slots):
        for t, h in enumerate(e["history"]):
            acc = sums.setdefault(line_class(h), [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = acc[0] + float(row[2 * t]), acc[1] + float(row[2 * t + 1]), acc[2] + 1
    for c, (keep, enrich, n) in sums.items():
        assert abs(probs[f"p_keep/{c}"] - keep / n) < 0.03 and abs(probs[f"p_enrich/{c}"] - enrich / n) < 0.03
