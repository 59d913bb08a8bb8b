"""One example as the detail view shows it: its record, its run's metrics, its per-epoch trajectory (read from
the run's shards, so a run still training shows too), the user's annotations, and where a QA prediction lies in
the context."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb

from engine.analysis.sql import rows_as_dicts
from storage.artifacts import list_shards, shard_scan_sql
from storage.workspace import Workspace


@dataclass
class ExampleDetail:
    dataset: str
    example_id: str
    task: str
    record: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # per epoch, in order
    annotations: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None

    @property
    def answers(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.record.get("answers") or "[]"))
        except (TypeError, json.JSONDecodeError):
            return []


def get_example(
    con: duckdb.DuckDBPyConnection, ws: Workspace, dataset: str, example_id: str, run_id: str | None
) -> ExampleDetail:
    cur = con.execute(
        """SELECT e.*, d.task FROM examples e JOIN datasets d ON d.name = e.dataset
           WHERE e.dataset = ? AND e.example_id = ?""",
        [dataset, example_id],
    )
    found = rows_as_dicts(cur)
    if not found:
        raise LookupError(f"no example {example_id!r} in dataset {dataset!r}")
    record = found[0]
    detail = ExampleDetail(dataset, example_id, record.pop("task"), record, run_id=run_id)
    detail.annotations = get_annotations(con, dataset, example_id)
    if run_id:
        cur = con.execute(
            "SELECT * FROM example_metrics WHERE run_id = ? AND example_id = ?", [run_id, example_id]
        )
        rows = rows_as_dicts(cur)
        detail.metrics = rows[0] if rows else {}
        detail.trajectory = trajectory(con, ws, run_id, example_id)
    return detail


def trajectory(
    con: duckdb.DuckDBPyConnection, ws: Workspace, run_id: str, example_id: str
) -> list[dict[str, Any]]:
    """Per-epoch records of one example read straight from the run's shards (a run still training too)."""
    run_dir = ws.run_dir(run_id)
    if not list_shards(run_dir):
        return []
    cur = con.cursor()
    try:
        cur.execute(
            f"SELECT * FROM {shard_scan_sql(run_dir)} WHERE example_id = ? ORDER BY epoch, rank", [example_id]
        )
        rows = rows_as_dicts(cur)
    finally:
        cur.close()
    seen: set[int] = set()
    unique = []
    for row in rows:  # a padded distributed epoch may repeat an example on two ranks: keep one
        if row["epoch"] not in seen:
            seen.add(row["epoch"])
            unique.append(row)
    return unique


def get_annotations(con: duckdb.DuckDBPyConnection, dataset: str, example_id: str) -> list[dict[str, Any]]:
    cur = con.execute(
        """SELECT tag, note, strftime(created_at, '%Y-%m-%d %H:%M') AS created FROM annotations
           WHERE dataset = ? AND example_id = ? ORDER BY created_at""",
        [dataset, example_id],
    )
    return rows_as_dicts(cur)


def add_annotation(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    example_id: str,
    tag: str | None = None,
    note: str | None = None,
) -> None:
    tag = (tag or "").strip() or None
    note = (note or "").strip() or None
    if tag is None and note is None:
        raise ValueError("an annotation needs a tag or a note")
    con.execute(
        "INSERT INTO annotations (dataset, example_id, tag, note) VALUES (?, ?, ?, ?)",
        [dataset, example_id, tag, note],
    )


_SPAN_RE = re.compile(r"^\s*(\d+)\s*[:,-]\s*(\d+)\s*$")


def prediction_span(prediction: Any, context: str) -> tuple[int, int] | None:
    """Character span of a QA prediction in the context: JSON {start, end | text}, 'start:end', or the text."""
    if prediction is None:
        return None
    text = str(prediction)
    try:
        obj = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        obj = None
    if isinstance(obj, dict):
        start = obj.get("start", obj.get("answer_start"))
        if isinstance(start, int):
            if isinstance(obj.get("end"), int):
                return start, int(obj["end"])
            if isinstance(obj.get("text"), str):
                return start, start + len(obj["text"])
        if isinstance(obj.get("text"), str):
            text = obj["text"]
    match = _SPAN_RE.match(text)
    if match and not text.strip().isdigit():
        start, end = int(match.group(1)), int(match.group(2))
        if 0 <= start <= end <= len(context):
            return start, end
    if not text.strip():
        return None
    pos = context.find(text)
    if pos < 0:
        pos = context.lower().find(text.lower())
    return (pos, pos + len(text)) if pos >= 0 else None
