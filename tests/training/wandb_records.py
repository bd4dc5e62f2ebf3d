"""Read an offline W&B run file (run-<id>.wandb) without a network: the LevelDB-log framing W&B
writes (7-byte file header; 32 KiB blocks of chunks, each crc32[4] length[2] type[1]) around
serialized `wandb_internal_pb2.Record`s. wandb 0.2x dropped its own Python reader."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, FILE_HEADER, CHUNK_HEADER = 32 * 1024, 7, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", FILE_HEADER
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:                       # a block's tail too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        chunk = data[pos + CHUNK_HEADER:pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(path: Path) -> list[dict]:
    """Every `log` call's row, in order."""
    return [_items(r.history.item) for r in records(path) if r.WhichOneof("record_type") == "history"]


def exit_codes(path: Path, wait_s: float = 30.0) -> list[int]:
    """The exit code of each `finish` the run file records (one for a finished run). The file is written
    by W&B's service process, which may still be writing its last records when `finish` has returned
    (one CI run read none right after a failed stage's `finish`): waits up to `wait_s` for one."""
    deadline = time.monotonic() + wait_s
    while True:
        codes = [r.exit.exit_code for r in records(path) if r.WhichOneof("record_type") == "exit"]
        if codes or time.monotonic() > deadline:
            return codes
        time.sleep(0.2)
