"""The idempotent `sync`: fold what job processes wrote into their run folders into the catalog.

Job processes never open the catalog. Whichever process opens it (the app, a CLI command) calls `sync` first:
new runs are registered, run status follows events.jsonl, each complete shard and evaluation file is
registered exactly once (by path, in `artifacts`), and per-example metrics are recomputed when a run gained
complete epochs. Running it twice changes nothing the second time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from storage.artifacts import ARTIFACT_KINDS, list_eval_files, list_shards, pid_alive, read_config, run_state
from storage.catalog import transaction
from storage.metrics import materialise_metrics
from storage.workspace import Workspace


@dataclass
class SyncReport:
    runs_added: list[str] = field(default_factory=list)
    runs_updated: list[str] = field(default_factory=list)
    shards_registered: int = 0
    evals_registered: int = 0
    metrics_runs: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.runs_added
            or self.runs_updated
            or self.shards_registered
            or self.evals_registered
            or self.metrics_runs
        )


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc).replace(tzinfo=None) if value else None


def _relative(ws: Workspace, path: Path) -> str:
    return path.relative_to(ws.root).as_posix()


# Another process cannot hold the catalog while we do, but threads of this one can (the app's workers): two
# syncs interleaving would both see a run as new and register it twice.
_sync_lock = threading.Lock()


def sync(ws: Workspace, con: duckdb.DuckDBPyConnection) -> SyncReport:
    with _sync_lock:
        return _sync(ws, con)


def _sync(ws: Workspace, con: duckdb.DuckDBPyConnection) -> SyncReport:
    report = SyncReport()
    known = {
        row[0]: row[1:]
        for row in con.execute("SELECT run_id, status, epochs_done, metrics_epochs FROM runs").fetchall()
    }
    registered = {
        row[0]: row[1] for row in con.execute("SELECT path, source_mtime FROM artifacts").fetchall()
    }
    for run_id in ws.run_ids():
        run_dir = ws.run_dir(run_id)
        config = read_config(run_dir)
        if config is None:
            continue  # the launcher writes config.json last: a folder without it is still being created
        state = run_state(run_dir)
        if state.status == "running" and not pid_alive(state.pid, run_id):
            # killed (kill -9, OOM, a reboot) without a last word: resumable from its last complete epoch
            state.status = "interrupted"
        with transaction(con):
            if run_id not in known:
                con.execute(
                    """INSERT INTO runs (run_id, kind, dataset, model, status, epochs_done, n_epochs, config,
                                         created_at, finished_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [
                        run_id,
                        config.get("kind", "train"),
                        config.get("dataset"),
                        config.get("model"),
                        state.status,
                        state.epochs_done,
                        config.get("epochs"),
                        json.dumps(config, sort_keys=True),
                        _ts(config.get("created_at")) or _ts(time.time()),
                        _ts(state.finished_at),
                    ],
                )
                report.runs_added.append(run_id)
            elif tuple(known[run_id][:2]) != (state.status, state.epochs_done):
                con.execute(
                    "UPDATE runs SET status = ?, epochs_done = ?, finished_at = ? WHERE run_id = ?",
                    [state.status, state.epochs_done, _ts(state.finished_at), run_id],
                )
                report.runs_updated.append(run_id)

            # What the job's kind leaves for sync (config.json lists it; a config from before the registry: all).
            artifacts = set(config.get("artifacts") or ARTIFACT_KINDS)
            # Only shards of epochs the run declared complete count: every rank's shard is then in place.
            complete = [(e, r, p) for e, r, p in list_shards(run_dir) if e < state.epochs_done]
            if "dynamics" not in artifacts:
                complete = []
            for epoch, rank, path in complete:
                rel = _relative(ws, path)
                if rel in registered:
                    continue
                n_rows = pq.ParquetFile(path).metadata.num_rows
                con.execute(
                    "INSERT INTO artifacts (path, run_id, kind, epoch, rank, n_rows) VALUES (?, ?, 'dynamics', ?, ?, ?)",
                    [rel, run_id, epoch, rank, n_rows],
                )
                registered[rel] = None
                report.shards_registered += 1

            metrics_epochs = known[run_id][2] if run_id in known else 0
            if complete and state.epochs_done != metrics_epochs:
                materialise_metrics(
                    con, run_id, [p for _, _, p in complete], el2n_epoch=config.get("el2n_epoch", 0)
                )
                con.execute(
                    "UPDATE runs SET metrics_epochs = ? WHERE run_id = ?", [state.epochs_done, run_id]
                )
                report.metrics_runs.append(run_id)

            for eval_set, path in list_eval_files(run_dir) if "eval" in artifacts else []:
                rel = _relative(ws, path)
                mtime = path.with_suffix(".json").stat().st_mtime
                if rel in registered and registered[rel] == mtime:
                    continue
                _register_eval(con, run_id, eval_set, path)  # replaces an earlier evaluation on the same set
                con.execute("DELETE FROM artifacts WHERE path = ?", [rel])
                con.execute(
                    """INSERT INTO artifacts (path, run_id, kind, eval_set, n_rows, source_mtime)
                       VALUES (?, ?, 'eval', ?, ?, ?)""",
                    [rel, run_id, eval_set, pq.ParquetFile(path).metadata.num_rows, mtime],
                )
                registered[rel] = mtime
                report.evals_registered += 1
    return report


def _register_eval(con: duckdb.DuckDBPyConnection, run_id: str, eval_set: str, path: Path) -> None:
    summary = json.loads(path.with_suffix(".json").read_text())
    con.execute("DELETE FROM evaluations WHERE run_id = ? AND eval_set = ?", [run_id, eval_set])
    con.execute("DELETE FROM predictions WHERE run_id = ? AND eval_set = ?", [run_id, eval_set])
    con.execute(
        "INSERT INTO evaluations (run_id, eval_set, n_examples, metrics) VALUES (?, ?, ?, ?)",
        [run_id, eval_set, summary.get("n_examples"), json.dumps(summary.get("metrics", {}), sort_keys=True)],
    )
    src = "'" + path.as_posix().replace("'", "''") + "'"
    con.execute(
        f"""INSERT INTO predictions (run_id, eval_set, example_id, prediction, correct, score)
            SELECT ?, ?, example_id, prediction, correct, score FROM read_parquet({src})""",
        [run_id, eval_set],
    )
