"""The oracle's on-disk reply cache: SQLite, shared by the processes of a run.

A hosted oracle costs money per prompt and a rerun (a resumed job, an evaluation of the same
texts) asks the same prompts again; the cache answers those without a request. It stores the
raw reply text, not the parsed answer, so a parser fix applies to cached replies. The key is a
hash of everything that decides the reply (model, messages, temperature, max_tokens); API keys
and endpoints are not part of it and are never written. One file serves all DDP ranks: WAL
mode (readers do not wait for a writer), a busy timeout, and write transactions that take
the lock up front.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["CACHE_FILE", "ReplyCache", "cache_key"]

log = logging.getLogger(__name__)

CACHE_FILE = "oracle_cache.sqlite"


def cache_key(model: str, messages: list[dict], temperature: float, max_tokens: int) -> str:
    """sha256 of everything that decides the reply (the same prompt at another temperature differs)."""
    payload = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


class ReplyCache:
    """key -> raw reply text in <cache_dir>/oracle_cache.sqlite, shared by processes.

    The connection is opened lazily and again after a fork (a SQLite connection must not
    cross a fork). Writes take the write lock up front (BEGIN IMMEDIATE), so that the busy
    timeout applies; SQLite still answers "locked" at once where waiting could deadlock,
    notably when several processes open a new file and switch it to WAL together, so
    "locked" is retried up to LOCK_WAIT_S. Any other database error is logged and treated
    as a miss / skipped write: the cache saves money, it must not stop training.
    """

    LOCK_WAIT_S = 60.0

    def __init__(self, cache_dir: Path) -> None:
        self.path = Path(cache_dir) / CACHE_FILE
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are the explicit BEGIN IMMEDIATE below.
            conn = sqlite3.connect(self.path, timeout=self.LOCK_WAIT_S, check_same_thread=False,
                                   isolation_level=None)
            try:
                _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))  # readers never wait for a writer
                _retry_locked(lambda: conn.execute(
                    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)"))
            except sqlite3.Error:
                conn.close()
                raise
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """The cached replies among keys (missing keys are absent)."""
        found: dict[str, str] = {}
        try:
            with self._lock:
                conn = self._connection()
                for start in range(0, len(keys), 500):  # SQLite caps the parameters of one query
                    chunk = keys[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    found.update(conn.execute(f"SELECT key, reply FROM replies WHERE key IN ({marks})", chunk))
        except sqlite3.Error as error:
            log.warning("oracle cache %s unreadable (%s); asking the endpoint", self.path, error)
        return found

    def put_many(self, replies: dict[str, str]) -> None:
        """Store replies in one transaction (one lock acquisition per batch, not per reply)."""
        if not replies:
            return

        def write() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", replies.items())
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        try:
            with self._lock:
                conn = self._connection()
                _retry_locked(write)
        except sqlite3.Error as error:
            log.warning("oracle cache %s not written (%s); %d replies not cached", self.path, error, len(replies))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _retry_locked(action, wait_s: float = ReplyCache.LOCK_WAIT_S):
    """action(), repeated while SQLite answers "database is locked/busy", for up to wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            message = str(error)
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))
