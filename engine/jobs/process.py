"""Job processes: spawn a run detached (`python -m engine.jobs RUN_DIR`), cancel, resume, list, and the job body
that runs in that process (`run_job`), with a supervisor for several local ranks (torchrun)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from storage.artifacts import append_event, pid_alive, read_config, run_state
from storage.joblock import FD_ENV, RunBusyError, RunLock, acquire, adopt_or_acquire, busy_message
from storage.workspace import Workspace

# ---- processes ---------------------------------------------------------------------------------------------


def job_command(run_dir: Path) -> list[str]:
    """`python -m engine.jobs RUN_DIR`, through the interpreter that runs us (no reliance on PATH, no UI)."""
    return [sys.executable, "-m", "engine.jobs", str(run_dir)]


def lock_run(ws: Workspace, run_id: str) -> RunLock:
    """Take the run's lock for a launch (storage.joblock); refused with a message naming the holder."""
    run_dir = ws.run_dir(run_id)
    try:
        return acquire(run_dir, launching=True)
    except RunBusyError as exc:
        raise BadInputError(busy_message(run_id, exc.pid, exc.launching)) from None
    except OSError as exc:
        raise BadInputError(f"cannot lock the run folder {run_dir}: {exc.strerror or exc}") from exc


@contextmanager
def sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in this thread while a job is started: the mask survives fork and exec, so the job starts
    with it blocked and unblocks it once its handler is installed (StopFlag.install). A cancel sent at any moment
    after launch then reaches the handler, never the default action that would end the job as `interrupted`."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def spawn(ws: Workspace, run_id: str, lock: RunLock | None = None) -> subprocess.Popen[bytes]:
    """Start the job process of a run. It holds the run's lock from the first moment (taken here unless `lock`
    is given, then handed over); its pid is recorded as `running` before this returns, so a cancel reaches it."""
    run_dir = ws.run_dir(run_id)
    if read_config(run_dir) is None:
        if lock is not None:
            lock.close()
        raise BadInputError(f"no run named '{run_id}' in {ws.root}")
    # Closing our copy of the lock at the end leaves it held by the job alone (never unlocked: see storage.joblock).
    with lock or lock_run(ws, run_id) as held, open(run_dir / "job.log", "ab") as log:
        # A new session: the job survives the terminal, the app and the SSH connection closing (and a ctrl+c
        # in the terminal reaches only the launcher, which then cancels the job cleanly).
        with sigterm_blocked():
            proc = subprocess.Popen(
                job_command(run_dir),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(held.fd,),
                env={**os.environ, "PYTHONUNBUFFERED": "1", FD_ENV: str(held.fd)},
            )
        held.set_holder(proc.pid)
        append_event(run_dir, "state", status="running", pid=proc.pid, launched_by=os.getpid())
    # Reap the child when it ends, so a long-lived launcher (the app) never collects zombies.
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    return proc


def launch(ws: Workspace, run_id: str) -> int:
    """Start the job detached; returns its pid. Refused (BadInputError) while another process holds the run."""
    return spawn(ws, run_id).pid


def resume(ws: Workspace, run_id: str) -> subprocess.Popen[bytes]:
    """Continue a killed, failed or cancelled run from its last complete epoch. The run's state is checked under
    its lock, so of two resumes at once one starts and the other is refused naming the first."""
    if read_config(ws.run_dir(run_id)) is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}")
    lock = lock_run(ws, run_id)
    try:
        info = job_info(ws, run_id)
        if info["status"] == "done":
            raise BadInputError(f"run '{run_id}' already finished; nothing to resume")
        if info["alive"]:  # a job started before run folders had locks
            raise BadInputError(busy_message(run_id, info["pid"]))
        append_event(ws.run_dir(run_id), "log", message=f"resume requested after epoch {info['epochs_done']}")
    except BaseException:
        lock.close()
        raise
    return spawn(ws, run_id, lock)


def cancel(ws: Workspace, run_id: str) -> bool:
    """SIGTERM the job: it stops at the next step and ends as `cancelled`, resumable
    from its last complete epoch. False when there was nothing running to cancel.

    The launcher records the job's pid before it returns and the job starts with SIGTERM blocked until its
    handler is installed, so a cancel issued at any moment after launch is delivered."""
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
    append_event(ws.run_dir(run_id), "log", message=f"cancel requested (SIGTERM to pid {pid})")
    return True


