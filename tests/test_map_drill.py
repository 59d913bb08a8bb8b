"""Drilling into the data map (issue 12, item 3) on the app's real test workspace (SST-2 dev and a SQuAD dev subset
imported from ../shared/data, with recorded dynamics): boundary values at 80 and 100 columns, the cell cursor and its
examples, colour by label / correctness and per-class maps, the three histograms, the map diff (app and
`dynascope map-diff`, recounted from `dynascope metrics --json`), and the map following a running run."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from engine.analysis.datamap import bin_counts
from engine.analysis.histograms import metric_histograms
from engine.analysis.labelmix import LABEL_SQL
from engine.analysis.mapdiff import map_diff
from storage.artifacts import append_event
from storage.catalog import open_catalog
from tests.conftest import run_cli
from tests.tui_helpers import dataset_rows, make_app, screen_text, settle, wait_until, write_run
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.examples import ExamplesScreen
from tui_app.screens.mapdiff import PAGE, MapDiffScreen, TransitionExamplesScreen

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


def test_map_diff_command_recounts_from_metrics(tui_ws):  # noqa: ANN001
    diff = run_cli(tui_ws, "map-diff", "sst2-run", "sst2-run-b", "--json")
    assert diff.code == 0, diff.stderr
    data = diff.json()
    a = {r["example_id"]: r["region"] for r in run_cli(tui_ws, "metrics", "sst2-run", "--json").json()}
    b = {r["example_id"]: r["region"] for r in run_cli(tui_ws, "metrics", "sst2-run-b", "--json").json()}
    shared = a.keys() & b.keys()
    recount = Counter((a[i], b[i]) for i in shared)
    got = {(t["from"], t["to"]): t["examples"] for t in data["transitions"]}
    assert got == dict(recount)
    assert sum(got.values()) == data["shared"] == len(shared) == 872
    assert data["moved"] == sum(n for (ra, rb), n in recount.items() if ra != rb) > 0
    assert data["only_a"] == data["only_b"] == 0

    text = run_cli(tui_ws, "map-diff", "sst2-run", "sst2-run-b")
    assert text.code == 0 and "easy" in text.stdout and f"{872:,}" in text.stdout
    assert f"{data['moved']:,}" in text.stdout
    unknown = run_cli(tui_ws, "map-diff", "sst2-run", "ghost")
    assert unknown.code == 2 and "ghost" in unknown.stderr
    apart = run_cli(tui_ws, "map-diff", "sst2-run", "squad-run")
    assert apart.code == 2 and "share no example" in apart.stderr


def test_colours_classes_and_histograms_count_the_catalog(tui_ws):  # noqa: ANN001
    with open_catalog(tui_ws) as con:
        labelled = dict(
            con.execute(
                f"""SELECT {LABEL_SQL}, count(*) FROM example_metrics m JOIN examples e
                    ON e.dataset = 'sst2-dev' AND e.example_id = m.example_id WHERE m.run_id = 'sst2-run'
                    GROUP BY ALL"""
            ).fetchall()
        )
        plain = bin_counts(con, "sst2-run", "cartography", 30, 10)
        assert len(labelled) == 2 and sum(labelled.values()) == 872
        for label, n in labelled.items():
            per_class = bin_counts(con, "sst2-run", "cartography", 30, 10, plain.bounds, label=label)
            assert per_class.total == sum(map(sum, per_class.counts)) == n
        by_corr = bin_counts(con, "sst2-run", "cartography", 30, 10, plain.bounds, colour_by="correctness")
        by_label = bin_counts(con, "sst2-run", "cartography", 30, 10, plain.bounds, colour_by="label")
        assert by_corr.counts == by_label.counts == plain.counts
        assert by_corr.region_counts == plain.region_counts and sum(plain.region_counts.values()) == 872
        # the top-right... any cell: its mean correctness as SQL has it
        row, col = max(
            ((r, c) for r in range(10) for c in range(30)), key=lambda rc: plain.counts[rc[0]][rc[1]]
        )
        mean = con.execute(
            """SELECT avg(correctness) FROM example_metrics WHERE run_id = 'sst2-run'
               AND least(greatest(trunc(variability * 60)::INTEGER, 0), 29) = ?
               AND least(greatest(trunc(confidence * 10)::INTEGER, 0), 9) = ?""",
            [col, 9 - row],
        ).fetchone()[0]
        assert abs(by_corr.cell_colours[row][col] - mean) < 1e-9
        assert by_label.cell_colours[row][col] in labelled
        hist = metric_histograms(con, "sst2-run")
        assert all(h.total == 872 for h in hist.values())
        corr = dict(
            con.execute(
                "SELECT round(correctness * 5)::INTEGER, count(*) FROM example_metrics WHERE run_id = 'sst2-run' "
                "GROUP BY ALL"
            ).fetchall()
        )
        assert hist["correctness"].counts == [corr.get(k, 0) for k in range(6)]
        diff = map_diff(con, "sst2-run", "sst2-run-b")
        assert diff.shared == 872 and sum(diff.row_total(r) for r in diff.regions) == 872


async def test_map_boundaries_cell_cursor_colours_histograms_and_diff(tui_ws):  # noqa: ANN001
    for size in ((80, 24), (100, 30)):
        app = make_app(tui_ws)
        async with app.run_test(size=size) as pilot:
            app.open_map("sst2-run")
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.grid is not None
            c = screen.bounds.cartography
            text = screen_text(app)
            # both boundary values on screen: in the title line and on the axes
            assert f"var>={c.ambiguous_variability:g}" in text and f"conf>={c.easy_confidence:g}" in text
            assert (
                f"{c.easy_confidence:5.3g}┼" in text
                and f"{c.ambiguous_variability:.4g}" in text.splitlines()[-2]
            )

    app = make_app(tui_ws)
    async with app.run_test(size=(120, 36)) as pilot:
        app.open_map("sst2-run")
        await settle(app, pilot)
        screen = app.screen
        grid = screen.grid
        await pilot.press("x")  # the cell cursor, on the densest cell
        row, col = screen.cursor
        assert grid.counts[row][col] == grid.max_count > 0
        await pilot.press("left", "down")
        assert screen.cursor == (row + 1, col - 1)
        assert screen.bounds == screen.fitted  # the arrows moved the cursor, not the boundaries
        row, col = screen.cursor
        want = grid.counts[row][col]
        assert f"{want:,} examples" in screen_text(app)
        ranges = screen.cell_ranges()
        await pilot.press("enter")
        await settle(app, pilot)
        examples = app.screen
        assert isinstance(examples, ExamplesScreen) and examples.filter.ranges == ranges
        assert examples.total == want
        table = examples.query_one("#examples")
        var_col, conf_col = examples.columns.index("variability"), examples.columns.index("confidence")
        (_, vlo, vhi), (_, clo, chi) = ranges
        for r in range(table.row_count):
            cells = [str(x) for x in table.get_row_at(r)]
            assert (vlo or 0) - 1e-3 <= float(cells[var_col]) <= (vhi or 1) + 1e-3
            assert (clo or 0) - 1e-3 <= float(cells[conf_col]) <= (chi or 1) + 1e-3
        app.pop_screen()
        await settle(app, pilot)
        await pilot.press("x")
        assert screen.cursor is None

        await pilot.press("o")  # colour by gold label
        await settle(app, pilot)
        assert screen.grid.colour_by == "label" and "colour: majority gold label" in screen_text(app)
        await pilot.press("o")
        await settle(app, pilot)
        assert screen.grid.colour_by == "correctness" and "mean correctness" in screen_text(app)
        await pilot.press("o", "p")  # back to regions; the first class's own map
        await settle(app, pilot)
        label = screen.labels[0]
        assert screen.label == label and screen.grid.colour_by == "region"
        with open_catalog(tui_ws) as con:
            n = con.execute(
                f"""SELECT count(*) FROM example_metrics m JOIN examples e ON e.dataset = 'sst2-dev'
                    AND e.example_id = m.example_id WHERE m.run_id = 'sst2-run' AND {LABEL_SQL} = ?""",
                [label],
            ).fetchone()[0]
        assert screen.grid.total == sum(screen.counts.values()) == n < 872
        assert f"label {label} only" in screen_text(app)

        await pilot.press("g")  # the three histograms, of this class
        await settle(app, pilot)
        assert screen.histograms is not None and all(h.total == n for h in screen.histograms.values())
        text = screen_text(app)
        assert f"confidence ({n:,})" in text and f"correctness ({n:,})" in text
        await pilot.press("p")  # the next class, then all classes again: the histograms follow
        await settle(app, pilot)
        assert screen.label == screen.labels[1] and len(screen.labels) == 2
        await pilot.press("p")
        await settle(app, pilot)
        assert screen.label is None and all(h.total == 872 for h in screen.histograms.values())

        await pilot.press("d")  # the map diff against the other SST-2 run
        await settle(app, pilot)
        diff_screen = app.screen
        assert isinstance(diff_screen, MapDiffScreen) and diff_screen.diff is not None
        diff = diff_screen.diff
        assert (diff.run_a, diff.run_b) == ("sst2-run", "sst2-run-b") and diff.shared == 872
        text = screen_text(app)
        assert f"{diff.count('easy', 'hard'):,}" in text and "872 shared examples" in text
        await pilot.press("down", "right")  # ambiguous in A -> ambiguous in B ... then -> hard
        await pilot.press("right")
        assert diff_screen.cell_regions() == ("ambiguous", "hard")
        await pilot.press("enter")
        await settle(app, pilot)
        cell = app.screen
        assert isinstance(cell, TransitionExamplesScreen)
        want = diff.count("ambiguous", "hard")
        assert cell.total == want and len(cell.rows) == min(PAGE, want) > 0
        with open_catalog(tui_ws) as con:
            ids = {r["example_id"] for r in cell.rows}
            regions = {
                (i, run): region
                for run, bounds in (("sst2-run", diff.bounds_a), ("sst2-run-b", diff.bounds_b))
                for i, region in con.execute(
                    f"""SELECT example_id, CASE WHEN variability >= {bounds.ambiguous_variability!r} THEN 'ambiguous'
                        WHEN confidence >= {bounds.easy_confidence!r} THEN 'easy' ELSE 'hard' END
                        FROM example_metrics WHERE run_id = ?""",
                    [run],
                ).fetchall()
                if i in ids
            }
        assert all(
            regions[(i, "sst2-run")] == "ambiguous" and regions[(i, "sst2-run-b")] == "hard" for i in ids
        )
        assert cell.rows[0]["example_id"] in screen_text(app)
        await pilot.press("enter")  # the first example of the cell, in detail
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.example_id == cell.rows[0]["example_id"]
        assert app.screen.detail is not None and len(app.screen.detail.trajectory) == 5
        assert not app.errors, app.errors


async def test_map_follows_a_running_run(tui_ws):  # noqa: ANN001
    ids, labels, _, _ = dataset_rows(tui_ws, "sst2-dev")
    write_run(tui_ws, "live-run", "sst2-dev", ids, epochs=3, seed=5, labels=labels, status="running")
    run_dir = tui_ws.run_dir("live-run")
    events = (run_dir / "events.jsonl").read_text().splitlines(keepends=True)
    assert len(events) == 4  # state, then three epoch_end: the run has finished two epochs so far
    (run_dir / "events.jsonl").write_text("".join(events[:3]))
    # a live process whose command line names the run, as a job's does (sync checks that the pid is the run's)
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "live-run"])
    try:
        append_event(run_dir, "state", status="running", pid=job.pid, n_epochs=3)
        app = make_app(tui_ws)
        async with app.run_test(size=(120, 36)) as pilot:
            app.open_map("live-run")
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.grid is not None and screen.grid.total == 872
            assert "training, epoch 2/3" in screen_text(app)
            before = [row[:] for row in screen.grid.counts]
            with open(run_dir / "events.jsonl", "a") as f:
                f.write(events[3])  # the third epoch ends
            assert await wait_until(app, pilot, lambda: "training, epoch 3/3" in screen_text(app), timeout=30)
            await settle(app, pilot)
            assert screen.grid.total == 872 and screen.grid.counts != before
            with open_catalog(tui_ws) as con:
                epochs = con.execute(
                    "SELECT min(epochs) FROM example_metrics WHERE run_id = 'live-run'"
                ).fetchone()
            assert epochs[0] == 3
            assert not app.errors, app.errors
    finally:
        job.kill()
        job.wait()
