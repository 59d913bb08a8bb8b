"""Jobs from the app, with real training (the offline MiniLM on SST-2 dev): launch from the form and watch it reach
`done` while the app stays responsive; a job started from the CLI keeps running after the app exits, shows its
progress when the app is opened again, and is cancelled with a key."""

from __future__ import annotations

import time

from engine import jobs as engine_jobs
from storage.artifacts import read_config
from tests.conftest import run_cli
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.jobs import JobForm, JobsScreen

SIZE = (120, 36)

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


def row_of(screen: JobsScreen, run_id: str) -> list[str] | None:
    for key, cells in screen.last_rows:
        if key == run_id:
            return cells
    return None


def stop_jobs(ws) -> None:  # noqa: ANN001
    """Never leave a training process behind, whatever the test's outcome."""
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            engine_jobs.cancel(ws, job["run_id"])


def status_of(screen: JobsScreen, run_id: str) -> str | None:
    row = row_of(screen, run_id)
    return row[3] if row else None


async def test_launch_from_form_reaches_done_while_app_stays_responsive(tui_ws):  # noqa: ANN001
    try:
        await launch_and_watch(tui_ws)
    finally:
        stop_jobs(tui_ws)


async def launch_and_watch(tui_ws) -> None:  # noqa: ANN001
    app = make_app(tui_ws)
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
        assert form.query_one("#f-dataset").value == "sst2-dev"  # sensible defaults: the first dataset
        for name, value in (("epochs", "1"), ("limit", "32"), ("max_length", "32"), ("batch_size", "16")):
            form.query_one(f"#f-{name}").value = value
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        assert app.screen is jobs
        assert await wait_until(app, pilot, lambda: bool(jobs.launched), timeout=30), app.errors
        run_id = jobs.launched[0]
        assert await wait_until(app, pilot, lambda: row_of(jobs, run_id) is not None, timeout=10)

        # While the job trains (and writes shards), the app keeps working: home, the map of a finished run.
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        started = time.perf_counter()
        app.open_map("sst2-run")
        await settle(app, pilot)
        assert isinstance(app.screen, DataMapScreen) and app.screen.counts
        assert time.perf_counter() - started < 5.0  # generous: the machine trains at the same time
        await pilot.press("escape")
        await settle(app, pilot)
        app.open_jobs(run_id)
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)

        assert await wait_until(app, pilot, lambda: status_of(jobs, run_id) == "done", timeout=150), (
            status_of(jobs, run_id),
            app.errors,
            screen_text(app),
        )
        await settle(app, pilot)
        text = screen_text(app)
        assert run_id[:12] in text and "100%" in text
        assert jobs.shown_run == run_id and "epoch 1 done" in "\n".join(jobs.query_one("#job-log").lines)
        assert not [e for e in app.errors if "lock" in e.lower()]
        assert not app.errors

        # The finished run is synced into the catalog: its map has the 32 examples it trained on.
        app.open_map(run_id)
        await settle(app, pilot)
        assert sum(app.screen.counts.values()) == 32


async def test_job_survives_app_exit_shows_progress_and_cancels(tui_ws):  # noqa: ANN001
    try:
        await survive_and_cancel(tui_ws)
    finally:
        stop_jobs(tui_ws)


