"""A reasoner's reply -> the 0-based index of the candidate it chose, or None (invalid).

The prompt asks for `Answer: <number>`, but models (especially untrained ones and the
oracle) also write "**Answer:** 7", "the answer is 3", a bare "3." or the title. The parser
is tolerant where the choice is unambiguous and strict where it is not: an invalid reply
counts as wrong (and is counted: ValidRatio), and under RL any leniency that rewards
hedging, such as listing several candidates, would be learned. Rules, first that decides wins:

0. Reasoning is not an answer: `<think>...</think>` blocks are dropped; an unclosed
   `<think>` drops everything after it (the model never finished thinking); a `</think>`
   without an opening tag (templates that put `<think>` in the prompt) drops everything
   before it.
1. Explicit answers: "Answer: N", "answer is N", "Answer: **N**", "**Answer:** N"
   (case-insensitive; also "Answer: Candidate N" / "#N"). The LAST one with 1 <= N <= len
   wins (a model may correct itself). If there are explicit answers but none in range, the
   reply is None: the model committed to an invalid choice, and guessing from the rest of
   its text would turn a wrong answer into a lucky one.
2. Exactly one distinct standalone number in 1..N ("3", "3.", "Candidate 3", "(3)");
   numbers inside decimals, times, words, after "ID:" or inside a candidate's title
   ("Toy Story 3") do not count; numbers out of range are ignored.
3. Exactly one candidate's display title appears as a whole phrase (case-insensitive). A
   title found only inside a longer matched title ("Alien" in "Alien: Covenant") does not
   count; two distinct titles -> None (ambiguous).
4. Exactly one candidate id given as "ID: <id>"; else exactly one candidate id appearing
   as a bare token. Several -> None.
5. Otherwise None.

Only an index into `candidates` is ever returned.

`parse_ranking` reads the reply to a ranking prompt (reward.kind=rank): the LAST line
"Ranking: 3, 1, 7, ..." gives the order, most likely first. A number out of 1..N or named twice
makes the reply invalid (None); a list that stops early is valid, its unnamed candidates tie after it.
"""

from __future__ import annotations

import re

from lit_verbrec.data.catalog import Catalog

__all__ = ["parse_answer", "parse_ranking", "strip_thinking"]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)

# "answer" [is] [:|=] with optional markdown emphasis around either part, then an optional
# "candidate" / "#" / "no." before the number. The number must not continue as a decimal.
_EMPH = r"(?:\*\*|\*|__|_)?"
_ANSWER = re.compile(
    r"\banswer" + _EMPH + r"\s*(?:is\b|[:=：])\s*" + _EMPH + r"\s*[:=]?\s*" + _EMPH
    + r"\s*(?:candidate\s*|option\s*|#|no\.\s*)?" + _EMPH + r"\s*(\d+)(?![\d])(?![.,]\d)",
    re.IGNORECASE,
)
# A standalone number: not glued to letters/digits, not part of a decimal, time or list
# like "80.08", "8:45", "1,2", and not an id ("ID: 3" names an item, not candidate 3).
_NUMBER = re.compile(r"(?<![\w.,:])(\d+)(?!\w)(?![.,:]\d)")
_ID_PREFIX = re.compile(r"\bID:\s*\S+", re.IGNORECASE)
_ID_MENTION = re.compile(r"\bID:\s*([^\s,;]+)", re.IGNORECASE)

_RANKING = re.compile(r"\branking" + _EMPH + r"\s*[:=：]\s*" + _EMPH + r"([^\n]*)", re.IGNORECASE)

# "This rule found nothing, ask the next one" as opposed to None, "this rule decided: invalid".
_UNDECIDED = object()


def strip_thinking(text: str) -> str:
    """The reply without its reasoning (rule 0)."""
    text = _THINK_BLOCK.sub(" ", text)
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    return text


def _explicit_answer(text: str, n: int):
    """Rule 1: the index, None if explicit answers exist but none is in range, else _UNDECIDED."""
    numbers = [int(m.group(1)) for m in _ANSWER.finditer(text)]
    if not numbers:
        return _UNDECIDED
    valid = [k for k in numbers if 1 <= k <= n]
    return valid[-1] - 1 if valid else None


