"""A small OpenAI-compatible chat server for reasoner prompts, on 127.0.0.1 only.

    python tools/serve_oracle.py --backend lexical --port 8000 [--error-rate 0.3 --latency-ms 20]
    python tools/serve_oracle.py --backend model --model-path runs/tiny/oracle --port 0

then oracle.kind=openai oracle.base_url=http://127.0.0.1:8000/v1 oracle.model=lexical.
Why: to debug the oracle client (lit_verbrec/oracle/openai_client.py) without vLLM or a
hosted API, and as the real HTTP server its tests talk to. Endpoints: POST
/v1/chat/completions, GET /v1/models, GET /stats (counts, and the most requests in flight
at once: tests check the client's concurrency limit with it). Backends:
  lexical  reads the reasoner prompt back (text.prompts.parse_reasoner_prompt) and answers
           "Answer: N" by the lexical scorer over each candidate's listed title, genres and
           plot words: the in-process lexical oracle's choice wherever the prompt shows all
           the metadata that oracle reads (tags within the prompt's cap, no episodes).
  echo     replies with the history text: a reasoner that obeys the verbalization (injection tests).
  model    a local transformers model folder (--model-path); greedy unless the request sets
           a temperature; one generation at a time.
Faults, drawn independently per request after the latency: --error-rate (HTTP 500),
--rate-limit-rate (HTTP 429, Retry-After: 0), --garbage-rate (HTTP 200 with truncated JSON,
no choices or null content). Token usage is a whitespace estimate except for `model`.
The backends are in lit_verbrec/oracle/server_backends.py; this file is the HTTP side, faults and stats.
The request's model field must be the served name (404 otherwise, as vLLM does).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lit_verbrec.oracle.server_backends import (
    BACKENDS,
    ModelBackend,
    RequestError,
    echo_backend,
    lexical_backend,
)

HOST = "127.0.0.1"


@dataclass
class ServerStats:
    """GET /stats."""

    requests: int = 0  # POST /v1/chat/completions received
    answered: int = 0
    errors_injected: int = 0
    rate_limited: int = 0
    garbage: int = 0
    refused: int = 0  # 4xx: bad request, unknown model
    backend_errors: int = 0  # the backend raised (a bug, logged with its traceback)
    in_flight: int = 0
    max_in_flight: int = 0


class OracleServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that hung up must not keep the process alive
    # The stdlib's listen backlog of 5 drops the SYNs of a burst of new connections, and the
    # client's TCP stack retries them only after a second.
    request_queue_size = 256

    def __init__(self, port: int, backend, args: argparse.Namespace) -> None:
        super().__init__((HOST, port), Handler)
        self.backend = backend
        self.args = args
        self.stats = ServerStats()
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)

    def handle_error(self, request, client_address) -> None:
        """A client that timed out and hung up is routine here (the fault tests do it): one line, no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            print(f"serve_oracle: client {client_address[0]}:{client_address[1]} hung up", file=sys.stderr)
            return
        super().handle_error(request, client_address)

    def draw(self) -> dict:
        """Which faults hit this request (independent draws, under the lock: one seeded stream)."""
        a = self.args
        with self.lock:
            return {"error": self.rng.random() < a.error_rate, "rate_limit": self.rng.random() < a.rate_limit_rate,
                    "garbage": self.rng.random() < a.garbage_rate, "kind": self.rng.randrange(3)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    server: OracleServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        if self.server.args.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to tell it

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/v1/models":
            models = [{"id": self.server.args.served_model_name, "object": "model", "owned_by": "lit_verbrec"}]
            self._send(200, json.dumps({"object": "list", "data": models}).encode())
        elif self.path == "/stats":
            with self.server.lock:
                self._send(200, json.dumps(asdict(self.server.stats)).encode())
        else:
            self._send(404, _error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        raw = self.rfile.read(int(self.headers["Content-Length"] or 0))
        if self.path != "/v1/chat/completions":
            self._send(404, _error_body(404, f"no route {self.path}"))
            return
        stats = self.server.stats
        with self.server.lock:
            stats.requests += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        response = Response(500, _error_body(500, "backend error"), {}, "backend_errors")
        try:  # a backend exception still gets its 500 (and its traceback on stderr)
            response = respond(self.server, raw)
        finally:
            # Counted as answered BEFORE the reply leaves: a client that got it may send its next
            # request at once, and must not find its previous one still "in flight".
            with self.server.lock:
                stats.in_flight -= 1
                setattr(stats, response.counter, getattr(stats, response.counter) + 1)
            self._send(response.status, response.body, response.headers)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict
    counter: str  # the ServerStats field this outcome counts in


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "error", "code": status}}).encode()


