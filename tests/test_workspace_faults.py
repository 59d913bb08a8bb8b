"""A workspace with faults: one broken run folder, an unwritable or unreadable workspace, NaN in JSON output.

- One bad run folder (config.json unreadable, not JSON, not an object, a field of the wrong type; an events log or an
  evaluation summary that cannot be read) is skipped by sync and listed as `broken` with the reason; every other
  command and run works (CLI and app).
- A read-only workspace (folder 555, catalog 444) still answers pure reads (read-only, unsynced, with a note); a
  write says the workspace is not writable and names the path; a workspace under a read-only parent, an unreadable
  catalog, a catalog that is a folder or not a DuckDB file: exit 2 with a message, never a traceback.
  These run the CLI without the power to bypass file permissions: as a normal user plainly, as root with
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (setpriv), so chmod binds root exactly as it binds a user. A
  precondition check proves it in each test (a write into the read-only folder really fails).
- JSON output never holds NaN or infinities: `metrics --json`, config.json, summaries, events.

Each case is a small function with its expected exit code and message, so a table can reuse them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engine import jobs as engine_jobs
from engine.analysis.runs import list_runs, runs_overview
from storage.artifacts import (
    BROKEN,
    BrokenRunError,
    append_event,
    eval_dir,
    read_config,
    read_events,
    run_state,
    shard_path,
    write_config,
    write_json_atomic,
    write_shard,
)
from storage.catalog import WorkspaceError, WorkspaceNotWritableError, open_catalog
from storage.datasets import EXAMPLE_SCHEMA, DatasetSpec, write_dataset
from storage.jsontext import dumps_json, finite_json
from storage.sync import broken_runs, sync
from storage.workspace import Workspace
from tests.catalog_dump import dump_catalog
from tests.conftest import REPO, CliResult, run_cli
from tests.tui_helpers import write_eval, write_run

IDS = [f"e{i}" for i in range(8)]
BAD_JSON_REASON = "config.json is not valid JSON"


# ---- a small workspace: one dataset, a good run, and a run to break -------------------------------------------


def tiny_dataset(ws: Workspace, name: str = "tiny") -> None:
    n = len(IDS)
    columns = {
        "example_id": IDS,
        "row_idx": list(range(n)),
        "text": [f"sentence {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "label_name": ["pos" if i % 2 else "neg" for i in range(n)],
    }
    table = pa.table({f.name: pa.array(columns.get(f.name, [None] * n), f.type) for f in EXAMPLE_SCHEMA})
    with open_catalog(ws) as con:
        write_dataset(con, DatasetSpec("tiny", "classification", "memory", "csv", table, ["neg", "pos"]))


def make_ws(root: Path) -> Workspace:
    """Dataset 'tiny', run 'good' (3 epochs, done, with an evaluation) and run 'bad' (2 epochs, done)."""
    ws = Workspace(root).create()
    tiny_dataset(ws)
    write_run(ws, "good", "tiny", IDS, epochs=3)
    write_eval(ws, "good", "tiny", IDS, {"accuracy": 0.75})
    write_run(ws, "bad", "tiny", IDS, epochs=2, created_at=1_767_225_700.0)
    return ws


def break_config(ws: Workspace, run_id: str = "bad", content: bytes = b"{not json") -> None:
    (ws.run_dir(run_id) / "config.json").write_bytes(content)


@pytest.fixture
def fault_ws(tmp_path: Path) -> Workspace:
    ws = make_ws(tmp_path / "ws")
    break_config(ws)
    return ws


def no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


# ---- 1. a broken config.json: sync and every listing ------------------------------------------------------------

# content of config.json -> a fragment of the reason
BROKEN_CONFIGS = {
    "invalid JSON": (b"{not json", BAD_JSON_REASON),
    "truncated JSON": (b'{"kind": "train", "dataset": ', BAD_JSON_REASON),
    "empty file": (b"", BAD_JSON_REASON),
    "not UTF-8": (b'{"kind": "\xff\xfe"}', BAD_JSON_REASON),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, BAD_JSON_REASON),
    "a JSON list": (b'[{"kind": "train"}]', "holds a JSON list, not an object"),
    "a JSON string": (b'"train"', "holds a JSON str, not an object"),
    "JSON null": (b"null", "holds a JSON null, not an object"),
    "kind a number": (b'{"kind": 5}', "'kind' must be a non-empty string"),
    "kind null": (b'{"kind": null}', "'kind' must be a non-empty string"),
    "epochs a string": (b'{"kind": "train", "epochs": "three"}', "'epochs' must be a whole number"),
    "epochs a bool": (b'{"kind": "train", "epochs": true}', "'epochs' must be a whole number"),
    "created_at a word": (
        b'{"kind": "train", "created_at": "yesterday"}',
        "'created_at' must be a time stamp",
    ),
    "created_at NaN": (b'{"kind": "train", "created_at": NaN}', "'created_at' must be a time stamp"),
    "created_at huge": (b'{"kind": "train", "created_at": 1e300}', "'created_at' must be a time stamp"),
    "artifacts a string": (
        b'{"kind": "train", "artifacts": "dynamics"}',
        "'artifacts' must be a list of strings",
    ),
    "selection a string": (b'{"kind": "retrain", "selection": "x"}', "'selection' must be an object"),
    "dataset a list": (b'{"kind": "train", "dataset": ["a"]}', "'dataset' must be a string"),
}


@pytest.mark.parametrize("case", list(BROKEN_CONFIGS), ids=list(BROKEN_CONFIGS))
def test_sync_skips_a_broken_config_and_says_why(tmp_path: Path, case: str) -> None:
    ws = make_ws(tmp_path / "ws")
    content, reason = BROKEN_CONFIGS[case]
    break_config(ws, content=content)
    with pytest.raises(BrokenRunError, match="is broken") as info:
        read_config(ws.run_dir("bad"))
    assert reason in info.value.reason
    with open_catalog(ws) as con:
        report = sync(ws, con)
        runs = {r[0]: r[1] for r in con.execute("SELECT run_id, status FROM runs").fetchall()}
        n_metrics = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = 'good'").fetchone()
    assert set(report.broken) == {"bad"} and reason in report.broken["bad"]
    assert runs == {"good": "done"}  # the good run is whole; the broken one is not registered
    assert n_metrics == (len(IDS),)
    assert broken_runs(ws) == report.broken


def test_a_config_json_that_is_a_folder_is_broken(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws")
    (ws.run_dir("bad") / "config.json").unlink()
    (ws.run_dir("bad") / "config.json").mkdir()
    assert broken_runs(ws) == {"bad": "config.json is not a regular file"}


def test_a_folder_without_config_is_still_being_created_not_broken(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws")
    (ws.run_dir("bad") / "config.json").unlink()
    with open_catalog(ws) as con:
        report = sync(ws, con)
    assert report.broken == {} and report.runs_added == ["good"]
    assert [j["run_id"] for j in engine_jobs.list_jobs(ws)] == ["good"]


def test_a_config_without_optional_fields_is_not_broken(tmp_path: Path) -> None:
    """Every field but the object itself is optional (`kind` defaults to train): an old or minimal config syncs."""
    ws = make_ws(tmp_path / "ws")
    break_config(ws, content=b"{}")
    with open_catalog(ws) as con:
        report = sync(ws, con)
    assert report.broken == {} and sorted(report.runs_added) == ["bad", "good"]


def test_cli_runs_lists_the_broken_run_with_its_reason(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "runs", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    runs = {r["run_id"]: r for r in result.json()}
    assert runs["good"]["status"] == "done" and runs["good"]["reason"] is None
    assert runs["bad"]["status"] == BROKEN and BAD_JSON_REASON in runs["bad"]["reason"]
    assert "run 'bad' is broken" in result.stderr  # a note on stderr, the JSON on stdout


def test_cli_runs_table_shows_broken(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "runs")
    no_traceback(result)
    assert result.code == 0 and "broken" in result.stdout and "good" in result.stdout


def test_cli_jobs_lists_the_broken_run_with_its_reason(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "jobs", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    jobs = {j["run_id"]: j for j in result.json()}
    assert jobs["good"]["status"] == "done"
    assert jobs["bad"]["status"] == BROKEN and BAD_JSON_REASON in jobs["bad"]["message"]
    assert jobs["bad"]["epochs_done"] == 2  # what its readable events say is kept


def test_cli_datasets_works_beside_a_broken_run(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "datasets", "--json")
    no_traceback(result)
    assert result.code == 0 and [d["name"] for d in result.json()] == ["tiny"]


def test_cli_sql_works_beside_a_broken_run(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "sql", "SELECT 1 AS x", "--json")
    no_traceback(result)
    assert result.code == 0 and result.json() == [{"x": 1}]


def test_cli_examples_works_beside_a_broken_run(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "examples", "tiny", "--json")
    no_traceback(result)
    assert result.code == 0 and len(result.json()) == len(IDS)


def test_cli_metrics_of_the_good_run_works_beside_a_broken_run(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "metrics", "good", "--json")
    no_traceback(result)
    assert result.code == 0 and len(result.json()) == len(IDS)


def test_cli_resume_of_a_broken_run_is_refused(fault_ws: Workspace) -> None:
    result = run_cli(fault_ws, "train", "--resume", "bad")
    no_traceback(result)
    assert result.code == 2 and "broken" in result.stderr, result.stderr


def test_a_run_registered_then_broken_is_listed_as_broken(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws")
    with open_catalog(ws) as con:
        sync(ws, con)
    break_config(ws, content=b'{"kind": 7}')
    with open_catalog(ws) as con:
        report = sync(ws, con)
        runs = {r["run_id"]: r for r in list_runs(con, ws)}
        overview = {r["run_id"]: r for r in runs_overview(con, ws)}
        kept = con.execute("SELECT status, epochs_done FROM runs WHERE run_id = 'bad'").fetchone()
    assert "'kind' must be a non-empty string" in report.broken["bad"]
    assert runs["bad"]["status"] == BROKEN and "'kind'" in runs["bad"]["reason"]
    assert runs["bad"]["kind"] == "train" and runs["bad"]["epochs_done"] == 2  # its last good row, marked
    assert overview["bad"]["status"] == BROKEN and overview["good"]["status"] == "done"
    assert kept == ("done", 2)  # the catalog row keeps its last good state
    assert engine_jobs.job_info(ws, "bad")["status"] == BROKEN

    write_run(ws, "bad", "tiny", IDS, epochs=2)  # mended: listed as it is again
    with open_catalog(ws) as con:
        assert sync(ws, con).broken == {}
        assert {r["run_id"]: r["status"] for r in list_runs(con, ws)} == {"good": "done", "bad": "done"}


def test_odd_lines_in_events_are_skipped_not_fatal(tmp_path: Path) -> None:
    """A torn or foreign line in events.jsonl (not JSON, not UTF-8, not an object, values of the wrong type) is
    skipped like a killed writer's torn line: the run is not broken and its state is what the good lines say."""
    ws = make_ws(tmp_path / "ws")
    path = ws.run_dir("bad") / "events.jsonl"
    with open(path, "ab") as fh:
        fh.write(b"{torn\n\xff\xfe\x00binary\n[1, 2]\n42\nnull\n")
        fh.write(b'{"type": "epoch_end", "epoch": "x", "metrics": [1]}\n')
        fh.write(b'{"type": "state", "status": 5, "pid": "abc", "n_epochs": "two", "ts": "now"}\n')
        fh.write(b'{"type": "progress", "epoch": "x", "step": NaN, "total": [3], "loss": 0.5}\n')
        fh.write(b'{"type": "metrics", "metrics": "high"}\n')
    state = run_state(ws.run_dir("bad"))
    assert (state.status, state.epochs_done, state.n_epochs) == ("done", 2, 2)
    assert state.progress == {"loss": 0.5}
    assert len(read_events(ws.run_dir("bad"))) == 4 + 4  # write_run's four, and the four odd objects
    with open_catalog(ws) as con:
        report = sync(ws, con)
    assert report.broken == {} and sorted(report.runs_added) == ["bad", "good"]
    assert engine_jobs.job_info(ws, "bad")["status"] == "done"


