"""What a verbalizer reads and how long it may write: text.metadata reaches the template of the
rewrite verbalizer, the template input and the cache key; verbalizer.length_cap derives a rewrite's
completion budget from its template's length."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from lit_verbrec.config.compose import ConfigError, compose
from lit_verbrec.config.paths import SHARED_QWEN3
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.data.prepared_folder import read_prepared
from lit_verbrec.data.report import DataReport
from lit_verbrec.data.sources import prepare
from lit_verbrec.rollout.types import Rollout, SamplingParams
from lit_verbrec.text.template import verbalize_template
from lit_verbrec.training.cache import text_key
from lit_verbrec.training.verbalizers import RewriteVerbalizer, TemplateVerbalizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_runs import prepared_tiny_run  # noqa: E402

TINY = ["data.synthetic.users=20", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8"]


class RecordingEngine:
    """Returns empty completions and keeps the sampling params it was called with."""

    def __init__(self) -> None:
        self.calls: list[SamplingParams] = []

    def generate(self, prompts, params, **_):
        self.calls.append(params)
        n = len(prompts) * params.n
        return Rollout(prompt_ids=torch.zeros(n, 1, dtype=torch.long), prompt_mask=torch.ones(n, 1, dtype=torch.long),
                       completion_ids=torch.zeros(n, 1, dtype=torch.long), completion_mask=torch.ones(n, 1, dtype=torch.long),
                       group=torch.arange(len(prompts)).repeat_interleave(params.n), texts=[""] * n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    _, train, catalog, tokenizer = prepared_tiny_run(tmp_path_factory.mktemp("runs"), TINY)
    return train[:4], catalog, tokenizer


def test_metadata_reaches_the_rewrite_verbalizers_input_and_the_template_input(setup):
    examples, catalog, tokenizer = setup
    plain = RewriteVerbalizer(RecordingEngine(), tokenizer, catalog)
    rich = RewriteVerbalizer(RecordingEngine(), tokenizer, catalog, metadata=("year", "tags"), max_tags=2)
    history = examples[0]["history"]
    assert rich.template(history) == verbalize_template(history, catalog, ("year", "tags"), 2)
    assert "year: " in rich.template(history) and "year: " not in plain.template(history)
    assert tokenizer.decode(rich.prompts(examples[:1])[0]).count("year: ") == len(history)
    texts = TemplateVerbalizer(catalog, 2, ("year", "tags")).verbalize(examples[:1])
    assert texts == [rich.template(history)] and "plot: " in texts[0]


def test_metadata_is_part_of_the_cache_key():
    assert text_key("abc") == "abc"                     # caches written without metadata stay valid
    assert text_key("abc", ["year", "tags"]) == "abc-year+tags" != text_key("abc", ["year"])


def test_metadata_is_refused_where_the_verbalizer_decides_it():
    with pytest.raises(ConfigError, match="text.metadata"):
        compose(["verbalizer.kind=action", "text.metadata=[year]"])
    assert compose(["verbalizer.kind=rewrite", "text.metadata=[year,tags]"]).text.metadata == ["year", "tags"]


def test_the_completion_budget_follows_the_longest_template(setup):
    examples, catalog, tokenizer = setup
    engine = RecordingEngine()
    verbalizer = RewriteVerbalizer(engine, tokenizer, catalog, max_new_tokens=10_000, length_cap=0.5)
    longest = max(len(tokenizer(verbalizer.template(e["history"]), add_special_tokens=False)["input_ids"]) for e in examples)
    assert verbalizer.completion_budget(examples, 10_000) == math.ceil(0.5 * longest)
    assert verbalizer.completion_budget(examples, 7) == 7                     # max_new_tokens stays the ceiling
    verbalizer.sample(examples, SamplingParams(n=2, max_new_tokens=10_000))
    verbalizer.verbalize(examples)
    assert [p.max_new_tokens for p in engine.calls] == [math.ceil(0.5 * longest)] * 2
    off = RewriteVerbalizer(engine, tokenizer, catalog, max_new_tokens=10_000)
    assert off.completion_budget(examples, 10_000) == 10_000                  # length_cap 0: the fixed cap


@pytest.mark.skipif(not (SHARED_QWEN3 / "tokenizer.json").is_file(), reason="needs ../shared/qwen3-tokenizer")
@pytest.mark.parametrize("size", ["8b", "32b"])
def test_a_100_line_rewrite_can_reach_the_end_of_the_length_plateau(size, tmp_path):
    """With 1024 new tokens a ~4.1k-token 100-line template capped the ratio at 0.25, below the
    plateau's start (0.3): the length reward could never be earned."""
    cfg = compose([f"size={size}", "data.synthetic.users=30", "data.synthetic.interactions_per_user=160"])
    assert cfg.verbalizer.kind == "rewrite" and cfg.data.examples.history_len == 100
    prepare(cfg.data, tmp_path, DataReport())
    examples, items = read_prepared(tmp_path, "test")
    catalog, tokenizer = Catalog.from_table(items), AutoTokenizer.from_pretrained(SHARED_QWEN3)
    verbalizer = RewriteVerbalizer(None, tokenizer, catalog, max_new_tokens=cfg.verbalizer.grpo.max_new_tokens,
                                   metadata=cfg.text.metadata, length_cap=cfg.verbalizer.length_cap)
    for e in examples.to_pylist()[:8]:
        assert len(e["history"]) == 100
        template = len(tokenizer(verbalizer.template(e["history"]), add_special_tokens=False)["input_ids"])
        assert verbalizer.completion_budget([e], cfg.verbalizer.grpo.max_new_tokens) >= cfg.reward.length_high * template