def respond(server: OracleServer, raw: bytes) -> Response:
    """The reply to one chat completion request: latency, then an injected fault or the backend's answer."""
    args = server.args
    time.sleep(args.latency_ms / 1000)
    faults = server.draw()
    if faults["error"]:
        return Response(500, _error_body(500, "injected server error"), {}, "errors_injected")
    if faults["rate_limit"]:
        return Response(429, _error_body(429, "injected rate limit"), {"Retry-After": "0"}, "rate_limited")
    if faults["garbage"]:
        truncated = b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind'
        no_choices = {**_completion(args.served_model_name, None, 0, 0), "choices": []}
        bodies = [truncated, json.dumps(no_choices).encode(),
                  json.dumps(_completion(args.served_model_name, None, 0, 0)).encode()]  # null content
        return Response(200, bodies[faults["kind"]], {}, "garbage")
    try:  # a refusal is a 4xx the client must not retry
        body = json.loads(raw)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise RequestError(400, "the body must be a JSON object with a messages list")
        if body.get("model") != args.served_model_name:
            raise RequestError(404, f"The model `{body.get('model')}` does not exist "
                                    f"(this server serves `{args.served_model_name}`)")
        max_tokens = body["max_tokens"] if body.get("max_tokens") is not None else args.max_tokens
        temperature = body["temperature"] if body.get("temperature") is not None else 0.0
        reply = server.backend(body["messages"], int(max_tokens), float(temperature))
    except json.JSONDecodeError:
        return Response(400, _error_body(400, "the body is not JSON"), {}, "refused")
    except RequestError as error:
        return Response(error.status, _error_body(error.status, str(error)), {}, "refused")
    completion = _completion(args.served_model_name, reply.text, reply.prompt_tokens, reply.completion_tokens)
    return Response(200, json.dumps(completion).encode(), {}, "answered")


def _completion(model: str, text: str | None, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{random.getrandbits(64):016x}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default="lexical")
    parser.add_argument("--model-path", type=Path, help="model backend: a local transformers model folder")
    parser.add_argument("--served-model-name", help="the model name requests must use "
                        "(default: the backend name, or the model folder's name)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-tokens", type=int, default=512, help="when a request sets none (model backend)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered HTTP 500")
    parser.add_argument("--rate-limit-rate", type=float, default=0.0, help="share answered 429 with Retry-After: 0")
    parser.add_argument("--garbage-rate", type=float, default=0.0, help="share answered 200 with an unusable body")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--verbose", action="store_true", help="log every request line to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("error_rate", "rate_limit_rate", "garbage_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1]")
    if args.latency_ms < 0 or args.max_tokens <= 0:
        parser.error("--latency-ms must be >= 0 and --max-tokens > 0")
    if args.backend == "model":
        if args.model_path is None or not args.model_path.is_dir():
            parser.error("--backend model needs --model-path, a local model folder")
        backend = ModelBackend(args.model_path)
        args.served_model_name = args.served_model_name or args.model_path.name
    else:
        backend = {"lexical": lexical_backend, "echo": echo_backend}[args.backend]
        args.served_model_name = args.served_model_name or args.backend
    server = OracleServer(args.port, backend, args)
    print(f"serving on http://{HOST}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is the normal way to stop it
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
