"""Jobs as a user runs them: detached, killed with -9 mid-epoch and resumed, cancelled with SIGTERM.

The resumed run must end with exactly the per-example metrics of an uninterrupted run with the same seed: the
checkpoint of the last complete epoch holds model, optimizer, scheduler and RNG states, and each epoch's shuffle
is a function of (seed, epoch).
"""

from __future__ import annotations

import os
import signal
import time

import duckdb
import pytest

from storage.artifacts import read_events
from storage.steplog import read_steps

N = 48
ARGS = ["--limit", str(N), "--max-length", "64", "--epochs", "2", "--batch-size", "8", "--seed", "11"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # every job alike (the reference trains beside the killed run)


@pytest.fixture(scope="module")
def sst2_ws(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    ws = Workspace(tmp_path_factory.mktemp("jobs") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2").code == 0
    return ws


def wait_for(run_dir, predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(run_dir):
            if predicate(event):
                return event
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting in {run_dir}: {read_events(run_dir)[-3:]}")


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def shard_rows(ws, run_id: str) -> list[tuple]:
    from storage.artifacts import shard_scan_sql

    return duckdb.sql(
        f"""SELECT epoch, example_id, gold_prob, correct, loss, margin, el2n, prediction
            FROM {shard_scan_sql(ws.run_dir(run_id))} ORDER BY epoch, example_id"""
    ).fetchall()


def metrics(ws, run_id: str) -> list[dict]:
    from tests.conftest import run_cli

    return run_cli(
        ws,
        "sql",
        f"""SELECT example_id, epochs, confidence, variability, correctness, forgetting, aum, el2n
                       FROM example_metrics WHERE run_id = '{run_id}' ORDER BY example_id""",
        "--json",
    ).json()


def start_detached(ws):  # noqa: ANN001, ANN201
    """`dynascope train --detach`; returns the run id, its folder and its first `running` event."""
    from tests.conftest import run_cli

    started = run_cli(ws, "train", "sst2", *ARGS, "--detach", "--json", env=ONE_THREAD)
    assert started.code == 0, started.stderr
    run_id = started.json()["run_id"]
    run_dir = ws.run_dir(run_id)
    return run_id, run_dir, wait_for(run_dir, lambda e: e.get("status") == "running")


def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(sst2_ws):
    from tests.conftest import finish_cli, start_cli

    ws = sst2_ws
    # the uninterrupted run with the same seed, training meanwhile (one CPU thread each), compared at the end
    reference = start_cli(ws, "train", "sst2", *ARGS, "--json", env=ONE_THREAD)
    try:
        run_id, run_dir = kill_9_mid_epoch_then_resume(ws)
    finally:
        done = finish_cli(reference)
    assert done.code == 0, done.stderr
    ref_id = done.json()["run_id"]
    assert ref_id != run_id

    got, want = shard_rows(ws, run_id), shard_rows(ws, ref_id)
    assert len(got) == len(want) == 2 * N
    for epoch in (0, 1):
        assert len({r[1] for r in got if r[0] == epoch}) == N  # one row per example per epoch
    for g, w in zip(got, want):
        assert g[:2] == w[:2] and g[3] == w[3] and g[7] == w[7]
        assert g[2] == pytest.approx(w[2], abs=1e-6) and g[4] == pytest.approx(w[4], abs=1e-6)
    got_m, want_m = metrics(ws, run_id), metrics(ws, ref_id)
    assert len(got_m) == N
    for g, w in zip(got_m, want_m):
        assert g["example_id"] == w["example_id"] and g["epochs"] == w["epochs"] == 2
        for key in ("confidence", "variability", "correctness", "aum", "el2n"):
            assert g[key] == pytest.approx(w[key], abs=1e-6), key
    # the step log (the run view's curves): every step once, the redone epoch's lines replacing the killed ones,
    # equal to the uninterrupted run's
    got_steps, want_steps = read_steps(run_dir), read_steps(ws.run_dir(ref_id))
    assert [(s["epoch"], s["step"]) for s in got_steps] == [(s["epoch"], s["step"]) for s in want_steps]
    assert len(got_steps) == 2 * want_steps[0]["steps"]
    for g, w in zip(got_steps, want_steps):
        assert g["loss"] == pytest.approx(w["loss"], abs=1e-5) and g["accuracy"] == w["accuracy"]
    # the finished run dropped its resume checkpoint but kept the final model for `dynascope eval`
    assert not (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "model").is_dir()


def kill_9_mid_epoch_then_resume(ws):  # noqa: ANN001, ANN201
    """A detached run killed with -9 in its second epoch, then `train --resume` to the end: (run id, folder)."""
    from tests.conftest import run_cli

    run_id, run_dir, running = start_detached(ws)
    # mid-epoch: epoch 0 is complete (checkpointed) and epoch 1 has begun
    wait_for(run_dir, lambda e: e["type"] == "progress" and e["epoch"] == 1)
    os.kill(running["pid"], signal.SIGKILL)
    wait_gone(running["pid"])
    assert not (run_dir / "dynamics" / "epoch=001").exists()  # partial-epoch rows never reach disk
    jobs = {j["run_id"]: j for j in run_cli(ws, "jobs", "--json").json()}
    assert jobs[run_id]["status"] == "interrupted" and jobs[run_id]["alive"] is False
    assert jobs[run_id]["epochs_done"] == 1

    resumed = run_cli(ws, "train", "--resume", run_id, "--json", env=ONE_THREAD)
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "done" and resumed.json()["epochs_done"] == 2
    assert any("resumed after epoch 1" in str(e.get("message")) for e in read_events(run_dir))
    return run_id, run_dir


def test_sigterm_ends_the_job_as_cancelled(sst2_ws):
    from tests.conftest import run_cli

    ws = sst2_ws
    run_id, run_dir, running = start_detached(ws)
    wait_for(run_dir, lambda e: e["type"] == "progress")
    cancelled = run_cli(ws, "job", "cancel", run_id)
    assert cancelled.code == 0, cancelled.stderr
    final = wait_for(
        run_dir, lambda e: e["type"] == "state" and e["status"] in ("done", "failed", "cancelled")
    )
    assert final["status"] == "cancelled"
    wait_gone(running["pid"])
    jobs = {j["run_id"]: j for j in run_cli(ws, "jobs", "--json").json()}
    assert jobs[run_id]["status"] == "cancelled" and jobs[run_id]["alive"] is False
    runs = {r["run_id"]: r for r in run_cli(ws, "runs", "--json").json()}
    assert runs[run_id]["status"] == "cancelled"
    again = run_cli(ws, "job", "cancel", run_id)
    assert again.code == 2 and "not running" in again.stderr
