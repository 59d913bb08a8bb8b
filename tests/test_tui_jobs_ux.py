"""The jobs screen as an analyst uses it, with a real training job (the offline MiniLM on SST-2 dev): newest first,
`starting` until the process is up, one progress reading (`epoch i/n  p%`) on home, the jobs screen and the
`jobs` / `runs` commands, a confirmation before cancel, a resume key; the form: Enter moves between fields, ctrl+s
launches, escape returns where the user came from."""

from __future__ import annotations

import math
import os
import re
import signal

from click.testing import CliRunner
from textual.widgets import DataTable, Input

from engine import jobs as engine_jobs
from engine.analysis.progress import JobFollower, progress_label
from engine.cli.main import cli
from storage.artifacts import append_event
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.screens.confirm import ConfirmModal
from tui_app.screens.home import HomeScreen
from tui_app.screens.jobs import JOB_COLUMNS, FormSelect, JobForm, JobsScreen

SIZE = (120, 36)

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


def stop_jobs(ws) -> None:  # noqa: ANN001
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            try:
                os.kill(job["pid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
            engine_jobs.cancel(ws, job["run_id"])


def row_of(screen: JobsScreen, run_id: str) -> dict[str, str] | None:
    for key, cells in screen.last_rows:
        if key == run_id:
            return dict(zip(JOB_COLUMNS, cells))
    return None


def home_progress(app, run_id: str) -> str | None:  # noqa: ANN001
    home = next(s for s in app.screen_stack if isinstance(s, HomeScreen))
    table = home.query_one("#jobs", DataTable)
    for index in range(table.row_count):
        if table.coordinate_to_cell_key((index, 0)).row_key.value == run_id:
            return str(table.get_row_at(index)[3])
    return None


def cli_column(ws, command: str, run_id: str, column: str) -> str:  # noqa: ANN001
    """A cell of the `dynascope jobs` / `runs` table (printed wide enough for one line per row)."""
    out = CliRunner().invoke(cli, ["--workspace", str(ws.root), command], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    rows = [[c.strip() for c in re.split("[│┃]", line)[1:-1]] for line in out.output.splitlines()]
    header = next(r for r in rows if column in r)
    row = next(r for r in rows if r and r[0] == run_id)
    return row[header.index(column)]


def test_one_progress_rule_for_training_and_evaluation(tmp_path) -> None:  # noqa: ANN001
    """`epoch i/n  p%`: i the epoch in progress (1-based) while running, the last complete one once stopped; p the
    overall share, rounded down; an evaluation counts its sets (it writes no epoch_end)."""
    train = JobFollower(tmp_path / "train")
    append_event(tmp_path / "train", "state", status="running", pid=1, n_epochs=4)
    append_event(tmp_path / "train", "progress", epoch=0, n_epochs=4, step=25, total=100)
    train.poll()
    assert train.progress().label == "epoch 1/4  6%"
    append_event(tmp_path / "train", "epoch_end", epoch=0, metrics={})
    append_event(tmp_path / "train", "progress", epoch=1, n_epochs=4, step=50, total=100)
    train.poll()
    assert train.progress().label == "epoch 2/4  37%"
    job = {"status": "running", "epochs_done": 1, "n_epochs": 4, "progress": train.state.progress}
    assert progress_label(job) == train.progress().label  # a job as list_jobs lists it reads the same
    assert progress_label({**job, "status": "cancelled"}) == "epoch 1/4  25%"  # the partial epoch is not kept
    assert progress_label({**job, "status": "starting"}) == "epoch 2/4  25%"
    append_event(tmp_path / "train", "state", status="done")
    train.poll()
    assert train.progress().label == "epoch 4/4  100%"

    evaluation = JobFollower(tmp_path / "eval")
    append_event(tmp_path / "eval", "state", status="running", pid=1)
    append_event(tmp_path / "eval", "progress", epoch=1, n_epochs=2, step=5, total=10, unit="set")
    evaluation.poll()
    assert evaluation.progress().label == "set 2/2  75%"


async def test_form_enter_moves_between_fields_and_escape_returns_where_the_user_came_from(tui_ws) -> None:  # noqa: ANN001
    runs = {j["run_id"] for j in engine_jobs.list_jobs(tui_ws)}
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        await pilot.press("n")  # the form, from home
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, JobForm)
        first = app.focused
        assert isinstance(first, Input)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is form and app.focused is not first  # Enter moved on; nothing was launched
        await pilot.press("enter", "enter")
        await settle(app, pilot)
        assert app.screen is form and {j["run_id"] for j in engine_jobs.list_jobs(tui_ws)} == runs
        # a drop-down: Enter opens its list, Enter picks, and the next field takes the focus; Escape from the
        # list keeps the focus on the drop-down
        for select in form.query(FormSelect):
            if select.id != "f-kind" and not select.disabled:
                break
        select.focus()
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert select.expanded
        await pilot.press("escape")
        await settle(app, pilot)
        assert not select.expanded and app.focused is select and app.screen is form
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is form and not select.expanded
        assert app.focused is not None and app.focused.id != select.id  # moved on to another field
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is home  # not the jobs screen the form was opened through

        await pilot.press("j", "n")  # the form, from the jobs screen: escape lands back on it
        await settle(app, pilot)
        assert isinstance(app.screen, JobForm)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, JobsScreen)


async def test_jobs_newest_first_starting_one_progress_confirmed_cancel_and_resume(tui_ws) -> None:  # noqa: ANN001
    try:
        await jobs_flow(tui_ws)
    finally:
        stop_jobs(tui_ws)


async def jobs_flow(ws) -> None:  # noqa: ANN001
    before = {j["run_id"] for j in engine_jobs.list_jobs(ws)}
    app = make_app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("j")
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, JobForm)
        # short: it is frozen (SIGSTOP) after its first epoch and cancelled while frozen
        for name, value in (("epochs", "3"), ("limit", "48"), ("max_length", "32"), ("batch_size", "8")):
            form.query_one(f"#f-{name}", Input).value = value
        form.query_one("#f-batch_size", Input).focus()
        await pilot.press("enter")  # Enter in the last field typed: still the form
        await settle(app, pilot)
        assert app.screen is form
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is jobs

        # `starting` from the moment the run is listed until its process is up, then running; never `created`
        seen: list[str] = []

        def watch() -> bool:
            new = [key for key, _ in jobs.last_rows if key not in before]
            if new:
                status = row_of(jobs, new[0])["status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
            return bool(seen) and seen[-1] == "running"

        assert await wait_until(app, pilot, watch, timeout=120, step=0.1), (seen, app.errors)
        assert seen[0] == "starting" and "created" not in seen, seen
        run_id = jobs.launched[0]
        assert jobs.last_rows[0][0] == run_id  # newest first
        created = {j["run_id"]: j["created_at"] for j in engine_jobs.list_jobs(ws)}
        order = [k for k, _ in jobs.last_rows]
        assert len(order) == len(created) > 2
        assert [created[k] for k in order] == sorted(created.values(), reverse=True)

        # One reading of progress everywhere: frozen mid-run (SIGSTOP), every view shows the same text.
        assert await wait_until(
            app, pilot, lambda: engine_jobs.job_info(ws, run_id)["epochs_done"] >= 1, timeout=180
        ), row_of(jobs, run_id)
        pid = engine_jobs.job_info(ws, run_id)["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            job = engine_jobs.job_info(ws, run_id)
            expected = progress_label(job)
            prog = job["progress"]
            within = prog["step"] / prog["total"] if prog.get("epoch") == job["epochs_done"] else 0.0
            rule = f"epoch {job['epochs_done'] + 1}/3  {math.floor(100 * (job['epochs_done'] + within) / 3)}%"
            assert expected == rule
            jobs.poll()
            assert await wait_until(
                app, pilot, lambda: row_of(jobs, run_id)["progress"] == expected, timeout=10
            )
            assert expected in screen_text(app)  # the detail title too
            assert cli_column(ws, "jobs", run_id, "progress") == expected
            assert cli_column(ws, "runs", run_id, "progress") == expected
            await pilot.press("escape")
            await settle(app, pilot)
            home = app.screen
            assert isinstance(home, HomeScreen)
            home.action_refresh()
            assert await wait_until(app, pilot, lambda: home_progress(app, run_id) == expected, timeout=20)

            # Cancel asks first: `n` keeps it running, `y` cancels (delivered once the job is let go on).
            app.open_jobs(run_id)
            await settle(app, pilot)
            jobs = app.screen
            assert isinstance(jobs, JobsScreen)
            await pilot.press("c")
            await settle(app, pilot)
            assert isinstance(app.screen, ConfirmModal) and run_id in screen_text(app)
            await pilot.press("n")
            await settle(app, pilot)
            assert app.screen is jobs and engine_jobs.job_info(ws, run_id)["status"] == "running"
            assert "cancel requested" not in (ws.run_dir(run_id) / "events.jsonl").read_text()
            await pilot.press("c")
            await settle(app, pilot)
            await pilot.press("y")
            await settle(app, pilot)
            assert "cancel requested" in (ws.run_dir(run_id) / "events.jsonl").read_text()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await wait_until(app, pilot, lambda: row_of(jobs, run_id)["status"] == "cancelled", timeout=60)
        done_before = engine_jobs.job_info(ws, run_id)["epochs_done"]
        assert "R resumes it" in screen_text(app)

        # R resumes the cancelled run from its last complete epoch (the same run, no new one)
        await pilot.press("R")
        assert await wait_until(
            app, pilot, lambda: row_of(jobs, run_id)["status"] in ("starting", "running"), timeout=30
        ), (row_of(jobs, run_id), app.errors)
        assert not app.errors
        assert len(jobs.last_rows) == len(before) + 1
        log = "\n".join(jobs.query_one("#job-log").lines)
        assert f"resume requested after epoch {done_before}" in log
