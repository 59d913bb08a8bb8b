"""One live job per run folder, cancels that always land, and a loss that stops being finite.

- The run's lock (storage.joblock, an flock on runs/<id>/job.lock) is taken by the launcher and handed to the job
  process, so of two resumes started at once one runs and the other exits 2 naming the first's pid; a job
  started by hand while the lock is held is refused the same way; the OS releases the lock of a process killed
  with -9.
- The launcher records the job's pid before it returns and starts it with SIGTERM blocked until the job's handler
  is installed: a cancel right after launch ends the job `cancelled` (not lost, not `interrupted`).
- A training loss that becomes NaN or infinite ends the run `failed`, saying at which epoch and step.

Real jobs on the offline MiniLM with a few SST-2 dev rows (max length 32, one epoch of four steps).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.artifacts import read_events, write_config
from storage.joblock import RunBusyError, acquire
from storage.workspace import Workspace
from tests.conftest import REPO, run_cli
from tests.test_jobs_resume import wait_gone

SMALL = {"kind": "train", "dataset": "sst2", "limit": 16, "max_length": 32, "epochs": 1, "batch_size": 4}


@pytest.fixture(scope="module")
def sst2_ws(tmp_path_factory, data_dir) -> Workspace:  # noqa: ANN001
    ws = Workspace(tmp_path_factory.mktemp("lock") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    return ws


@pytest.fixture(autouse=True)
def offline(monkeypatch) -> None:  # noqa: ANN001
    """Job processes started from this process (engine.jobs.launch) load the model offline, as run_cli's do."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def new_run(ws: Workspace, **overrides: object) -> str:
    """A run folder as `train` makes it (status created), without starting its job."""
    from engine.jobs import create_run

    return create_run(ws, {**SMALL, **overrides})


def job(ws: Workspace, run_id: str) -> dict:
    return {j["run_id"]: j for j in run_cli(ws, "jobs", "--json").json()}[run_id]


def start_cli(ws: Workspace, *args: str) -> subprocess.Popen[str]:
    """`dynascope ARGS` started, not awaited (run_cli's environment)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tui_app", "--workspace", str(ws.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def hold_lock(run_dir: Path) -> subprocess.Popen[str]:
    """Another process that takes the run's lock and sleeps; returns once it holds it."""
    code = (
        "import sys, time; from pathlib import Path; from storage.joblock import acquire\n"
        "lock = acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# ---- the lock itself (no training) -------------------------------------------------------------------------


def test_a_lock_held_by_a_process_killed_with_9_is_released(ws: Workspace) -> None:
    run_dir = ws.run_dir("r1")
    run_dir.mkdir(parents=True)
    holder = hold_lock(run_dir)
    try:
        with pytest.raises(RunBusyError) as busy:
            acquire(run_dir)
        assert busy.value.pid == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with acquire(run_dir) as lock:  # the OS dropped the dead holder's lock
            assert (run_dir / "job.lock").read_text().split()[0] == str(os.getpid()) and lock.fd >= 0
    finally:
        holder.kill()
        holder.wait()


def test_a_job_started_by_hand_on_a_locked_run_exits_2_naming_the_holder(ws: Workspace) -> None:
    run_dir = ws.run_dir("r2")
    write_config(run_dir, {"kind": "train", "dataset": "x"})
    holder = hold_lock(run_dir)
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "engine.jobs", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"run 'r2' is already running (pid {holder.pid})" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert time.monotonic() - started < 10  # refused before anything heavy is loaded
        assert read_events(run_dir) == []  # and it wrote nothing into the run
    finally:
        holder.kill()
        holder.wait()


# ---- real jobs -------------------------------------------------------------------------------------------


def test_two_resumes_at_once_one_runs_the_other_exits_2_naming_it(sst2_ws: Workspace) -> None:
    ws = sst2_ws
    run_id = new_run(ws)
    procs = [start_cli(ws, "train", "--resume", run_id, "--detach", "--json") for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    (_, won_out, _), (_, _, lost_err) = sorted(results, key=lambda r: r[0])
    pid = json.loads(won_out)["pid"]
    assert f"run '{run_id}' is already running (pid {pid})" in lost_err, lost_err
    assert "Traceback" not in lost_err
    wait_gone(pid, timeout=120)
    info = job(ws, run_id)
    assert info["status"] == "done" and info["epochs_done"] == 1, info
    # one job ran: one `running` from its launcher and one from the job itself, one terminal state
    states = [e for e in read_events(ws.run_dir(run_id)) if e["type"] == "state"]
    assert [e["status"] for e in states] == ["created", "running", "running", "done"]
    assert {e["pid"] for e in states[1:]} == {pid}


def test_cancel_the_instant_after_launch_ends_the_job_cancelled(sst2_ws: Workspace) -> None:
    """Microseconds after launch, long before the job installed its handler: the SIGTERM waits, blocked."""
    from engine.jobs import cancel, launch

    ws = sst2_ws
    run_id = new_run(ws)
    pid = launch(ws, run_id)
    assert cancel(ws, run_id) is True
    wait_gone(pid)
    info = job(ws, run_id)
    assert info["status"] == "cancelled" and info["alive"] is False, info
    assert "cancelled before it started" in info["message"]


def test_cancel_at_once_after_detach_ends_cancelled_and_resume_then_finishes(sst2_ws: Workspace) -> None:
    ws = sst2_ws
    started = run_cli(ws, "train", "sst2", "--limit", "16", "--max-length", "32", "--epochs", "1",
                      "--batch-size", "4", "--detach", "--json")  # fmt: skip
    assert started.code == 0, started.stderr
    run_id, pid = started.json()["run_id"], started.json()["pid"]
    cancelled = run_cli(ws, "job", "cancel", run_id)
    assert cancelled.code == 0, cancelled.stderr
    wait_gone(pid)
    info = job(ws, run_id)
    assert info["status"] == "cancelled" and info["alive"] is False, info
    resumed = run_cli(ws, "train", "--resume", run_id, "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "done" and resumed.json()["epochs_done"] == 1


def test_a_loss_that_becomes_nan_fails_the_run_with_its_epoch_and_step(sst2_ws: Workspace) -> None:
    """--lr is bounded (at most 1, and lr 1 stays finite here), so the diverging run gets a learning rate of
    1e30 written into its config: the warm-up step still trains at lr 0, the next steps blow the weights up."""
    ws = sst2_ws
    run_id = new_run(ws)
    config_path = ws.run_dir(run_id) / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "lr": 1e30}))
    result = run_cli(ws, "train", "--resume", run_id)
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    info = job(ws, run_id)
    assert info["status"] == "failed", info
    match = re.match(r"the training loss became (nan|inf|-inf) at epoch 1, step (\d)/4; ", info["message"])
    assert match, info["message"]
    assert 2 <= int(match.group(2)) <= 4  # step 1 trains at lr 0 (warm-up)
    assert f"failed: {info['message'][:40]}" in " ".join(result.stderr.split())
    assert not (ws.run_dir(run_id) / "dynamics" / "epoch=000").exists()  # no shard of NaN rows
    runs = {r["run_id"]: r for r in run_cli(ws, "runs", "--json").json()}
    assert runs[run_id]["status"] == "failed"
