"""Case studies: per region of a map, the examples nearest the region's centre (or a seeded random sample), with
their tags and notes, and their Markdown export: named by run, region and time (a new file each time, never over
an earlier one), and saying whether the run was complete when it was written (a run still training has regions
that may still move)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from engine.analysis.format import fmt_value
from engine.analysis.regions import AXES, REGIONS, Bounds
from engine.analysis.runs import run_label
from engine.analysis.sql import rows_as_dicts
from storage.artifacts import BrokenRunError, run_state
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
    notes = annotations_of(con, dataset, [row["example_id"] for row in rows])
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in REGIONS[kind]}
    for row in rows:
        row["annotations"] = notes.get(row["example_id"], [])
        out.setdefault(row["region"], []).append(row)
    return out


def annotations_of(
    con: duckdb.DuckDBPyConnection, dataset: str, example_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """The tags and notes of the given examples (oldest first), by example id."""
    if not example_ids:
        return {}
    cur = con.cursor()
    try:
        cur.execute(
            """SELECT example_id, tag, note, strftime(created_at, '%Y-%m-%d %H:%M') AS created FROM annotations
               WHERE dataset = ? AND list_contains(?, example_id) ORDER BY created_at, tag, note""",
            [dataset, example_ids],
        )
        found = rows_as_dicts(cur)
    finally:
        cur.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for row in found:
        out.setdefault(row.pop("example_id"), []).append(row)
    return out


def tags_text(annotations: list[dict[str, Any]]) -> str:
    """An example's tags, each once, in the order given: 'needs-review, sarcasm'."""
    return ", ".join(dict.fromkeys(a["tag"] for a in annotations if a.get("tag")))


@dataclass(frozen=True)
class RunCompleteness:
    """Whether a run was complete when its case studies were taken: its status and epochs from its events (the
    job's own record, newer than the catalog) and the epochs its per-example metrics were computed over."""

    status: str
    epochs_done: int
    n_epochs: int | None
    metrics_epochs: int | None = None

    @property
    def complete(self) -> bool:
        return self.status == "done"

    def sentence(self) -> str:
        total = self.n_epochs or "?"
        over = (
            f"; metrics over {self.metrics_epochs} of {total} epochs"
            if self.metrics_epochs is not None and self.metrics_epochs != self.n_epochs
            else ""
        )
        if self.complete:
            return f"complete (done, {self.epochs_done} of {total} epochs{over})."
        if self.status in ("running", "created", "starting"):
            return (
                f"**still training** ({self.epochs_done} of {total} epochs done{over}): the regions and these "
                "examples may change as it goes on."
            )
        return f"**incomplete** ({self.status} after {self.epochs_done} of {total} epochs{over})."


def run_completeness(ws: Workspace, run: dict[str, Any]) -> RunCompleteness:
    """`run` (engine.analysis.runs.get_run) as its events say it is now."""
    try:
        state = run_state(ws.run_dir(run["run_id"]))
        status, done, n_epochs = state.status, state.epochs_done, state.n_epochs or run.get("n_epochs")
    except BrokenRunError:
        status, done, n_epochs = "broken", int(run.get("epochs_done") or 0), run.get("n_epochs")
    return RunCompleteness(status, done, n_epochs, run.get("metrics_epochs"))


def case_studies_markdown(
    run_id: str,
    dataset: str,
    kind: str,
    bounds: Bounds,
    mode: str,
    seed: int,
    studies: dict[str, list[dict[str, Any]]],
    *,
    name: str | None = None,
    completeness: RunCompleteness | None = None,
    exported_at: datetime | None = None,
) -> str:
    """The case studies as a Markdown document (what the app's export writes): the run (its name when it has
    one), whether it was complete, when it was written, then per region its examples with their tags and notes."""
    xcol, ycol = (axis.column for axis in AXES[kind])
    how = "nearest the region's centre" if mode == "centre" else f"random sample, seed {seed}"
    title = f"{name} ({run_id})" if name and name != run_id else run_id
    lines = [f"# Case studies: run {title}", ""]
    if completeness is not None:
        lines += [f"Run: {completeness.sentence()}", ""]
    if exported_at is not None:
        lines += [f"Exported {exported_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC.", ""]
    lines += [
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
            annotations = row.get("annotations") or []
            if tags_text(annotations):
                lines.append(f"- tags: {tags_text(annotations)}")
            for note in (a for a in annotations if a.get("note")):
                lines.append(f"- note ({note['created']}): {' '.join(str(note['note']).split())}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def export_path(ws: Workspace, run: dict[str, Any], region: str, when: datetime) -> Path:
    """Where an export of a run's case studies goes:
    `<workspace>/exports/case-studies-<run name or id>-<region>-<YYYYmmdd-HHMMSS>.md` (region: one region, or
    `all-<kind>` for every region of a map). The name is where the writer starts: a name taken already gets -2,
    -3 ... (storage.artifacts.write_new_file), so an export never replaces an earlier one."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run_label(run)).strip("-.") or run["run_id"]
    return ws.root / "exports" / f"case-studies-{slug}-{region}-{when:%Y%m%d-%H%M%S}.md"
