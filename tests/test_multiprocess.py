"""Two real processes on CPU (torchrun, gloo) picked up by Accelerate: each rank writes its own shard and the
union covers every example exactly once per epoch, although distributed sampling pads the ranks with repeats
(45 examples on 2 ranks: 23 + 23 sampled, one of them a repeat that must not be recorded)."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

N = 45  # odd on purpose: the sampler must pad one rank with a repeat


def shard_stats(ws, run_id: str) -> list[tuple]:
    from storage.artifacts import shard_scan_sql

    return duckdb.sql(
        f"""SELECT epoch, rank, count(*), count(DISTINCT example_id)
            FROM {shard_scan_sql(ws.run_dir(run_id))} GROUP BY ALL ORDER BY ALL"""
    ).fetchall()


def epoch_ids(ws, run_id: str, epoch: int) -> list[str]:
    from storage.artifacts import shard_scan_sql

    return [
        r[0]
        for r in duckdb.execute(
            f"SELECT example_id FROM {shard_scan_sql(ws.run_dir(run_id))} WHERE epoch = ?", [epoch]
        ).fetchall()
    ]


@pytest.fixture(scope="module")
def sst2_ws(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    ws = Workspace(tmp_path_factory.mktemp("mp") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2-dev").code == 0
    return ws


def test_two_ranks_cover_each_example_exactly_once_per_epoch(sst2_ws):
    from tests.conftest import run_cli

    ws = sst2_ws
    result = run_cli(
        ws,
        "train",
        "sst2-dev",
        "--limit",
        str(N),
        "--max-length",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--nproc",
        "2",
        "--json",
    )
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    stats = shard_stats(ws, run_id)
    # per epoch: rank 0 records its 23 examples, rank 1 its 22 plus the dropped repeat
    assert stats == [(0, 0, 23, 23), (0, 1, 22, 22), (1, 0, 23, 23), (1, 1, 22, 22)]
    expected = {
        r["example_id"]
        for r in run_cli(
            ws,
            "sql",
            f"SELECT example_id FROM examples WHERE dataset = 'sst2-dev' ORDER BY row_idx LIMIT {N}",
            "--json",
        ).json()
    }
    for epoch in (0, 1):
        ids = epoch_ids(ws, run_id, epoch)
        assert len(ids) == N and set(ids) == expected
    events = (ws.run_dir(run_id) / "events.jsonl").read_text()
    assert "2 process(es)" in events
    n = run_cli(
        ws, "sql", f"SELECT count(*) AS n FROM example_metrics WHERE run_id = '{run_id}'", "--json"
    ).json()
    assert n == [{"n": N}]


def test_torchrun_directly_on_a_run_folder(sst2_ws):
    """What a multi-GPU user runs by hand: `torchrun --nproc_per_node 2 -m engine.jobs.rank RUN_DIR`."""
    from engine.jobs import create_run, list_jobs

    ws = sst2_ws
    run_id = create_run(
        ws,
        {
            "dataset": "sst2-dev",
            "limit": 30,
            "max_length": 64,
            "epochs": 1,
            "batch_size": 8,
            "dynamics": "epoch-end",
            "nproc": 2,
        },
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("DYNASCOPE_SUPERVISED", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "engine.jobs.rank",
            str(ws.run_dir(run_id)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shard_stats(ws, run_id) == [(0, 0, 15, 15), (0, 1, 15, 15)]
    assert len(set(epoch_ids(ws, run_id, 0))) == 30
    job = {j["run_id"]: j for j in list_jobs(ws)}[run_id]
    assert job["status"] == "done" and job["epochs_done"] == 1 and job["alive"] is False
