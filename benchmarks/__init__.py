"""Benchmarks: each module's `main(argv) -> exit code` measures one part against a peer in the same
run and prints both and their ratio. Run them through `python tools/bench.py <name>`."""
