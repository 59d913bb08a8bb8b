"""Runs as the user sees them: what each was trained on (a selection's name, not its full dataset) and where a
retrain came from ("ambiguous 33% of <run>"). Read from the catalog's `runs` table or a run's config.json.

`list_runs` is the CLI's listing; `runs_overview` the app's home (with a key metric); `get_run` one run's row
with cheap flags; `latest_run_with_metrics` what the screens open by default."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from engine.analysis.selection import describe_selection
from engine.analysis.sql import rows_as_dicts
from storage.artifacts import BROKEN, BrokenRunError, run_state
from storage.sync import broken_runs
from storage.workspace import Workspace

RUN_COLUMNS = """run_id, json_extract_string(config, '$.name') AS name, kind, dataset,
    json_extract_string(config, '$.subset') AS subset,
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


def run_label(run: dict[str, Any]) -> str:
    """What a run is called on screen: its name (`--name`; a retrain: its selection's), else its id."""
    return str(run.get("name") or run["run_id"])


def run_summary(run: dict[str, Any]) -> str:
    """A run told apart from its neighbours in a line: 'name · trained on · origin' ('baseline · sst2-train',
    'amb · sst2-run-ambiguous-33pct · ambiguous 33% of sst2-run'); a field equal to the one before is left out."""
    parts = [run_label(run)]
    for part in (run.get("trained_on") or trained_on(run), run.get("origin")):
        if part and part not in parts:
            parts.append(str(part))
    return " · ".join(parts)


def trained_on(config: dict[str, Any]) -> str | None:
    """The dataset a run's examples came from as listed: the selection (subset) when there is one."""
    return config.get("subset") or config.get("dataset")


def with_broken(
    runs: list[dict[str, Any]], ws: Workspace | None, blank: dict[str, Any]
) -> list[dict[str, Any]]:
    """`runs` (catalog rows) with every broken run folder of `ws` (storage.sync.broken_runs) as status `broken`
    and its `reason`: over its row when it was registered before it broke, else as a row of its own (`blank`
    filled in: a broken config.json tells nothing trustworthy), after the others. Every row gets `reason`."""
    broken = broken_runs(ws) if ws is not None else {}
    for run in runs:
        run["reason"] = broken.pop(run["run_id"], None)
        if run["reason"] is not None:
            run["status"] = BROKEN
    for run_id, reason in sorted(broken.items()):
        runs.append({**blank, "run_id": run_id, "status": BROKEN, "epochs_done": 0, "reason": reason})
    return runs


def list_runs(con: duckdb.DuckDBPyConnection, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Every run, oldest first: id, kind, trained on (subset or dataset), its full dataset, origin, status; with
    `ws`, also the run folders sync skipped as broken (status `broken`, `reason` says why)."""
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
    return with_broken(runs, ws, {c: None for c in [*cols, "origin", "trained_on"]})


def runs_overview(con: duckdb.DuckDBPyConnection, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Runs as the app's home lists them, oldest first, with a key metric: the latest evaluation's, else the last
    epoch's training metrics from events.jsonl (with `ws`). `dataset` is what the run trained on (a selection's
    name for a retrain). With `ws`, broken run folders are listed too (status `broken`, `reason`; see
    `with_broken`). Cheap on a million-example run (no scan of example_metrics)."""
    cur = con.execute(
        """SELECT r.run_id, json_extract_string(r.config, '$.name') AS name, r.kind, r.dataset AS full_dataset,
                  json_extract_string(r.config, '$.subset') AS subset,
                  json_extract(r.config, '$.selection') AS selection, r.model, r.status, r.epochs_done, r.n_epochs,
                  strftime(r.created_at, '%Y-%m-%d %H:%M') AS created, r.metrics_epochs,
                  (SELECT e.metrics FROM evaluations e WHERE e.run_id = r.run_id
                   ORDER BY e.created_at DESC, e.eval_set LIMIT 1) AS last_eval
           FROM runs r ORDER BY r.created_at, r.run_id"""
    )
    runs = with_broken(rows_as_dicts(cur), ws, {d[0]: None for d in cur.description})
    for run in runs:
        run["dataset"] = trained_on({"subset": run.get("subset"), "dataset": run.get("full_dataset")})
        run["origin"] = origin(run)
        run["train_metrics"] = {}
        if ws is not None and run["status"] != BROKEN:
            try:
                run["train_metrics"] = run_state(ws.run_dir(run["run_id"])).metrics
            except BrokenRunError:  # broke after the check above: listed as it was
                pass
        run["key_metric"] = key_metric(run)
    return runs


def key_metric(run: dict[str, Any]) -> str:
    """The one number a run is known by: accuracy, F1 or EM of its latest evaluation, else its training metric."""
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
        """SELECT r.run_id, json_extract_string(r.config, '$.name') AS name, r.kind, r.dataset, r.status,
                  r.epochs_done, r.n_epochs, r.metrics_epochs, d.task,
                  (r.metrics_epochs > 0)::INTEGER AS n_metrics,
                  EXISTS (SELECT 1 FROM example_metrics m WHERE m.run_id = r.run_id AND m.sensitivity IS NOT NULL)::INTEGER
                      AS n_adv
           FROM runs r LEFT JOIN datasets d ON d.name = r.dataset WHERE r.run_id = ?""",
        [run_id],
    )
    found = rows_as_dicts(cur)
    return found[0] if found else None


def latest_run_with_metrics(con: duckdb.DuckDBPyConnection) -> str | None:
    """The newest run that has per-example metrics (what the map, examples and cases open by default)."""
    row = con.execute(
        """SELECT r.run_id FROM runs r WHERE EXISTS (SELECT 1 FROM example_metrics m WHERE m.run_id = r.run_id)
           ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1"""
    ).fetchone()
    return row[0] if row else None