async def survive_and_cancel(tui_ws) -> None:  # noqa: ANN001
    # long enough to still be running at the end (it is cancelled), in short steps (a cancel lands at a step)
    started = run_cli(
        tui_ws,
        "train",
        "sst2-dev",
        "--limit",
        "800",
        "--epochs",
        "3",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        "--detach",
    )
    assert started.code == 0, started.stderr
    run_id = next(
        j["run_id"]
        for j in engine_jobs.list_jobs(tui_ws)
        if j["dataset"] == "sst2-dev" and j["run_id"] not in ("sst2-run", "sst2-run-b")
    )

    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert await wait_until(app, pilot, lambda: run_id in screen_text(app), timeout=20)
        app.open_jobs(run_id)
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        assert await wait_until(
            app,
            pilot,
            lambda: (
                status_of(jobs, run_id) == "running"
                and not (row_of(jobs, run_id) or [" 0%"] * 8)[4].endswith(" 0%")
            ),
            timeout=90,
        ), (row_of(jobs, run_id), screen_text(app))
    # The app has exited: the job has not.
    info = engine_jobs.job_info(tui_ws, run_id)
    assert info["alive"] and info["status"] == "running"
    before = info["progress"].get("step", 0), info["epochs_done"]
    time.sleep(2.0)

    app2 = make_app(tui_ws)
    async with app2.run_test(size=SIZE) as pilot:
        await settle(app2, pilot)
        assert run_id in screen_text(app2)  # home: jobs running
        app2.open_jobs(run_id)
        await settle(app2, pilot)
        jobs = app2.screen
        assert await wait_until(app2, pilot, lambda: status_of(jobs, run_id) == "running", timeout=20)

        def moved_on() -> bool:  # it kept training meanwhile (progress events come about once a second)
            info = engine_jobs.job_info(tui_ws, run_id)
            return (info["progress"].get("step", 0), info["epochs_done"]) != before

        assert await wait_until(app2, pilot, moved_on, timeout=60)
        await pilot.pause(1.5)  # one more poll of the jobs screen
        text = screen_text(app2)
        assert "ETA" in text and "ex/s" in text and "step loss" in text
        row = row_of(jobs, run_id)
        assert row is not None and not row[4].endswith((" 0%", "100%"))  # the progress column: epoch i/n  p%

        assert jobs.selected_run() == run_id
        await pilot.press("c")
        await settle(app2, pilot)
        await pilot.press("y")  # cancel asks first
        assert await wait_until(app2, pilot, lambda: status_of(jobs, run_id) == "cancelled", timeout=90), (
            row_of(jobs, run_id),
            app2.errors,
        )
        await settle(app2, pilot)
        assert "cancelled" in screen_text(app2)
        assert not app2.errors
    assert not engine_jobs.job_info(tui_ws, run_id)["alive"]


async def test_retrain_on_a_region_from_the_map_then_evaluate(tui_ws):  # noqa: ANN001
    try:
        await retrain_and_evaluate(tui_ws)
    finally:
        stop_jobs(tui_ws)


def trained_ids(ws, run_id: str) -> list[str]:  # noqa: ANN001
    import pyarrow.parquet as pq

    return sorted(
        pq.read_table(ws.run_dir(run_id) / "inputs" / "train.parquet").column("example_id").to_pylist()
    )


def catalog_ids(ws, sql: str, params: list) -> list[str]:  # noqa: ANN001
    from storage.catalog import open_catalog

    with open_catalog(ws) as con:
        return sorted(r[0] for r in con.execute(sql, params).fetchall())


async def launch_from_form(app, pilot, overrides: dict[str, str]) -> str:  # noqa: ANN001
    form = app.screen
    assert isinstance(form, JobForm)
    for name, value in overrides.items():
        form.query_one(f"#f-{name}").value = value
    await pilot.press("ctrl+s")
    await settle(app, pilot)
    jobs = app.screen
    assert isinstance(jobs, JobsScreen), app.errors
    assert await wait_until(app, pilot, lambda: bool(jobs.launched), timeout=30), app.errors
    return jobs.launched[-1]


async def test_retrain_from_the_map_with_moved_boundaries(tui_ws):  # noqa: ANN001
    try:
        app = make_app(tui_ws)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            app.open_map("sst2-run")
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.fitted is not None
            moved = screen.fitted
            for _ in range(5):
                moved = moved.moved("cartography", "y", -0.05)
            await pilot.press("3", "j", "j", "j", "j", "j")  # hard; the confidence line 0.25 down
            await settle(app, pilot, rounds=4)
            assert screen.bounds == moved != screen.fitted
            a, e = moved.cartography.ambiguous_variability, moved.cartography.easy_confidence
            shown = screen.counts["hard"]
            await pilot.press("R")
            await settle(app, pilot, rounds=4)
            form = app.screen
            assert isinstance(form, JobForm)
            assert form.value("bounds") == f"{a:g},{e:g}" and form.value("fraction") == ""
            note = str(form.query_one("#form-note").render())
            assert "boundaries on screen" in note and f"{shown} examples" in note, note
            preview = str(form.query_one("#form-preview").render())
            assert f"selects all {shown} examples the map puts in 'hard'; labels: " in preview, preview
            run_id = await launch_from_form(app, pilot, {"epochs": "1", "max_length": "32"})
        expected = catalog_ids(
            tui_ws,
            "SELECT example_id FROM example_metrics WHERE run_id = 'sst2-run' AND variability < ? AND confidence < ?",
            [a, e],
        )
        assert len(expected) == shown > 0
        assert trained_ids(tui_ws, run_id) == expected
        config = engine_jobs.job_info(tui_ws, run_id)
        assert config["origin"] == f"hard (bounds {a:g},{e:g}) of sst2-run"
    finally:
        stop_jobs(tui_ws)


