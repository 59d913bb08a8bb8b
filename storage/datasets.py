"""Datasets and examples in the catalog: write one whole dataset atomically, list, page."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from storage.catalog import transaction

if TYPE_CHECKING:
    import pyarrow as pa

    EXAMPLE_SCHEMA: pa.Schema  # the catalog's example columns (made on first use: see example_schema)


@functools.cache
def example_schema() -> pa.Schema:
    """The catalog's example columns as an Arrow schema (`EXAMPLE_SCHEMA`). A function, so that importing this
    module does not import pyarrow: a command that only reads the catalog starts without it."""
    import pyarrow as pa

    return pa.schema(
        [
            ("example_id", pa.string()),
            ("row_idx", pa.int64()),
            ("text", pa.string()),
            ("text_pair", pa.string()),
            ("label", pa.int32()),
            ("label_name", pa.string()),
            ("answers", pa.string()),
            ("is_impossible", pa.bool_()),
            ("title", pa.string()),
            ("orig_id", pa.string()),
        ]
    )


def __getattr__(name: str) -> Any:
    if name == "EXAMPLE_SCHEMA":
        return example_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class DatasetSpec:
    """One dataset ready to land: its description and all of its examples."""

    name: str
    task: str
    source: str
    format: str
    examples: pa.Table
    label_names: list[str] | None = None
    is_pair: bool = False
    version: str | None = None
    parent: str | None = None
    notes: list[str] = field(default_factory=list)


class DatasetExistsError(ValueError):
    pass


def dataset_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return con.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0] > 0  # type: ignore[index]


def write_dataset(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, replace: bool = False) -> int:
    """Land the dataset whole or not at all; returns the number of examples."""
    with transaction(con):
        return insert_dataset(con, spec, replace)


def insert_dataset(con: duckdb.DuckDBPyConnection, spec: DatasetSpec, replace: bool = False) -> int:
    """`write_dataset` inside the caller's transaction (sync folds a generated dataset into its own)."""
    schema = example_schema()
    table = spec.examples.select(schema.names).cast(schema)
    if dataset_exists(con, spec.name):
        if not replace:
            raise DatasetExistsError(
                f"a dataset named '{spec.name}' already exists; choose another --name or pass --replace"
            )
        con.execute("DELETE FROM examples WHERE dataset = ?", [spec.name])
        con.execute("DELETE FROM datasets WHERE name = ?", [spec.name])
    con.execute(
        """INSERT INTO datasets (name, task, n_examples, source, format, label_names, is_pair, version, parent)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            spec.name,
            spec.task,
            table.num_rows,
            spec.source,
            spec.format,
            json.dumps(spec.label_names) if spec.label_names is not None else None,
            spec.is_pair,
            spec.version,
            spec.parent,
        ],
    )
    con.register("incoming_examples", table)
    try:
        con.execute("INSERT INTO examples BY NAME SELECT ? AS dataset, * FROM incoming_examples", [spec.name])
    finally:
        con.unregister("incoming_examples")
    return table.num_rows


def list_datasets(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute(
        """SELECT name, task, n_examples, source, format, label_names, is_pair, version, parent,
                  strftime(created_at, '%Y-%m-%d %H:%M:%S') AS created_at
           FROM datasets ORDER BY created_at, name"""
    )
    cols = [d[0] for d in cur.description]
    rows = []
    for row in cur.fetchall():
        item = dict(zip(cols, row))
        item["label_names"] = json.loads(item["label_names"]) if item["label_names"] else None
        rows.append(item)
    return rows


def get_dataset(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any] | None:
    for item in list_datasets(con):
        if item["name"] == name:
            return item
    return None