def test_an_events_log_that_cannot_be_read_makes_the_run_broken(tmp_path: Path) -> None:
    ws = make_ws(tmp_path / "ws")
    path = ws.run_dir("bad") / "events.jsonl"
    path.unlink()
    path.mkdir()  # reading it fails whoever we are (a chmod 000 file would not stop root)
    with open_catalog(ws) as con:
        report = sync(ws, con)
    assert report.broken["bad"].startswith("cannot read events.jsonl")
    job = engine_jobs.job_info(ws, "bad")
    assert job["status"] == BROKEN and "events.jsonl" in job["message"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{oops", "eval/tiny.json is not valid JSON"),
        (b"[]", "eval/tiny.json holds a JSON list"),
        (b'{"metrics": "high"}', "eval/tiny.json: 'metrics' must be an object"),
    ],
    ids=["invalid JSON", "a list", "metrics a string"],
)
def test_a_broken_evaluation_summary_makes_the_run_broken_not_the_workspace(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    ws = make_ws(tmp_path / "ws")
    write_eval(ws, "bad", "tiny", IDS, {"accuracy": 0.5})
    (eval_dir(ws.run_dir("bad")) / "tiny.json").write_bytes(content)
    with open_catalog(ws) as con:
        report = sync(ws, con)
        evals = con.execute("SELECT run_id FROM evaluations ORDER BY run_id").fetchall()
    assert report.broken == {"bad": report.broken["bad"]} and reason in report.broken["bad"]
    assert evals == [("good",)]


def test_a_corrupt_shard_rolls_back_its_run_alone(tmp_path: Path) -> None:
    """A file sync only discovers is bad half-way (a shard that is not Parquet): that run's transaction rolls back
    (nothing of it in the catalog, nothing in the report's counts), the other runs sync, and it is reported."""
    ws = make_ws(tmp_path / "ws")
    shard_path(ws.run_dir("bad"), 1, 0).write_bytes(b"PAR1 this is not parquet")
    with open_catalog(ws) as con:
        report = sync(ws, con)
        runs = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
        artifacts = con.execute("SELECT count(*) FROM artifacts WHERE run_id = 'bad'").fetchone()
    assert "bad" in report.broken and "ArrowInvalid" in report.broken["bad"]
    assert runs == ["good"] and artifacts == (0,)
    assert report.runs_added == ["good"] and report.shards_registered == 3 and report.metrics_runs == ["good"]


async def test_app_shows_the_broken_run_on_home_and_jobs(fault_ws: Workspace) -> None:
    from tests.tui_helpers import make_app, screen_text, settle, wait_until
    from tui_app.screens.home import HomeScreen
    from tui_app.screens.jobs import JobsScreen

    app = make_app(fault_ws)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert await wait_until(app, pilot, lambda: len(home.runs) == 2, timeout=20), app.errors
        status = {r["run_id"]: (r["status"], r["reason"]) for r in home.runs}
        assert status["good"] == ("done", None)
        assert status["bad"][0] == BROKEN and BAD_JSON_REASON in status["bad"][1]
        text = screen_text(app)
        assert "broken" in text and "config.json is not valid" in text

        app.open_jobs("bad")
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        assert await wait_until(app, pilot, lambda: len(jobs.last_rows) == 2, timeout=20), app.errors
        rows = {key: cells for key, cells in jobs.last_rows}
        assert rows["bad"][3] == BROKEN and rows["good"][3] == "done"
        assert await wait_until(app, pilot, lambda: "cannot be read" in screen_text(app), timeout=10)
        assert "config.json is not valid JSON" in screen_text(app)
        await pilot.press("down")  # to the good run and back: the detail follows the cursor
        await settle(app, pilot)
        assert app.errors == []


# ---- 2. unwritable and unreadable workspaces ----------------------------------------------------------------------

NO_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def unprivileged() -> list[str]:
    """The command prefix that makes file permissions bind: none for a normal user; for root, setpriv without the
    two capabilities that bypass them (root still owns the files, so a chmod binds it as it binds their owner)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, (
        "running as root without setpriv (util-linux): chmod cannot make a workspace read-only for root"
    )
    return [setpriv, *NO_OVERRIDE]


def run_cli_unprivileged(root: Path, *args: str) -> CliResult:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DYNASCOPE_LOCK_WAIT_S": "1"}
    proc = subprocess.run(
        [*unprivileged(), sys.executable, "-m", "tui_app", "--workspace", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def can_write_unprivileged(folder: Path) -> bool:
    probe = f"open({str(folder / 'probe')!r}, 'w').close()"
    return subprocess.run([*unprivileged(), sys.executable, "-c", probe], capture_output=True).returncode == 0


@pytest.fixture
def restore_modes() -> Iterator[list[Path]]:
    """Paths whose mode a test changes: made writable again afterwards, so the temp folder can be removed."""
    changed: list[Path] = []
    yield changed
    for path in changed:
        os.chmod(path, stat.S_IRWXU | (stat.S_IRGRP | stat.S_IXGRP if path.is_dir() else 0))


@pytest.fixture
def read_only_ws(tmp_path: Path, restore_modes: list[Path]) -> Workspace:
    """A synced workspace (with one broken run) whose folder is 555 and catalog 444."""
    ws = make_ws(tmp_path / "ro")
    break_config(ws)
    with open_catalog(ws) as con:
        sync(ws, con)
    # written after the last sync: not folded in while the workspace is read-only
    write_run(ws, "later", "tiny", IDS, epochs=1)
    os.chmod(tmp_path, 0o755)  # the unprivileged runner (a normal user's view) must reach the workspace
    for path, mode in ((ws.catalog_path, 0o444), (ws.root, 0o555)):
        os.chmod(path, mode)
        restore_modes.append(path)
    assert not can_write_unprivileged(ws.root), "precondition: the workspace folder must refuse writes"
    return ws


def ro_note(result: CliResult, ws: Workspace) -> None:
    assert f"the workspace {ws.root} is not writable" in result.stderr, result.stderr


def test_read_only_workspace_datasets(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "datasets", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    assert [d["name"] for d in result.json()] == ["tiny"]
    ro_note(result, read_only_ws)


def test_read_only_workspace_runs(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "runs", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    status = {r["run_id"]: r["status"] for r in result.json()}
    assert status == {"good": "done", "bad": BROKEN}  # 'later' came after the last sync: not folded in
    ro_note(result, read_only_ws)


def test_read_only_workspace_examples(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "examples", "tiny", "--limit", "3", "--json")
    no_traceback(result)
    assert result.code == 0 and len(result.json()) == 3, result.stderr


def test_read_only_workspace_sql(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "sql", "SELECT count(*) AS n FROM runs", "--json")
    no_traceback(result)
    assert result.code == 0 and result.json() == [{"n": 1}], result.stderr


def test_read_only_workspace_jobs(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "jobs", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    assert {j["run_id"]: j["status"] for j in result.json()} == {
        "bad": BROKEN,
        "good": "done",
        "later": "done",
    }


def test_read_only_workspace_metrics(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "metrics", "good", "--json")
    no_traceback(result)
    assert result.code == 0 and len(result.json()) == len(IDS), result.stderr


def test_read_only_workspace_import_is_refused_naming_the_path(
    read_only_ws: Workspace, tmp_path: Path
) -> None:
    source = tmp_path / "small.csv"
    source.write_text("text,label\ngood,1\nbad,0\n")
    before = dump_catalog(read_only_ws)
    result = run_cli_unprivileged(read_only_ws.root, "import", str(source), "--name", "small")
    no_traceback(result)
    assert result.code == 2, result.stderr
    assert f"the workspace {read_only_ws.root} is not writable" in result.stderr
    assert dump_catalog(read_only_ws) == before


def test_read_only_workspace_train_is_refused_naming_the_path(read_only_ws: Workspace) -> None:
    result = run_cli_unprivileged(read_only_ws.root, "train", "tiny", "--epochs", "1")
    no_traceback(result)
    assert result.code == 2, result.stderr
    assert f"the workspace {read_only_ws.root} is not writable" in result.stderr


def test_read_only_workspace_select_is_refused(read_only_ws: Workspace) -> None:
    args = ("select", "good", "--region", "random", "--fraction", "0.5", "--name", "half")
    result = run_cli_unprivileged(read_only_ws.root, *args)
    no_traceback(result)
    assert result.code == 2 and "not writable" in result.stderr, result.stderr


@pytest.fixture
def read_only_parent(tmp_path: Path, restore_modes: list[Path]) -> Path:
    """A workspace path that does not exist yet, under a folder that cannot be written."""
    parent = tmp_path / "locked"
    parent.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(parent, 0o555)
    restore_modes.append(parent)
    assert not can_write_unprivileged(parent), "precondition: the parent must refuse writes"
    return parent / "ws"


def test_workspace_under_read_only_parent_datasets(read_only_parent: Path) -> None:
    result = run_cli_unprivileged(read_only_parent, "datasets")
    no_traceback(result)
    assert result.code == 2, result.stderr
    assert f"the workspace {read_only_parent} has no catalog yet and cannot be set up" in result.stderr
    assert "--workspace" in result.stderr  # what to do


def test_workspace_under_read_only_parent_sql(read_only_parent: Path) -> None:
    result = run_cli_unprivileged(read_only_parent, "sql", "SELECT 1")
    no_traceback(result)
    assert result.code == 2 and str(read_only_parent) in result.stderr, result.stderr


def test_workspace_under_read_only_parent_jobs_lists_nothing(read_only_parent: Path) -> None:
    result = run_cli_unprivileged(read_only_parent, "jobs", "--json")
    no_traceback(result)
    assert result.code == 0 and result.json() == [], result.stderr


def test_workspace_under_read_only_parent_import(read_only_parent: Path, tmp_path: Path) -> None:
    source = tmp_path / "small.csv"
    source.write_text("text,label\ngood,1\nbad,0\n")
    result = run_cli_unprivileged(read_only_parent, "import", str(source), "--name", "small")
    no_traceback(result)
    assert result.code == 2, result.stderr
    assert f"the workspace {read_only_parent} is not writable" in result.stderr


def test_unreadable_catalog(tmp_path: Path, restore_modes: list[Path]) -> None:
    ws = make_ws(tmp_path / "ws")
    os.chmod(tmp_path, 0o755)
    os.chmod(ws.catalog_path, 0o000)
    restore_modes.append(ws.catalog_path)
    probe = subprocess.run([*unprivileged(), "cat", str(ws.catalog_path)], capture_output=True)
    assert probe.returncode != 0, "precondition: the catalog must be unreadable"
    for args in (("datasets",), ("runs", "--json"), ("sql", "SELECT 1")):
        result = run_cli_unprivileged(ws.root, *args)
        no_traceback(result)
        assert result.code == 2, (args, result.stderr)
        assert (
            f"cannot open the catalog {ws.catalog_path}" in result.stderr
            and "Permission denied" in result.stderr
        )


def test_catalog_that_is_a_folder(tmp_path: Path) -> None:
    """Holds for root as well: no permission is involved."""
    ws = Workspace(tmp_path / "ws").create()
    ws.catalog_path.mkdir()
    source = tmp_path / "small.csv"
    source.write_text("text,label\ngood,1\nbad,0\n")
    for args in (("datasets",), ("sql", "SELECT 1"), ("import", str(source), "--name", "x")):
        result = run_cli(ws, *args)
        no_traceback(result)
        assert result.code == 2, (args, result.stderr)
        assert f"cannot open the catalog {ws.catalog_path}" in result.stderr


def test_catalog_that_is_not_duckdb(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").create()
    ws.catalog_path.write_text("name,task\nnot,a database\n")
    result = run_cli(ws, "runs")
    no_traceback(result)
    assert result.code == 2 and "not a dynascope catalog" in result.stderr, result.stderr
    with pytest.raises(WorkspaceError, match="not a valid DuckDB database"):
        with open_catalog(ws, read_only_ok=True):
            pass


def test_open_catalog_read_only_fallback_in_process(tmp_path: Path, restore_modes: list[Path]) -> None:
    """The library call behind the CLI, in this process: as a normal user the read-only folder refuses the
    read-write open, so `read_only_ok` opens read-only (sync does nothing) and a writer is refused. As root the
    folder does not bind this process, which then opens it read-write; both outcomes are checked as they are."""
    ws = make_ws(tmp_path / "ws")
    with open_catalog(ws) as con:
        sync(ws, con)
    os.chmod(ws.root, 0o555)
    restore_modes.append(ws.root)
    binds = not os.access(ws.root, os.W_OK)
    with open_catalog(ws, read_only_ok=True) as con:
        report = sync(ws, con)
        assert report.read_only is binds
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
    if binds:
        with pytest.raises(WorkspaceNotWritableError, match=str(ws.root)):
            with open_catalog(ws):
                pass


async def test_app_on_a_read_only_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's side of a read-only workspace. This process may be root, for whom a chmod does not bind, so the
    workspace is declared unwritable to open_catalog (`unwritable`, its one check); everything after that is
    real: a read-only DuckDB connection, sync skipped, the screens read, a note says so, nothing crashes."""
    import storage.catalog
    from tests.tui_helpers import make_app, settle, wait_until
    from tui_app.screens.home import HomeScreen

    ws = make_ws(tmp_path / "ws")
    break_config(ws)
    with open_catalog(ws) as con:
        sync(ws, con)
    write_run(ws, "later", "tiny", IDS, epochs=1)  # after the last sync
    before = dump_catalog(ws)
    monkeypatch.setattr(storage.catalog, "unwritable", lambda ws: f"the folder {ws.root} is read-only")
    app = make_app(ws)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert await wait_until(app, pilot, lambda: len(home.runs) == 2, timeout=20), app.errors
        assert {r["run_id"]: r["status"] for r in home.runs} == {"good": "done", "bad": BROKEN}
        assert any("is not writable" in str(n.message) for n in app._notifications), "a note says so"
        app.open_examples(dataset="tiny")
        await settle(app, pilot)
        assert app.errors == []
    monkeypatch.undo()
    assert dump_catalog(ws) == before


# ---- 3. JSON never holds NaN --------------------------------------------------------------------------------------


def strict_loads(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_dumps_json_writes_null_for_nan_and_infinities() -> None:
    value = {
        "a": math.nan,
        "b": [1.0, math.inf, -math.inf, (2.0, math.nan)],
        "c": {"d": np.float32("nan"), "e": np.float64(0.5), "f": np.int64(3)},
    }
    text = dumps_json(value, default=str)
    assert strict_loads(text) == {
        "a": None,
        "b": [1.0, None, None, [2.0, None]],
        "c": {"d": None, "e": 0.5, "f": 3},
    }
    assert finite_json([math.nan]) == [None]


def test_files_users_read_hold_no_nan(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_config(run_dir, {"kind": "train", "lr": math.inf})
    write_json_atomic(run_dir / "eval" / "x.json", {"metrics": {"accuracy": math.nan}, "n_examples": 2})
    append_event(run_dir, "epoch_end", epoch=0, metrics={"train_loss": math.nan})
    assert strict_loads((run_dir / "config.json").read_text()) == {"kind": "train", "lr": None}
    assert strict_loads((run_dir / "eval" / "x.json").read_text())["metrics"] == {"accuracy": None}
    event = strict_loads((run_dir / "events.jsonl").read_text().strip())
    assert event["metrics"] == {"train_loss": None}


def test_cli_metrics_json_prints_null_for_nan(tmp_path: Path) -> None:
    """A run whose training went NaN: its per-example metrics are NaN in the catalog, null in --json."""
    ws = Workspace(tmp_path / "ws").create()
    tiny_dataset(ws)
    run_dir = ws.run_dir("nan-run")
    append_event(run_dir, "state", status="running", pid=0, n_epochs=2)
    n = len(IDS)
    for epoch in range(2):
        table = pa.table(
            {
                "epoch": pa.array([epoch] * n, pa.int32()),
                "rank": pa.array([0] * n, pa.int32()),
                "example_id": IDS,
                "gold_prob": [math.nan] * n,
                "correct": [False] * n,
                "loss": [math.nan] * n,
                "margin": [math.nan] * n,
                "el2n": [math.nan] * n,
                "prediction": ["0"] * n,
            }
        )
        write_shard(run_dir, epoch, 0, table)
        append_event(run_dir, "epoch_end", epoch=epoch, metrics={"train_loss": math.nan})
    append_event(run_dir, "state", status="done")
    write_config(run_dir, {"kind": "train", "dataset": "tiny", "epochs": 2, "created_at": 1_767_225_600.0})

    # the regions' boundaries are fitted to the finite metrics (none here): the fixed defaults
    result = run_cli(ws, "metrics", "nan-run", "--json")
    no_traceback(result)
    assert result.code == 0, result.stderr
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    rows = strict_loads(result.stdout)
    assert isinstance(rows, list) and len(rows) == n
    assert all(r["confidence"] is None for r in rows)
    drawn = run_cli(ws, "map", "nan-run", "--json")
    no_traceback(drawn)
    assert drawn.code == 0, drawn.stderr
    assert strict_loads(drawn.stdout)["total"] == 0  # NaN metrics have no place on the map
    jobs = run_cli(ws, "jobs", "--json")
    assert jobs.code == 0 and "NaN" not in jobs.stdout
    strict_loads(jobs.stdout)
