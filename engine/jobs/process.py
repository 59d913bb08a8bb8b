"""Job processes: spawn a run detached (`python -m engine.jobs RUN_DIR`), cancel, resume, list, and the job body
that runs in that process (`run_job`), with a supervisor for several local ranks (torchrun)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from storage.artifacts import append_event, pid_alive, read_config, run_state
from storage.workspace import Workspace

# ---- processes ---------------------------------------------------------------------------------------------


def job_command(run_dir: Path) -> list[str]:
    """`python -m engine.jobs RUN_DIR`, through the interpreter that runs us (no reliance on PATH, no UI)."""
    return [sys.executable, "-m", "engine.jobs", str(run_dir)]


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
    from engine.analysis.runs import origin, trained_on

    return {
        "run_id": run_id,
        "kind": config.get("kind", "train"),
        "dataset": trained_on(config),
        "full_dataset": config.get("dataset"),
        "source_run": config.get("source_run"),
        "origin": origin(config),
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
    """The job body (`python -m engine.jobs RUN_DIR`): runs the kind's body; 0 done, 1 failed, 3 cancelled."""
    from engine.jobs.registry import get_kind
    from engine.training.loop import StopFlag, finish

    path = Path(run_dir).resolve()
    config = read_config(path)
    if config is None:
        raise BadInputError(f"{path}: no config.json (not a run folder, or it is still being created)")
    kind = get_kind(config.get("kind", "train"))
    flag = StopFlag().install()
    append_event(path, "state", status="running", pid=os.getpid(), n_epochs=config.get("epochs"))
    try:
        status = kind.run(path, config, flag)
    except Exception as exc:
        finish(path, "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}")
        return 1
    state = run_state(path)
    if not state.finished:  # with several ranks, rank 0 has written the terminal state itself
        finish(path, status, "stopped by a signal; resume with --resume" if status == "cancelled" else None)
        state = run_state(path)
    return {"done": 0, "cancelled": 3}.get(state.status, 1)
