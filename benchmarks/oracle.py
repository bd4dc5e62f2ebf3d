"""Oracle client throughput against tools/serve_oracle.py on loopback, and what the client adds.

    python tools/bench.py oracle [--requests 256] [--latency-ms 20] [--concurrency 1 8 32]

A lexical-backend server answers each request after --latency-ms (standing in for a model
server's time per request). At each concurrency, the same --requests distinct reasoner prompts
(synthetic test histories; no cache hits: a fresh cache folder per run) are sent

    ours  through OpenAIOracle.choose (asyncio + the openai SDK, retries, on-disk cache, parsing)
    raw   through a thread pool of plain http.client connections, one request per thread: the peer

and the requests/s of each is printed, with the share of wall time our client adds on top of
the raw peer: (t_ours - t_raw) / t_ours.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lit_verbrec.config.paths import TOOLS


def start_server(latency_ms: float) -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen([sys.executable, TOOLS / "serve_oracle.py", "--backend", "lexical", "--port", "0",
                               "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()       # "serving on http://127.0.0.1:<port>"
    if not line.startswith("serving on"):
        server.kill()
        raise SystemExit(f"serve_oracle.py did not start: {line!r}")
    return server, int(line.strip().rsplit(":", 1)[1])


def workload(n: int):
    """(texts, candidates, catalog) of n distinct synthetic examples."""
    from lit_verbrec.config.compose import compose
    from lit_verbrec.data.catalog import Catalog
    from lit_verbrec.data.prepared_folder import read_prepared
    from lit_verbrec.data.report import DataReport
    from lit_verbrec.data.sources import prepare
    from lit_verbrec.text.template import verbalize_template

    folder = Path(tempfile.mkdtemp(prefix="bench-oracle-")) / "data"
    cfg = compose([f"data.synthetic.users={max(50, n)}"])
    prepare(cfg.data, folder, DataReport())
    examples, items = read_prepared(folder, "test")
    catalog = Catalog.from_table(items)
    rows = examples.slice(0, n).to_pylist()
    return [verbalize_template(e["history"], catalog) for e in rows], [e["candidates"] for e in rows], catalog


def run_ours(port: int, concurrency: int, texts, candidates, catalog) -> float:
    from lit_verbrec.config.compose import compose
    from lit_verbrec.oracle.openai_client import OpenAIOracle

    cfg = compose(["oracle=openai", f"oracle.base_url=http://127.0.0.1:{port}/v1", "oracle.model=lexical",
                   f"oracle.concurrency={concurrency}"]).oracle
    with tempfile.TemporaryDirectory() as cache:
        oracle = OpenAIOracle(cfg, catalog, Path(cache))
        start = time.perf_counter()
        chosen = oracle.choose(texts, candidates)
        elapsed = time.perf_counter() - start
    if oracle.stats()["requests"] != len(texts) or any(c is None for c in chosen):
        raise SystemExit(f"the client did not get one valid answer per request: {oracle.stats()}")
    return elapsed


def run_raw(port: int, concurrency: int, texts, candidates, catalog) -> float:
    from lit_verbrec.text.prompts import reasoner_messages

    bodies = [json.dumps({"model": "lexical", "messages": reasoner_messages(t, c, catalog), "temperature": 0.0,
                          "max_tokens": 512}) for t, c in zip(texts, candidates)]

    def post(body: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        return status

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        statuses = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - start
    if set(statuses) != {200}:
        raise SystemExit(f"raw peer got statuses {sorted(set(statuses))}")
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)
    texts, candidates, catalog = workload(args.requests)
    server, port = start_server(args.latency_ms)
    try:
        print(f"{args.requests} requests per run, server latency {args.latency_ms:g} ms, loopback port {port}")
        print("| concurrency | ours req/s | raw req/s | client share of wall time |\n|---|---|---|---|")
        for c in args.concurrency:
            ours = run_ours(port, c, texts, candidates, catalog)
            raw = run_raw(port, c, texts, candidates, catalog)
            print(f"| {c} | {args.requests / ours:.1f} | {args.requests / raw:.1f} | {(ours - raw) / ours:+.1%} |",
                  flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
