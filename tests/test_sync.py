"""sync(): registers finished artifacts exactly once, ignores half-written ones, and is idempotent."""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)

from storage.artifacts import append_event, shard_path, write_config, write_shard
from storage.catalog import open_catalog
from storage.sync import sync
from tests.catalog_dump import dump_catalog


def shard(epoch: int, ids: list[str], correct: list[bool]) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "epoch": [epoch] * n,
            "rank": [0] * n,
            "example_id": ids,
            "gold_prob": [0.9 if c else 0.2 for c in correct],
            "correct": correct,
            "loss": [0.1] * n,
            "margin": [1.0 if c else -1.0 for c in correct],
            "el2n": [0.1] * n,
            "prediction": ["1"] * n,
        }
    )


def make_run(ws, run_id: str, epochs_done: int, status: str = "running") -> None:
    run_dir = ws.run_dir(run_id)
    append_event(run_dir, "state", status="running", pid=1, n_epochs=3)
    for epoch in range(epochs_done):
        write_shard(run_dir, epoch, 0, shard(epoch, ["a", "b", "c"], [epoch > 0, True, epoch == 0]))
        append_event(run_dir, "epoch_end", epoch=epoch, metrics={"loss": 0.5})
    if status != "running":
        append_event(run_dir, "state", status=status)
    write_config(
        run_dir, {"kind": "train", "dataset": "d", "model": "m", "epochs": 3, "created_at": time.time()}
    )


def test_sync_twice_imports_nothing_the_second_time(ws):
    make_run(ws, "r1", epochs_done=2)
    with open_catalog(ws) as con:
        first = sync(ws, con)
    assert first.runs_added == ["r1"] and first.shards_registered == 2 and first.metrics_runs == ["r1"]
    before = dump_catalog(ws)
    with open_catalog(ws) as con:
        second = sync(ws, con)
    assert not second.changed
    assert dump_catalog(ws) == before
    metrics = {r[1]: r for r in before["example_metrics"]}
    # example a: wrong then right -> correctness 0.5, no forgetting; c: right then wrong -> one forgetting event
    assert metrics["a"][5] == 0.5 and metrics["c"][6] == 1 and metrics["b"][7] is False


def test_progress_is_picked_up_incrementally(ws):
    make_run(ws, "r1", epochs_done=1)
    with open_catalog(ws) as con:
        sync(ws, con)
    run_dir = ws.run_dir("r1")
    write_shard(run_dir, 1, 0, shard(1, ["a", "b", "c"], [True, True, False]))
    append_event(run_dir, "epoch_end", epoch=1)
    append_event(run_dir, "state", status="done")
    with open_catalog(ws) as con:
        report = sync(ws, con)
        row = con.execute("SELECT status, epochs_done, metrics_epochs FROM runs").fetchone()
        n_paths = con.execute("SELECT count(*) FROM artifacts").fetchone()[0]
        epochs = con.execute("SELECT DISTINCT epochs FROM example_metrics").fetchall()
    assert report.runs_updated == ["r1"] and report.shards_registered == 1
    assert row == ("done", 2, 2) and n_paths == 2 and epochs == [(2,)]


def test_half_written_shard_is_ignored(ws):
    make_run(ws, "r1", epochs_done=1)
    run_dir = ws.run_dir("r1")
    # a crash mid-write leaves the temp name behind; it must never be read as a shard
    final = shard_path(run_dir, 1, 0)
    final.parent.mkdir(parents=True, exist_ok=True)
    (final.parent / f".{final.name}.tmp-4242").write_bytes(b"PAR1 half a shard")
    # and a complete shard of an epoch the run has not declared finished is not registered yet
    write_shard(run_dir, 2, 0, shard(2, ["a", "b", "c"], [True] * 3))
    with open_catalog(ws) as con:
        report = sync(ws, con)
        paths = [r[0] for r in con.execute("SELECT path FROM artifacts ORDER BY path").fetchall()]
    assert report.shards_registered == 1
    assert paths == ["runs/r1/dynamics/epoch=000/rank=0.parquet"]


def test_run_folder_without_config_is_not_registered_yet(ws):
    append_event(ws.run_dir("half"), "state", status="created")
    with open_catalog(ws) as con:
        report = sync(ws, con)
        n = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert not report.changed and n == 0


def test_eval_results_registered_once(ws):
    make_run(ws, "r1", epochs_done=1, status="done")
    eval_dir = ws.run_dir("r1") / "eval"
    eval_dir.mkdir(parents=True)
    pa.parquet.write_table(
        pa.table(
            {
                "example_id": ["a", "b"],
                "prediction": ["1", "0"],
                "correct": [True, False],
                "score": [1.0, 0.0],
            }
        ),
        eval_dir / "dev.parquet",
    )
    with open_catalog(ws) as con:
        assert sync(ws, con).evals_registered == 0  # summary not written yet: the evaluation is not finished
    (eval_dir / "dev.json").write_text(json.dumps({"n_examples": 2, "metrics": {"accuracy": 0.5}}))
    with open_catalog(ws) as con:
        assert sync(ws, con).evals_registered == 1
        assert sync(ws, con).evals_registered == 0
        metrics = con.execute("SELECT metrics FROM evaluations").fetchall()
        preds = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    assert json.loads(metrics[0][0]) == {"accuracy": 0.5} and preds == 2


def test_running_run_whose_process_is_gone_is_interrupted(ws):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    make_run(ws, "r1", epochs_done=1)
    append_event(ws.run_dir("r1"), "state", status="running", pid=gone.pid)  # the resumed job, since killed
    with open_catalog(ws) as con:
        sync(ws, con)
        assert con.execute("SELECT status, epochs_done FROM runs").fetchone() == ("interrupted", 1)


def test_evaluation_run_again_replaces_the_old_scores(ws):
    import os

    make_run(ws, "r1", epochs_done=1, status="done")
    eval_dir = ws.run_dir("r1") / "eval"
    eval_dir.mkdir(parents=True)

    def write_eval(accuracy: float, mtime: float) -> None:
        pa.parquet.write_table(
            pa.table(
                {"example_id": ["a"], "prediction": ["1"], "correct": [accuracy == 1.0], "score": [accuracy]}
            ),
            eval_dir / "dev.parquet",
        )
        (eval_dir / "dev.json").write_text(json.dumps({"n_examples": 1, "metrics": {"accuracy": accuracy}}))
        os.utime(eval_dir / "dev.json", (mtime, mtime))

    write_eval(0.0, 1_000_000)
    with open_catalog(ws) as con:
        assert sync(ws, con).evals_registered == 1
    write_eval(1.0, 2_000_000)
    with open_catalog(ws) as con:
        assert sync(ws, con).evals_registered == 1
        assert sync(ws, con).evals_registered == 0
        assert json.loads(con.execute("SELECT metrics FROM evaluations").fetchone()[0]) == {"accuracy": 1.0}
        assert con.execute("SELECT count(*), bool_and(correct) FROM predictions").fetchone() == (1, True)
        assert con.execute("SELECT count(*) FROM artifacts WHERE kind = 'eval'").fetchone()[0] == 1


def test_threads_syncing_at_once_register_each_run_once(ws):
    from concurrent.futures import ThreadPoolExecutor

    for i in range(5):
        make_run(ws, f"r{i}", epochs_done=1, status="done")

    def one_sync(_: int) -> int:
        with open_catalog(ws) as con:  # a connection per thread, as the app's workers do
            return len(sync(ws, con).runs_added)

    with ThreadPoolExecutor(4) as pool:
        added = list(pool.map(one_sync, range(8)))
    assert sum(added) == 5
    with open_catalog(ws) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 5
