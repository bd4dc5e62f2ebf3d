"""The oracle behind any OpenAI-compatible chat endpoint (oracle.kind=openai): a hosted API or
`vllm serve`, asked concurrently, retried, cached on disk and accounted (anchors.md gap 4).

Why each part:
- Retries are ours (the client is built with max_retries=0): timeouts, connection errors,
  408, 429 and 5xx are retried with exponential backoff and full jitter, capped at
  backoff_max_s (a 429's Retry-After wins over the backoff, under the same cap); other 4xx
  (bad key, unknown model, bad request) would fail again, so they fail at once. Every attempt
  also has a hard deadline of timeout_s (asyncio.wait_for), so a call ends within
  (max_retries + 1) * timeout_s plus the backoff sleeps.
- A call that fails for good, or a 200 with garbage (no choices, no text, a body the client
  cannot parse), gives None and a counter, never an exception: a flaky endpoint must cost
  reward, not a multi-node job. Garbage is not retried: a server that answers garbage to a
  prompt is not known to answer better the second time.
- The cache (oracle/cache.py) maps sha256(model, messages, temperature, max_tokens) to the
  raw reply text; the answer is parsed again on every read, so a parser fix applies to
  cached replies. Only real replies are cached. Identical prompts within a batch (GRPO
  groups can repeat a text) are asked once.
- The API key is read from the environment when a batch starts and handed to the client
  only: it is not kept on the oracle, logged or written to the cache ("EMPTY" when unset:
  local servers accept any key).
- choose() is synchronous: each call runs its own event loop (in a worker thread when the
  caller already runs one), with a fresh client bound to that loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai

from lit_verbrec.config.train_schema import OracleConfig
from lit_verbrec.data.catalog import Catalog
from lit_verbrec.oracle.base import Oracle, OracleStats, check_batch
from lit_verbrec.oracle.cache import ReplyCache, cache_key
from lit_verbrec.text.answers import parse_answer, parse_ranking
from lit_verbrec.text.prompts import reasoner_messages

__all__ = ["OpenAIOracle", "retry_delay"]

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "EMPTY"


@dataclass
class _Outcome:
    """The end of one prompt's attempts: the reply text, or None and why it failed."""

    text: str | None
    error: str = ""


class _Retry(Exception):
    """An attempt failed in a way worth repeating; delay_s is the server's Retry-After, if any."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


def _retry_after(response) -> float | None:
    """Seconds from Retry-After / retry-after-ms (OpenAI sends both); None if absent or a date."""
    headers = response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date: fall back to our own backoff
    return None


def retry_delay(cfg: OracleConfig, attempt: int, server_delay_s: float | None, rng: random.Random) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based).

    Full jitter, uniform in [0, min(backoff_max_s, backoff_s * 2**attempt)]: ranks that failed
    together do not retry together. A server's Retry-After wins, capped at backoff_max_s so
    that one header cannot stall training for an hour.
    """
    if server_delay_s is not None:
        return min(cfg.backoff_max_s, server_delay_s)
    return rng.uniform(0.0, min(cfg.backoff_max_s, cfg.backoff_s * 2 ** attempt))


