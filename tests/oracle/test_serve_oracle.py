"""tools/serve_oracle.py as a client sees it: the OpenAI wire format, the lexical backend's
choice, refusals, injected faults, and the model backend over a tiny saved model."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle_data import SERVER, make_catalog, make_examples  # noqa: E402

from lit_verbrec.oracle.lexical import lexical_choice
from lit_verbrec.text.prompts import reasoner_messages

CATALOG = make_catalog()
TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "qwen3-tokenizer"


def post(url: str, body: dict | bytes) -> dict:
    """{"status", "headers", "body"} of a POST to /v1/chat/completions (errors included)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {"status": response.status, "headers": dict(response.headers), "body": response.read()}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "headers": dict(error.headers), "body": error.read()}


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_help_lists_backends_and_faults():
    result = subprocess.run([sys.executable, str(SERVER), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for flag in ("--backend", "--model-path", "--error-rate", "--rate-limit-rate", "--latency-ms", "--seed", "--port"):
        assert flag in result.stdout
    bad = subprocess.run([sys.executable, str(SERVER), "--error-rate", "2"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--error-rate must be in [0, 1]" in bad.stderr


def test_lexical_backend_answers_like_the_lexical_oracle(start_server):
    server = start_server()
    assert server.url.startswith("http://127.0.0.1:")
    assert [m["id"] for m in get(server.base_url + "/models")["data"]] == ["lexical"]
    examples = make_examples(CATALOG, 15)
    for text, cands in zip(examples["verbalizations"], examples["candidates"]):
        reply = post(server.url, {"model": "lexical", "messages": reasoner_messages(text, cands, CATALOG)})
        assert reply["status"] == 200
        body = json.loads(reply["body"])
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant",
                                                  "content": f"Answer: {lexical_choice(text, cands, CATALOG) + 1}"}
        usage = body["usage"]
        assert usage["prompt_tokens"] > 20 and usage["completion_tokens"] == 2
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    stats = server.stats()
    assert stats["requests"] == stats["answered"] == 15 and stats["max_in_flight"] == 1


def test_refusals(start_server):
    server = start_server()
    messages = reasoner_messages("drama", make_examples(CATALOG, 1)["candidates"][0], CATALOG)
    assert post(server.url, {"model": "gpt-x", "messages": messages})["status"] == 404
    assert post(server.url, b"{not json")["status"] == 400
    assert post(server.url, {"model": "lexical", "messages": [{"role": "user", "content": "hello"}]})["status"] == 400
    assert post(server.url, {"model": "lexical"})["status"] == 400
    with pytest.raises(urllib.error.HTTPError):
        get(server.url + "/nowhere")
    assert server.stats()["refused"] == 4


def test_injected_faults(start_server):
    messages = reasoner_messages("drama", make_examples(CATALOG, 1)["candidates"][0], CATALOG)
    errors = start_server("--error-rate", "1")
    assert post(errors.url, {"model": "lexical", "messages": messages})["status"] == 500
    limited = start_server("--rate-limit-rate", "1")
    reply = post(limited.url, {"model": "lexical", "messages": messages})
    assert reply["status"] == 429 and reply["headers"]["Retry-After"] == "0"
    garbage = start_server("--garbage-rate", "1", "--seed", "5")
    bodies = {post(garbage.url, {"model": "lexical", "messages": messages})["body"] for _ in range(12)}
    assert len(bodies) >= 2  # several kinds of unusable 200s
    mixed = start_server("--error-rate", "0.5", "--seed", "1")
    statuses = [post(mixed.url, {"model": "lexical", "messages": messages})["status"] for _ in range(40)]
    assert 5 < statuses.count(500) < 35 and statuses.count(500) + statuses.count(200) == 40
    assert mixed.stats()["errors_injected"] == statuses.count(500)


def test_a_client_that_resets_its_connection_costs_one_line(start_server):
    server = start_server()
    host, port = server.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    with socket.create_connection((host, int(port))) as client:   # half a request, then a TCP reset
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert get(f"{server.base_url}/models")["data"]   # still serving
    for _ in range(50):                                # the handler thread notices the reset on its own time
        log = server.stderr_path.read_text()
        if "hung up" in log or "Traceback" in log:
            break
        time.sleep(0.1)
    assert "hung up" in log and "Traceback" not in log


def test_model_backend_serves_a_saved_tiny_model(start_server, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    if not TOKENIZER.is_dir():
        pytest.skip(f"no tokenizer at {TOKENIZER}")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER))
    config = transformers.Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                      intermediate_size=64)
    folder = tmp_path / "tiny-oracle"
    transformers.Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    server = start_server("--backend", "model", "--model-path", str(folder))
    messages = reasoner_messages("drama", make_examples(CATALOG, 1)["candidates"][0], CATALOG)
    reply = post(server.url, {"model": "tiny-oracle", "messages": messages, "max_tokens": 4, "temperature": 0})
    assert reply["status"] == 200
    body = json.loads(reply["body"])
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert 1 <= body["usage"]["completion_tokens"] <= 4 and body["usage"]["prompt_tokens"] > 50
