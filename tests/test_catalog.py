"""The catalog: migrations, short-lived connections with lock retry, read-only SQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from storage.catalog import CatalogLockedError, open_catalog
from storage.schema import SCHEMA_VERSION, migrate
from tests.catalog_dump import dump_catalog


def test_new_catalog_is_migrated_once(ws):
    with open_catalog(ws) as con:
        versions = con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert migrate(con) == SCHEMA_VERSION  # nothing newer to apply
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    expected = {
        "datasets",
        "examples",
        "runs",
        "example_metrics",
        "evaluations",
        "predictions",
        "annotations",
    }
    assert expected | {"generation_provenance", "artifacts", "selections", "schema_version"} <= tables


def test_migration_keeps_rows_of_an_older_catalog(ws):
    from storage.schema import MIGRATIONS

    con = duckdb.connect(str(ws.catalog_path))
    try:
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        con.execute(MIGRATIONS[0][1])  # a catalog written by the first release
        con.execute("INSERT INTO schema_version VALUES (1, current_timestamp)")
        con.execute(
            "INSERT INTO example_metrics (run_id, example_id, epochs, confidence) VALUES ('r', 'a', 3, 0.25)"
        )
        assert migrate(con) == SCHEMA_VERSION
        assert con.execute(
            "SELECT run_id, example_id, epochs, confidence FROM example_metrics"
        ).fetchall() == [("r", "a", 3, 0.25)]
    finally:
        con.close()


def test_catalog_from_a_newer_dynascope_is_refused(ws):
    with open_catalog(ws) as con:
        con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [SCHEMA_VERSION + 1])
    con = duckdb.connect(str(ws.catalog_path))
    try:
        with pytest.raises(RuntimeError, match="upgrade dynascope"):
            migrate(con)
    finally:
        con.close()


def holder_process(ws, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(ws.catalog_path)!r})
        print("holding", flush=True)
        time.sleep({seconds})
        con.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_lock_held_by_another_process_is_waited_for(ws):
    with open_catalog(ws):
        pass
    holder = holder_process(ws, 1.0)
    start = time.monotonic()
    with open_catalog(ws, wait_s=10) as con:  # retries until the holder lets go
        assert con.execute("SELECT 1").fetchone() == (1,)
    assert time.monotonic() - start > 0.3
    holder.wait()


def test_lock_held_too_long_names_the_holder(ws, cli):
    with open_catalog(ws):
        pass
    holder = holder_process(ws, 8.0)
    try:
        with pytest.raises(CatalogLockedError, match=f"process {holder.pid}"):
            with open_catalog(ws, wait_s=0.5):
                pass
        result = cli("datasets", env={"DYNASCOPE_LOCK_WAIT_S": "0.5"})
        assert result.code == 1 and f"locked by process {holder.pid}" in " ".join(result.stderr.split())
    finally:
        holder.kill()
        holder.wait()


def test_sql_command_is_read_only(ws, cli, tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    assert cli("import", str(data), "--name", "d").code == 0
    before = dump_catalog(ws)
    for statement in (
        "DELETE FROM examples",
        "DROP TABLE datasets",
        "SELECT 1; UPDATE datasets SET n_examples = 0",
        "CREATE TABLE x AS SELECT 1",
        "ATTACH 'other.db'",
    ):
        result = cli("sql", statement)
        assert result.code == 2, statement
        assert "read-only" in result.stderr
    assert dump_catalog(ws) == before
    rows = cli("sql", "WITH c AS (SELECT count(*) AS n FROM examples) SELECT n FROM c", "--json").json()
    assert rows == [{"n": 2}]
    bad = cli("sql", "SELECT nope FROM examples")
    assert bad.code == 2 and "SQL error" in bad.stderr


def test_relation_queries_work_on_every_open_of_the_catalog(ws):
    # DuckDB 2 keeps a half-fetched result open on the connection; a check inside open_catalog that left one made
    # `con.sql(...)` fail on the second open of a catalog in a process (the first migrates, which clears it)
    for _ in range(3):
        with open_catalog(ws) as con:
            assert con.sql("SELECT 42 AS answer").fetchall() == [(42,)]
