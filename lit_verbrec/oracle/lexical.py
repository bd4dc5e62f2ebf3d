"""A deterministic debugging reasoner: picks the candidate whose metadata the text mentions most.

It is NOT a model of a real LLM; it exists so that CPU runs and tests have a fast, exact,
reproducible reward and baseline. Scoring is by *presence* (notes/learnability.md): a
candidate earns one point for each of its genres and plot tags that appears anywhere in
the text, and `TITLE_WEIGHT` points if its whole title appears (a series the user is
in the middle of). Counting occurrences instead would let the many true-taste lines drown
the noise, and verbalization would stop mattering.

Ties go to the lowest candidate index: deterministic and, since the target's position is
drawn uniformly, unbiased (an all-tied list scores 1/N on average).

`LexicalOracle` puts the scorer behind the Oracle interface (oracle/base.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lit_verbrec.data.catalog import Catalog, ItemInfo
from lit_verbrec.oracle.base import Oracle, OracleStats, check_batch

TITLE_WEIGHT = 10
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces, padded with one space on each side."""
    return f" {_NON_WORD.sub(' ', text.lower()).strip()} "


def candidate_terms(info: ItemInfo) -> tuple[str, ...]:
    """The candidate's genres and tags, normalized (each padded, so `in` matches whole words)."""
    return tuple(dict.fromkeys(normalize(term) for term in (*info.genres, *info.tags) if normalize(term).strip()))


def lexical_scores(text: str, candidates: Sequence[str], catalog: Catalog) -> list[int]:
    """Score of each candidate for `text` (see the module docstring)."""
    haystack = normalize(text)
    scores = []
    for item in candidates:
        info = catalog[item]
        score = sum(term in haystack for term in candidate_terms(info))
        if normalize(info.title) in haystack:
            score += TITLE_WEIGHT
        scores.append(score)
    return scores


def lexical_choice(text: str, candidates: Sequence[str], catalog: Catalog) -> int:
    """Index of the best-scoring candidate; the lowest index among ties."""
    scores = lexical_scores(text, candidates, catalog)
    return scores.index(max(scores))


def lexical_ranking(text: str, candidates: Sequence[str], catalog: Catalog) -> list[int]:
    """Every candidate's index, best score first; ties in index order (lexical_choice is the first)."""
    scores = lexical_scores(text, candidates, catalog)
    return sorted(range(len(candidates)), key=lambda i: (-scores[i], i))


class LexicalOracle(Oracle):
    """lexical_choice behind the Oracle interface: always a valid index, never a request."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._stats = OracleStats()

    def choose(self, verbalizations: list[str], candidates: list[list[str]]) -> list[int | None]:
        check_batch(verbalizations, candidates)
        chosen: list[int | None] = [lexical_choice(text, cands, self.catalog)
                                    for text, cands in zip(verbalizations, candidates)]
        # Each example is one "request" to the scorer, so the OracleStats invariants hold.
        self._stats.examples += len(chosen)
        self._stats.requests += len(chosen)
        return chosen

    def rank(self, verbalizations: list[str], candidates: list[list[str]]) -> list[list[int] | None]:
        check_batch(verbalizations, candidates)
        ranked: list[list[int] | None] = [lexical_ranking(text, cands, self.catalog)
                                          for text, cands in zip(verbalizations, candidates)]
        self._stats.examples += len(ranked)
        self._stats.requests += len(ranked)
        return ranked

    def stats(self) -> dict:
        return self._stats.as_dict()
