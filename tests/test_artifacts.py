"""Run-folder artifacts: atomic writes, the events log and its tailer."""

from __future__ import annotations

import json
import multiprocessing

import pyarrow as pa

from storage.artifacts import (
    EventTail,
    append_event,
    events_path,
    list_shards,
    read_events,
    run_state,
    write_config,
    write_shard,
)


def test_tail_returns_only_complete_new_lines(tmp_path):
    run_dir = tmp_path / "run"
    tail = EventTail(run_dir)
    assert tail.read_new() == []  # no file yet
    append_event(run_dir, "state", status="running", pid=7, n_epochs=2)
    append_event(run_dir, "progress", epoch=0, step=3, total=10)
    assert [e["type"] for e in tail.read_new()] == ["state", "progress"]
    with open(events_path(run_dir), "a") as fh:
        fh.write('{"ts": 1, "type": "log", "mess')  # a writer caught mid-line
    assert tail.read_new() == []
    with open(events_path(run_dir), "a") as fh:
        fh.write('age": "hello"}\n')
    assert tail.read_new() == [{"ts": 1, "type": "log", "message": "hello"}]


def test_torn_line_from_a_killed_writer_is_skipped(tmp_path):
    run_dir = tmp_path / "run"
    append_event(run_dir, "state", status="running")
    with open(events_path(run_dir), "a") as fh:
        fh.write('{"type": "progr\n')  # killed mid-write, then the resumed job appends again
    append_event(run_dir, "epoch_end", epoch=0)
    state = run_state(run_dir)
    assert state.status == "running" and state.epochs_done == 1


def test_run_state_folds_events(tmp_path):
    run_dir = tmp_path / "run"
    append_event(run_dir, "state", status="running", pid=11, n_epochs=3)
    append_event(run_dir, "epoch_end", epoch=0, metrics={"loss": 0.7})
    append_event(run_dir, "progress", epoch=1, step=5, total=10, eta_s=4.0)
    append_event(run_dir, "log", message="checkpoint saved")
    append_event(run_dir, "state", status="cancelled", message="SIGTERM")
    state = run_state(run_dir)
    assert (state.status, state.epochs_done, state.n_epochs, state.pid) == ("cancelled", 1, 3, 11)
    assert state.finished and state.progress["step"] == 5 and state.metrics == {"loss": 0.7}
    assert state.logs == ["checkpoint saved"]


def _append_many(run_dir, worker: int) -> None:
    for i in range(200):
        append_event(run_dir, "log", message=f"{worker}-{i}" + "x" * 300)


def test_concurrent_appenders_never_interleave_lines(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    procs = [multiprocessing.Process(target=_append_many, args=(run_dir, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    events = read_events(run_dir)
    assert len(events) == 600
    assert len({e["message"] for e in events}) == 600


def test_shards_and_config_are_written_whole(tmp_path):
    run_dir = tmp_path / "run"
    table = pa.table({"epoch": [0, 0], "example_id": ["a", "b"]})
    path = write_shard(run_dir, 0, 1, table)
    assert path.name == "rank=1.parquet" and path.parent.name == "epoch=000"
    assert [(e, r) for e, r, _ in list_shards(run_dir)] == [(0, 1)]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind
    write_config(run_dir, {"kind": "train", "epochs": 2})
    assert json.loads((run_dir / "config.json").read_text()) == {"epochs": 2, "kind": "train"}
