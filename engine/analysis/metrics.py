"""Per-example metrics with their map regions (what `dynascope metrics` lists and exports), and the per-region
summary printed above them."""

from __future__ import annotations

from typing import Any

import duckdb

from engine.analysis.regions import (
    CartographyBounds,
    RobustnessBounds,
    cartography_region_sql,
    robustness_region_sql,
)
from storage.metrics import METRIC_COLUMNS

METRIC_FIELDS = METRIC_COLUMNS[1:]  # every per-example metric, without the id


def metrics_query(
    info: dict[str, Any],
    cart: CartographyBounds,
    rob: RobustnessBounds,
    region: str | None = None,
    limit: int | None = None,
) -> tuple[str, list[Any]]:
    """Per-example metrics joined with the example's label and its map regions, in dataset order. `info` is
    `selection.run_info`'s (run_id, dataset, n_adversarial)."""
    rob_sql = robustness_region_sql(rob) if info["n_adversarial"] else "NULL::VARCHAR"
    metric_cols = ", ".join(f"m.{c}" for c in METRIC_FIELDS)
    params: list[Any] = [info["run_id"], info["dataset"] or ""]
    where = ""
    if region:
        where = "WHERE m.region = ? OR m.robustness_region = ?"
        params += [region, region]
    sql = f"""
        SELECT m.example_id, e.label, e.label_name, m.region, m.robustness_region,
               round(m.correctness * m.epochs)::INTEGER AS correct_epochs, {metric_cols}
        FROM (
            SELECT *, {cartography_region_sql(cart)} AS region, {rob_sql} AS robustness_region
            FROM example_metrics WHERE run_id = ?
        ) m
        LEFT JOIN examples e ON e.dataset = ? AND e.example_id = m.example_id
        {where}
        ORDER BY e.row_idx NULLS LAST, m.example_id
        {f"LIMIT {int(limit)}" if limit is not None else ""}
    """
    return sql, params


def region_summary(
    con: duckdb.DuckDBPyConnection, info: dict[str, Any], cart: CartographyBounds, rob: RobustnessBounds
) -> list[list[Any]]:
    """[map, region, examples, mean confidence, variability, correctness, forgetting] per region of the
    cartography map (and of the robustness map when the run has adversarial records)."""
    kinds = [("cartography", cartography_region_sql(cart))]
    if info["n_adversarial"]:
        kinds.append(("robustness", robustness_region_sql(rob)))
    out = []
    for kind, expr in kinds:
        for region, n, conf, var, corr, forg in con.execute(
            f"""SELECT {expr} AS region, count(*), avg(confidence), avg(variability), avg(correctness), avg(forgetting)
                FROM example_metrics WHERE run_id = ? GROUP BY ALL ORDER BY region""",
            [info["run_id"]],
        ).fetchall():
            out.append([kind, region, n, conf, var, corr, forg])
    return out
