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
from typing import Any

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


# Within one process DuckDB refuses a read-only connection to a file while a read-write one is open (and the
# other way round): the console's restricted connection waits until the read-write ones of this process (the
# app's workers) are closed, and new ones wait for it. Each wait is bounded.
_gate = threading.Condition()
_read_write_open = 0
_console_open = False

# What the SQL console may do, enforced by the database rather than by reading the statement: nothing that writes
# (read-only), nothing outside the catalog (no files, no extensions, no ATTACH), and no SET to undo either.
CONSOLE_CONFIG = {"enable_external_access": False, "lock_configuration": True}


def _connect(ws: Workspace, wait_s: float, **kwargs: Any) -> duckdb.DuckDBPyConnection:
    """Connect, retrying while another process holds the file; then say which process does."""
    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(ws.catalog_path), **kwargs)
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


def _wait_for(condition: Any, wait_s: float, ws: Workspace) -> None:
    if not _gate.wait_for(condition, timeout=wait_s):
        raise CatalogLockedError(
            f"the catalog {ws.catalog_path} stayed busy in this process (waited {wait_s:.0f} s); try again"
        )


@contextmanager
def open_catalog(ws: Workspace, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the workspace catalog (created and migrated on first use), yield it, and close it.

    Read-write: a read-only holder would block other processes' writers anyway. The SQL console's restricted
    connection is `open_console`."""
    global _read_write_open
    ws.create()
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    with _gate:
        _wait_for(lambda: not _console_open, wait_s, ws)
        _read_write_open += 1
    try:
        con = _connect(ws, wait_s)
        try:
            key = str(ws.catalog_path)
            if key not in _migrated:
                with _migrate_lock:
                    migrate(con)
                    _migrated.add(key)
            yield con
        finally:
            con.close()
    finally:
        with _gate:
            _read_write_open -= 1
            _gate.notify_all()


@contextmanager
def open_console(ws: Workspace, wait_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for user-written SQL: read-only, no access outside the catalog, configuration locked.
    Open it after the unit of work that synced (never inside an `open_catalog` of the same thread)."""
    global _console_open
    if not ws.catalog_path.is_file():
        with open_catalog(ws):  # create and migrate it first
            pass
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    with _gate:
        _wait_for(lambda: _read_write_open == 0 and not _console_open, wait_s, ws)
        _console_open = True
    try:
        con = _connect(ws, wait_s, read_only=True, config=dict(CONSOLE_CONFIG))
        try:
            yield con
        finally:
            con.close()
    finally:
        with _gate:
            _console_open = False
            _gate.notify_all()


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
