"""Jobs: a run folder plus a detached process running `dynascope job run <run_dir>`.

The launcher (`create_run`) opens the catalog once, briefly, to export the training examples and evaluation sets
into `runs/<id>/inputs/` as Parquet, then writes `config.json` last (atomically): sync ignores a folder without
it, so a half-created run is never registered. The job process never opens the catalog; it reports through
`events.jsonl` (state, progress, epoch_end, metrics, log) and writes only into its run folder.

Public API for the app: create_run, launch, cancel, resume, list_jobs, run_job.

Statuses: created, running, done, failed, cancelled (from events); `list_jobs` reports `interrupted` for a run
whose events say running but whose process is gone (killed with -9, machine rebooted): `--resume` continues it
from its last complete epoch.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import BadInputError
from storage.artifacts import (
    append_event,
    pid_alive,
    read_config,
    run_state,
    write_config,
    write_parquet_atomic,
)
from storage.catalog import open_catalog
from storage.datasets import get_dataset
from storage.workspace import Workspace

EXPORT_COLUMNS = "example_id, text, text_pair, label, label_name, answers, is_impossible, orig_id"
KINDS = ("train", "evaluate")


def new_run_id(dataset: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-")[:40] or "run"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def export_dataset(
    con: duckdb.DuckDBPyConnection, name: str, limit: int | None = None, what: str = "dataset"
) -> tuple[pa.Table, dict[str, Any]]:
    """One dataset's examples (file order) and its description, read in the launcher's catalog session."""
    meta = get_dataset(con, name)
    if meta is None:
        known = con.execute("SELECT name FROM datasets ORDER BY name").fetchall()
        raise BadInputError(
            f"no {what} named '{name}'; known: {', '.join(r[0] for r in known) or '(none yet: dynascope import)'}"
        )
    sql = f"SELECT {EXPORT_COLUMNS} FROM examples WHERE dataset = ? ORDER BY row_idx"
    params: list[Any] = [name]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    table = con.sql(sql, params=params).to_arrow_table()
    return table, {k: meta[k] for k in ("name", "task", "label_names", "is_pair", "version")}


def _positive(config: dict[str, Any], key: str, kind: type, minimum: float = 1) -> None:
    value = config.get(key)
    if value is None:
        return
    try:
        value = kind(value)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{key} must be a number, got {config[key]!r}") from exc
    if value < minimum or (kind is float and value <= 0):
        raise BadInputError(f"{key} must be at least {minimum}, got {value}")
    config[key] = value


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    from engine.training import DEFAULT_MODEL, DYNAMICS_MODES

    cfg = {k: v for k, v in config.items() if v is not None}
    if not cfg.get("dataset"):
        raise BadInputError("a training run needs a dataset")
    cfg.setdefault("kind", "train")
    if cfg["kind"] not in KINDS:
        raise BadInputError(f"unknown job kind {cfg['kind']!r}; expected one of {', '.join(KINDS)}")
    cfg.setdefault("model", DEFAULT_MODEL)
    for key in ("epochs", "batch_size", "limit", "nproc", "grad_accum", "max_length", "eval_batch_size"):
        _positive(cfg, key, int)
    if cfg.get("max_length") is not None and cfg["max_length"] < 16:
        raise BadInputError(f"max_length must be at least 16 tokens, got {cfg['max_length']}")
    _positive(cfg, "lr", float, 0)
    _positive(cfg, "seed", int, 0)
    cfg.setdefault("dynamics", "inline")
    if cfg["dynamics"] not in DYNAMICS_MODES:
        raise BadInputError(f"dynamics must be one of {', '.join(DYNAMICS_MODES)}, got {cfg['dynamics']!r}")
    model = str(cfg["model"])
    if model != DEFAULT_MODEL and (
        model.startswith((".", "/", "~")) or os.sep in model and Path(model).exists()
    ):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise BadInputError(
                f"--model {model}: no such folder (give a Hugging Face model id or a local folder)"
            )
        cfg["model"] = str(path.resolve())
    return cfg


def create_run(ws: Workspace, config: dict[str, Any]) -> str:
    """Make `runs/<id>/` with exported inputs and config.json (last); returns the run id. Nothing is launched.

    kind "train" (default): dataset, and optionally model, epochs, max_length, batch_size, lr, seed, limit,
    dynamics, subset, eval (dataset names), nproc, grad_accum, warmup_ratio; unknown keys are kept as given.
    kind "evaluate": run (or source_run): the trained run to score; eval (or dataset): the sets to score it on.
    """
    if config.get("kind") == "evaluate":
        return create_eval_run(ws, config)
    from engine.evaluation import eval_file_stem
    from engine.training import TrainConfig

    cfg = validate_config(config)
    dataset, subset = cfg["dataset"], cfg.get("subset")
    eval_names = list(dict.fromkeys(cfg.pop("eval", None) or []))
    for name in eval_names:
        eval_file_stem(name)
    with open_catalog(ws) as con:
        _, meta = export_dataset(con, dataset, limit=0)
        if subset:
            train, sub_meta = export_dataset(con, subset, cfg.get("limit"), what="subset")
            outside = con.execute(
                """SELECT count(*) FROM examples s WHERE s.dataset = ? AND NOT EXISTS
                   (SELECT 1 FROM examples d WHERE d.dataset = ? AND d.example_id = s.example_id)""",
                [subset, dataset],
            ).fetchone()[0]  # type: ignore[index]
            if outside:
                raise BadInputError(f"--subset {subset}: {outside} of its examples are not in '{dataset}'")
        else:
            train, _ = export_dataset(con, dataset, cfg.get("limit"))
        evals = [export_dataset(con, name, what="evaluation set") for name in eval_names]
    if train.num_rows == 0:
        raise BadInputError(f"'{subset or dataset}' has no examples to train on")
    if meta["task"] == "classification":
        unlabeled = train.column("label").null_count
        if unlabeled:
            raise BadInputError(
                f"'{subset or dataset}' has {unlabeled} unlabeled examples; training needs labels"
            )
        if subset:
            from engine.evaluation import map_labels

            # a subset may hold fewer classes, so its own class indices can differ: re-index by label name
            train = map_labels(train, meta["label_names"] or [], sub_meta["label_names"], subset)
    for _table, emeta in evals:
        if emeta["task"] != meta["task"]:
            raise BadInputError(
                f"--eval {emeta['name']}: a {emeta['task']} dataset, but '{dataset}' is {meta['task']}"
            )

    run_id = new_run_id(subset or dataset)
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True)
    write_parquet_atomic(train, run_dir / "inputs" / "train.parquet")
    for table, emeta in evals:
        write_parquet_atomic(table, run_dir / "inputs" / "eval" / f"{emeta['name']}.parquet")
    full = {
        k: v for k, v in cfg.items() if k not in ("created_at",)
    }  # keep what callers add (parent_run, ...)
    full |= TrainConfig.from_dict(
        {
            **cfg,
            "task": meta["task"],
            "label_names": meta["label_names"],
            "version": meta["version"],
            "is_pair": meta["is_pair"],
            "eval_sets": [emeta for _, emeta in evals],
        }
    ).to_dict()
    full.update(
        kind=cfg["kind"],
        run_id=run_id,
        created_at=time.time(),
        n_train_examples=train.num_rows,
        el2n_epoch=int(cfg.get("el2n_epoch", 0)),
    )
    append_event(run_dir, "state", status="created", n_epochs=full["epochs"])
    write_config(run_dir, full)  # last: from here on, sync registers the run
    return run_id


def create_eval_run(ws: Workspace, config: dict[str, Any]) -> str:
    """An evaluate job: scores a trained run on datasets exported here; results land in the trained run's
    eval/ folder (so they belong to that run in the catalog), progress in this job's events."""
    from engine.evaluation import eval_file_stem

    source = config.get("run") or config.get("source_run")
    names = list(dict.fromkeys(config.get("eval") or ([config["dataset"]] if config.get("dataset") else [])))
    if not source:
        raise BadInputError("an evaluate job needs the run to evaluate (run)")
    if not names:
        raise BadInputError("an evaluate job needs at least one dataset to evaluate on (eval)")
    source_cfg = read_config(ws.run_dir(source))
    if source_cfg is None:
        raise BadInputError(f"no run named '{source}' in {ws.root}")
    for name in names:
        eval_file_stem(name)
    with open_catalog(ws) as con:
        evals = [export_dataset(con, name, what="evaluation set") for name in names]
    for _table, meta in evals:
        if meta["task"] != source_cfg.get("task"):
            raise BadInputError(
                f"'{meta['name']}' is a {meta['task']} dataset; run {source} is {source_cfg.get('task')}"
            )
    run_id = new_run_id(f"eval-{source}")
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True)
    for table, meta in evals:
        write_parquet_atomic(table, run_dir / "inputs" / "eval" / f"{meta['name']}.parquet")
    full = {k: v for k, v in config.items() if k not in ("created_at", "eval")}
    full.update(
        kind="evaluate",
        run=source,
        source_run=source,
        dataset=names[0],
        model=source_cfg.get("model"),
        task=source_cfg.get("task"),
        eval_sets=[m for _, m in evals],
        run_id=run_id,
        created_at=time.time(),
    )
    append_event(run_dir, "state", status="created")
    write_config(run_dir, full)
    return run_id


