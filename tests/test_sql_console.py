"""The SQL console (`dynascope sql` and the app's console) cannot write anything or reach outside the catalog, and
a slow query is stopped after a time limit. The database enforces it (a read-only connection with external access
disabled and its configuration locked), not a reading of the statement: each form below is tried as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.conftest import run_cli
from tests.tui_helpers import make_app, settle, wait_until

FORMS = {
    "delete": "DELETE FROM runs",
    "insert": "INSERT INTO datasets (name, task) VALUES ('x', 'qa')",
    "update": "UPDATE runs SET status = 'done'",
    "drop": "DROP TABLE runs",
    "create": "CREATE TABLE t AS SELECT 1",
    "copy to": "COPY (SELECT 1 AS x) TO '{out}'",
    "export": "EXPORT DATABASE '{outdir}'",
    "attach": "ATTACH '{outdb}' AS other",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET enable_external_access = true",
    "pragma": "PRAGMA enable_profiling",
    "call": "CALL enable_logging()",
    "checkpoint": "CHECKPOINT",
    "explain copy": "EXPLAIN COPY (SELECT 1 AS x) TO '{out}'",
    "explain analyze copy": "EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}'",
    "explain analyze delete": "EXPLAIN ANALYZE DELETE FROM runs",
    "explain analyze install": "EXPLAIN ANALYZE INSTALL httpfs",
    "cte delete": "WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d",
    "second statement": "SELECT 1; DELETE FROM runs",
    "read_text": "SELECT * FROM read_text('/proc/self/environ')",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "glob": "SELECT * FROM glob('/etc/*')",
    "read_parquet": "SELECT * FROM read_parquet('{outside}')",
}


@pytest.fixture
def console_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    assert run_cli(ws, "sql", "SELECT 1").code == 0  # creates the catalog
    outside = tmp_path / "outside.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"secret": [1]}), outside)
    return ws


def catalog_dump(ws: Workspace) -> list:
    with open_catalog(ws) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return [(t, con.execute(f'SELECT count(*) FROM "{t}"').fetchone()) for t in tables]


@pytest.mark.parametrize("form", list(FORMS))
def test_the_cli_console_refuses(form: str, console_ws: Workspace, tmp_path: Path) -> None:
    out, outdir, outdb = tmp_path / "out.csv", tmp_path / "export", tmp_path / "other.db"
    sql = FORMS[form].format(out=out, outdir=outdir, outdb=outdb, outside=tmp_path / "outside.parquet")
    before = catalog_dump(console_ws)
    result = run_cli(console_ws, "sql", sql)
    assert result.code == 2, (form, result.stdout, result.stderr)
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert not out.exists() and not outdir.exists() and not outdb.exists()
    assert "secret" not in result.stdout and "root:" not in result.stdout
    assert catalog_dump(console_ws) == before


def test_a_slow_query_is_stopped_and_the_catalog_is_free_at_once(console_ws: Workspace) -> None:
    result = run_cli(console_ws, "sql", "SELECT count(*) FROM range(100000000000) a", "--timeout", "1")
    assert result.code == 2 and "ran longer than 1 s and was stopped" in result.stderr
    with open_catalog(console_ws, wait_s=0) as con:  # no waiting: nobody holds it
        assert con.execute("SELECT 1").fetchone() == (1,)


async def test_the_apps_console_refuses_and_stops_slow_queries(console_ws, tmp_path, monkeypatch):  # noqa: ANN001
    from textual.widgets import Static

    import storage.queries
    from tui_app.screens.sql import SqlEditor

    monkeypatch.setattr(storage.queries, "SQL_TIMEOUT_S", 1.0)
    out = tmp_path / "app-out.csv"
    before = catalog_dump(console_ws)
    app = make_app(console_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_sql()
        await settle(app, pilot)
        for sql in (
            f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}'",
            "SELECT * FROM read_text('/proc/self/environ')",
            "WITH d AS (DELETE FROM runs RETURNING *) SELECT * FROM d",
            "SELECT count(*) FROM range(100000000000) a",
        ):
            box = app.screen.query_one(SqlEditor)
            box.text = sql
            box.focus()
            await pilot.press("f5")
            # the worker fails (the app reports it): wait for the screen to say so, not on the worker
            await wait_until(app, pilot, lambda: not app.screen.running, timeout=30)
            await settle(app, pilot)
            error = app.screen.query_one("#sql-error", Static)
            assert error.display and str(error.render()).startswith("the query failed:")  # said in place
            assert "running" not in str(app.screen.query_one("#sql-status", Static).render())
        shown = " ".join(str(n.message) for n in app._notifications)
        assert "file system operations are disabled" in shown and "read-only" in shown, shown
        assert "ran longer than 1 s and was stopped" in shown, shown
        # the console still works, and the rest of the app with it
        box = app.screen.query_one(SqlEditor)
        box.text = "SELECT count(*) AS n FROM datasets"
        box.focus()
        await pilot.press("f5")
        await app.workers.wait_for_complete()
        await settle(app, pilot)
        assert "1 row(s)" in str(app.screen.query_one("#sql-status", Static).render())
    assert not out.exists()
    assert catalog_dump(console_ws) == before


@pytest.mark.parametrize("form", list(FORMS))
def test_the_console_connection_itself_refuses(form: str, console_ws: Workspace, tmp_path: Path) -> None:
    """Without the statement check: the database alone refuses every form (the check only words the message)."""
    import duckdb

    from storage.catalog import open_console

    out, outdir, outdb = tmp_path / "out.csv", tmp_path / "export", tmp_path / "other.db"
    sql = FORMS[form].format(out=out, outdir=outdir, outdb=outdb, outside=tmp_path / "outside.parquet")
    before = catalog_dump(console_ws)
    stamp = console_ws.catalog_path.stat().st_mtime_ns
    with open_console(console_ws) as con:
        if form == "checkpoint":  # neutralised: a checkpoint of a read-only database writes nothing
            con.execute(sql)
        else:
            with pytest.raises(duckdb.Error):
                con.execute(sql).fetchall()
    assert console_ws.catalog_path.stat().st_mtime_ns == stamp
    assert not out.exists() and not outdir.exists() and not outdb.exists()
    assert catalog_dump(console_ws) == before


@pytest.fixture
def two_datasets(ws: Workspace, data_dir: Path) -> Workspace:
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2-dev").code == 0
    assert run_cli(ws, "import", str(data_dir / "ag_news" / "test.csv.gz"), "--name", "ag-news").code == 0
    return ws


WIDENING = ["1=1) OR (1=1", "1=1) OR dataset <> 'x' OR (1=1", "1=1; SELECT * FROM examples", "label = 1 -- )"]


def test_a_where_cannot_widen_its_dataset(two_datasets: Workspace) -> None:
    from engine.analysis.pages import ExampleFilter, count_rows, query_page
    from storage.queries import ReadOnlyViolation

    ws = two_datasets
    for where in WIDENING[:3]:
        result = run_cli(ws, "examples", "sst2-dev", "--where", where, "--limit", "100000", "--json")
        assert result.code == 2 and "is not one SQL condition" in result.stderr, (where, result.stderr)
        with open_catalog(ws) as con, pytest.raises(ReadOnlyViolation):
            query_page(con, ExampleFilter(dataset="sst2-dev", where=where), 50, 0)
    # a trailing comment cannot hide the closing parenthesis: the condition stays inside sst2-dev
    result = run_cli(ws, "examples", "sst2-dev", "--where", "1=1 --", "--limit", "100000", "--json")
    assert result.code == 0 and len(result.json()) == 872
    commented = run_cli(ws, "examples", "sst2-dev", "--where", WIDENING[3], "--limit", "100000", "--json")
    plain = run_cli(ws, "examples", "sst2-dev", "--where", "label = 1", "--limit", "100000", "--json")
    assert commented.code == 0 and commented.json() == plain.json() and 0 < len(plain.json()) < 872
    with open_catalog(ws) as con:  # the app's examples table: the same rule
        assert count_rows(con, ExampleFilter(dataset="sst2-dev", where="1=1 --")) == 872
        assert count_rows(con, ExampleFilter(dataset="sst2-dev", where="label = 1")) == len(plain.json())
