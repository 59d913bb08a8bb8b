"""Runs as the user sees them: what each was trained on (a selection's name, not its full dataset) and where a
retrain came from ("ambiguous 33% of <run>"). Read from the catalog's `runs` table or a run's config.json."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from engine.analysis.selection import describe_selection

RUN_COLUMNS = """run_id, kind, dataset, json_extract_string(config, '$.subset') AS subset,
    json_extract_string(config, '$.source_run') AS source_run, json_extract(config, '$.selection') AS selection,
    status, epochs_done, n_epochs"""


def origin(config: dict[str, Any]) -> str | None:
    """'ambiguous 33% of <run>' for a run trained on a selection; None for a run on a whole dataset."""
    selection = config.get("selection")
    if isinstance(selection, str):
        selection = json.loads(selection)
    if not selection:
        return None
    return describe_selection(
        selection["run_id"],
        selection["region"],
        float(selection.get("fraction") or 1.0),
        bool(selection.get("balanced")),
        int(selection.get("seed") or 0),
        selection.get("bounds"),
    )


def trained_on(config: dict[str, Any]) -> str | None:
    """The dataset a run's examples came from as listed: the selection (subset) when there is one."""
    return config.get("subset") or config.get("dataset")


def list_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every run, oldest first: id, kind, trained on (subset or dataset), its full dataset, origin, status."""
    cur = con.execute(
        f"""SELECT {RUN_COLUMNS}, strftime(created_at, '%Y-%m-%d %H:%M:%S') AS created_at
            FROM runs ORDER BY created_at, run_id"""
    )
    cols = [d[0] for d in cur.description]
    runs = []
    for row in cur.fetchall():
        run = dict(zip(cols, row))
        run["origin"] = origin(run)
        run["selection"] = json.loads(run["selection"]) if run["selection"] else None
        run["trained_on"] = trained_on(run)
        runs.append(run)
    return runs
