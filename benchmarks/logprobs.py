"""Peak memory of per-token log-probs (forward + backward w.r.t. hidden): chunked vs naive.

    python tools/bench.py logprobs [--batch 8] [--tokens 2048] [--hidden 128] [--chunk 1024]

ours : lit_verbrec.rl.logprobs.chunked_token_logprobs (chunk tokens at a time, fp32 logits).
naive: torch.log_softmax((h @ W.T).float() / T, -1).gather(...) on the full [B, T, V] logits.
Vocabulary: Qwen3's embedding rows (151,936; the tokenizer in ../shared/qwen3-tokenizer has
151,669 tokens, padded in the model). Hidden states and LM head in bf16, temperature 0.7.

Each variant runs in its own fresh subprocess; its peak is ru_maxrss minus the RSS right after
the inputs were built. The naive variant needs about batch*tokens*V*12 bytes; when that does
not fit in the available memory it runs at the largest batch that does (ours is then measured
at that batch too, for a like-for-like ratio, as well as at the requested one). Target: ours
<= 25% of naive.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from lit_verbrec.config.paths import SHARED_QWEN3

TOKENIZER = SHARED_QWEN3
NAIVE_BYTES_PER_LOGIT = 12   # measured 11.5 (bf16 logits, fp32 copy, /T, log_softmax, backward buffers)
TEMPERATURE = 0.7
SLICE = 64                   # tokens of row 0 compared between the variants


def vocab_rows() -> tuple[int, int]:
    """(embedding rows, tokenizer length) of the real Qwen3 vocabulary."""
    from transformers import AutoConfig, AutoTokenizer

    tokens = len(AutoTokenizer.from_pretrained(TOKENIZER))
    rows = AutoConfig.from_pretrained(TOKENIZER / "Qwen3-8B.config.json").vocab_size
    return rows, tokens


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(variant: str, batch: int, tokens: int, hidden_size: int, vocab: int, chunk: int) -> dict:
    """Runs in the child: build inputs, run forward + backward once, report the peak above setup."""
    import torch

    from lit_verbrec.rl.logprobs import chunked_token_logprobs

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(vocab, hidden_size, generator=g, dtype=torch.bfloat16)
    weight /= hidden_size ** 0.5                                   # logits ~ N(0, 1), like a trained head
    hidden = torch.empty(batch, tokens, hidden_size, dtype=torch.bfloat16)
    ids = torch.empty(batch, tokens, dtype=torch.long)
    for row in range(batch):                                       # row i is the same at any batch size
        g.manual_seed(1 + row)
        hidden[row] = torch.randn(tokens, hidden_size, generator=g, dtype=torch.bfloat16)
        ids[row] = torch.randint(0, vocab, (tokens,), generator=g)
    hidden.requires_grad_()
    setup = _rss_bytes()

    start = time.perf_counter()
    if variant == "ours":
        logprobs = chunked_token_logprobs(hidden, weight, ids, TEMPERATURE, chunk)["logprobs"]
    else:
        logprobs = torch.log_softmax((hidden @ weight.T).float() / TEMPERATURE, -1).gather(-1, ids[..., None])[..., 0]
    logprobs.sum().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - setup
    with torch.no_grad():   # exact fp32 reference on the slice
        exact = torch.log_softmax(hidden[0, :SLICE].float() @ weight.float().T / TEMPERATURE, -1)
        exact = exact.gather(-1, ids[0, :SLICE, None])[:, 0]
    return {"peak": max(peak, 0), "seconds": seconds, "slice": logprobs[0, :SLICE].tolist(),
            "exact": exact.tolist(), "grad_finite": bool(hidden.grad.float().isfinite().all())}


def run_child(variant: str, batch: int, args: argparse.Namespace, vocab: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", variant, "--batch", str(batch),
           "--tokens", str(args.tokens), "--hidden", str(args.hidden), "--chunk", str(args.chunk),
           "--vocab", str(vocab)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-2000:]}")
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024


def parse(args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="sequences")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size")
    parser.add_argument("--chunk", type=int, default=1024, help="tokens per chunk (ours)")
    parser.add_argument("--measure", choices=("ours", "naive"), help=argparse.SUPPRESS)   # child mode
    parser.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(args)


def main(args: list[str]) -> int:
    opts = parse(args)
    if opts.measure:
        result = measure(opts.measure, opts.batch, opts.tokens, opts.hidden, opts.vocab, opts.chunk)
        print("RESULT " + json.dumps(result))
        return 0

    import torch

    vocab, tokenizer_len = vocab_rows()
    gib = 2 ** 30
    budget = 0.8 * mem_available()
    naive_batch = opts.batch
    while naive_batch > 1 and naive_batch * opts.tokens * vocab * NAIVE_BYTES_PER_LOGIT > budget:
        naive_batch //= 2
    print(f"vocab {vocab:,} rows (tokenizer {tokenizer_len:,} tokens), hidden {opts.hidden} bf16, "
          f"temperature {TEMPERATURE}, chunk {opts.chunk}; forward + backward w.r.t. hidden")

    ours = run_child("ours", opts.batch, opts, vocab)
    full_peak = ours["peak"]
    print(f"ours (chunked): peak {ours['peak'] / 2**20:9.1f} MiB at {opts.batch} x {opts.tokens} tokens "
          f"({ours['seconds']:.1f} s)")
    if naive_batch != opts.batch:
        need = opts.batch * opts.tokens * vocab * NAIVE_BYTES_PER_LOGIT
        print(f"naive at {opts.batch} x {opts.tokens} would need ~{need / gib:.1f} GiB "
              f"(available budget {budget / gib:.1f} GiB): both measured at {naive_batch} x {opts.tokens} below")
        ours = run_child("ours", naive_batch, opts, vocab)
        print(f"ours (chunked): peak {ours['peak'] / 2**20:9.1f} MiB at {naive_batch} x {opts.tokens} tokens "
              f"({ours['seconds']:.1f} s)")
    naive = run_child("naive", naive_batch, opts, vocab)
    print(f"naive         : peak {naive['peak'] / 2**20:9.1f} MiB at {naive_batch} x {opts.tokens} tokens "
          f"({naive['seconds']:.1f} s)")

    ratio = ours["peak"] / max(naive["peak"], 1)
    print(f"ratio: ours / naive peak = {ratio:.3f} at {naive_batch} x {opts.tokens} "
          f"(target <= 0.25: {'met' if ratio <= 0.25 else 'MISSED'})")
    if naive_batch != opts.batch:   # naive's buffers are all [B, T, V]: linear in the batch
        scaled = naive["peak"] * opts.batch / naive_batch
        print(f"naive at {opts.batch} x {opts.tokens} extrapolated (linear in batch): ~{scaled / gib:.1f} GiB; "
              f"ours measured {full_peak / 2**20:.1f} MiB -> ratio ~{full_peak / scaled:.3f}")
    # naive rounds the logits to bf16 before the log-softmax; ours keeps them fp32
    exact, a, b = (torch.tensor(x) for x in (ours["exact"], ours["slice"], naive["slice"]))
    ours_err, naive_err = (a - exact).abs().max().item(), (b - a).abs().max().item()
    same = ours_err < 1e-4 and naive_err < 0.05 and ours["grad_finite"] and naive["grad_finite"]
    print(f"same log-probs on the checked slice: {same} (row 0, {len(a)} tokens: ours vs fp32 exact "
          f"{ours_err:.1e}; naive vs ours {naive_err:.1e}, naive's logits are bf16-rounded)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
