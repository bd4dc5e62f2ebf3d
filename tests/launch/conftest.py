"""The local Slurm cluster (slurm/start.sh) for the launcher tests.

The tests need a real cluster and start one if none runs (installing the Debian packages when
root). If it cannot start they FAIL, naming why: a skipped launcher test would read as a
pass. LIT_VERBREC_SKIP_SLURM=1 skips them instead, visibly, on a machine that cannot run
Slurm. A cluster this fixture started is stopped at the end (only its own daemons).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SLURM = Path(__file__).resolve().parents[2] / "slurm"


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.environ.get("LIT_VERBREC_SKIP_SLURM") == "1":
        pytest.skip("LIT_VERBREC_SKIP_SLURM=1: launcher tests against the local Slurm cluster not run")
    was_running = subprocess.run(["bash", SLURM / "status.sh"], capture_output=True).returncode == 0
    start = subprocess.run(["bash", SLURM / "start.sh"], capture_output=True, text=True, timeout=300)
    if start.returncode != 0:
        pytest.fail(f"the local Slurm cluster did not start (slurm/start.sh exit {start.returncode}):\n"
                    f"{start.stdout}{start.stderr}\n(LIT_VERBREC_SKIP_SLURM=1 skips these tests)", pytrace=False)
    conf = start.stdout.strip().splitlines()[-1].removeprefix("export SLURM_CONF=")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = previous
    if not was_running:
        subprocess.run(["bash", SLURM / "stop.sh"], check=True, timeout=120)
