"""Read-only SQL for the CLI `sql` command, the app's console and the examples table."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa


class ReadOnlyViolation(ValueError):
    pass


class QueryTimeout(ReadOnlyViolation):
    """A console query ran past its time limit and was interrupted (the catalog is released at once)."""


# How long user-written SQL may run before it is interrupted (the console holds the catalog meanwhile).
SQL_TIMEOUT_S = float(os.environ.get("DYNASCOPE_SQL_TIMEOUT_S", "5"))


ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}


def check_readonly(sql: str) -> None:
    """Refuse anything but queries: the console is for looking, imports and jobs are for writing."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyViolation(f"the SQL does not parse: {exc}") from exc
    if not statements:
        raise ReadOnlyViolation("no SQL statement given")
    for statement in statements:
        kind = statement.type.name
        if kind not in ALLOWED_STATEMENTS:
            raise ReadOnlyViolation(
                f"only read-only queries (SELECT, WITH ... SELECT, EXPLAIN) are allowed here; got a {kind} statement"
            )


def scoped_condition(where: str) -> str:
    """A user's WHERE fragment as one parenthesised condition that cannot widen the query it is ANDed into.

    DuckDB's own parser must read the fragment as exactly one expression (`1=1) OR (1=1` or a second statement
    is refused); the closing parenthesis goes on a line of its own, so a trailing `--` comment cannot hide it."""
    try:
        duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise ReadOnlyViolation(f"--where {where!r} is not one SQL condition: {exc}") from exc
    return f"(\n{where}\n)"


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


@contextmanager
def _time_limited(con: duckdb.DuckDBPyConnection, timeout_s: float | None) -> Iterator[None]:
    """Interrupt the connection's query after `timeout_s` (default DYNASCOPE_SQL_TIMEOUT_S), said plainly."""
    limit_s = SQL_TIMEOUT_S if timeout_s is None else timeout_s
    timer = threading.Timer(limit_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        raise QueryTimeout(
            f"the query ran longer than {limit_s:g} s and was stopped; narrow it, or allow more time "
            "(--timeout, or DYNASCOPE_SQL_TIMEOUT_S)"
        ) from exc
    finally:
        timer.cancel()


def run_readonly_sql(
    con: duckdb.DuckDBPyConnection, sql: str, limit: int | None = None, timeout_s: float | None = None
) -> QueryResult:
    """Run user-written SQL on a console connection (storage.catalog.open_console: the database refuses writes
    and anything outside the catalog); interrupted after `timeout_s` (default DYNASCOPE_SQL_TIMEOUT_S).
    The statement check only gives a plainer message for the obvious cases; the connection is the guarantee."""
    check_readonly(sql)
    with _time_limited(con, timeout_s):
        result = con.execute(sql)
        columns = [d[0] for d in result.description] if result.description else []
        rows = result.fetchmany(limit) if limit is not None else result.fetchall()
    return QueryResult(columns, rows)


def readonly_sql_table(con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float | None = None) -> pa.Table:
    """The whole result of user-written SQL as an Arrow table, on a console connection and under the same checks
    and time limit as run_readonly_sql (for saving a result: the caller writes the file, never the database)."""
    check_readonly(sql)
    with _time_limited(con, timeout_s):
        return con.sql(sql).to_arrow_table()  # a relation: Arrow without a DB-API copy


def query_examples(
    con: duckdb.DuckDBPyConnection, dataset: str, where: str | None = None, limit: int = 20, offset: int = 0
) -> QueryResult:
    """One page of a dataset's examples; `where` is a user's SQL condition over the example columns."""
    condition = f"AND {scoped_condition(where)}" if where else ""
    sql = f"""SELECT example_id, text, text_pair, label, label_name, answers, is_impossible, title, orig_id
              FROM examples WHERE dataset = $dataset {condition}
              ORDER BY row_idx LIMIT {int(limit)} OFFSET {int(offset)}"""
    check_readonly(sql)
    cur = con.cursor()
    try:
        result = cur.execute(sql, {"dataset": dataset})
        columns = [d[0] for d in result.description]
        return QueryResult(columns, result.fetchall())
    finally:
        cur.close()
