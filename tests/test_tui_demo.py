"""`dynascope demo` opens the app at once: the real demo data is imported and the demo run started as a detached job
by the app's worker, shown on home; a second `demo` reuses the workspace and resumes the same run (never a second
one); a failure of that background job is shown in the app (a notification, the run listed as failed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.widgets import DataTable, Static

from engine import jobs as engine_jobs
from engine.analysis.datasets import list_datasets
from engine.cli.main import cli
from engine.demo import DEMO_FILES, find_demo_run, start_demo_run
from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.screens.home import HomeScreen

SIZE = (120, 40)


def demo_jobs(ws: Workspace) -> list[dict]:
    return [j for j in engine_jobs.list_jobs(ws) if j["dataset"] == "sst2-train"]


def stop_jobs(ws: Workspace) -> None:
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            engine_jobs.cancel(ws, job["run_id"])
    for job in engine_jobs.list_jobs(ws):  # let each end (it holds its run's lock until then)
        if job["alive"]:
            deadline = time.monotonic() + 60
            while engine_jobs.job_info(ws, job["run_id"])["alive"] and time.monotonic() < deadline:
                time.sleep(0.5)


def home_job_row(app, run_id: str) -> list[str] | None:  # noqa: ANN001
    home = next(s for s in app.screen_stack if isinstance(s, HomeScreen))
    table = home.query_one("#jobs", DataTable)
    for index in range(table.row_count):
        if table.coordinate_to_cell_key((index, 0)).row_key.value == run_id:
            return [str(c) for c in table.get_row_at(index)]
    return None


@pytest.fixture
def demo_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DYNASCOPE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return data_dir


async def test_demo_opens_at_once_trains_in_background_resumes_and_shows_a_failure(
    tmp_path: Path, demo_env: Path
) -> None:
    root = tmp_path / "demo-ws"
    try:
        await demo_flow(root)
    finally:
        if root.exists():
            stop_jobs(Workspace(root))


async def demo_flow(root: Path) -> None:
    # `dynascope --workspace ROOT demo` hands the app a workspace with nothing imported yet: the app opens first.
    opened: list[tuple[Workspace, bool, float]] = []
    started = time.perf_counter()

    def opener(ws: Workspace, demo: bool = False) -> None:
        opened.append((ws, demo, time.perf_counter() - started))

    result = CliRunner().invoke(cli, ["--workspace", str(root), "demo"], obj={"open_app": opener})
    assert result.exit_code == 0, result.output
    [(ws, demo, after_s)] = opened
    assert demo is True and ws.root == root
    with open_catalog(ws) as con:
        assert list_datasets(con) == []  # no import (and no training) stands between the command and the app
    assert demo_jobs(ws) == []

    app = make_app(ws)
    app.demo = True
    painted = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        first_paint_s = time.perf_counter() - painted
        print(f"\ncommand to opener {after_s:.2f} s, app to first paint {first_paint_s:.2f} s")
        # while the worker imports, home is on screen and says what the demo is doing
        assert await wait_until(app, pilot, lambda: app.demo_run is not None, timeout=120), (
            app.demo_status,
            app.errors,
        )
        run_id = app.demo_run
        assert run_id in app.demo_status and "background" in app.demo_status
        assert await wait_until(app, pilot, lambda: home_job_row(app, run_id) is not None, timeout=20)
        row = home_job_row(app, run_id)
        assert row[2] in ("starting", "running") and row[3].startswith("epoch 1/3"), row
        demo_line = app.screen.query_one("#demo-status", Static)
        assert demo_line.display and run_id in str(demo_line.render())
        with open_catalog(ws) as con:
            names = {d["name"] for d in list_datasets(con)}
        assert names == {name for name, _, _ in DEMO_FILES}
        # detached: its own session, so closing the app (or the terminal) leaves it training
        pid = engine_jobs.job_info(ws, run_id)["pid"]
        assert pid and os.getsid(pid) != os.getsid(0)
    assert engine_jobs.job_info(ws, run_id)["status"] in (
        "starting",
        "running",
    )  # the app is gone, the job not

    # Stop it (as a reboot would, it does not finish) and break its inputs, so its resume fails in the background.
    engine_jobs.cancel(ws, run_id)
    assert await_status(ws, run_id, "cancelled")
    for parquet in (ws.run_dir(run_id) / "inputs").rglob("*.parquet"):
        parquet.write_bytes(b"not parquet")

    # A second `demo` on the same workspace: nothing imported again, the same run resumed (not a second run) ...
    app = make_app(ws)
    app.demo = True
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert await wait_until(app, pilot, lambda: app.demo_run is not None, timeout=60), app.errors
        assert app.demo_run == run_id and "resumed" in app.demo_status
        assert [j["run_id"] for j in demo_jobs(ws)] == [run_id]
        # ... and its failure is shown: a notification, and the run stays listed on home as failed
        assert await wait_until(
            app, pilot, lambda: (home_job_row(app, run_id) or [""] * 3)[2] == "failed", timeout=120
        ), (home_job_row(app, run_id), screen_text(app))
        assert await wait_until(
            app, pilot, lambda: any(run_id in str(n.message) for n in app._notifications), timeout=10
        )
        failure = next(n for n in app._notifications if run_id in str(n.message))
        assert failure.severity == "error" and "failed" in str(failure.message)
        line = app.screen.query_one("#demo-status", Static)
        assert f"demo run {run_id}: failed" in str(line.render()) and "R resumes" in str(line.render())
        assert line.has_class("failed")

    # A third `demo` leaves the failed run to the user (resume key) and says so, rather than starting another.
    said: list[str] = []
    again, proc = start_demo_run(ws, log=said.append)
    assert again == run_id and proc is None and "failed" in said[0] and "R" in said[0]
    assert find_demo_run(ws)["run_id"] == run_id and len(demo_jobs(ws)) == 1


def await_status(ws: Workspace, run_id: str, status: str, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_jobs.job_info(ws, run_id)["status"] == status:
            return True
        time.sleep(0.5)
    return False


async def test_a_failed_demo_setup_is_shown_on_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The import runs in the app's worker: its failure stays on home (in red), besides the app's notification."""
    monkeypatch.setenv("DYNASCOPE_DATA_DIR", str(tmp_path / "no-such-folder"))
    ws = Workspace(tmp_path / "demo-ws").create()
    app = make_app(ws)
    app.demo = True
    async with app.run_test(size=SIZE) as pilot:
        assert await wait_until(
            app, pilot, lambda: app.demo_status.startswith("demo setup failed"), timeout=30
        )
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        line = app.screen.query_one("#demo-status", Static)
        assert "no-such-folder" in str(line.render()) and line.has_class("failed") and line.display
        assert any("no-such-folder" in e for e in app.errors)  # the one handler's notification
    assert demo_jobs(ws) == []
