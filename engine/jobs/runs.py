"""Run folders: what every job kind's launcher shares (run ids, exporting datasets, writing the folder).

The launcher (a kind's `create`) opens the catalog once, briefly, to export the training examples and evaluation sets
into `runs/<id>/inputs/` as Parquet, then writes `config.json` last (atomically): sync ignores a folder without
it, so a half-created run is never registered. The job process never opens the catalog; it reports through
`events.jsonl` (state, progress, epoch_end, metrics, log) and writes only into its run folder.

"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import BadInputError
from storage.artifacts import append_event, write_config, write_parquet_atomic
from storage.datasets import get_dataset
from storage.workspace import Workspace

EXPORT_COLUMNS = "example_id, text, text_pair, label, label_name, answers, is_impossible, orig_id"
# every column of an example, for a job that copies examples into a new dataset (generate's blend)
ALL_EXAMPLE_COLUMNS = EXPORT_COLUMNS + ", title"


def new_run_id(dataset: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-")[:40] or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def export_dataset(
    con: duckdb.DuckDBPyConnection,
    name: str,
    limit: int | None = None,
    what: str = "dataset",
    columns: str = EXPORT_COLUMNS,
) -> tuple[pa.Table, dict[str, Any]]:
    """One dataset's examples (file order) and its description, read in the launcher's catalog session."""
    meta = get_dataset(con, name)
    if meta is None:
        known = con.execute("SELECT name FROM datasets ORDER BY name").fetchall()
        raise BadInputError(
            f"no {what} named '{name}'; known: {', '.join(r[0] for r in known) or '(none yet: dynascope import)'}"
        )
    sql = f"SELECT {columns} FROM examples WHERE dataset = ? ORDER BY row_idx"
    params: list[Any] = [name]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    table = con.sql(sql, params=params).to_arrow_table()
    return table, {k: meta[k] for k in ("name", "task", "label_names", "is_pair", "version")}


def write_run(
    ws: Workspace, name: str, config: dict[str, Any], inputs: dict[str, pa.Table], n_epochs: int | None = None
) -> str:
    """Create `runs/<id>/` with its exported inputs (relative path -> table) and config.json, written last: sync
    ignores a folder without it, so a half-created run is never registered. Returns the run id."""
    run_id = new_run_id(name)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True)
    for rel, table in inputs.items():
        write_parquet_atomic(table, run_dir / "inputs" / rel)
    full = {**config, "run_id": run_id, "created_at": time.time()}
    append_event(run_dir, "state", status="created", **({"n_epochs": n_epochs} if n_epochs else {}))
    write_config(run_dir, full)
    return run_id