class OpenAIOracle(Oracle):
    """Reasoner prompts answered by an OpenAI-compatible endpoint (see the module docstring)."""

    def __init__(self, cfg: OracleConfig, catalog: Catalog, cache_dir: Path) -> None:
        if not (cfg.base_url and cfg.model):
            raise ValueError("OpenAIOracle needs oracle.base_url and oracle.model")
        self.cfg = cfg
        self.catalog = catalog
        self.cache = ReplyCache(Path(cache_dir))
        self._stats = OracleStats()
        self._rng = random.Random()

    def stats(self) -> dict:
        return self._stats.as_dict()

    def choose(self, verbalizations: list[str], candidates: list[list[str]]) -> list[int | None]:
        replies = self._replies(verbalizations, candidates, ranking=False)
        return self._parsed(replies, [None if text is None else parse_answer(text, cands, self.catalog)
                                      for text, cands in zip(replies, candidates)])

    def rank(self, verbalizations: list[str], candidates: list[list[str]]) -> list[list[int] | None]:
        replies = self._replies(verbalizations, candidates, ranking=True)
        return self._parsed(replies, [None if text is None else parse_ranking(text, len(cands))
                                      for text, cands in zip(replies, candidates)])

    def _replies(self, verbalizations: list[str], candidates: list[list[str]], ranking: bool) -> list[str | None]:
        """Each prompt's reply text from the cache or the endpoint; None where the request failed."""
        check_batch(verbalizations, candidates)
        cfg = self.cfg
        conversations = [reasoner_messages(text, cands, self.catalog, with_metadata=True, ranking=ranking)
                         for text, cands in zip(verbalizations, candidates)]
        keys = [cache_key(cfg.model, messages, cfg.temperature, cfg.max_tokens) for messages in conversations]
        replies: dict[str, str | None] = dict(self.cache.get_many(sorted(set(keys))))
        missing: dict[str, list[dict]] = {}
        for key, messages in zip(keys, conversations):
            if key not in replies and key not in missing:
                missing[key] = messages
        self._stats.examples += len(keys)
        self._stats.cache_hits += len(keys) - len(missing)
        if missing:
            outcomes = _run(self._ask_all(missing))
            fresh = {key: outcome.text for key, outcome in outcomes.items() if outcome.text is not None}
            self.cache.put_many(fresh)
            replies.update({key: outcome.text for key, outcome in outcomes.items()})
            errors = [outcome.error for outcome in outcomes.values() if outcome.text is None]
            if errors:
                log.warning("oracle: %d of %d requests to %s failed (last: %s)",
                            len(errors), len(missing), cfg.base_url, errors[-1])
        return [replies[key] for key in keys]

    def _parsed(self, replies: list[str | None], answers: list) -> list:
        """Count failed requests and unparsable replies; return the parsed answers."""
        for text, answer in zip(replies, answers):
            self._stats.failures += text is None
            self._stats.invalid_answers += text is not None and answer is None
        return answers

    async def _ask_all(self, prompts: dict[str, list[dict]]) -> dict[str, _Outcome]:
        api_key = os.environ.get(self.cfg.api_key_env) or PLACEHOLDER_KEY  # absent key -> placeholder
        client = openai.AsyncOpenAI(base_url=self.cfg.base_url, api_key=api_key, max_retries=0,
                                    timeout=self.cfg.timeout_s)
        limit = asyncio.Semaphore(self.cfg.concurrency)
        try:
            keys = list(prompts)
            outcomes = await asyncio.gather(*(self._ask(client, limit, prompts[key]) for key in keys))
        finally:
            await client.close()
        return dict(zip(keys, outcomes))

    async def _ask(self, client, limit: asyncio.Semaphore, messages: list[dict]) -> _Outcome:
        """One prompt, with retries; never raises."""
        cfg = self.cfg
        for attempt in range(cfg.max_retries + 1):
            self._stats.requests += 1
            self._stats.retries += attempt > 0
            try:
                async with limit:
                    return await asyncio.wait_for(self._attempt(client, messages), cfg.timeout_s)
            except _Retry as retry:
                reason, server_delay = retry.reason, retry.delay_s
            except (asyncio.TimeoutError, openai.APITimeoutError):
                reason, server_delay = "timeout", None
            except openai.APIConnectionError as error:
                reason, server_delay = f"connection error ({type(error).__name__})", None
            except openai.APIStatusError as error:
                return _Outcome(None, f"HTTP {error.status_code}, not retried")
            except Exception as error:  # the client could not read the body: garbage
                return _Outcome(None, f"unreadable reply ({type(error).__name__})")
            if attempt == cfg.max_retries:
                return _Outcome(None, f"{reason} after {attempt + 1} attempt(s)")
            await asyncio.sleep(retry_delay(cfg, attempt, server_delay, self._rng))
        raise AssertionError("unreachable: the loop returns on its last attempt")

    async def _attempt(self, client, messages: list[dict]) -> _Outcome:
        """One request: the reply, or _Retry / a client exception for the caller to sort."""
        cfg = self.cfg
        try:
            response = await client.chat.completions.create(
                model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        except openai.APIStatusError as error:
            status = error.status_code
            if status == 429:
                raise _Retry("HTTP 429", _retry_after(error.response)) from None
            if status >= 500 or status == 408:
                raise _Retry(f"HTTP {status}") from None
            raise
        choices = getattr(response, "choices", None)
        if not choices:
            return _Outcome(None, "reply without choices")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            return _Outcome(None, "reply without text")
        usage = getattr(response, "usage", None)
        if usage is not None:
            self._stats.add_usage(_tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens"), cfg)
        return _Outcome(text)


def _tokens(usage, name: str) -> int:
    """A usage count; servers may leave a field out or null, which counts as 0 tokens (not an error)."""
    value = getattr(usage, name, None)
    return int(value) if isinstance(value, (int, float)) else 0


def _run(coroutine):
    """Run a coroutine to completion from synchronous code, whether or not a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # A running loop (a notebook, an async caller) cannot be re-entered: use a private one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
