"""Short-lived catalog connections: open, do one unit of work, close.

DuckDB lets one process hold a database file read-write, and a read-only holder blocks writers too, so no
process keeps the catalog open. A lock conflict is retried with backoff for a few seconds before we give up
and say which process holds it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from storage.schema import migrate
from storage.workspace import Workspace

LOCK_WAIT_S = float(os.environ.get("DYNASCOPE_LOCK_WAIT_S", "5"))
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class CatalogLockedError(RuntimeError):
    """Another process held the catalog for longer than we were willing to wait."""


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _holder(exc: Exception) -> str:
    match = re.search(r"PID (\d+)", str(exc))
    return f"process {match.group(1)}" if match else "another process"


@contextmanager
def open_catalog(ws: Workspace, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the workspace catalog (created and migrated on first use), yield it, and close it.

    Always read-write: within one process DuckDB refuses to mix read-only and read-write connections to the
    same file, and a read-only holder blocks other writers anyway. Read-only SQL is enforced by
    `storage.queries.run_readonly_sql`.
    """
    ws.create()
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        try:
            con = duckdb.connect(str(ws.catalog_path))
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise
            if time.monotonic() >= deadline:
                raise CatalogLockedError(
                    f"the catalog {ws.catalog_path} is locked by {_holder(exc)} (waited {wait_s:.0f} s); "
                    "close the other dynascope or DuckDB session that has it open and try again"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    try:
        key = str(ws.catalog_path)
        if key not in _migrated:
            with _migrate_lock:
                migrate(con)
                _migrated.add(key)
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All-or-nothing: a failure inside rolls back every statement."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
