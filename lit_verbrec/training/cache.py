"""The verbalization cache: every example verbalized once by a frozen verbalizer, on disk.

Stage 2 trains, validates and is evaluated on the same texts; export turns them into a
distillation set. The file is keyed by the verbalizer kind and a hash of its adapter
(`verbalizations-<kind>-<hash>.parquet`), so a retrained verbalizer never reuses stale
texts, and rows are keyed by example id. Writes go to a temporary file renamed into place,
so an interrupted write never leaves a half file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def adapter_hash(folder: str | Path) -> str:
    """16 hex digits of the SHA-256 of the adapter's config and weights."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


class VerbalizationCache:
    def __init__(self, folder: str | Path, kind: str, key: str) -> None:
        self.path = Path(folder) / f"verbalizations-{kind}-{key}.parquet"
        self.kind, self.key = kind, key
        self.computed = 0
        self.reused = 0

    def texts(self, examples: list[dict], verbalize: Callable[[list[dict]], list[str]]) -> dict[str, str]:
        """example_id -> verbalization for `examples`, computing (and storing) only the missing ones."""
        stored = self._read()
        missing = [e for e in examples if e["example_id"] not in stored]
        self.reused += len(examples) - len(missing)
        if missing:
            new = verbalize(missing)
            self.computed += len(missing)
            stored.update({e["example_id"]: (e["split"], t) for e, t in zip(missing, new)})
            self._write(stored)
        return {e["example_id"]: stored[e["example_id"]][1] for e in examples}

    def stored_texts(self) -> dict[str, str]:
        """example_id -> verbalization of every example in the file ({} if there is none)."""
        return {i: text for i, (_, text) in self._read().items()}

    def _read(self) -> dict[str, tuple[str, str]]:
        if not self.path.is_file():
            return {}
        table = pq.read_table(self.path)
        return {i: (s, t) for i, s, t in zip(table["example_id"].to_pylist(), table["split"].to_pylist(),
                                             table["verbalization"].to_pylist())}

    def _write(self, stored: dict[str, tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ids = sorted(stored)
        table = pa.table({"example_id": ids, "split": [stored[i][0] for i in ids],
                          "verbalization": [stored[i][1] for i in ids],
                          "verbalizer": [self.kind] * len(ids), "adapter_hash": [self.key] * len(ids)})
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)
