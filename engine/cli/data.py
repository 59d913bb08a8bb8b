"""CLI commands over datasets and the catalog: import, datasets, examples, sql, runs, demo."""

from __future__ import annotations

from typing import Any

import click
import duckdb

from engine.cli.common import (
    catalog,
    get_workspace,
    json_option,
    open_app,
    print_json,
    print_table,
    require_writable,
    stderr,
    user_errors,
    workspace_option,
)
from engine.errors import BadInputError
from storage.catalog import open_console
from storage.datasets import list_datasets, write_dataset
from storage.queries import query_examples, run_readonly_sql


@click.command("import")
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
    from engine.importing.sources import ImportOptions, load_source

    ws = get_workspace(workspace)
    require_writable(ws)  # before reading a source that may take minutes
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


@click.command("datasets")
@workspace_option
@json_option
@user_errors
def datasets_cmd(workspace: str | None, as_json: bool) -> None:
    """List datasets: name, task, number of examples, source."""
    with catalog(get_workspace(workspace), read_only_ok=True) as con:
        items = list_datasets(con)
    if as_json:
        print_json(items)
        return
    print_table(
        "datasets",
        ["name", "task", "examples", "source"],
        [[d["name"], d["task"], d["n_examples"], d["source"]] for d in items],
    )


@click.command("examples")
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
    with catalog(get_workspace(workspace), read_only_ok=True) as con:
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


@click.command("sql")
@click.argument("query")
@click.option("--limit", default=None, type=int, help="at most this many rows")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="seconds before the query is stopped",
)
@workspace_option
@json_option
@user_errors
def sql_cmd(
    query: str, limit: int | None, timeout: float | None, workspace: str | None, as_json: bool
) -> None:
    """Run a read-only SQL query over the catalog: the connection refuses writes and anything outside the
    catalog (files, extensions, ATTACH, SET), and a query is stopped after a time limit."""
    ws = get_workspace(workspace)
    with catalog(ws, read_only_ok=True):
        pass  # fold in what jobs wrote, then close: the console's connection is a different one
    with open_console(ws) as con:
        try:
            result = run_readonly_sql(con, query, limit, timeout_s=timeout)
        except duckdb.Error as exc:
            raise BadInputError(f"SQL error: {exc}") from exc
    if as_json:
        print_json(result.as_dicts())
        return
    print_table("", result.columns, [list(r) for r in result.rows])


@click.command("runs")
@workspace_option
@json_option
@user_errors
def runs_cmd(workspace: str | None, as_json: bool) -> None:
    """List runs: id, name, kind, what it trained on (a selection's name for a retrain), origin, status, epochs. A run
    folder that cannot be read is listed as `broken`, with the reason."""
    from engine.analysis.progress import progress_label
    from engine.analysis.runs import list_runs
    from engine.jobs import job_info

    ws = get_workspace(workspace)
    with catalog(ws, read_only_ok=True) as con:
        items = list_runs(con, ws)
    if as_json:
        print_json(items)
        return

    def live(run: dict[str, Any]) -> dict[str, Any]:
        """An unfinished run as its job says it now (the catalog's copy lags a running job's events)."""
        if run["status"] not in ("created", "running"):
            return run
        try:
            return job_info(ws, run["run_id"])
        except BadInputError:
            return run

    rows = []
    for r in items:
        now = live(r)
        rows.append(
            [
                r["run_id"],
                r.get("name") or "",
                r["kind"],
                r["trained_on"],
                r["origin"] or "",
                f"broken: {r['reason']}" if r["status"] == "broken" else now["status"],
                progress_label(now),
                r["created_at"],
            ]
        )
    print_table(
        "runs", ["run_id", "name", "kind", "trained on", "origin", "status", "progress", "created_at"], rows
    )


@click.command("demo")
@click.option("--no-tui", is_flag=True, help="build the demo workspace and stop (no app)")
@workspace_option
@user_errors
def demo_cmd(no_tui: bool, workspace: str | None) -> None:
    """Open the app on a demo workspace at once: it imports real data (seconds) and trains a small SST-2 run as a
    background job, shown on home and in jobs. Run it again to reuse the workspace (an interrupted demo run is
    resumed, never duplicated). With --no-tui: import, train the run in the foreground and stop."""
    ws = get_workspace(workspace)
    if not no_tui:
        open_app(ws, demo=True)  # the app's worker runs engine.demo.start_demo
        return
    from engine.cli.jobs import follow
    from engine.demo import build_demo, train_demo_run

    def log(msg: str) -> None:
        stderr.print(msg, highlight=False)

    build_demo(ws, log=log)
    train_demo_run(ws, log=log, follow=lambda run_id, proc: follow(ws, run_id, proc))


COMMANDS = (import_cmd, datasets_cmd, examples_cmd, sql_cmd, runs_cmd, demo_cmd)
