"""Datasets as the app lists them: name, task, size, source and parent, in the order they were created.

(`storage.datasets.list_datasets` has every column, for the CLI; this is the app's short, cheap listing.)"""

from __future__ import annotations

from typing import Any

import duckdb

from engine.analysis.sql import rows_as_dicts


def list_datasets(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute("SELECT name, task, n_examples, source, parent FROM datasets ORDER BY created_at, name")
    return rows_as_dicts(cur)
