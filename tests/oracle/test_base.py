"""The Oracle interface: the kind table, the counters, and the lexical oracle behind it.

(The server fixture these tests share with the client tests lives in conftest.py.)"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import make_catalog, make_examples  # noqa: E402

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.oracle.base import Oracle, OracleStats
from lit_verbrec.oracle.factory import ORACLE_KINDS, make_oracle
from lit_verbrec.oracle.lexical import LexicalOracle, lexical_choice
from lit_verbrec.oracle.openai_client import OpenAIOracle

CATALOG = make_catalog()


def test_kind_table_matches_the_config_choices():
    assert set(ORACLE_KINDS) == {"lexical", "openai", "model"}
    with pytest.raises(ValueError):
        OracleConfig(kind="closed-source")


def test_make_oracle_builds_each_kind_without_network(tmp_path: Path):
    lexical = make_oracle(OracleConfig(), CATALOG, tmp_path)
    assert isinstance(lexical, LexicalOracle) and isinstance(lexical, Oracle)
    remote = make_oracle(OracleConfig(kind="openai", base_url="http://127.0.0.1:9/v1", model="m"), CATALOG, tmp_path)
    assert isinstance(remote, OpenAIOracle)
    assert remote.stats()["requests"] == 0 and list(tmp_path.iterdir()) == []  # the cache opens on first use


def test_stats_fields_and_cost():
    stats = OracleStats()
    names = [f.name for f in fields(stats)]
    assert names == ["examples", "requests", "cache_hits", "retries", "failures", "invalid_answers",
                     "prompt_tokens", "completion_tokens", "estimated_cost"]
    cfg = OracleConfig(price_input_per_mtok=3.0, price_output_per_mtok=15.0)
    stats.add_usage(1_000_000, 2_000, cfg)
    stats.add_usage(500_000, 0, cfg)
    snapshot = stats.as_dict()
    assert snapshot["prompt_tokens"] == 1_500_000 and snapshot["completion_tokens"] == 2_000
    assert snapshot["estimated_cost"] == pytest.approx(4.5 + 0.03)
    stats.requests += 1
    assert snapshot["requests"] == 0  # a copy, not a view


def test_lexical_oracle_is_lexical_choice_with_counters():
    examples = make_examples(CATALOG, 20)
    oracle = LexicalOracle(CATALOG)
    results = oracle.choose(examples["verbalizations"], examples["candidates"])
    assert results == [lexical_choice(v, c, CATALOG) for v, c in zip(examples["verbalizations"], examples["candidates"])]
    oracle.choose([], [])
    stats = oracle.stats()
    assert stats["examples"] == stats["requests"] == 20
    assert stats["failures"] == stats["invalid_answers"] == stats["cache_hits"] == stats["retries"] == 0
    with pytest.raises(ValueError, match="2 verbalizations but 1 candidate"):
        oracle.choose(["a", "b"], [examples["candidates"][0]])
