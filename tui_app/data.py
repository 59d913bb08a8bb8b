"""The app's reads and writes, as plain functions over a DuckDB connection (no Textual here).

Every function takes an open connection: the screens open the catalog in a worker thread with
`storage.catalog.open_catalog`, call one of these, and close it. Nothing is kept in memory beyond one page, one
grid of binned counts, or one example.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb

from engine.analysis.regions import (
    CARTOGRAPHY_REGIONS,
    ROBUSTNESS_REGIONS,
    CartographyBounds,
    RobustnessBounds,
    cartography_region_sql,
    robustness_region_sql,
)
from storage.artifacts import list_shards, run_state, shard_scan_sql
from storage.queries import QueryResult, check_readonly
from storage.workspace import Workspace

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
MAP_KINDS = ("cartography", "robustness")
REGIONS = {"cartography": CARTOGRAPHY_REGIONS, "robustness": ROBUSTNESS_REGIONS}
# axis column, axis label, fixed maximum (None: the data's maximum); the same axes as `dynascope map`
AXES: dict[str, tuple[tuple[str, str, float | None], tuple[str, str, float | None]]] = {
    "cartography": (("variability", "variability", 0.5), ("confidence", "confidence", 1.0)),
    "robustness": (
        ("sensitivity", "sensitivity", None),
        ("adv_variability", "adversarial variability", None),
    ),
}


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def rows_as_dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


# ---- bounds -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """Both maps' region boundaries; the app moves them from the keyboard."""

    cartography: CartographyBounds = CartographyBounds()
    robustness: RobustnessBounds = RobustnessBounds()

    def region_sql(self, kind: str) -> str:
        if kind == "robustness":
            return robustness_region_sql(self.robustness)
        return cartography_region_sql(self.cartography)

    def of(self, kind: str) -> CartographyBounds | RobustnessBounds:
        return self.robustness if kind == "robustness" else self.cartography

    def region_of(self, kind: str, x: float, y: float) -> str:
        """The region of a point (x, y) in the map's axes: the same rule as the SQL."""
        if kind == "robustness":  # x = sensitivity, y = adversarial variability
            b = self.robustness
            if y >= b.swing_variability:
                return "swing"
            return "robust" if x < b.robust_sensitivity else "non-robust"
        c = self.cartography
        if x >= c.ambiguous_variability:
            return "ambiguous"
        return "easy" if y >= c.easy_confidence else "hard"

    def lines(self, kind: str) -> tuple[float, float]:
        """(vertical boundary on x, horizontal boundary on y)."""
        if kind == "robustness":
            return self.robustness.robust_sensitivity, self.robustness.swing_variability
        return self.cartography.ambiguous_variability, self.cartography.easy_confidence

    def moved(self, kind: str, axis: str, delta: float) -> Bounds:
        """A copy with the vertical ('x') or horizontal ('y') boundary moved by delta (kept >= 0)."""
        if kind == "robustness":
            b = self.robustness
            if axis == "x":
                b = replace(b, robust_sensitivity=round(max(0.0, b.robust_sensitivity + delta), 4))
            else:
                b = replace(b, swing_variability=round(max(0.0, b.swing_variability + delta), 4))
            return replace(self, robustness=b)
        c = self.cartography
        if axis == "x":
            c = replace(
                c, ambiguous_variability=round(min(0.5, max(0.0, c.ambiguous_variability + delta)), 4)
            )
        else:
            c = replace(c, easy_confidence=round(min(1.0, max(0.0, c.easy_confidence + delta)), 4))
        return replace(self, cartography=c)

    def describe(self, kind: str) -> str:
        if kind == "robustness":
            b = self.robustness
            return f"swing adv_var>={b.swing_variability:g}  robust sens<{b.robust_sensitivity:g}"
        c = self.cartography
        return f"ambiguous var>={c.ambiguous_variability:g}  easy conf>={c.easy_confidence:g}"


# ---- home -------------------------------------------------------------------------------------------------


