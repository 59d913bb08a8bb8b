"""What every command module shares: errors to exit codes, the workspace and JSON options, the catalog unit of
work, printing. Exit codes: 0 success, 1 the job failed, 2 bad usage or bad input (with a message on stderr that
says what and where)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import duckdb
from rich.console import Console
from rich.table import Table

from engine.errors import BadInputError
from storage.catalog import CatalogLockedError, open_catalog
from storage.datasets import DatasetExistsError
from storage.queries import ReadOnlyViolation
from storage.sync import sync
from storage.workspace import WORKSPACE_ENV, Workspace, resolve_workspace

stderr = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One place that turns the user's mistakes into a message and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BadInputError, DatasetExistsError, ReadOnlyViolation) as exc:
            fail(str(exc))
        except CatalogLockedError as exc:
            fail(str(exc), code=1)

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


@contextmanager
def catalog(ws: Workspace) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the catalog for one unit of work, after folding in what job processes wrote."""
    with open_catalog(ws) as con:
        sync(ws, con)
        yield con


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)


def open_app(ws: Workspace) -> None:
    """Open the terminal app on `ws`, through the opener the console script put in the click context."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    opener = (root.obj or {}).get("open_app") if root else None
    if opener is None:
        fail("the terminal app is not installed; run `dynascope --help` for the command line")
        return
    with open_catalog(ws) as con:  # create and sync before the app paints
        sync(ws, con)
    opener(ws)
