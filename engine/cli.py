"""The `dynascope` command line. Stable: scripts depend on it.

Every listing has --json (one JSON document on stdout, nothing else there). Exit codes: 0 success, 1 the job
failed, 2 bad usage or bad input (with a message on stderr that says what and where).
"""

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
from storage.datasets import DatasetExistsError, list_datasets, write_dataset
from storage.queries import ReadOnlyViolation, query_examples, run_readonly_sql
from storage.sync import sync
from storage.workspace import WORKSPACE_ENV, Workspace, resolve_workspace

stderr = Console(stderr=True)

# Set by tui_app when it is installed: opens the app on a workspace. The engine never imports the UI itself.
APP_OPENER: Callable[[Workspace], None] | None = None


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


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@workspace_option
@click.version_option(package_name="dynascope")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """dynascope: which training examples make your model fragile. Without a command, opens the app."""
    if ctx.invoked_subcommand is None:
        open_app(resolve_workspace(workspace))


def open_app(ws: Workspace) -> None:
    if APP_OPENER is None:
        fail("the terminal app is not installed; run `dynascope --help` for the command line")
    with open_catalog(ws) as con:  # create and sync before the app paints
        sync(ws, con)
    APP_OPENER(ws)  # type: ignore[misc]


@cli.command("import")
@click.argument("source")
@click.option("--name", required=True, help="dataset name in the catalog")
@click.option(
    "--task", type=click.Choice(["classification", "qa"]), default=None, help="detected when omitted"
)
@click.option("--text-col", default=None)
@click.option("--text-pair-col", default=None)
@click.option("--label-col", default=None)
@click.option("--id-col", default=None)
@click.option("--labels", default=None, help="the full label set, comma-separated, in class-index order")
@click.option("--split", default="train", show_default=True, help="split to load for a hub dataset")
@click.option("--fix-spans", is_flag=True, help="relocate QA answers whose text is not at answer_start")
@click.option("--replace", is_flag=True, help="replace an existing dataset of the same name")
@workspace_option
@json_option
@user_errors
def import_cmd(
    source: str,
    name: str,
    workspace: str | None,
    as_json: bool,
    replace: bool,
    labels: str | None,
    **opts: Any,
) -> None:
    """Import a dataset: SQuAD JSON, JSONL, CSV/TSV, Parquet (optionally .gz), or a hub name."""
    from engine.importing import ImportOptions, load_source

    ws = get_workspace(workspace)
    options = ImportOptions(labels=labels.split(",") if labels else None, **opts)
    with stderr.status(f"reading {source} ..."):
        spec = load_source(source, name, options)
    with catalog(ws) as con:
        n = write_dataset(con, spec, replace=replace)
    summary = {
        "name": name,
        "task": spec.task,
        "n_examples": n,
        "source": spec.source,
        "version": spec.version,
    }
    if as_json:
        print_json(summary)
    else:
        for note in spec.notes:
            stderr.print(f"note: {note}")
        extra = f" ({spec.version})" if spec.version else ""
        click.echo(f"imported {n} examples into '{name}' ({spec.task}{extra}) from {spec.source}")


@cli.command("datasets")
@workspace_option
@json_option
@user_errors
def datasets_cmd(workspace: str | None, as_json: bool) -> None:
    """List datasets: name, task, number of examples, source."""
    with catalog(get_workspace(workspace)) as con:
        items = list_datasets(con)
    if as_json:
        print_json(items)
        return
    print_table(
        "datasets",
        ["name", "task", "examples", "source"],
        [[d["name"], d["task"], d["n_examples"], d["source"]] for d in items],
    )


@cli.command("examples")
@click.argument("dataset")
@click.option("--where", default=None, help="SQL condition over the example columns")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0))
@click.option("--offset", default=0, type=click.IntRange(min=0))
@workspace_option
@json_option
@user_errors
def examples_cmd(
    dataset: str, where: str | None, limit: int, offset: int, workspace: str | None, as_json: bool
) -> None:
    """Show examples of a dataset."""
    with catalog(get_workspace(workspace)) as con:
        names = [d["name"] for d in list_datasets(con)]
        if dataset not in names:
            raise BadInputError(
                f"no dataset named '{dataset}'; known: {', '.join(names) or '(none yet: dynascope import)'}"
            )
        try:
            result = query_examples(con, dataset, where, limit, offset)
        except duckdb.Error as exc:
            raise BadInputError(f"--where {where!r}: {exc}") from exc
    if as_json:
        print_json(result.as_dicts())
        return
    print_table(dataset, result.columns[:5], [list(r[:5]) for r in result.rows])


@cli.command("sql")
@click.argument("query")
@click.option("--limit", default=None, type=int, help="at most this many rows")
@workspace_option
@json_option
@user_errors
def sql_cmd(query: str, limit: int | None, workspace: str | None, as_json: bool) -> None:
    """Run a read-only SQL query over the catalog (writes are refused)."""
    with catalog(get_workspace(workspace)) as con:
        try:
            result = run_readonly_sql(con, query, limit)
        except duckdb.Error as exc:
            raise BadInputError(f"SQL error: {exc}") from exc
    if as_json:
        print_json(result.as_dicts())
        return
    print_table("", result.columns, [list(r) for r in result.rows])


@cli.command("runs")
@workspace_option
@json_option
@user_errors
def runs_cmd(workspace: str | None, as_json: bool) -> None:
    """List runs: id, kind, dataset, status, epochs done, created."""
    with catalog(get_workspace(workspace)) as con:
        cur = con.execute(
            """SELECT run_id, kind, dataset, status, epochs_done, n_epochs,
                      strftime(created_at, '%Y-%m-%d %H:%M:%S') AS created_at
               FROM runs ORDER BY created_at, run_id"""
        )
        cols = [d[0] for d in cur.description]
        items = [dict(zip(cols, r)) for r in cur.fetchall()]
    if as_json:
        print_json(items)
        return
    print_table("runs", cols, [list(i.values()) for i in items])


@cli.command("demo")
@click.option("--no-tui", is_flag=True, help="build the demo workspace and stop (no app)")
@workspace_option
@user_errors
def demo_cmd(no_tui: bool, workspace: str | None) -> None:
    """Build a demo workspace from real data, then open the app."""
    from engine.cli_train import follow
    from engine.demo import build_demo, train_demo_run

    ws = get_workspace(workspace)

    def log(msg: str) -> None:
        stderr.print(msg, highlight=False)

    build_demo(ws, log=log)
    train_demo_run(ws, log=log, follow=lambda run_id, proc: follow(ws, run_id, proc))
    if not no_tui:
        open_app(ws)


def main() -> None:
    cli(prog_name="dynascope")


# The command modules register themselves on `cli`; imported last because they import this module.
from engine import cli_analysis, cli_train  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    main()
