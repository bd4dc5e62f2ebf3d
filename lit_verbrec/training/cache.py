"""The verbalization cache: every example verbalized once by a frozen verbalizer, on disk.

Stage 2 trains, validates and is evaluated on the same texts; export turns them into a
distillation set. The file is keyed by the verbalizer kind and a hash of its adapter
(`verbalizations-<kind>-<hash>.parquet`), so a retrained verbalizer never reuses stale
texts, and rows are keyed by example id. Writes go to a temporary file renamed into place,
so an interrupted write never leaves a half file.

The ranks of a Slurm job share the work: rank r of R verbalizes every R-th missing example,
`chunk` at a time, and rewrites its own part file (`...part<r>.parquet`) after each chunk, so a
requeue keeps what was done; `after_chunk` is where a preemption signal stops the job. Then each
rank waits until every part is there (the process group starts later, with fit). Reads take the
main file and every part; a single process merges them into the main file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lit_verbrec.config.console import progress


def adapter_hash(folder: str | Path) -> str:
    """16 hex digits of the SHA-256 of the adapter's config and weights."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


def text_key(adapter_key: str, metadata: Sequence[str] = ()) -> str:
    """The cache key of a verbalizer's texts: its adapter's hash, and text.metadata's fields when the
    template it read carried any (the same adapter reads a different input then)."""
    return adapter_key if not metadata else f"{adapter_key}-{'+'.join(metadata)}"


class VerbalizationCache:
    def __init__(self, folder: str | Path, kind: str, key: str) -> None:
        self.path = Path(folder) / f"verbalizations-{kind}-{key}.parquet"
        self.kind, self.key = kind, key
        self.computed = 0
        self.reused = 0

    def texts(self, examples: list[dict], verbalize: Callable[[list[dict]], list[str]], shard: tuple[int, int] = (0, 1),
              chunk: int = 64, after_chunk: Callable[[str], None] = lambda saved: None,
              poll_s: float = 2.0) -> dict[str, str]:
        """example_id -> verbalization for `examples`, computing (and storing) only the missing ones;
        `shard` (rank, ranks): this process's share of them. `after_chunk(what was saved)` runs after
        each saved chunk and while waiting for the other ranks (it may end the process)."""
        rank, ranks = shard
        stored = self._read()
        missing = [e for e in examples if e["example_id"] not in stored]
        self.reused += len(examples) - len(missing)
        # The share is a function of the example list alone, never of what is stored when this rank
        # looks: ranks that start at different times must still split the same set, or an example
        # could fall in no rank's share and every rank would wait for it forever.
        mine = [e for e in examples[rank::ranks] if e["example_id"] not in stored]
        part = self.part(rank)
        own = self._read_file(part)
        with progress(len(mine), f"stage 2: verbalizing (rank {rank} of {ranks})") as bar:
            for start in range(0, len(mine), chunk):
                batch = mine[start:start + chunk]
                own.update({e["example_id"]: (e["split"], t) for e, t in zip(batch, verbalize(batch))})
                self.computed += len(batch)
                self._write(own, part)
                bar.update(len(batch))
                after_chunk(f"{start + len(batch)} of this rank's {len(mine)} verbalizations saved in {part}")
        stored = self._read()
        while any(e["example_id"] not in stored for e in missing):   # the other ranks' shares
            after_chunk(f"waiting for the other ranks' verbalizations ({len(stored)} of {len(examples)} there)")
            time.sleep(poll_s)
            stored = self._read()
        if ranks == 1 and missing:   # one process: fold the parts into the main file
            self._write(stored, self.path)
            for path in self._parts():
                path.unlink()
        return {e["example_id"]: stored[e["example_id"]][1] for e in examples}

    def part(self, rank: int) -> Path:
        """The file rank `rank` writes its verbalizations to."""
        return self.path.with_name(f"{self.path.stem}.part{rank}.parquet")

    def _parts(self) -> list[Path]:
        return sorted(self.path.parent.glob(f"{self.path.stem}.part*.parquet"))

    def stored_texts(self) -> dict[str, str]:
        """example_id -> verbalization of every example in the file ({} if there is none)."""
        return {i: text for i, (_, text) in self._read().items()}

    def _read(self) -> dict[str, tuple[str, str]]:
        """The main file and every rank's part."""
        stored: dict[str, tuple[str, str]] = {}
        for path in [self.path, *self._parts()]:
            stored.update(self._read_file(path))
        return stored

    @staticmethod
    def _read_file(path: Path) -> dict[str, tuple[str, str]]:
        if not path.is_file():
            return {}
        table = pq.read_table(path)
        return {i: (s, t) for i, s, t in zip(table["example_id"].to_pylist(), table["split"].to_pylist(),
                                             table["verbalization"].to_pylist())}

    def _write(self, stored: dict[str, tuple[str, str]], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = sorted(stored)
        table = pa.table({"example_id": ids, "split": [stored[i][0] for i in ids],
                          "verbalization": [stored[i][1] for i in ids],
                          "verbalizer": [self.kind] * len(ids), "adapter_hash": [self.key] * len(ids)})
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
