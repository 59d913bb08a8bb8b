"""The idempotent `sync`: fold what job processes wrote into their run folders into the catalog.

Job processes never open the catalog. Whichever process opens it (the app, a CLI command) calls `sync` first:
new runs are registered, run status follows events.jsonl, each complete shard and evaluation file is
registered exactly once (by path, in `artifacts`), and per-example metrics are recomputed when a run gained
complete epochs. Running it twice changes nothing the second time. A run folder it cannot read is skipped and
reported (`SyncReport.broken`); on a catalog opened read-only (an unwritable workspace) it does nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import ChainMap
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from storage.artifacts import (
    ARTIFACT_KINDS,
    BrokenRunError,
    RunState,
    attack_results_path,
    attack_summary_path,
    list_eval_files,
    list_shards,
    pid_alive,
    read_attack_summary,
    read_config,
    read_eval_summary,
    run_state,
)
from storage.catalog import is_read_only, transaction
from storage.generated import generated_paths, read_generated_summary, sync_generated
from storage.jsontext import dumps_json
from storage.metrics import materialise_metrics
from storage.workspace import Workspace

if TYPE_CHECKING:
    import pyarrow.parquet as pq


@dataclass
class SyncReport:
    runs_added: list[str] = field(default_factory=list)
    runs_updated: list[str] = field(default_factory=list)
    shards_registered: int = 0
    evals_registered: int = 0
    attacks_registered: int = 0
    datasets_generated: list[str] = field(default_factory=list)  # generate runs whose dataset landed
    metrics_runs: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # run id -> why it was skipped (listed as `broken`)
    read_only: bool = False  # the catalog was open read-only (an unwritable workspace): nothing was synced

    @property
    def changed(self) -> bool:
        return bool(
            self.runs_added
            or self.runs_updated
            or self.shards_registered
            or self.evals_registered
            or self.attacks_registered
            or self.datasets_generated
            or self.metrics_runs
        )

    def merge(self, other: SyncReport) -> None:
        self.runs_added += other.runs_added
        self.runs_updated += other.runs_updated
        self.shards_registered += other.shards_registered
        self.evals_registered += other.evals_registered
        self.attacks_registered += other.attacks_registered
        self.datasets_generated += other.datasets_generated
        self.metrics_runs += other.metrics_runs


# ---- broken run folders ------------------------------------------------------------------------------------
#
# A run folder sync cannot read (config.json unreadable, not JSON, not an object, a field of the wrong type; an
# unreadable events log; an evaluation summary that is not a JSON object) is skipped whole and reported; every
# other run and every command goes on. Broken runs are NOT written to the catalog: a broken config.json gives no
# trustworthy kind, dataset or creation time for a row, the user may fix or delete the folder at any moment, and a
# read-only workspace (no sync) must still show them. The folder is the truth, so the listings check the folders
# themselves (`broken_runs`, the same check sync makes) and show each broken run with status `broken` and the
# reason, over its catalog row when it was registered before it broke (that row keeps its last good state).


def check_run(run_dir: Path) -> tuple[dict[str, Any], RunState] | None:
    """A run folder's config and state, None for a folder still being created (no config.json yet), or
    BrokenRunError (with the reason) for one that cannot be read."""
    if not os.access(run_dir, os.R_OK | os.X_OK):
        raise BrokenRunError(run_dir, "the run folder cannot be read (permissions)")
    config = read_config(run_dir)
    if config is None:
        return None
    state = run_state(run_dir)
    if "eval" in set(config.get("artifacts") or ARTIFACT_KINDS):
        for _, path in list_eval_files(run_dir):
            read_eval_summary(run_dir, path.with_suffix(".json"))
    if "attack" in set(config.get("artifacts") or ARTIFACT_KINDS):
        read_attack_summary(run_dir)
    if "generated" in set(config.get("artifacts") or ARTIFACT_KINDS):
        read_generated_summary(run_dir)
    return config, state


def broken_runs(ws: Workspace) -> dict[str, str]:
    """run id -> reason, for every run folder of the workspace that sync skips as broken (no catalog access)."""
    found = {}
    for run_id in ws.run_ids():
        try:
            check_run(ws.run_dir(run_id))
        except BrokenRunError as exc:
            found[run_id] = exc.reason
    return found


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


# DuckDB errors that say something about the catalog or the process, not about a run's files (those name the file).
_CATALOG_TROUBLE = (
    duckdb.IOException,
    duckdb.InterruptException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.TransactionException,
)


def _run_file_errors() -> tuple[type[BaseException], ...]:
    """What reading a run's files may raise: OS, value and DuckDB errors, and Arrow's once pyarrow is loaded (the
    readers that need it import it: a sync with nothing new to read does without)."""
    arrow = sys.modules.get("pyarrow")
    return (OSError, ValueError, duckdb.Error) + ((arrow.ArrowException,) if arrow is not None else ())


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path)


def _sync(ws: Workspace, con: duckdb.DuckDBPyConnection) -> SyncReport:
    report = SyncReport()
    if is_read_only(con):
        report.read_only = True
        report.broken = broken_runs(ws)
        return report
    known = {
        row[0]: row[1:]
        for row in con.execute("SELECT run_id, status, epochs_done, metrics_epochs FROM runs").fetchall()
    }
    registered = {
        row[0]: row[1] for row in con.execute("SELECT path, source_mtime FROM artifacts").fetchall()
    }
    for run_id in ws.run_ids():
        run_dir = ws.run_dir(run_id)
        # Each run in its own transaction, noting what it changes aside (a ChainMap writes to its first map): a run
        # that turns out broken half-way (a corrupt shard or evaluation file) rolls back alone and leaves no trace
        # in the catalog or the report.
        run_report, run_registered = SyncReport(), ChainMap({}, registered)
        try:
            found = check_run(run_dir)
            if found is None:
                continue  # the launcher writes config.json last: a folder without it is still being created
            with transaction(con):
                _sync_run(ws, con, run_id, *found, known.get(run_id), run_registered, run_report)
        except BrokenRunError as exc:
            report.broken[run_id] = exc.reason
            continue
        except _run_file_errors() as exc:
            if isinstance(exc, _CATALOG_TROUBLE) and str(run_dir) not in str(exc):
                raise  # not about this run's files: the catalog itself (disk full, interrupted), for the caller
            report.broken[run_id] = f"{type(exc).__name__}: {exc}".replace(str(ws.root) + "/", "")[:500]
            continue
        report.merge(run_report)
        registered.update(run_registered.maps[0])
    return report


def _sync_run(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    config: dict[str, Any],
    state: RunState,
    known: tuple[Any, ...] | None,
    registered: MutableMapping[str, Any],
    report: SyncReport,
) -> None:
    """Fold one run folder into the catalog (inside the caller's transaction)."""
    run_dir = ws.run_dir(run_id)
    if state.status == "running" and not pid_alive(state.pid, run_id):
        # killed (kill -9, OOM, a reboot) without a last word: resumable from its last complete epoch
        state.status = "interrupted"
    if known is None:
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
                dumps_json(config, sort_keys=True),
                _ts(config.get("created_at")) or _ts(time.time()),
                _ts(state.finished_at),
            ],
        )
        report.runs_added.append(run_id)
    elif tuple(known[:2]) != (state.status, state.epochs_done):
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
        n_rows = _parquet_file(path).metadata.num_rows
        con.execute(
            "INSERT INTO artifacts (path, run_id, kind, epoch, rank, n_rows) VALUES (?, ?, 'dynamics', ?, ?, ?)",
            [rel, run_id, epoch, rank, n_rows],
        )
        registered[rel] = None
        report.shards_registered += 1

    metrics_epochs = known[2] if known is not None else 0
    if complete and state.epochs_done != metrics_epochs:
        materialise_metrics(
            con, run_id, [p for _, _, p in complete], el2n_epoch=config.get("el2n_epoch") or 0
        )
        con.execute("UPDATE runs SET metrics_epochs = ? WHERE run_id = ?", [state.epochs_done, run_id])
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
            [rel, run_id, eval_set, _parquet_file(path).metadata.num_rows, mtime],
        )
        registered[rel] = mtime
        report.evals_registered += 1

    if "attack" in artifacts:
        _sync_attack(ws, con, run_id, config, registered, report)

    if "generated" in artifacts and state.status == "done":
        examples_path = generated_paths(run_dir)[0]
        if sync_generated(con, run_id, run_dir, _relative(ws, examples_path), registered):
            report.datasets_generated.append(run_id)


