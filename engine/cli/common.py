"""What every command module shares: errors to exit codes, the workspace and JSON options, the catalog unit of
work, printing. Exit codes: 0 success, 1 the job failed, 2 bad usage or bad input (with a message on stderr that
says what and where)."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import duckdb

from engine.errors import BadInputError
from storage.artifacts import BrokenRunError
from storage.catalog import (
    CHOOSE,
    CatalogLockedError,
    WorkspaceError,
    WorkspaceNotWritableError,
    open_catalog,
    unwritable,
)
from storage.datasets import DatasetExistsError
from storage.jsontext import dumps_json
from storage.queries import ReadOnlyViolation
from storage.sync import SyncReport, sync
from storage.workspace import WORKSPACE_ENV, Workspace, resolve_workspace

if TYPE_CHECKING:
    from rich.console import Console

    stderr: Console  # `from engine.cli.common import stderr`: rich's console on stderr (module __getattr__)

_stderr: Console | None = None


def stderr_console() -> Console:
    """rich's console on stderr, made on first use: a command that prints nothing there does not import rich."""
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True)
    return _stderr


def __getattr__(name: str) -> Any:
    if name == "stderr":
        return stderr_console()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fail(message: str, code: int = 2) -> None:
    from rich.text import Text

    # Text, not markup: a message quotes user input, where a '[' must stay a '['
    stderr_console().print(
        Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True
    )
    sys.exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One place that turns the user's mistakes into a message and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BadInputError, DatasetExistsError, ReadOnlyViolation, BrokenRunError, WorkspaceError) as exc:
            fail(str(exc))
        except CatalogLockedError as exc:
            fail(str(exc), code=1)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # a folder or file of the workspace the user may not read or write (the catalog's own cases are
            # WorkspaceErrors above; this is the rest: a run folder, an export)
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"cannot write or read{where}: {exc.strerror}; check the permissions of the workspace")

    return wrapper


def workspace_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workspace",
        "workspace",
        type=click.Path(file_okay=False),
        default=None,
        help=f"workspace folder (default: ${WORKSPACE_ENV} or ./dynascope-ws)",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="print one JSON document on stdout")(fn)


def get_workspace(workspace: str | None) -> Workspace:
    ctx = click.get_current_context()
    root = ctx.find_root()
    chosen = workspace or (root.params.get("workspace") if root else None)
    return resolve_workspace(chosen)


_noted: set[str] = set()


def note_once(message: str) -> None:
    """A note on stderr (never stdout: --json output stays one document), once per process."""
    if message not in _noted:
        from rich.text import Text

        _noted.add(message)
        stderr_console().print(
            Text.assemble(("note:", "yellow"), " ", message), highlight=False, soft_wrap=True
        )


def report_sync(ws: Workspace, report: SyncReport) -> None:
    if report.read_only:
        note_once(
            f"the workspace {ws.root} is not writable: showing its catalog as it is, without what jobs wrote "
            "since (make it writable to fold that in)"
        )
    for run_id, reason in report.broken.items():
        note_once(f"run '{run_id}' is broken and was skipped: {reason} (fix or remove {ws.run_dir(run_id)})")


def require_writable(ws: Workspace) -> None:
    """Refuse a command that writes, up front, on a workspace that cannot be written (naming the path)."""
    reason = unwritable(ws)
    if reason is not None:
        raise WorkspaceNotWritableError(f"the workspace {ws.root} is not writable: {reason}; {CHOOSE}")


@contextmanager
def catalog(ws: Workspace, read_only_ok: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog for one unit of work, after folding in what job processes wrote. `read_only_ok`: the
    command only reads, so an unwritable workspace is opened read-only (unsynced, with a note) instead of
    refused."""
    with open_catalog(ws, read_only_ok=read_only_ok) as con:
        report_sync(ws, sync(ws, con))
        yield con


def print_json(obj: Any) -> None:
    """One JSON document on stdout: strict JSON (NaN and infinities are null)."""
    click.echo(dumps_json(obj, indent=2, default=str))


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


def open_app(ws: Workspace, demo: bool = False) -> None:
    """Open the terminal app on `ws`, through the opener the console script put in the click context; `demo`: the
    app sets up the demo (engine.demo.start_demo) in the background."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    opener = (root.obj or {}).get("open_app") if root else None
    if opener is None:
        fail("the terminal app is not installed; run `dynascope --help` for the command line")
        return
    with catalog(ws, read_only_ok=True):  # create and sync before the app paints
        pass
    if demo:
        opener(ws, demo=True)
    else:
        opener(ws)