async def retrain_and_evaluate(tui_ws) -> None:  # noqa: ANN001
    from engine.analysis.selection import select_examples
    from storage.catalog import open_catalog

    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_map("sst2-run")
        await settle(app, pilot)
        await pilot.press("2", "R")  # retrain on the ambiguous region, boundaries untouched: a top-F ranking
        await settle(app, pilot, rounds=4)
        form = app.screen
        assert isinstance(form, JobForm)
        assert form.query_one("#f-kind").value == "retrain"
        assert form.value("run") == "sst2-run" and form.value("region") == "ambiguous"
        assert form.value("fraction") == "0.33" and form.value("bounds") == ""
        note = str(form.query_one("#form-note").render())
        assert "top 33% of 'ambiguous' by variability" in note and "287 of 872 examples" in note, note
        run_id = await launch_from_form(
            app, pilot, {"epochs": "1", "fraction": "0.03", "max_length": "32", "batch_size": "16"}
        )
        jobs = app.screen
        info = engine_jobs.job_info(tui_ws, run_id)
        assert info["dataset"] == "sst2-run-ambiguous-3pct" and info["full_dataset"] == "sst2-dev"
        with open_catalog(tui_ws) as con:
            select_examples(con, "sst2-run", "ambiguous", 0.03, "check-3pct")
        check = catalog_ids(tui_ws, "SELECT example_id FROM examples WHERE dataset = ?", ["check-3pct"])
        assert trained_ids(tui_ws, run_id) == check and len(check) == 26
        assert await wait_until(app, pilot, lambda: status_of(jobs, run_id) == "done", timeout=150), (
            status_of(jobs, run_id),
            app.errors,
        )

        # Evaluate the new run from the same form (on the small selection, to keep the test short): the result
        # reaches the compare screen.
        jobs.want_run = run_id
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, JobForm)
        form.query_one("#f-kind").value = "evaluate"
        await settle(app, pilot, rounds=4)
        form = app.screen
        assert isinstance(form, JobForm) and form.kind_name == "evaluate"
        form.query_one("#f-run").value = run_id
        await settle(app, pilot, rounds=4)
        form = app.screen
        assert isinstance(form, JobForm)
        form.query_one("#f-eval").value = "sst2-run-ambiguous-3pct"
        await pilot.press("ctrl+s")
        await settle(app, pilot)

        def evaluated() -> bool:
            with open_catalog(tui_ws) as con:
                from storage.sync import sync

                sync(tui_ws, con)
                return (
                    con.execute("SELECT count(*) FROM evaluations WHERE run_id = ?", [run_id]).fetchone()[0]
                    > 0
                )

        assert await wait_until(app, pilot, evaluated, timeout=120, step=1.0), app.errors

        # the evaluation ran as a job of its own, followed on the jobs screen like any other
        def eval_job_done() -> bool:
            eval_jobs = [j for j in engine_jobs.list_jobs(tui_ws) if j["kind"] == "evaluate"]
            assert len(eval_jobs) == 1, eval_jobs
            return eval_jobs[0]["status"] == "done"

        assert await wait_until(app, pilot, eval_job_done, timeout=60, step=0.5)
        app.go_home()
        app.open_compare()
        await settle(app, pilot)
        # the retrain is shown by its name (its selection's), what it trained on and where it came from
        name = read_config(tui_ws.run_dir(run_id))["name"]
        assert name == info["dataset"] and name in screen_text(app)
        assert not app.errors
