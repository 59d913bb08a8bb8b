"""Small SQL helpers shared by the read layer, and saving a console query's result to a file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.csv as pacsv

from engine.errors import BadInputError
from storage.artifacts import write_parquet_atomic
from storage.queries import readonly_sql_table


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def rows_as_dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The rows of an executed cursor as dicts (column name -> value)."""
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


SAVE_FORMATS = {".csv": "CSV", ".parquet": "Parquet"}


def default_result_path(root: Path, suffix: str = ".csv") -> Path:
    """Where a console result is saved unless the user names a file: `<workspace>/exports/sql-<time><suffix>`,
    a new name each second (never overwriting an earlier result)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / "exports" / f"sql-{stamp}{suffix}"
    n = 2
    while path.exists():
        path = root / "exports" / f"sql-{stamp}-{n}{suffix}"
        n += 1
    return path


def save_query_result(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> int:
    """Run user-written SQL on a console connection (storage.catalog.open_console: read-only, nothing outside the
    catalog) and write its whole result to `path`, CSV or Parquet by the file's suffix; returns the rows written.
    The database only reads: the file is written here, by Arrow, to the one path the user named."""
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInputError(
            f"{path}: save a result as .csv or .parquet (the file name's suffix picks the format)"
        )
    if path.is_dir():
        raise BadInputError(f"{path} is a folder: name a .csv or .parquet file to save the result into")
    table = readonly_sql_table(con, sql)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "Parquet":
        write_parquet_atomic(table, path)
    else:
        tmp = path.with_name(f".{path.name}.tmp")
        pacsv.write_csv(table, tmp)
        os.replace(tmp, path)  # a reader never sees half a file
    return int(table.num_rows)
