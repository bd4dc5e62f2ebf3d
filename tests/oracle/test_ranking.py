"""reward.kind=rank (the paper's ranking ablation): each oracle ranks the candidates, the served one
over real HTTP on loopback, and the ranking prompt reads back like a choice prompt."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import make_catalog, make_examples  # noqa: E402

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.oracle.lexical import LexicalOracle, lexical_choice, lexical_scores
from lit_verbrec.oracle.openai_client import OpenAIOracle
from lit_verbrec.text.prompts import parse_reasoner_prompt, reasoner_messages

CATALOG = make_catalog()


def test_the_lexical_ranking_sorts_by_score_and_starts_with_the_choice():
    examples = make_examples(CATALOG, 20)
    oracle = LexicalOracle(CATALOG)
    rankings = oracle.rank(examples["verbalizations"], examples["candidates"])
    for text, cands, ranking in zip(examples["verbalizations"], examples["candidates"], rankings):
        scores = lexical_scores(text, cands, CATALOG)
        assert sorted(ranking) == list(range(len(cands)))
        assert [scores[i] for i in ranking] == sorted(scores, reverse=True)
        assert ranking[0] == lexical_choice(text, cands, CATALOG)
        tied = [i for i in ranking if scores[i] == scores[ranking[-1]]]
        assert tied == sorted(tied)                        # ties in candidate order, like the choice
    assert oracle.stats()["examples"] == 20


def test_a_ranking_prompt_reads_back_and_says_so():
    examples = make_examples(CATALOG, 1)
    text, cands = examples["verbalizations"][0], examples["candidates"][0]
    ranking = parse_reasoner_prompt(reasoner_messages(text, cands, CATALOG, ranking=True)[1]["content"])
    choice = parse_reasoner_prompt(reasoner_messages(text, cands, CATALOG)[1]["content"])
    assert ranking["ranking"] is True and choice["ranking"] is False
    assert ranking["candidates"] == choice["candidates"] and ranking["history"] == choice["history"]
    assert "Ranking: <number>, <number>" in reasoner_messages(text, cands, CATALOG, ranking=True)[0]["content"]


def test_the_served_oracle_ranks_like_the_lexical_one(start_server, tmp_path: Path):
    server = start_server()
    cfg = OracleConfig(kind="openai", base_url=server.base_url, model="lexical", concurrency=4, timeout_s=5.0,
                       max_retries=2, backoff_s=0.01, backoff_max_s=0.05)
    examples = make_examples(CATALOG, 12)
    served = OpenAIOracle(cfg, CATALOG, tmp_path).rank(examples["verbalizations"], examples["candidates"])
    assert served == LexicalOracle(CATALOG).rank(examples["verbalizations"], examples["candidates"])
    # a choice and a ranking of the same example are different prompts: neither is served from the other's cache
    chosen = OpenAIOracle(cfg, CATALOG, tmp_path).choose(examples["verbalizations"], examples["candidates"])
    assert chosen == [r[0] for r in served]
    assert server.stats()["answered"] == 24
