"""A count of everything a data step skipped or repaired, with the first place it happened.

Nothing is dropped silently: every reader and builder records each skip here, and the
tools print `report.lines()` in their summary and save `report.as_dict()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Skip:
    count: int
    first: str
    """Where the first one was, e.g. "ratings.csv line 7 (item '42')"."""


@dataclass
class DataReport:
    skips: dict[str, Skip] = field(default_factory=dict)
    """reason -> how many rows and where the first one was."""

    def skip(self, reason: str, count: int, first: str) -> None:
        """Record `count` rows skipped for `reason` (no-op for count 0)."""
        if count <= 0:
            return
        if reason in self.skips:
            self.skips[reason].count += count
        else:
            self.skips[reason] = Skip(count, first)

    @classmethod
    def from_dict(cls, skips: dict) -> DataReport:
        """The report `as_dict` wrote."""
        return cls({reason: Skip(s["count"], s["first"]) for reason, s in skips.items()})

    def absorb(self, other: DataReport) -> None:
        """Add another report's skips (of another shard of the log): counts add, the first place
        already known stays."""
        for reason, s in other.skips.items():
            self.skip(reason, s.count, s.first)

    def count(self, reason: str) -> int:
        return self.skips[reason].count if reason in self.skips else 0

    def lines(self) -> list[str]:
        return [f"skipped {s.count:,} {reason} (first: {s.first})" for reason, s in self.skips.items()]

    def as_dict(self) -> dict:
        return {reason: {"count": s.count, "first": s.first} for reason, s in self.skips.items()}
