"""The action verbalizer's output (paper section 4.1, eq. 2) and its deterministic execution.

For each interaction h_t the verbalizer emits one line `time, ID, k_t, m_t,`:

    20250608 2 PM, 123456, 1, 0,
    20250608 9 PM, 654321, 0, 0,

k_t = 1 keeps the interaction, m_t = 1 enriches a kept one with the item's metadata (year,
genres, plot). Everything but the decision slots is fixed by the history, so decoding is
constrained: the text between slots is forced and each slot may only be `0` or `1`, which
makes every sample a valid action list. The completion is therefore

    segments[0] d_0 segments[1] d_1 ... d_{2L-1} segments[2L]

with L lines, 2L decision slots and 2L + 1 fixed segments (`action_segments`). Only the
decision tokens carry the loss. Execution (`execute_actions`) turns decisions into the text
the reasoner reads: kept lines in the template format, enriched ones with metadata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lit_verbrec.data.catalog import Catalog
from lit_verbrec.text.template import HOURS_12, METADATA_FIELDS, template_line

DECISIONS = ("0", "1")
_LINE = re.compile(r"^(?P<prefix>.*), (?P<k>[01]), (?P<m>[01]),\s*$")


@dataclass(frozen=True)
class ActionPlan:
    keep: tuple[int, ...]     # [L] 1 = keep line t
    enrich: tuple[int, ...]   # [L] 1 = add metadata to line t (only matters when kept)

    def __post_init__(self) -> None:
        if len(self.keep) != len(self.enrich) or any(d not in (0, 1) for d in (*self.keep, *self.enrich)):
            raise ValueError(f"an action plan needs equal-length 0/1 decisions, got keep={self.keep} enrich={self.enrich}")

    @classmethod
    def from_slots(cls, slots: Sequence[int]) -> ActionPlan:
        """From the 2L decisions in generation order: k_0, m_0, k_1, m_1, ..."""
        return cls(tuple(slots[0::2]), tuple(slots[1::2]))


def line_prefix(entry: dict) -> str:
    """`time, ID` of one interaction: "20250608 2 PM, 123456"."""
    ts = entry["timestamp"]
    return f"{ts.year:04d}{ts.month:02d}{ts.day:02d} {HOURS_12[ts.hour]}, {entry['item']}"


def action_segments(history: list[dict], catalog: Catalog | None = None) -> list[str]:
    """The 2L + 1 fixed texts around the 2L decision slots of the history's action list.

    Without a catalog each line starts with the paper's `time, ID`; with one it starts with the
    whole template line (`verbalizer.action_line=full`), so a decision sits right after the
    interaction it is about instead of needing a look-up in the prompt.
    """
    if not history:
        return [""]

    def prefix(entry: dict) -> str:
        return template_line(entry, catalog[entry["item"]]) if catalog is not None else line_prefix(entry)

    segments = [prefix(history[0]) + ", "]
    for entry in history[1:]:
        segments += [", ", ",\n" + prefix(entry) + ", "]
    segments += [", ", ","]
    return segments


def render_actions(history: list[dict], plan: ActionPlan, catalog: Catalog | None = None) -> str:
    """The completion text for `plan` (what constrained decoding produces)."""
    segments = action_segments(history, catalog)
    slots = [str(d) for pair in zip(plan.keep, plan.enrich) for d in pair]
    return segments[0] + "".join(slot + segment for slot, segment in zip(slots, segments[1:]))


def parse_actions(text: str, n_lines: int) -> ActionPlan | None:
    """The plan in an action-list text with exactly `n_lines` lines, or None if malformed."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != n_lines:
        return None
    matches = [_LINE.match(line.strip()) for line in lines]
    if not all(matches):
        return None
    return ActionPlan(tuple(int(m["k"]) for m in matches), tuple(int(m["m"]) for m in matches))


def execute_actions(history: list[dict], plan: ActionPlan, catalog: Catalog, max_tags: int = 3) -> str:
    """Kept interactions in the template format; enriched ones with year, genres and plot."""
    if len(plan.keep) != len(history):
        raise ValueError(f"plan has {len(plan.keep)} decisions for {len(history)} interactions")
    return "\n".join(
        template_line(entry, catalog[entry["item"]], METADATA_FIELDS if enrich else (), max_tags)
        for entry, keep, enrich in zip(history, plan.keep, plan.enrich) if keep
    )