# A run created but not yet launched is `starting` this long (its launcher spawns it a moment later); after that
# nothing will launch it: `created`, started by a resume.
STARTING_GRACE_S = 60.0
# the statuses of a job that is on its way or at work (shown as running jobs, cancellable)
ACTIVE_STATES = ("starting", "running")


def launch_status(
    status: str, alive: bool, launching: bool, created_at: Any, now: float | None = None
) -> str:
    """A job's status as listings show it, from the status its events say: `starting` from its creation until its
    process has announced itself (the launcher records the pid first, the job then writes its own `running`),
    `interrupted` when its events say running but the process is gone."""
    if status == "running":
        if not alive:
            return "interrupted"
        return "starting" if launching else "running"
    if status == "created":
        if alive:
            return "starting"
        age = (time.time() if now is None else now) - float(created_at or 0)
        return "starting" if age < STARTING_GRACE_S else "created"
    return status


def job_info(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The run's job as listings show it. A run folder that cannot be read (storage.sync.check_run) is status
    `broken` with the reason in `message`; what can still be read of it (its events: pid, alive) is kept, so a
    job still running with a broken config.json can be cancelled."""
    from storage.artifacts import BROKEN, BrokenRunError, RunState
    from storage.sync import check_run

    run_dir = ws.run_dir(run_id)
    reason = None
    try:
        found = check_run(run_dir)
    except BrokenRunError as exc:
        reason = exc.reason
        try:
            config = read_config(run_dir) or {}
        except BrokenRunError:
            config = {}
        try:
            state = run_state(run_dir)
        except BrokenRunError:
            state = RunState()
    else:
        if found is None:
            raise BadInputError(f"no run named '{run_id}' in {ws.root}")
        config, state = found
    alive = not state.finished and pid_alive(state.pid, run_id)
    status = launch_status(state.status, alive, state.launching, config.get("created_at"))
    if reason is not None:
        status = BROKEN
    from engine.analysis.runs import origin, trained_on

    return {
        "run_id": run_id,
        "name": config.get("name"),
        "kind": config.get("kind", None if reason else "train"),
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
        "message": reason if reason is not None else state.message,
        "pid": state.pid,
        "alive": alive,
        "created_at": config.get("created_at"),
        "finished_at": state.finished_at,
    }


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run of the workspace, from its config and events (no catalog access), newest first."""
    jobs = []
    for run_id in ws.run_ids():
        try:
            jobs.append(job_info(ws, run_id))
        except BadInputError:  # no config.json yet: still being created (a broken one is listed as broken)
            continue
    return sorted(jobs, key=lambda j: (j["created_at"] or 0, j["run_id"]), reverse=True)


# ---- the job process -----------------------------------------------------------------------------------------


def run_job(run_dir: str | Path) -> int:
    """The job body (`python -m engine.jobs RUN_DIR`): runs the kind's body; 0 done, 1 failed, 3 cancelled.
    Refused (BadInputError, exit 2) while another process holds the run's lock."""
    from engine.training.stop import StopFlag, failure_message, finish

    # first: from here on a SIGTERM is a cancel (the launcher started us with it blocked until now)
    flag = StopFlag().install()
    path = Path(run_dir).resolve()
    config = read_config(path)
    if config is None:
        raise BadInputError(f"{path}: no config.json (not a run folder, or it is still being created)")
    try:
        lock = adopt_or_acquire(path)  # handed over by the launcher, or taken now by a job started by hand
    except RunBusyError as exc:
        raise BadInputError(busy_message(path.name, exc.pid, exc.launching)) from None
    with lock:  # released once the terminal state is written, so a resume may follow at once
        from engine.jobs.registry import get_kind

        kind = get_kind(config.get("kind", "train"))
        append_event(path, "state", status="running", pid=os.getpid(), n_epochs=config.get("epochs"))
        if flag.requested:
            finish(path, "cancelled", "cancelled before it started; resume with --resume")
            return 3
        try:
            status = kind.run(path, config, flag)
        except Exception as exc:
            finish(path, "failed", failure_message(exc))
            return 1
        state = run_state(path)
        if not state.finished:  # with several ranks, rank 0 has written the terminal state itself
            message = "stopped by a signal; resume with --resume" if status == "cancelled" else None
            finish(path, status, message)
            state = run_state(path)
        return {"done": 0, "cancelled": 3}.get(state.status, 1)
