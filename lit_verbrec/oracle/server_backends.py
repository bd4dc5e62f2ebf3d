"""The answer backends of tools/serve_oracle.py: what a request's reply text is, apart from HTTP.

    lexical  the lexical scorer over the candidates the reasoner prompt lists (a pick, or a
             ranking for a ranking prompt)
    echo     the history text itself (a reasoner that obeys the verbalization: injection tests)
    model    a local transformers model folder, one generation at a time

Each is called as backend(messages, max_tokens, temperature) -> Reply and raises RequestError
(a 4xx for the client) for a request it cannot answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from lit_verbrec.data.catalog import Catalog, ItemInfo
from lit_verbrec.oracle.lexical import lexical_ranking
from lit_verbrec.text.prompts import parse_reasoner_prompt

BACKENDS = ("lexical", "echo", "model")


class RequestError(Exception):
    """A request the server refuses (4xx): HTTP status and message for the error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    """A backend's answer and its token counts (for the usage field)."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def _user_prompt(messages: list[dict]) -> dict:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        raise RequestError(400, "no user message with text content")
    try:
        return parse_reasoner_prompt(users[-1]["content"])
    except ValueError as error:
        raise RequestError(400, f"not a reasoner prompt: {error}") from None


def _estimate(messages: list[dict], text: str) -> Reply:
    """Whitespace token counts: enough for the client's usage accounting."""
    prompt = sum(len(str(m.get("content")).split()) for m in messages if isinstance(m, dict))
    return Reply(text, prompt, len(text.split()))


def lexical_backend(messages: list[dict], max_tokens: int, temperature: float) -> Reply:
    parsed = _user_prompt(messages)
    infos = {str(c["number"]): ItemInfo(str(c["number"]), c["title"], c["year"], tuple(c["genres"]),
                                        tuple(c["tags"]), "movie", None, None)
             for c in parsed["candidates"]}
    if not infos:
        raise RequestError(400, "the prompt lists no candidates")
    order = lexical_ranking(parsed["history"], list(infos), Catalog(infos))   # its first is lexical_choice
    text = ("Ranking: " + ", ".join(str(i + 1) for i in order)) if parsed["ranking"] else f"Answer: {order[0] + 1}"
    return _estimate(messages, text)


def echo_backend(messages: list[dict], max_tokens: int, temperature: float) -> Reply:
    return _estimate(messages, _user_prompt(messages)["history"])


class ModelBackend:
    """A transformers causal LM from a local folder; one generate at a time (the model is shared)."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict], max_tokens: int, temperature: float) -> Reply:
        from lit_verbrec.oracle.model import generate_replies

        with self._lock:
            reply = generate_replies(self.model, self.tokenizer, [messages], max_tokens, temperature)[0]
        return Reply(reply.text, reply.prompt_tokens, reply.completion_tokens)
