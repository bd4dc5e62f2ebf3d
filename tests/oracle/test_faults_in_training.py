"""Faults met during training: a flaky oracle under 2-process DDP, an oracle that goes away and
comes back, and the API key kept out of everything a run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import ROOT, SERVER, make_catalog, make_examples  # noqa: E402

from lit_verbrec.config.compose import compose
from lit_verbrec.oracle.openai_client import OpenAIOracle

SECRET = "sk-lit-verbrec-test-0123456789abcdef"
TINY = ["size=tiny", "data.synthetic.users=40", "data.synthetic.interactions_per_user=30", "data.synthetic.movies=200",
        "data.synthetic.series=20", "data.examples.history_len=8", "verbalizer.grpo.prompts_per_step=2",
        "verbalizer.grpo.group_size=4", "verbalizer.grpo.max_steps=3", "train.val_examples=4",
        "train.val_every_n_steps=2", "train.eval_examples=16", "eval.bootstrap=100"]


def test_ddp_with_one_oracle_request_in_five_failing_trains_identical_replicas(start_server, tmp_path):
    server = start_server("--error-rate", "0.2", "--seed", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIT_VERBREC_TEST_KEY": SECRET}
    result = subprocess.run(
        [sys.executable, ROOT / "tools" / "train.py", "stage=verbalizer", f"run.root={tmp_path}", *TINY,
         "train.devices=2", "oracle=openai", f"oracle.base_url={server.base_url}", "oracle.model=lexical",
         "oracle.max_retries=0", "oracle.api_key_env=LIT_VERBREC_TEST_KEY"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "default"
    replicas = json.loads((run / "verbalizer" / "replicas.json").read_text())
    assert len(replicas["ranks"]) == 2 and replicas["identical"]
    oracle = json.loads((run / "results.json").read_text())[0]["train"]["oracle"]
    assert oracle["failures"] > 0 and oracle["examples"] > oracle["failures"]   # failed requests scored 0, counted
    assert "requests to" in result.stderr and "failed" in result.stderr           # ... and logged
    # The key went to the server with every request, and nowhere into the run folder or the output.
    leaked = [p for p in run.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == [] and SECRET not in result.stdout + result.stderr


def test_oracle_that_dies_and_comes_back_mid_run(start_server, tmp_path):
    server = start_server("--latency-ms", "20")
    port = server.url.rsplit(":", 1)[1]
    catalog = make_catalog()
    batch = make_examples(catalog, 40)
    cfg = compose(["oracle=openai", f"oracle.base_url={server.base_url}", "oracle.model=lexical", "oracle.concurrency=4",
                   # a retry budget (up to ~100 s) far above the restart's time on a loaded machine: the
                   # outcome must not depend on how fast the server comes back, only on the client retrying
                   "oracle.max_retries=100", "oracle.backoff_s=0.2", "oracle.backoff_max_s=1.0", "oracle.timeout_s=10"]).oracle
    oracle = OpenAIOracle(cfg, catalog, tmp_path)
    restarted: list[subprocess.Popen] = []

    def outage():
        time.sleep(0.15)                 # some requests are answered, then the server is gone ...
        server.process.kill()
        server.process.wait()
        time.sleep(1.0)                  # ... for a second, then back on the same port
        restarted.append(subprocess.Popen([sys.executable, str(SERVER), "--port", port, "--latency-ms", "20"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        chosen = oracle.choose(batch["verbalizations"], batch["candidates"])
    finally:
        thread.join()
        for process in restarted:
            process.kill()
            process.wait(timeout=10)
    stats = oracle.stats()
    assert all(c is not None for c in chosen) and stats["failures"] == 0
    assert stats["retries"] > 0 and stats["requests"] == stats["examples"] + stats["retries"]
