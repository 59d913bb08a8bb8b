"""The run view and run names on runs trained for real (the offline MiniLM on 32 SST-2 examples, tests.tui_fixtures:
`real_ws`): a finished run's curves are the numbers its folder holds; a run started from the CLI is drawn live while
it trains; compare overlays runs and lists the settings in which they differ; names show in every listing.
Case-study exports of the same runs: named by run, region and time, never overwriting, with tags and notes, saying
whether the run was still training."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from engine import jobs as engine_jobs
from engine.analysis.curves import RunCurves, downsample
from engine.analysis.examples import add_annotation
from engine.errors import BadInputError
from storage.artifacts import read_events
from storage.catalog import open_catalog
from storage.steplog import append_steps, read_steps
from tests.conftest import run_cli
from tests.tui_helpers import REAL_EVAL_SET, REAL_TRAIN_ARGS, make_app, screen_text, settle, wait_until
from tui_app.screens.cases import CasesScreen
from tui_app.screens.compare import CompareScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.runview import CurvePlot, RunViewScreen

pytest_plugins = ["tests.tui_fixtures"]  # real_ws

SIZE = (120, 36)
EVAL_METRIC = f"eval/{REAL_EVAL_SET}/accuracy"


def epoch_metrics(ws, run_id: str) -> dict[int, dict[str, float]]:  # noqa: ANN001
    return {e["epoch"]: e["metrics"] for e in read_events(ws.run_dir(run_id)) if e["type"] == "epoch_end"}


def stop_jobs(ws) -> None:  # noqa: ANN001
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            os.kill(job["pid"], signal.SIGCONT)  # a job this test paused must be able to take the SIGTERM
            engine_jobs.cancel(ws, job["run_id"])


async def test_run_view_draws_a_finished_runs_own_numbers(real_ws, real_run_template) -> None:  # noqa: ANN001
    run_id = real_run_template[1]
    steps = read_steps(real_ws.run_dir(run_id))
    epochs = epoch_metrics(real_ws, run_id)
    assert len(steps) == 8 and sorted(epochs) == [0, 1]  # 32 examples / batch 8 = 4 steps, 2 epochs
    assert all(s["accuracy"] is not None for s in steps)  # inline dynamics: the batch accuracy too
    assert steps[0]["lr"] > 0 and steps[-1]["lr"] < steps[0]["lr"]  # the linear schedule, step by step

    app = make_app(real_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "baseline" in screen_text(app)  # home lists the run by name
        app.screen.query_one("#runs").focus()
        await pilot.press("t")
        await settle(app, pilot)
        view = app.screen
        assert isinstance(view, RunViewScreen) and view.run_ids == [run_id]
        assert await wait_until(app, pilot, lambda: view.last is not None, timeout=20)
        shown = view.last
        assert shown is not None
        assert shown.title.startswith("baseline · sst2-dev · done · epoch 2/2 100%")
        # the loss line is every logged step, at its place in epochs; the epoch points are the epoch means
        (loss,) = shown.loss_lines
        assert loss.y == pytest.approx([s["loss"] for s in steps], rel=1e-12)
        assert loss.x == [s["epoch"] + s["step"] / 4 for s in steps]
        (train_loss,) = shown.loss_points
        assert train_loss.x == [1.0, 2.0] and train_loss.y == [
            epochs[0]["train_loss"],
            epochs[1]["train_loss"],
        ]
        # the right-hand plot: batch accuracy per step, training accuracy and the evaluation per epoch
        assert shown.metric == EVAL_METRIC  # evaluation metrics come first
        assert shown.metric_lines[0].y == pytest.approx([s["accuracy"] for s in steps], rel=1e-12)
        evaluation = shown.metric_points[1]
        assert evaluation.x == [1.0, 2.0] and evaluation.y == [epochs[0][EVAL_METRIC], epochs[1][EVAL_METRIC]]
        # the per-epoch table, 1-based epochs, the evaluation's columns by set
        assert shown.table_columns[:1] == ["epoch"] and f"{REAL_EVAL_SET}/accuracy" in shown.table_columns
        assert [row[0] for row in shown.table_rows] == ["1", "2"]
        col = shown.table_columns.index("train_accuracy")
        assert shown.table_rows[1][col] == f"{epochs[1]['train_accuracy']:.4f}"
        text = screen_text(app)
        assert "baseline · sst2-dev" in text and "loss (per step · epoch mean)" in text

        # one run: loss and training accuracy are drawn anyway; `m` picks the third curve among the others
        assert view.choices == [EVAL_METRIC]
        polls = view.polls
        await pilot.resize_terminal(80, 24)  # the plots re-bin to the new width and stay readable
        await settle(app, pilot)
        plot = view.query_one("#loss-plot", CurvePlot)
        assert plot.size.width < 60 and all(len(x) <= plot.max_points() for _, x, _ in plot.drawn())
        assert "loss" in screen_text(app) and view.polls >= polls and not app.errors

    # the CLI lists the name; a name that cannot be shown on a line is refused before anything is created
    listed = run_cli(real_ws, "runs")
    header = next(line for line in listed.stdout.splitlines() if "run_id" in line)
    assert listed.code == 0 and re.search(r"run_id\s+┃ name\s+┃ kind", header), listed.stdout
    assert re.search(r"│ baseline\S*\s+│ baseline\s+│ train", listed.stdout), listed.stdout
    before = set(real_ws.run_ids())
    with pytest.raises(BadInputError, match="--name .*control characters"):
        engine_jobs.create_run(real_ws, {"kind": "train", "dataset": "sst2-dev", "name": "bad\nname"})
    assert set(real_ws.run_ids()) == before


def test_downsample_bins_to_the_width_and_keeps_the_mean() -> None:
    x = [i / 100 for i in range(1000)]
    y = [((i * 7919) % 97) / 97 for i in range(1000)]  # a noisy curve
    sx, sy = downsample(x, y, 100)
    assert len(sx) == len(sy) == 100
    assert abs(sum(sy) / 100 - sum(y) / 1000) < 1e-9  # equal bins of 10: the mean of the means is the mean
    assert sy[0] == sum(y[:10]) / 10
    assert len(downsample(x, y, 80)[0]) == 80  # unequal bins too
    assert sx == sorted(sx) and sx[0] >= x[0] and sx[-1] <= x[-1]
    assert downsample(x[:50], y[:50], 80) == (x[:50], y[:50])


def test_step_columns_of_a_real_log_resumed_and_torn(real_ws, real_run_template) -> None:  # noqa: ANN001
    """The columns the run view reads (Arrow's reader) equal the line-by-line reader's; a resumed epoch's redone
    steps replace the first ones; a torn line (a killed writer) is skipped, the lines after it read."""
    run_dir = real_ws.run_dir(real_run_template[1])
    rows = read_steps(run_dir)
    curves = RunCurves(real_ws, real_run_template[1])
    curves.poll()
    assert curves.n_steps == len(rows) == 8
    assert curves.columns["loss"].tolist() == pytest.approx([r["loss"] for r in rows], rel=1e-12)
    # a resume after epoch 1 redoes epoch 2: its four steps again, other numbers, then a torn line and one more
    redone = [{**r, "loss": r["loss"] + 1.0} for r in rows if r["epoch"] == 1]
    append_steps(run_dir, redone)
    with open(run_dir / "steps.jsonl", "ab") as fh:
        fh.write(b'{"epoch": 1, "step": 4, "los\n')
    append_steps(run_dir, [{"epoch": 2, "step": 1, "steps": 4, "loss": 0.5, "accuracy": None, "lr": 1e-5}])
    assert curves.poll()
    expected = [r["loss"] for r in rows if r["epoch"] == 0] + [r["loss"] for r in redone] + [0.5]
    assert curves.n_steps == 9 and curves.columns["loss"].tolist() == pytest.approx(expected, rel=1e-12)
    assert [r["loss"] for r in read_steps(run_dir)] == pytest.approx(expected, rel=1e-12)
    accuracy = curves.step_curve("accuracy")  # the step without a batch accuracy is left out of its curve
    assert len(accuracy) == 8 and accuracy.x[-1] == 2.0
    assert len(curves.step_curve("loss", max_points=4)) == 4


async def test_live_curves_compare_overlay_and_an_export_while_training(real_ws, real_run_template) -> None:  # noqa: ANN001
    try:
        await live_compare_and_export(real_ws, real_run_template[1])
    finally:
        stop_jobs(real_ws)


async def live_compare_and_export(ws, baseline: str) -> None:  # noqa: ANN001
    started = run_cli(
        ws,
        "train",
        "sst2-dev",
        "--name",
        "lr-high",
        "--lr",
        "1e-4",
        "--seed",
        "7",
        *REAL_TRAIN_ARGS,
        "--detach",
    )
    assert started.code == 0, started.stderr
    (job,) = [j for j in engine_jobs.list_jobs(ws) if j["name"] == "lr-high"]
    run_id = job["run_id"]

    app = make_app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_run_view(run_id)
        await settle(app, pilot)
        view = app.screen
        assert isinstance(view, RunViewScreen)

        def n_steps() -> int:
            return len(view.last.loss_lines[0]) if view.last is not None else 0

        # live: the curve grows while the run trains, without a key press
        assert await wait_until(app, pilot, lambda: n_steps() >= 1, timeout=120), app.errors
        first = n_steps()
        assert await wait_until(app, pilot, lambda: n_steps() > first, timeout=120), (first, app.errors)
        assert view.last is not None and "lr-high · sst2-dev · running" in view.last.title
        # after epoch 1, hold the job still (SIGSTOP) and export case studies: they say it is still training
        assert await wait_until(app, pilot, lambda: view.curves[0].state.epochs_done >= 1, timeout=120), (
            view.last.title
        )
        pid = view.curves[0].state.pid
        assert pid
        os.kill(pid, signal.SIGSTOP)
        try:
            if view.curves[0].state.finished:  # it finished in between: nothing to show while training
                raise AssertionError("the run finished before it could be paused; the test needs it running")
            app.open_cases(run_id)
            await settle(app, pilot)
            cases = app.screen
            assert isinstance(cases, CasesScreen) and cases.run_id == run_id and cases.studies
            await pilot.press("e")
            await settle(app, pilot)
            assert cases.last_export is not None
            text = cases.last_export.read_text()
            assert f"# Case studies: run lr-high ({run_id})" in text
            assert "Run: **still training** (1 of 2 epochs done" in text
            assert cases.last_export.name.startswith("case-studies-lr-high-all-cartography-")
            await pilot.press("escape")
            await settle(app, pilot)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert app.screen is view
        assert await wait_until(
            app, pilot, lambda: view.last is not None and " · done · " in view.last.title, timeout=180
        ), (view.last and view.last.title, app.errors)
        await settle(app, pilot)
        assert n_steps() == 8 and [r[0] for r in view.last.table_rows] == ["1", "2"]

        # compare: both runs by name; `t` overlays the picked ones with the settings in which they differ
        await pilot.press("escape")
        await settle(app, pilot)
        app.open_compare()
        await settle(app, pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        text = screen_text(app)
        assert "baseline · sst2-dev" in text and "lr-high · sst2-dev" in text
        await pilot.press("t")
        await settle(app, pilot)
        overlay = app.screen
        assert isinstance(overlay, RunViewScreen) and set(overlay.run_ids) == {baseline, run_id}
        assert await wait_until(app, pilot, lambda: overlay.last is not None, timeout=20)
        shown = overlay.last
        assert shown is not None
        names = [c.label for c in overlay.curves]
        assert sorted(names) == ["baseline", "lr-high"]
        assert [c.label for c in shown.loss_lines] == names and all(len(c) == 8 for c in shown.loss_lines)
        assert [c.label for c in shown.metric_lines] == names and shown.metric == EVAL_METRIC
        for curve, run in zip(shown.metric_lines, overlay.run_ids):
            per_epoch = epoch_metrics(ws, run)
            assert curve.y == [per_epoch[0][EVAL_METRIC], per_epoch[1][EVAL_METRIC]]
        differ = {row[0]: row[1:] for row in shown.table_rows}
        configs = [json.loads((ws.run_dir(r) / "config.json").read_text()) for r in overlay.run_ids]
        assert differ["lr"] == [str(c["lr"]) for c in configs] and differ["seed"] == [
            str(c["seed"]) for c in configs
        ]
        assert differ["name"] == names and "epochs" not in differ and "batch_size" not in differ
        assert shown.table_columns == ["setting", *names]
        assert "setting" in screen_text(app)

        await pilot.press("m")  # the next metric: every run's curve of it
        await settle(app, pilot)
        shown = overlay.last
        assert shown is not None and shown.metric == overlay.choices[1] == "train_loss"
        for curve, run in zip(shown.metric_lines, overlay.run_ids):
            per_epoch = epoch_metrics(ws, run)
            assert curve.x == [1.0, 2.0] and curve.y == [
                per_epoch[0]["train_loss"],
                per_epoch[1]["train_loss"],
            ]
        assert "train_loss  (m: next metric)" in screen_text(app) and not app.errors


async def test_case_study_exports_are_named_kept_and_annotated(real_ws, real_run_template) -> None:  # noqa: ANN001
    run_id = real_run_template[1]
    app = make_app(real_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_cases(run_id)
        await settle(app, pilot)
        cases = app.screen
        assert isinstance(cases, CasesScreen) and cases.studies
        region, rows = next((r, found) for r, found in cases.studies.items() if found)
        tagged = rows[0]["example_id"]
        with open_catalog(real_ws) as con:  # as the detail screen writes them
            add_annotation(con, "sst2-dev", tagged, tag="needs-review")
            add_annotation(con, "sst2-dev", tagged, note="the label looks wrong")
        await pilot.press("m", "m")  # random and back: the screen reloads, with the annotations
        await settle(app, pilot)
        assert "needs-review" in screen_text(app)

        await pilot.press("e")
        await settle(app, pilot)
        await pilot.press("e")  # the same second, the same content: a second file, the first kept
        await settle(app, pilot)
        first, second = cases.exports
        assert first != second and first.is_file() and second.is_file()
        assert first.read_text().split("Exported")[0] == second.read_text().split("Exported")[0]
        assert re.fullmatch(r"case-studies-baseline-all-cartography-\d{8}-\d{6}(-\d+)?\.md", first.name)
        text = first.read_text()
        assert text.startswith(f"# Case studies: run baseline ({run_id})\n")
        assert "Run: complete (done, 2 of 2 epochs)." in text
        assert re.search(r"Exported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.", text)
        block = text.split(f"### {tagged}\n", 1)[1].split("###", 1)[0]
        assert "- tags: needs-review" in block and "the label looks wrong" in block
        assert text.count("- tags:") == 1  # only the annotated example

        # `x`: the region under the cursor alone, in a file named by that region
        table = cases.query_one("#cases")
        table.move_cursor(row=0)
        cursor_region = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value).split("\t")[
            0
        ]
        await pilot.press("x")
        await settle(app, pilot)
        third = cases.exports[-1]
        assert third.name.startswith(f"case-studies-baseline-{cursor_region}-")
        only = third.read_text()
        assert f"## {cursor_region} (" in only and only.count("\n## ") == 1
        assert region  # the annotated region was found above
        assert not app.errors
