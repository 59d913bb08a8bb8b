"""The examples table's pages: a filter (region, label, metric ranges, text, tag, a free WHERE, sort) and one
page of rows at a time by SQL (LIMIT/OFFSET), never more than a page in memory; `url()` names the filter.

Fast paths keep a million-example run as quick to page as a small one (see `query_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import duckdb

from engine.analysis.regions import Bounds
from engine.analysis.sql import lit, rows_as_dicts
from storage.queries import QueryResult, scoped_condition

# the per-example metrics the table shows, filters and sorts by (columns of `example_metrics`)
METRICS = (
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "aum",
    "el2n",
    "sensitivity",
    "adv_variability",
    "flip_rate",
)
EXAMPLE_COLUMNS = ("row_idx", "text", "label", "label_name")
SORTABLE = ("row_idx", "example_id", "label", *METRICS)


@dataclass(frozen=True)
class ExampleFilter:
    """What the examples table shows; `url()` is the header line."""

    dataset: str
    run_id: str | None = None
    kind: str = "cartography"
    region: str | None = None
    bounds: Bounds | None = None  # None: the fixed defaults (the app fills in the run's fitted ones)
    label: str | None = None
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    search: str | None = None
    where: str | None = None
    tag: str | None = None
    sort: str | None = None
    descending: bool = False

    @property
    def map_bounds(self) -> Bounds:
        return self.bounds or Bounds()

    @property
    def has_metrics(self) -> bool:
        return self.run_id is not None

    def sort_column(self) -> str:
        if self.sort:
            return self.sort
        return "row_idx"

    def conditions(self) -> tuple[list[str], list[str], dict[str, Any]]:
        """(conditions on metrics, conditions needing the example columns, parameters)."""
        metric_conds: list[str] = []
        example_conds: list[str] = []
        params: dict[str, Any] = {}
        if self.region and self.run_id:
            metric_conds.append(f"({self.map_bounds.region_sql(self.kind)}) = $region")
            params["region"] = self.region
        for i, (metric, lo, hi) in enumerate(self.ranges):
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
            if lo is not None:
                metric_conds.append(f"{metric} >= $lo{i}")
                params[f"lo{i}"] = float(lo)
            if hi is not None:
                metric_conds.append(f"{metric} <= $hi{i}")
                params[f"hi{i}"] = float(hi)
        if self.label is not None:
            example_conds.append("(CAST(label AS VARCHAR) = $label OR label_name = $label)")
            params["label"] = str(self.label)
        if self.search:
            example_conds.append(
                "(text ILIKE $search OR coalesce(text_pair, '') ILIKE $search OR example_id = $exact)"
            )
            params["search"] = f"%{self.search}%"
            params["exact"] = self.search
        if self.tag:
            example_conds.append(
                "EXISTS (SELECT 1 FROM annotations a WHERE a.dataset = $dataset AND a.example_id = x.example_id "
                "AND a.tag = $tag)"
            )
            params["tag"] = self.tag
        if self.where:
            example_conds.append(scoped_condition(self.where))
        return metric_conds, example_conds, params

    def url(self, page: int | None = None, total: int | None = None) -> str:
        base = f"run/{self.run_id}/examples" if self.run_id else f"dataset/{self.dataset}/examples"
        parts = []
        if self.region:
            parts.append(f"{self.kind}={self.region}")
            parts.append(f"bounds={self.map_bounds.describe(self.kind).replace('  ', ',').replace(' ', ':')}")
        if self.label is not None:
            parts.append(f"label={self.label}")
        for metric, lo, hi in self.ranges:
            parts.append(f"{metric}={'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}")
        if self.search:
            parts.append(f"q={self.search}")
        if self.tag:
            parts.append(f"tag={self.tag}")
        if self.where:
            parts.append(f"where={self.where}")
        parts.append(f"sort={'-' if self.descending else ''}{self.sort_column()}")
        if page is not None:
            parts.append(f"page={page + 1}")
        text = base + "?" + "&".join(quote(p, safe="=.:,-<>*%'/ ") for p in parts)
        if total is not None:
            text += f"  ({total:,} rows)"
        return text


def _metric_source(f: ExampleFilter) -> str:
    return f"(SELECT * FROM example_metrics WHERE run_id = {lit(f.run_id)})" if f.run_id else ""


def _base_relation(f: ExampleFilter) -> str:
    """Examples of the dataset joined to the run's metrics (when a run is chosen), as relation `x`."""
    if f.run_id:
        metric_cols = ", ".join(f"m.{c}" for c in ("epochs", *METRICS))
        return (
            f"(SELECT e.*, {metric_cols} FROM examples e JOIN {_metric_source(f)} m "
            f"ON e.example_id = m.example_id WHERE e.dataset = $dataset) x"
        )
    return "(SELECT * FROM examples e WHERE e.dataset = $dataset) x"


def page_columns(f: ExampleFilter) -> list[str]:
    cols = ["example_id", "row_idx", "label_name", "text"]
    if f.run_id:
        cols += ["confidence", "variability", "correctness", "forgetting", "aum"]
        if f.kind == "robustness":
            cols += ["sensitivity", "adv_variability", "flip_rate"]
        cols.append("region")
    return cols


def _in_list(values: list[str]) -> str:
    return ", ".join(lit(v) for v in values) or "NULL"


EXAMPLE_FIELDS = ("example_id", "row_idx", "text", "text_pair", "label", "label_name")