def _titles_with_digits_removed(text: str, candidates: list[str], catalog: Catalog) -> str:
    """The text without candidate titles that contain digits ("Toy Story 3", "1917").

    Rule 2 reads numbers; without this "Toy Story 3" would be read as candidate 3.
    """
    for item in candidates:
        title = catalog[item].display_title
        if any(ch.isdigit() for ch in title):
            text = re.sub(r"(?<!\w)" + re.escape(title) + r"(?!\w)", " ", text, flags=re.IGNORECASE)
    return text


def _single_number(text: str, candidates: list[str], catalog: Catalog) -> int | None:
    """Rule 2."""
    n = len(candidates)
    text = _ID_PREFIX.sub(" ", _titles_with_digits_removed(text, candidates, catalog))
    found = {int(m.group(1)) for m in _NUMBER.finditer(text)}
    in_range = {k for k in found if 1 <= k <= n}
    return in_range.pop() - 1 if len(in_range) == 1 else None


def _single_title(text: str, candidates: list[str], catalog: Catalog):
    """Rule 3: the index, None if ambiguous, _UNDECIDED if no title appears."""
    spans: dict[int, list[tuple[int, int]]] = {}
    titles: dict[str, list[int]] = {}
    for index, item in enumerate(candidates):
        titles.setdefault(catalog[item].display_title.casefold(), []).append(index)
    lowered = text.casefold()
    for title, indices in titles.items():
        if not title.strip():
            continue
        pattern = re.compile(r"(?<!\w)" + re.escape(title) + r"(?!\w)")
        found = [(m.start(), m.end()) for m in pattern.finditer(lowered)]
        if found:
            for index in indices:
                spans[index] = found
    if not spans:
        return _UNDECIDED
    all_spans = [(s, e, i) for i, found in spans.items() for s, e in found]

    def inside_longer(start: int, end: int, index: int) -> bool:
        return any(s <= start and end <= e and (e - s) > (end - start) and i != index for s, e, i in all_spans)

    chosen = {i for i, found in spans.items() if not all(inside_longer(s, e, i) for s, e in found)}
    # Two candidates sharing one display title are indistinguishable by title: ambiguous too.
    return chosen.pop() if len(chosen) == 1 else None


def _single_id(text: str, candidates: list[str]) -> int | None:
    """Rule 4."""
    index_of: dict[str, list[int]] = {}
    for index, item in enumerate(candidates):
        index_of.setdefault(item.casefold(), []).append(index)
    mentioned = {m.group(1).rstrip(".").casefold() for m in _ID_MENTION.finditer(text)}
    hits = {i for item in mentioned if item in index_of for i in index_of[item]}
    if not hits:
        lowered = text.casefold()
        for item, indices in index_of.items():
            if re.search(r"(?<![\w-])" + re.escape(item) + r"(?![\w-])", lowered):
                hits.update(indices)
    return hits.pop() if len(hits) == 1 else None


def parse_answer(text: str, candidates: list[str], catalog: Catalog) -> int | None:
    """0-based index of the chosen candidate, or None for an invalid reply (rules above)."""
    n = len(candidates)
    if n == 0:
        return None
    text = strip_thinking(text)
    explicit = _explicit_answer(text, n)
    if explicit is not _UNDECIDED:
        return explicit
    number = _single_number(text, candidates, catalog)
    if number is not None:
        return number
    title = _single_title(text, candidates, catalog)
    if title is not _UNDECIDED:
        return title
    return _single_id(text, candidates)


def parse_ranking(text: str, n: int) -> list[int] | None:
    """0-based candidate indices, most likely first, from the last `Ranking:` line; None if there is none
    or it names a number outside 1..n or one number twice."""
    lines = _RANKING.findall(strip_thinking(text))
    if not lines:
        return None
    numbers = [int(x) for x in re.findall(r"\d+", lines[-1])]
    if not numbers or any(not 1 <= x <= n for x in numbers) or len(set(numbers)) < len(numbers):
        return None
    return [x - 1 for x in numbers]