QA_ATTACK_COLUMNS = ("answers", "perturbed_answers", "f1_before", "f1_after", "reason")


def _sync_attack(
    ws: Workspace,
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    config: dict[str, Any],
    registered: MutableMapping[str, Any],
    report: SyncReport,
) -> None:
    """An attack's summary row and per-example results, once its summary (written last) exists; again when the
    summary was rewritten (its mtime changed)."""
    run_dir = ws.run_dir(run_id)
    summary_path, results = attack_summary_path(run_dir), attack_results_path(run_dir)
    summary = read_attack_summary(run_dir)
    if summary is None or not results.is_file():
        return
    rel = _relative(ws, results)
    mtime = summary_path.stat().st_mtime
    if rel in registered and registered[rel] == mtime:
        return
    metrics = summary.get("metrics") or {}
    con.execute("DELETE FROM attacks WHERE run_id = ?", [run_id])
    con.execute("DELETE FROM attack_results WHERE run_id = ?", [run_id])
    con.execute(
        """INSERT INTO attacks (run_id, source_run, dataset, method, n_examples, clean_accuracy, aua,
                                success_rate, avg_queries, settings, clean_f1, f1, n_unattackable)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            run_id,
            str(summary.get("source_run") or config.get("source_run") or ""),
            str(summary.get("dataset") or config.get("dataset") or ""),
            str(summary.get("method") or config.get("method") or ""),
            summary.get("n_examples") or 0,
            metrics.get("clean_accuracy"),
            metrics.get("aua"),
            metrics.get("success_rate"),
            metrics.get("avg_queries"),
            dumps_json(summary.get("settings") or {}, sort_keys=True),
            metrics.get("clean_f1"),
            metrics.get("f1"),
            metrics.get("n_unattackable"),
        ],
    )
    src = "'" + results.as_posix().replace("'", "''") + "'"
    names = set(_parquet_file(results).schema_arrow.names)
    # attacks written before QA attacks existed have no QA columns: NULL there
    qa = ", ".join(c if c in names else f"NULL AS {c}" for c in QA_ATTACK_COLUMNS)
    con.execute(
        f"""INSERT INTO attack_results
            SELECT ?, example_id, method, label, text, text_pair, perturbed_text, prediction_before,
                   prediction_after, correct_before, correct_after, status, queries, changed_words, similarity,
                   {qa}
            FROM read_parquet({src})""",
        [run_id],
    )
    con.execute("DELETE FROM artifacts WHERE path = ?", [rel])
    con.execute(
        """INSERT INTO artifacts (path, run_id, kind, n_rows, source_mtime)
           VALUES (?, ?, 'attack', ?, ?)""",
        [rel, run_id, _parquet_file(results).metadata.num_rows, mtime],
    )
    registered[rel] = mtime
    report.attacks_registered += 1


def _register_eval(con: duckdb.DuckDBPyConnection, run_id: str, eval_set: str, path: Path) -> None:
    summary = read_eval_summary(path.parent.parent, path.with_suffix(".json"))
    con.execute("DELETE FROM evaluations WHERE run_id = ? AND eval_set = ?", [run_id, eval_set])
    con.execute("DELETE FROM predictions WHERE run_id = ? AND eval_set = ?", [run_id, eval_set])
    con.execute(
        "INSERT INTO evaluations (run_id, eval_set, n_examples, metrics) VALUES (?, ?, ?, ?)",
        [
            run_id,
            eval_set,
            summary.get("n_examples"),
            dumps_json(summary.get("metrics") or {}, sort_keys=True),
        ],
    )
    src = "'" + path.as_posix().replace("'", "''") + "'"
    con.execute(
        f"""INSERT INTO predictions (run_id, eval_set, example_id, prediction, correct, score)
            SELECT ?, ?, example_id, prediction, correct, score FROM read_parquet({src})""",
        [run_id, eval_set],
    )
