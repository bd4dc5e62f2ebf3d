"""Test-session settings shared by every folder.

The suite runs on several pytest-xdist workers (`make test`: `-n 2 --dist loadgroup`). Tests that
share one expensive session resource run on one worker, so that the resource is built once:

    tests/launch/          the local Slurm cluster (one per machine: slurm/start.sh)
    tests/after_training/  the two finished tiny runs (conftest.py there; ~1 min to train)
"""

from __future__ import annotations

from pathlib import Path

import pytest

ONE_WORKER_FOLDERS = ("launch", "after_training")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = Path(item.path).resolve().relative_to(tests).parts[0]
        if folder in ONE_WORKER_FOLDERS:
            item.add_marker(pytest.mark.xdist_group(folder))
