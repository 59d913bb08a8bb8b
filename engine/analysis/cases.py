"""Case studies: per region of a map, the examples nearest the region's centre (or a seeded random sample), and
their Markdown export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from engine.analysis.format import fmt_value
from engine.analysis.regions import AXES, REGIONS, Bounds
from engine.analysis.sql import rows_as_dicts
from storage.workspace import Workspace


def case_studies(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    dataset: str,
    kind: str,
    bounds: Bounds,
    per_region: int = 5,
    mode: str = "centre",
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Per region: the examples nearest the region's centre (in axes scaled by their spread), or a seeded random
    sample. Deterministic: ties break on example_id, and the random order is a hash of (seed, example_id)."""
    xcol, ycol = (axis.column for axis in AXES[kind])
    region = bounds.region_sql(kind)
    if mode == "random":
        order = f"hash({int(seed)}::VARCHAR || '/' || example_id), example_id"
    else:
        order = f"(({xcol} - cx) / nullif(sx, 0)) ** 2 + (({ycol} - cy) / nullif(sy, 0)) ** 2 NULLS LAST, example_id"
    sql = f"""
        WITH m AS (
            SELECT *, {region} AS region FROM example_metrics
            WHERE run_id = $run AND {xcol} IS NOT NULL AND {ycol} IS NOT NULL
        ),
        c AS (
            SELECT region, avg({xcol}) AS cx, avg({ycol}) AS cy,
                   coalesce(stddev_pop({xcol}), 1) AS sx, coalesce(stddev_pop({ycol}), 1) AS sy
            FROM m GROUP BY region
        ),
        ranked AS (
            SELECT m.*, row_number() OVER (PARTITION BY m.region ORDER BY {order}) AS rnk
            FROM m JOIN c USING (region)
        )
        SELECT r.region, r.rnk, r.example_id, r.confidence, r.variability, r.correctness, r.forgetting,
               r.sensitivity, r.adv_variability, e.text, e.text_pair, e.label_name, e.answers
        FROM ranked r JOIN examples e ON e.dataset = $dataset AND e.example_id = r.example_id
        WHERE r.rnk <= $k ORDER BY r.region, r.rnk"""
    cur = con.cursor()
    try:
        cur.execute(sql, {"run": run_id, "dataset": dataset, "k": int(per_region)})
        rows = rows_as_dicts(cur)
    finally:
        cur.close()
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in REGIONS[kind]}
    for row in rows:
        out.setdefault(row["region"], []).append(row)
    return out


def case_studies_markdown(
    run_id: str,
    dataset: str,
    kind: str,
    bounds: Bounds,
    mode: str,
    seed: int,
    studies: dict[str, list[dict[str, Any]]],
) -> str:
    """The case studies as a Markdown document (what the app's export writes)."""
    xcol, ycol = (axis.column for axis in AXES[kind])
    how = "nearest the region's centre" if mode == "centre" else f"random sample, seed {seed}"
    lines = [
        f"# Case studies: run {run_id}",
        "",
        f"Dataset `{dataset}`, {kind} map, boundaries: {bounds.describe(kind)}. Examples per region: {how}.",
        "",
    ]
    for region, rows in studies.items():
        lines += [f"## {region} ({len(rows)} examples)", ""]
        if not rows:
            lines += ["(no examples in this region)", ""]
            continue
        for row in rows:
            text = " ".join(str(row["text"]).split())
            lines.append(f"### {row['example_id']}")
            lines.append("")
            lines.append(f"> {text}")
            if row.get("text_pair"):
                pair = " ".join(str(row["text_pair"]).split())
                lines.append(">")
                lines.append(f"> {pair[:600]}{'...' if len(pair) > 600 else ''}")
            lines.append("")
            gold = row.get("label_name")
            if row.get("answers"):
                try:
                    gold = "; ".join(a["text"] for a in json.loads(row["answers"]))
                except (TypeError, KeyError, json.JSONDecodeError):
                    pass
            lines.append(
                f"- gold: {gold or '-'}; {ycol} {fmt_value(row[ycol], 3)}, {xcol} {fmt_value(row[xcol], 3)}, "
                f"correctness {fmt_value(row['correctness'], 3)}, forgetting {fmt_value(row['forgetting'], 3)}"
            )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_path(ws: Workspace, run_id: str, kind: str) -> Path:
    """Where the export of a run's case studies goes: `<workspace>/exports/case-studies-<run>-<kind>.md`."""
    return ws.root / "exports" / f"case-studies-{run_id}-{kind}.md"
