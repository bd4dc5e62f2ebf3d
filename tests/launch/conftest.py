"""The local Slurm cluster (slurm/start.sh) for the launcher tests.

The tests need a real cluster and start one if none runs (installing the Debian packages when
root). If it cannot start they FAIL, naming why: a skipped launcher test would read as a
pass. LIT_VERBREC_SKIP_SLURM=1 skips them instead, visibly, on a machine that cannot run
Slurm. A cluster this fixture started is stopped at the end (only its own daemons).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SLURM = Path(__file__).resolve().parents[2] / "slurm"
sys.path.insert(0, str(Path(__file__).resolve().parent))   # slurm_jobs.py, the tests' helpers

from slurm_jobs import queue  # noqa: E402

from lit_verbrec.launch.jobs import read_jobs  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running local cluster: the one already running (a developer's), else a new
    one in a fresh state folder, so that no job saved by an earlier, killed cluster is recovered
    and holds the node (CI once waited 10 minutes behind such a job)."""
    if os.environ.get("LIT_VERBREC_SKIP_SLURM") == "1":
        pytest.skip("LIT_VERBREC_SKIP_SLURM=1: launcher tests against the local Slurm cluster not run")
    was_running = subprocess.run(["bash", SLURM / "status.sh"], capture_output=True).returncode == 0
    env = dict(os.environ)
    if not was_running:   # /tmp, not pytest's tmp_path: MariaDB runs as user mysql and needs a path it can enter
        env["LIT_VERBREC_SLURM_DIR"] = tempfile.mkdtemp(prefix="lit_verbrec-slurm-test-", dir="/tmp")
        os.chmod(env["LIT_VERBREC_SLURM_DIR"], 0o755)
    start = subprocess.run(["bash", SLURM / "start.sh"], capture_output=True, text=True, timeout=300, env=env)
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
        subprocess.run(["bash", SLURM / "stop.sh"], check=True, timeout=120, env=env)
        shutil.rmtree(env["LIT_VERBREC_SLURM_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True)
def cancel_own_jobs(tmp_path):
    """Cancel whatever the test submitted and left behind: a hung job would hold the node's CPUs
    and keep every later job PENDING (Resources), in this run and after a cluster restart."""
    yield
    if not (tmp_path / "default" / "slurm" / "jobs.json").is_file():
        return
    ids = [j["job_id"] for j in read_jobs(tmp_path / "default")]
    subprocess.run(["scancel", *ids], check=False, timeout=60)
    end = time.monotonic() + 60                      # gone from the node before the next test asks for it
    while queue(*ids) and time.monotonic() < end:
        time.sleep(0.5)
