"""The response cache: one SQLite file per workspace (`<workspace>/cache/llm-responses.sqlite`), keyed by a hash of
(base model, messages, parameters), so a resumed or repeated job never pays twice for the same request.

SQLite, not the DuckDB catalog: job processes never open the catalog, and SQLite's journal makes each committed
entry survive a kill -9 (a reply is committed before the result that used it is written). Several job processes
may share the file; SQLite's own locking serialises their short writes. Only replies are stored: never a key,
never a header.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_FILE = "llm-responses.sqlite"


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """A stable hash of what decides a reply: the model, the messages and every sampling / format parameter."""
    text = json.dumps(
        {"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    content: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")  # a committed reply survives a kill -9 and a power cut
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, content TEXT NOT NULL, "
            "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )

    @classmethod
    def for_workspace(cls, root: Path) -> ResponseCache:
        return cls(root / "cache" / CACHE_FILE)

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._con.execute(
                "SELECT content, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)
            ).fetchone()
        return CachedReply(row[0], int(row[1]), int(row[2])) if row else None

    def put(self, key: str, reply: CachedReply) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                (key, reply.content, reply.prompt_tokens, reply.completion_tokens, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()
