"""Evaluations of every run (accuracy, EM/F1, worst-case F1 ...), flattened to one number per metric name, for
comparing runs across evaluation sets."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from engine.analysis.runs import origin
from engine.analysis.sql import rows_as_dicts

COMPARE_METRICS = ("accuracy", "exact", "f1", "worst_f1", "worst_exact")


def evaluations(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute(
        """SELECT e.run_id, e.eval_set, e.n_examples, e.metrics, r.kind, r.dataset,
                  json_extract(r.config, '$.selection') AS selection
           FROM evaluations e LEFT JOIN runs r USING (run_id) ORDER BY r.created_at, e.run_id, e.eval_set"""
    )
    rows = rows_as_dicts(cur)
    for row in rows:
        row["origin"] = origin(row)
        try:
            row["metrics"] = _flatten(json.loads(row["metrics"]))
        except (TypeError, json.JSONDecodeError):
            row["metrics"] = {}
    return rows


def _flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                out[name] = float(value)
            elif isinstance(value, dict):
                out.update(_flatten(value, f"{name}."))
    return out


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row["metrics"]:
            if name not in names:
                names.append(name)
    preferred = [m for m in COMPARE_METRICS if m in names]
    return preferred + sorted(n for n in names if n not in preferred)