def run_evaluate_job(ws_runs: Path, run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    import pyarrow.parquet as pq

    from engine.evaluation import evaluate_table, load_run_model
    from engine.training import TrainConfig

    source_dir = ws_runs / config["run"]
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    model = load_run_model(source_dir, cfg)
    sets = config["eval_sets"]
    for index, meta in enumerate(sets):
        if flag.requested:
            return "cancelled"
        append_event(run_dir, "log", message=f"evaluating {config['run']} on {meta['name']}")
        table = pq.read_table(run_dir / "inputs" / "eval" / f"{meta['name']}.parquet")
        # one "epoch" per evaluation set, so the app's progress bar and ETA read as for training (throttled)
        started, last = time.monotonic(), [0.0]

        def on_batch(
            done: int, total: int, index: int = index, started: float = started, last: list = last
        ) -> None:
            now = time.monotonic()
            if now - last[0] < 1.0 and done not in (1, total):
                return
            last[0] = now
            eta = (now - started) / done * (total - done)
            append_event(
                run_dir,
                "progress",
                epoch=index,
                n_epochs=len(sets),
                step=done,
                total=total,
                eta_s=round(eta, 1),
            )

        summary = evaluate_table(
            source_dir, model, cfg, meta["name"], table, meta, stop=lambda: flag.requested, on_batch=on_batch
        )
        if summary is None:
            return "cancelled"
        append_event(
            run_dir, "metrics", metrics={f"{meta['name']}/{k}": v for k, v in summary["metrics"].items()}
        )
    return "done"


# ---- processes ---------------------------------------------------------------------------------------------


def job_command(run_dir: Path) -> list[str]:
    """`dynascope job run RUN_DIR`, through the interpreter that runs us (no reliance on PATH)."""
    return [sys.executable, "-m", "tui_app", "job", "run", str(run_dir)]


def spawn(ws: Workspace, run_id: str) -> subprocess.Popen[bytes]:
    run_dir = ws.run_dir(run_id)
    if read_config(run_dir) is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}")
    with open(run_dir / "job.log", "ab") as log:
        # A new session: the job survives the terminal, the app and the SSH connection closing (and a ctrl+c
        # in the terminal reaches only the launcher, which then cancels the job cleanly).
        proc = subprocess.Popen(
            job_command(run_dir),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    # Reap the child when it ends, so a long-lived launcher (the app) never collects zombies.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    return proc


def launch(ws: Workspace, run_id: str) -> int:
    """Start the job detached; returns its pid."""
    info = job_info(ws, run_id)
    if info["alive"]:
        raise BadInputError(f"run '{run_id}' is already running (pid {info['pid']})")
    return spawn(ws, run_id).pid


def resume(ws: Workspace, run_id: str) -> subprocess.Popen[bytes]:
    """Continue a killed, failed or cancelled run from its last complete epoch."""
    info = job_info(ws, run_id)
    if info["status"] == "done":
        raise BadInputError(f"run '{run_id}' already finished; nothing to resume")
    if info["alive"]:
        raise BadInputError(f"run '{run_id}' is still running (pid {info['pid']}); nothing to resume")
    append_event(ws.run_dir(run_id), "log", message=f"resume requested after epoch {info['epochs_done']}")
    return spawn(ws, run_id)


def cancel(ws: Workspace, run_id: str) -> bool:
    """SIGTERM the job: it stops at the next step and ends as `cancelled`, resumable
    from its last complete epoch. False when there was nothing running to cancel."""
    info = job_info(ws, run_id)
    pid = info["pid"]
    if not info["alive"] or pid is None:
        return False
    try:
        # The pid only, not its group: with several ranks the supervisor forwards the signal to torchrun, which
        # forwards it to every rank once (a second SIGTERM would cut torchrun's graceful shutdown short).
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def job_info(ws: Workspace, run_id: str) -> dict[str, Any]:
    run_dir = ws.run_dir(run_id)
    config = read_config(run_dir)
    if config is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}")
    state = run_state(run_dir)
    alive = not state.finished and pid_alive(state.pid, run_id)
    status = state.status
    if status == "running" and not alive:
        status = "interrupted"
    return {
        "run_id": run_id,
        "kind": config.get("kind", "train"),
        "dataset": config.get("dataset"),
        "model": config.get("model"),
        "status": status,
        "epochs_done": state.epochs_done,
        "n_epochs": state.n_epochs or config.get("epochs"),
        "progress": state.progress,
        "metrics": state.metrics,
        "message": state.message,
        "pid": state.pid,
        "alive": alive,
        "created_at": config.get("created_at"),
        "finished_at": state.finished_at,
    }


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run of the workspace, from its config and events (no catalog access), oldest first."""
    jobs = []
    for run_id in ws.run_ids():
        if read_config(ws.run_dir(run_id)) is None:
            continue
        jobs.append(job_info(ws, run_id))
    return sorted(jobs, key=lambda j: (j["created_at"] or 0, j["run_id"]))


# ---- the job process -----------------------------------------------------------------------------------------


def run_job(run_dir: str | Path) -> int:
    """The job body (`dynascope job run RUN_DIR`): 0 done, 1 failed, 3 cancelled."""
    from engine.training import StopFlag, finish, run_training

    path = Path(run_dir).resolve()
    config = read_config(path)
    if config is None:
        raise BadInputError(f"{path}: no config.json (not a run folder, or it is still being created)")
    flag = StopFlag().install()
    append_event(path, "state", status="running", pid=os.getpid(), n_epochs=config.get("epochs"))
    try:
        if config.get("kind") == "evaluate":
            status = run_evaluate_job(path.parent, path, config, flag)
        elif int(config.get("nproc") or 1) > 1:
            return supervise_ranks(path, int(config["nproc"]), flag)
        else:
            status = run_training(path, flag)
    except Exception as exc:
        finish(path, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
        return 1
    finish(path, status, "stopped by a signal; resume with --resume" if status == "cancelled" else None)
    return 0 if status == "done" else 3


def supervise_ranks(run_dir: Path, nproc: int, flag: Any) -> int:
    """Several processes: torchrun starts the ranks (`-m engine.training`), rank 0 writes the terminal state;
    this supervisor only records a failure the ranks could not report themselves."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "engine.training",
        str(run_dir),
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "DYNASCOPE_SUPERVISED": "1"})
    forwarded = False
    while proc.poll() is None:
        if flag.requested and not forwarded:  # a SIGTERM to this pid alone still reaches the ranks
            proc.send_signal(signal.SIGTERM)
            forwarded = True
        time.sleep(0.2)
    state = run_state(run_dir)
    if not state.finished:
        from engine.training import finish

        finish(
            run_dir,
            "cancelled" if flag.requested else "failed",
            f"torchrun exited with status {proc.returncode}",
        )
        state = run_state(run_dir)
    return {"done": 0, "cancelled": 3}.get(state.status, 1)
