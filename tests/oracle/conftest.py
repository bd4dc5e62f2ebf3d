"""The oracle tests' fixture: tools/serve_oracle.py as a real subprocess on 127.0.0.1 (the shared
data helpers are in oracle_data.py)."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import ROOT, SERVER, Server  # noqa: E402


@pytest.fixture
def start_server(tmp_path_factory):
    """start_server(*flags) -> Server; every server started is killed (by its pid) at teardown."""
    started: list[Server] = []

    def start(*flags: str) -> Server:
        logs = tmp_path_factory.mktemp("server")
        stderr_path = logs / "stderr.txt"
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen([sys.executable, str(SERVER), "--port", "0", *flags],
                                       stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
        ready, _, _ = select.select([process.stdout], [], [], 120)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("serving on http://127.0.0.1:"):
            process.kill()
            raise RuntimeError(f"server did not start: {line!r} {stderr_path.read_text()}")
        server = Server(process, line.split()[-1], stderr_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.kill()
        server.process.wait(timeout=10)
        server.process.stdout.close()