def _examples_by_ids(
    cur: duckdb.DuckDBPyConnection, f: ExampleFilter, ids: list[str]
) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    cur.execute(
        f"""SELECT {", ".join(EXAMPLE_FIELDS)} FROM examples
            WHERE dataset = ? AND example_id IN ({_in_list(ids)})""",
        [f.dataset],
    )
    return {row["example_id"]: row for row in rows_as_dicts(cur)}


def _metric_select(f: ExampleFilter) -> str:
    return ", ".join(("example_id", "epochs", *METRICS)) + f", ({f.map_bounds.region_sql(f.kind)}) AS region"


def _metrics_by_ids(
    cur: duckdb.DuckDBPyConnection, f: ExampleFilter, ids: list[str]
) -> dict[str, dict[str, Any]]:
    if not ids or not f.run_id:
        return {}
    cur.execute(
        f"SELECT {_metric_select(f)} FROM example_metrics WHERE run_id = ? AND example_id IN ({_in_list(ids)})",
        [f.run_id],
    )
    return {row["example_id"]: row for row in rows_as_dicts(cur)}


def _assemble(
    f: ExampleFilter, ids: list[str], examples: dict[str, Any], metrics: dict[str, Any]
) -> QueryResult:
    columns = page_columns(f)
    rows = []
    for example_id in ids:
        merged = {**examples.get(example_id, {}), **metrics.get(example_id, {}), "example_id": example_id}
        rows.append(tuple(merged.get(c) for c in columns))
    return QueryResult(columns, rows)


def run_covers_dataset(con: duckdb.DuckDBPyConnection, run_id: str, dataset: str) -> bool:
    """True when the run has metrics for every example of its dataset (then file order can be paged from the
    examples table alone)."""
    row = con.execute(
        """SELECT (SELECT count(*) FROM example_metrics WHERE run_id = ?),
                  (SELECT n_examples FROM datasets WHERE name = ?)""",
        [run_id, dataset],
    ).fetchone()
    return row is not None and row[0] == row[1]


def query_page(con: duckdb.DuckDBPyConnection, f: ExampleFilter, limit: int, offset: int) -> QueryResult:
    """One page of the filtered, sorted examples, never more rows than the page in memory.

    Fast paths for a million-example run: sorted by a metric with conditions only on metrics, the page's ids are
    cut from `example_metrics` (a top-N) and only those rows are looked up in `examples`; in file order over a
    run that covers its dataset, the page is cut from `examples` and its metrics looked up. Anything else (a
    free WHERE, text search with a metric sort, a run on a subset in file order) joins the two tables."""
    metric_conds, example_conds, params = f.conditions()
    sort = f.sort_column()
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}")
    direction = "DESC" if f.descending else "ASC"
    order = f"{sort} {direction} NULLS LAST, example_id"
    cur = con.cursor()
    try:
        if f.run_id and not example_conds and sort in (*METRICS, "example_id"):
            where = " AND ".join(metric_conds) or "TRUE"
            cur.execute(
                f"""SELECT {_metric_select(f)} FROM example_metrics WHERE run_id = $run AND {where}
                    ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}""",
                {**params, "run": f.run_id},
            )
            metrics = {row["example_id"]: row for row in rows_as_dicts(cur)}
            ids = list(metrics)
            return _assemble(f, ids, _examples_by_ids(cur, f, ids), metrics)
        plain_example_conds = [c for c in example_conds if not (f.where and c == scoped_condition(f.where))]
        if (
            f.run_id
            and not metric_conds
            and sort in ("row_idx", "label")
            and not f.where
            and plain_example_conds == example_conds
            and run_covers_dataset(cur, f.run_id, f.dataset)
        ):
            where = " AND ".join(["dataset = $dataset", *example_conds])
            cur.execute(
                f"""SELECT {", ".join(EXAMPLE_FIELDS)} FROM examples x WHERE {where}
                    ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}""",
                {**params, "dataset": f.dataset},
            )
            examples = {row["example_id"]: row for row in rows_as_dicts(cur)}
            ids = list(examples)
            return _assemble(f, ids, examples, _metrics_by_ids(cur, f, ids))
        region = f"({f.map_bounds.region_sql(f.kind)})" if f.run_id else "NULL"
        select = ", ".join(c if c != "region" else f"{region} AS region" for c in page_columns(f))
        where = " AND ".join(metric_conds + example_conds) or "TRUE"
        result = cur.execute(
            f"""SELECT {select} FROM {_base_relation(f)} WHERE {where}
                ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}""",
            {**params, "dataset": f.dataset},
        )
        columns = [d[0] for d in result.description]
        return QueryResult(columns, result.fetchall())
    finally:
        cur.close()


def count_rows(con: duckdb.DuckDBPyConnection, f: ExampleFilter) -> int:
    metric_conds, example_conds, params = f.conditions()
    if f.run_id and not example_conds:
        where = " AND ".join(metric_conds) or "TRUE"
        sql = f"SELECT count(*) FROM example_metrics WHERE run_id = {lit(f.run_id)} AND {where}"
        params.pop("dataset", None)
    else:
        params["dataset"] = f.dataset
        where = " AND ".join(metric_conds + example_conds) or "TRUE"
        sql = f"SELECT count(*) FROM {_base_relation(f)} WHERE {where}"
    cur = con.cursor()
    try:
        row = cur.execute(sql, params).fetchone()
    finally:
        cur.close()
    return int(row[0]) if row else 0
