"""No project file speaks of how, when or by whom it was built: a numbered or "this" working
sitting (HISTORY below). The synthetic log's *viewing* sessions are data, not history:
`viewing session(s)` is allowed. This file passes its own check: its planted lines are built from a
template, so it needs no exemption.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"\bsessions?\s+\d+\b|\b(?:this|that|earlier|previous|next|last|a killed|an earlier)\s+session\b"
                     r"|\bsession'?s\s+(?:work|state|note|run)\b", re.IGNORECASE)
ALLOWED = re.compile(r"viewing\s+sessions?", re.IGNORECASE)


def history_lines(files: list[Path]) -> list[str]:
    """`path:line: text` for every line of `files` that speaks of the project's making."""
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if HISTORY.search(ALLOWED.sub("", line)):
                found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{number}: {line.strip()}")
    return found


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    return [ROOT / name for name in names]


def test_no_project_file_speaks_of_its_making():
    assert history_lines(tracked_files()) == []


def test_the_check_catches_history_and_spares_viewing_sessions(tmp_path):
    lines = [line.format(s="session") for line in (
        "Measured in {s} 3.", "A user's viewing {s} 4 ends.", "This {s} added it.",
        "Recovered from a killed {s}'s state.", "viewing {s}s per user: 3")]
    planted = tmp_path / "notes.md"
    planted.write_text("\n".join(lines) + "\n")
    assert [line.split(": ", 1)[1] for line in history_lines([planted])] == [lines[0], lines[2], lines[3]]
