"""The oracle reasoner behind one interface: verbalizations + candidates in, chosen indices out.

Stage 1's reward asks a fixed reasoner which of an example's candidates comes next (paper
section 4.3). Three backends answer it (DESIGN.md "Oracle"): `lexical` (a deterministic
metadata-overlap scorer for CPU runs and tests), `openai` (any OpenAI-compatible endpoint,
async, retried, cached on disk) and `model` (an LLM already loaded in this process). The
trainer sees only `Oracle.choose` and `Oracle.stats`, so a backend can change by config.

`choose` is batched and never fails for one example: an answer that cannot be read, or a
call that failed for good, is None (reward 0) and is counted, so a flaky endpoint lowers the
reward for a step instead of killing a multi-node job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

from lit_verbrec.config.train_schema import OracleConfig

__all__ = ["Oracle", "OracleStats", "check_batch"]


@dataclass
class OracleStats:
    """Counters of one oracle since it was built (cumulative: the logger takes differences).

    Invariants, for every backend:
      examples == (results that are an index) + invalid_answers + failures
      requests == (examples - cache_hits) + retries
    """

    examples: int = 0
    """Questions asked through choose() (one per verbalization)."""
    requests: int = 0
    """Requests sent to the backend, retries included (what a hosted API bills)."""
    cache_hits: int = 0
    """Examples answered without a request of their own: from the disk cache, or by an
    identical prompt earlier in the same batch."""
    retries: int = 0
    """Requests that repeated a failed one (timeout, connection error, 429, 5xx)."""
    failures: int = 0
    """Examples whose call failed for good (retries spent, other 4xx, garbage reply): None."""
    invalid_answers: int = 0
    """Examples whose reply parsed to no candidate (parse_answer gave None)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost: float = 0.0
    """prompt/completion tokens times OracleConfig's prices per million tokens."""

    def add_usage(self, prompt_tokens: int, completion_tokens: int, cfg: OracleConfig) -> None:
        """Count the tokens of one reply and what they cost at cfg's prices."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.estimated_cost += (prompt_tokens * cfg.price_input_per_mtok
                                + completion_tokens * cfg.price_output_per_mtok) / 1e6

    def as_dict(self) -> dict:
        """A plain copy, for logging (later changes to the counters do not alter it)."""
        return asdict(self)


class Oracle(ABC):
    """A reasoner that picks one candidate per example."""

    @abstractmethod
    def choose(self, verbalizations: list[str], candidates: list[list[str]]) -> list[int | None]:
        """For each example, the 0-based index into its candidates, or None (invalid or failed).

        verbalizations[i] is the text of example i, candidates[i] its item ids; the lists
        have the same length. Never raises for a bad reply or a failed call.
        """

    @abstractmethod
    def rank(self, verbalizations: list[str], candidates: list[list[str]]) -> list[list[int] | None]:
        """For each example, 0-based candidate indices, most likely first (possibly not all of them:
        unnamed candidates tie after the named ones), or None (invalid or failed). reward.kind=rank."""

    @abstractmethod
    def stats(self) -> dict:
        """OracleStats.as_dict() of this oracle's counters."""


def check_batch(verbalizations: list[str], candidates: list[list[str]]) -> None:
    """Mismatched lists are the caller's bug, not a flaky reply: raise at once."""
    if len(verbalizations) != len(candidates):
        raise ValueError(f"choose() got {len(verbalizations)} verbalizations but {len(candidates)} candidate lists")
