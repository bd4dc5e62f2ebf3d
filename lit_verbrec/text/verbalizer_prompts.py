"""The verbalizer's prompts (paper section 4.1): what the Verbalizer LLM is asked to do.

All three see the user's history in the template format (the paper's raw input) and say
nothing about the candidates: the verbalization must stand on its own, as it would when
cached or distilled for production.

    action     decide, per interaction, keep (k) and enrich (m); the answer format is fixed
               and decoding constrained (lit_verbrec/text/actions.py)
    rewrite    rewrite the history freely into text for a recommender (the paper's main variant)
    zero_shot  the same LLM, untrained, asked to rewrite with explicit heuristics (drop
               previews and accidental plays, summarise binges, state tastes): a baseline
"""

from __future__ import annotations

from lit_verbrec.text.prompts import sanitize

VERBALIZER_SYSTEM = (
    "You prepare a streaming service user's viewing history for a recommender that will "
    "predict which title the user watches next."
)

ACTION_INSTRUCTION = (
    "For each interaction below, output one line `time, ID, k, m,` where k = 1 keeps the "
    "interaction and k = 0 drops it, and m = 1 adds the title's year, genres and plot to a kept "
    "interaction. Keep what reveals the user's taste; drop noise such as previews and accidental plays."
)

ACTION_FULL_INSTRUCTION = (
    "The user's interactions follow, one per line, oldest first. After each line write `k, m,` where "
    "k = 1 keeps the interaction and k = 0 drops it, and m = 1 adds the title's year, genres and plot "
    "to a kept interaction. Keep what reveals the user's taste; drop noise such as previews and "
    "accidental plays."
)
"""With verbalizer.action_line=full the lines themselves are the fixed part of the answer, so the
prompt does not repeat the history (half the tokens on a CPU)."""

REWRITE_INSTRUCTION = (
    "Rewrite the interaction history below as concise natural language for the recommender. "
    "Keep what reveals the user's tastes, drop noise, and use the titles' metadata where it helps."
)

ZERO_SHOT_INSTRUCTION = (
    "Rewrite the interaction history below as concise natural language for the recommender. "
    "Follow these rules: ignore autoplay previews, trailers and plays shorter than a few minutes; "
    "summarise consecutive episodes of a series as one binge; mention thumbs up and down and "
    "titles added to the list; end with one sentence on the genres the user prefers."
)

INSTRUCTIONS = {"action": ACTION_INSTRUCTION, "action_full": ACTION_FULL_INSTRUCTION,
                "rewrite": REWRITE_INSTRUCTION, "zero_shot": ZERO_SHOT_INSTRUCTION}


def verbalizer_messages(kind: str, template_history: str | None) -> list[dict[str, str]]:
    """Chat messages asking for a verbalization of `template_history` (the template text);
    `action_full` takes None: its answer carries the lines."""
    if kind not in INSTRUCTIONS:
        raise ValueError(f"unknown verbalizer kind {kind!r}; expected one of {', '.join(INSTRUCTIONS)}")
    if template_history is None:
        return [{"role": "system", "content": VERBALIZER_SYSTEM}, {"role": "user", "content": INSTRUCTIONS[kind]}]
    user = f"{INSTRUCTIONS[kind]}\n\nInteraction history (oldest first):\n{sanitize(template_history)}"
    return [{"role": "system", "content": VERBALIZER_SYSTEM}, {"role": "user", "content": user}]