def list_datasets(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute("SELECT name, task, n_examples, source, parent FROM datasets ORDER BY created_at, name")
    return rows_as_dicts(cur)


def list_runs(con: duckdb.DuckDBPyConnection, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Runs with a key metric: the latest evaluation's, else the last epoch's training metrics from events.jsonl.
    Cheap on a million-example run (no scan of example_metrics)."""
    cur = con.execute(
        """SELECT r.run_id, r.kind, r.dataset, r.model, r.status, r.epochs_done, r.n_epochs,
                  strftime(r.created_at, '%Y-%m-%d %H:%M') AS created, r.metrics_epochs,
                  (SELECT e.metrics FROM evaluations e WHERE e.run_id = r.run_id
                   ORDER BY e.created_at DESC, e.eval_set LIMIT 1) AS last_eval
           FROM runs r ORDER BY r.created_at, r.run_id"""
    )
    runs = rows_as_dicts(cur)
    for run in runs:
        run["train_metrics"] = run_state(ws.run_dir(run["run_id"])).metrics if ws is not None else {}
        run["key_metric"] = key_metric(run)
    return runs


def key_metric(run: dict[str, Any]) -> str:
    if run.get("last_eval"):
        try:
            metrics = json.loads(run["last_eval"])
        except (TypeError, json.JSONDecodeError):
            metrics = {}
        for name in ("accuracy", "f1", "exact"):
            if isinstance(metrics.get(name), (int, float)):
                value = metrics[name]
                return f"{name} {value:.3f}" if value <= 1 else f"{name} {value:.1f}"
    for name in ("train_accuracy", "accuracy", "train_loss", "loss"):  # what training writes at epoch end
        value = (run.get("train_metrics") or {}).get(name)
        if isinstance(value, (int, float)):
            return f"{name} {value:.3f}"
    return ""


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """The run's row; n_metrics / n_adv are flags (0/1), cheap on a million-example run."""
    cur = con.execute(
        """SELECT r.run_id, r.kind, r.dataset, r.status, r.epochs_done, r.n_epochs, d.task,
                  (r.metrics_epochs > 0)::INTEGER AS n_metrics,
                  EXISTS (SELECT 1 FROM example_metrics m WHERE m.run_id = r.run_id AND m.sensitivity IS NOT NULL)::INTEGER
                      AS n_adv
           FROM runs r LEFT JOIN datasets d ON d.name = r.dataset WHERE r.run_id = ?""",
        [run_id],
    )
    found = rows_as_dicts(cur)
    return found[0] if found else None


def latest_run_with_metrics(con: duckdb.DuckDBPyConnection) -> str | None:
    row = con.execute(
        """SELECT r.run_id FROM runs r WHERE EXISTS (SELECT 1 FROM example_metrics m WHERE m.run_id = r.run_id)
           ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1"""
    ).fetchone()
    return row[0] if row else None


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run's job state from its folder (engine.jobs: events.jsonl and the process table, no catalog)."""
    from engine import jobs as engine_jobs

    return list(engine_jobs.list_jobs(ws))


def workspace_fingerprint(ws: Workspace) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of every events.jsonl and the catalog: cheap to poll, changes when a job or CLI writes."""
    found = []
    paths = [ws.run_dir(r) / "events.jsonl" for r in ws.run_ids()] + [ws.catalog_path]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        found.append((path.as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(found)


# ---- data map ---------------------------------------------------------------------------------------------


@dataclass
class MapGrid:
    """Binned counts of a run's examples on a width x height grid (row 0 at the bottom)."""

    run_id: str
    kind: str
    width: int
    height: int
    x_max: float
    y_max: float
    counts: dict[tuple[int, int], int]
    total: int

    def cell_centre(self, bx: int, by: int) -> tuple[float, float]:
        return (bx + 0.5) / self.width * self.x_max, (by + 0.5) / self.height * self.y_max


def _axis_max(con: duckdb.DuckDBPyConnection, run_id: str, kind: str) -> tuple[float, float]:
    (xcol, _, xfix), (ycol, _, yfix) = AXES[kind]
    if xfix is not None and yfix is not None:
        return xfix, yfix
    row = con.execute(
        f"SELECT max({xcol}), max({ycol}) FROM example_metrics WHERE run_id = ?", [run_id]
    ).fetchone()
    x_max = float(row[0]) if row and row[0] is not None and row[0] > 0 else 1.0
    y_max = float(row[1]) if row and row[1] is not None and row[1] > 0 else 1.0
    return xfix or x_max, yfix or y_max


def map_grid(
    con: duckdb.DuckDBPyConnection, run_id: str, kind: str, width: int, height: int, bounds: Bounds
) -> tuple[MapGrid, dict[str, int]]:
    """Density grid (one GROUP BY over integer bin numbers) and the region counts (one scan with FILTERs): a
    million-example run costs the same to draw as a thousand. Same axes and ranges as `engine.analysis.datamap` (the
    `dynascope map` text map); its `bin_counts` does the same in two GROUP BYs, which is slower at 1M rows."""
    (xcol, _, _), (ycol, _, _) = AXES[kind]
    width, height = max(2, int(width)), max(2, int(height))
    x_max, y_max = _axis_max(con, run_id, kind)
    cur = con.execute(
        f"""SELECT least(greatest(trunc({xcol} * {width / x_max!r})::INTEGER, 0), {width - 1}) AS bx,
                   least(greatest(trunc({ycol} * {height / y_max!r})::INTEGER, 0), {height - 1}) AS by,
                   count(*) AS n
            FROM example_metrics
            WHERE run_id = ? AND {xcol} IS NOT NULL AND {ycol} IS NOT NULL
            GROUP BY ALL""",
        [run_id],
    )
    counts = {(int(bx), int(by)): int(n) for bx, by, n in cur.fetchall()}
    grid = MapGrid(run_id, kind, width, height, x_max, y_max, counts, sum(counts.values()))
    return grid, region_counts(con, run_id, kind, bounds)


def region_counts(con: duckdb.DuckDBPyConnection, run_id: str, kind: str, bounds: Bounds) -> dict[str, int]:
    """Examples per region under the bounds, in one scan."""
    (xcol, _, _), (ycol, _, _) = AXES[kind]
    region = bounds.region_sql(kind)
    names = REGIONS[kind]
    filters = ", ".join(f"count(*) FILTER (WHERE r = {lit(name)})" for name in names)
    row = con.execute(
        f"""SELECT {filters} FROM (SELECT {region} AS r FROM example_metrics
            WHERE run_id = ? AND {xcol} IS NOT NULL AND {ycol} IS NOT NULL)""",
        [run_id],
    ).fetchone()
    return {name: int(row[i]) if row else 0 for i, name in enumerate(names)}


# ---- examples ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleFilter:
    """What the examples table shows; `url()` is the header line."""

    dataset: str
    run_id: str | None = None
    kind: str = "cartography"
    region: str | None = None
    bounds: Bounds = Bounds()
    label: str | None = None
    ranges: tuple[tuple[str, float | None, float | None], ...] = ()
    search: str | None = None
    where: str | None = None
    tag: str | None = None
    sort: str | None = None
    descending: bool = False

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
            metric_conds.append(f"({self.bounds.region_sql(self.kind)}) = $region")
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
            check_readonly(f"SELECT 1 WHERE ({self.where})")
            example_conds.append(f"({self.where})")
        return metric_conds, example_conds, params

    def url(self, page: int | None = None, total: int | None = None) -> str:
        base = f"run/{self.run_id}/examples" if self.run_id else f"dataset/{self.dataset}/examples"
        parts = []
        if self.region:
            parts.append(f"{self.kind}={self.region}")
            parts.append(f"bounds={self.bounds.describe(self.kind).replace('  ', ',').replace(' ', ':')}")
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
    return ", ".join(("example_id", "epochs", *METRICS)) + f", ({f.bounds.region_sql(f.kind)}) AS region"


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
        plain_example_conds = [c for c in example_conds if not (f.where and c == f"({f.where})")]
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
        region = f"({f.bounds.region_sql(f.kind)})" if f.run_id else "NULL"
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


# ---- one example ------------------------------------------------------------------------------------------


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


# ---- case studies -----------------------------------------------------------------------------------------


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
    (xcol, _, _), (ycol, _, _) = AXES[kind]
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


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def case_studies_markdown(
    run_id: str,
    dataset: str,
    kind: str,
    bounds: Bounds,
    mode: str,
    seed: int,
    studies: dict[str, list[dict[str, Any]]],
) -> str:
    (xcol, _, _), (ycol, _, _) = AXES[kind]
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
                f"- gold: {gold or '-'}; {ycol} {_fmt(row[ycol])}, {xcol} {_fmt(row[xcol])}, "
                f"correctness {_fmt(row['correctness'])}, forgetting {_fmt(row['forgetting'])}"
            )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_path(ws: Workspace, run_id: str, kind: str) -> Path:
    return ws.root / "exports" / f"case-studies-{run_id}-{kind}.md"


# ---- compare ----------------------------------------------------------------------------------------------

COMPARE_METRICS = ("accuracy", "exact", "f1", "worst_f1", "worst_exact")


def evaluations(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cur = con.execute(
        """SELECT e.run_id, e.eval_set, e.n_examples, e.metrics, r.kind, r.dataset
           FROM evaluations e LEFT JOIN runs r USING (run_id) ORDER BY r.created_at, e.run_id, e.eval_set"""
    )
    rows = rows_as_dicts(cur)
    for row in rows:
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
