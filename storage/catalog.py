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

from storage.schema import SCHEMA_VERSION, migrate
from storage.workspace import WORKSPACE_ENV, Workspace

LOCK_WAIT_S = float(os.environ.get("DYNASCOPE_LOCK_WAIT_S", "5"))
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class CatalogLockedError(RuntimeError):
    """Another process held the catalog for longer than we were willing to wait."""


class WorkspaceError(RuntimeError):
    """The workspace folder or its catalog cannot be used: a read-only disk or folder, permissions, a catalog that
    is not a DuckDB database. The message names the path and says what to do."""


class WorkspaceNotWritableError(WorkspaceError):
    """A command that writes (import, train, ...) on a workspace that cannot be written."""


class _OpenError(WorkspaceError):
    def __init__(self, message: str, denied: bool, detail: str) -> None:
        super().__init__(message)
        self.denied = denied  # permissions or a read-only file system: a read-only open may still work
        self.detail = detail


_DENIED = ("permission denied", "read-only file system", "operation not permitted")
CHOOSE = f"make it writable, or choose another workspace with --workspace or ${WORKSPACE_ENV}"


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
                text = str(exc).removeprefix("IO Error: ")
                denied = any(d in text.lower() for d in _DENIED)
                advice = (
                    "check its permissions, or choose another workspace with --workspace"
                    if denied
                    else "it is not a dynascope catalog: move it aside (a new one is then created) or choose "
                    "another workspace with --workspace"
                )
                raise _OpenError(
                    f"cannot open the catalog {ws.catalog_path}: {text}; {advice}", denied, text
                ) from exc
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


def unwritable(ws: Workspace) -> str | None:
    """Why the workspace cannot be written (its folders created, its catalog written), or None when it can."""
    try:
        ws.create()
    except OSError as exc:
        return f"cannot create {exc.filename or ws.runs_dir}: {exc.strerror or exc}"
    if not os.access(ws.root, os.W_OK | os.X_OK):  # DuckDB writes a .wal file beside the catalog
        return f"the folder {ws.root} is read-only"
    if ws.catalog_path.is_file() and not os.access(ws.catalog_path, os.R_OK):
        return f"the catalog file {ws.catalog_path} cannot be read (permissions)"
    if ws.catalog_path.is_file() and not os.access(ws.catalog_path, os.W_OK):
        return f"the catalog file {ws.catalog_path} is read-only"
    return None


def is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    """The connection was opened read-only (open_catalog on an unwritable workspace, or the console)."""
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open, and a later `con.sql(...)` on the same
    # connection then fails with "connection has an unfinished result"
    rows = con.execute("SELECT current_setting('access_mode')").fetchall()
    return bool(rows and str(rows[0][0]).lower() == "read_only")


def _check_schema_read_only(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """A read-only catalog cannot be migrated: it must be at this dynascope's schema already."""
    try:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
    except duckdb.CatalogException:
        version = 0
    if version < SCHEMA_VERSION:
        raise WorkspaceNotWritableError(
            f"the catalog {ws.catalog_path} needs an upgrade (schema {version} -> {SCHEMA_VERSION}) and the "
            f"workspace is not writable; {CHOOSE}"
        )


@contextmanager
def open_catalog(
    ws: Workspace, wait_s: float | None = None, *, read_only_ok: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the workspace catalog (created and migrated on first use), yield it, and close it.

    Read-write: a read-only holder would block other processes' writers anyway. On a workspace that cannot be
    written (a read-only folder, disk or catalog file), `read_only_ok` (pure reads) opens it read-only instead
    (`is_read_only` tells, and sync then does nothing); otherwise, and when it cannot even be read, a
    WorkspaceError says which path and why. The SQL console's restricted connection is `open_console`."""
    global _read_write_open
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    reason = unwritable(ws)
    with _gate:
        _wait_for(lambda: not _console_open, wait_s, ws)
        _read_write_open += 1  # a read-only fallback too: its configuration differs from the console's
    try:
        con = None
        if reason is None:
            try:
                con = _connect(ws, wait_s)
            except _OpenError as exc:
                if not exc.denied:
                    raise
                reason = exc.detail
        if con is None:
            if not read_only_ok:
                raise WorkspaceNotWritableError(
                    f"the workspace {ws.root} is not writable: {reason}; {CHOOSE}"
                )
            if not ws.catalog_path.is_file():
                raise WorkspaceError(
                    f"the workspace {ws.root} has no catalog yet and cannot be set up: {reason}; {CHOOSE}"
                )
            con = _connect(ws, wait_s, read_only=True)
        try:
            if is_read_only(con):
                _check_schema_read_only(con, ws)
            else:
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
