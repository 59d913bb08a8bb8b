"""Issue 12's items, driven through Pilot on a workspace built by the real CLI (tests/real_run_fixtures.py): a real
SST-2 slice imported with `dynascope import`, two tiny real MiniLM runs trained with `dynascope train` (seeds 1 and
2). The values the app shows are checked against what the runs recorded (the catalog, the dynamics shards, the step
log, `dynascope metrics --json`), not against numbers a fixture chose.

Items of the issue: 1 and 6 (a real run training in the background: home, jobs newest first, one progress reading,
cancel asks, R resumes, the map follows it) test_a_real_run_training_in_the_background; 2 and 5
test_run_view_names_compare_overlay_and_case_study_export (5 also in the live test: an export while training);
3 test_map_cells_colours_histograms_and_map_diff_of_two_real_runs; 4 test_examples_..., test_a_rejected_where_...,
test_detail_...; 7 test_sql_console_over_the_real_runs; 8 test_every_screen_..._at_80x24,
test_help_header_and_quit_...."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from textual.widgets import DataTable, Input, Static

from engine import jobs as engine_jobs
from engine.analysis.progress import progress_label
from storage.artifacts import read_events, shard_scan_sql
from storage.catalog import open_catalog
from storage.steplog import read_steps
from tests.conftest import run_cli
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.page_table import PageTable
from tui_app.screens.cases import CasesScreen
from tui_app.screens.compare import CompareScreen
from tui_app.screens.confirm import ConfirmModal
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.examples import PAGE_SIZE, ExamplesScreen
from tui_app.screens.help import HelpScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.jobs import JOB_COLUMNS, JobForm, JobsScreen
from tui_app.screens.mapdiff import MapDiffScreen, TransitionExamplesScreen
from tui_app.screens.runview import RunViewScreen
from tui_app.screens.sql import CellModal, SqlEditor, SqlScreen

pytest_plugins = ["tests.real_run_fixtures"]  # the trained_ws fixture


def catalog_rows(ws, sql: str, params: list | None = None) -> list[tuple]:  # noqa: ANN001
    with open_catalog(ws) as con:
        return con.execute(sql, params or []).fetchall()


def column_width(table: PageTable, key: str) -> int:
    return next(c.width for c in table.columns if c.key == key)


def column_values(table: PageTable, key: str) -> list[str]:
    index = [c.key for c in table.columns].index(key)
    return [table.get_row_at(r)[index] for r in range(table.row_count)]


def header_text(app) -> str:  # noqa: ANN001
    return screen_text(app).splitlines()[0]


# ---- items 2 and 5: run view, names, compare overlay; case-study exports ---------------------------------


async def test_run_view_names_compare_overlay_and_case_study_export(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    steps = read_steps(ws.run_dir(runs.run_a))
    epochs = {
        e["epoch"]: e["metrics"] for e in read_events(ws.run_dir(runs.run_a)) if e["type"] == "epoch_end"
    }
    assert len(steps) == runs.epochs * 7 and sorted(epochs) == [0, 1]  # 110 examples / batch 16 = 7 steps
    configs = {
        run: json.loads((ws.run_dir(run) / "config.json").read_text()) for run in (runs.run_a, runs.run_b)
    }
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        assert "seed-1" in text and "seed-2" in text  # home lists the runs by name
        app.open_run_view(runs.run_a)
        await settle(app, pilot)
        view = app.screen
        assert isinstance(view, RunViewScreen) and view.run_ids == [runs.run_a]
        assert await wait_until(app, pilot, lambda: view.last is not None, timeout=20)
        shown = view.last
        assert shown.title.startswith(f"seed-1 · {runs.dataset} · done · epoch 2/2 100%")
        assert shown.loss_lines[0].y == [s["loss"] for s in steps]
        assert shown.loss_points[0].y == [epochs[0]["train_loss"], epochs[1]["train_loss"]]
        assert [row[0] for row in shown.table_rows] == ["1", "2"]
        await pilot.press("escape")
        await settle(app, pilot)

        app.open_compare()
        await settle(app, pilot)
        assert isinstance(app.screen, CompareScreen)
        text = screen_text(app)
        assert f"seed-1 · {runs.dataset}" in text and f"seed-2 · {runs.dataset}" in text
        await pilot.press("t")
        await settle(app, pilot)
        overlay = app.screen
        assert isinstance(overlay, RunViewScreen) and set(overlay.run_ids) == {runs.run_a, runs.run_b}
        assert await wait_until(app, pilot, lambda: overlay.last is not None, timeout=20)
        differ = {row[0]: row[1:] for row in overlay.last.table_rows}
        assert differ["seed"] == [str(configs[r]["seed"]) for r in overlay.run_ids]
        assert differ["name"] == [configs[r]["name"] for r in overlay.run_ids]
        assert "lr" not in differ and "epochs" not in differ  # only the settings in which they differ
        assert [len(line) for line in overlay.last.loss_lines] == [len(steps), len(steps)]
        await pilot.press("escape", "escape")
        await settle(app, pilot)

        # item 5: an example of the case studies tagged and noted in its detail screen, then exported twice
        app.open_cases(runs.run_a)
        await settle(app, pilot)
        cases = app.screen
        assert isinstance(cases, CasesScreen) and cases.studies
        rows = next(found for found in cases.studies.values() if found)
        chosen = rows[0]["example_id"]
        app.open_detail(runs.dataset, chosen, runs.run_a)
        await settle(app, pilot)
        await pilot.press("t", *"odd-label", "enter")
        await settle(app, pilot)
        await pilot.press("a", *"seed 2 disagrees", "enter")
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is cases
        await pilot.press("m", "m")  # random and back: reloaded with the annotations
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        first, second = cases.exports[-2:]
        assert first != second and first.is_file() and second.is_file()  # never overwritten
        assert re.fullmatch(r"case-studies-seed-1-all-cartography-\d{8}-\d{6}(-\d+)?\.md", first.name)
        text = first.read_text()
        assert text.startswith(f"# Case studies: run seed-1 ({runs.run_a})\n")
        assert "Run: complete (done, 2 of 2 epochs)." in text
        block = text.split(f"### {chosen}\n", 1)[1].split("###", 1)[0]
        assert "- tags: odd-label" in block and "seed 2 disagrees" in block
        assert not app.errors, app.errors


# ---- item 3: the data map's cells, colours, histograms and the map diff ------------------------------------


async def test_map_cells_colours_histograms_and_map_diff_of_two_real_runs(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    # `dynascope map-diff` on the two real runs: the transitions recount from `dynascope metrics --json`
    diff = run_cli(ws, "map-diff", runs.run_a, runs.run_b, "--json")
    assert diff.code == 0, diff.stderr
    data = diff.json()
    regions = [
        {r["example_id"]: r["region"] for r in run_cli(ws, "metrics", run, "--json").json()}
        for run in (runs.run_a, runs.run_b)
    ]
    recount = Counter((regions[0][i], regions[1][i]) for i in regions[0])
    assert regions[0].keys() == regions[1].keys() and len(regions[0]) == runs.n_train
    assert {(t["from"], t["to"]): t["examples"] for t in data["transitions"]} == dict(recount)
    assert sum(recount.values()) == data["shared"] == runs.n_train
    assert data["moved"] == sum(n for (a, b), n in recount.items() if a != b) > 0  # two seeds disagree
    metrics = {
        r[0]: r[1:]
        for r in catalog_rows(
            ws,
            "SELECT example_id, variability, confidence, correctness FROM example_metrics WHERE run_id = ?",
            [runs.run_a],
        )
    }
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        app.open_map(runs.run_a)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DataMapScreen) and screen.grid is not None
        assert screen.grid.total == sum(screen.counts.values()) == runs.n_train
        c = screen.bounds.cartography
        assert f"var>={c.ambiguous_variability:g}" in screen_text(app)  # boundary values in view
        assert f"conf>={c.easy_confidence:g}" in screen_text(app)

        # the cell cursor starts on the densest cell; enter lists exactly the examples the run put there
        await pilot.press("x")
        row, col = screen.cursor
        n = screen.grid.counts[row][col]
        assert n == screen.grid.max_count > 0 and f"{n:,} examples" in screen_text(app)
        (x_col, x_lo, x_hi), (y_col, y_lo, y_hi) = screen.cell_ranges()
        assert (x_col, y_col) == ("variability", "confidence")
        inside = {
            i
            for i, (var, conf, _) in metrics.items()
            if (x_lo is None or var >= x_lo - 1e-9)
            and (x_hi is None or var < x_hi + 1e-9)
            and (y_lo is None or conf >= y_lo - 1e-9)
            and (y_hi is None or conf < y_hi + 1e-9)
        }
        await pilot.press("enter")
        await settle(app, pilot)
        examples = app.screen
        assert isinstance(examples, ExamplesScreen) and examples.total == n == len(inside)
        assert set(examples.query_one(PageTable).keys) <= inside
        await pilot.press("escape")
        await settle(app, pilot)

        # colour by correctness: the cell's colour is the mean correctness of its examples
        await pilot.press("o", "o")
        await settle(app, pilot)
        assert screen.grid.colour_by == "correctness" and "mean correctness" in screen_text(app)
        expected = sum(metrics[i][2] for i in inside) / len(inside)
        assert screen.grid.cell_colours[row][col] == pytest.approx(expected, abs=1e-9)
        await pilot.press("o")
        await settle(app, pilot)

        # the three histograms count the run's examples; correctness in steps of 1/epochs
        await pilot.press("g")
        await settle(app, pilot)
        assert await wait_until(app, pilot, lambda: screen.histograms is not None, timeout=20)
        assert all(h.total == runs.n_train for h in screen.histograms.values())
        steps = Counter(round(corr * runs.epochs) for _, _, corr in metrics.values())
        assert screen.histograms["correctness"].counts == [steps.get(k, 0) for k in range(runs.epochs + 1)]
        # a per-class map: one gold label's examples only, and the histograms follow
        await pilot.press("p")
        await settle(app, pilot)
        label = screen.label
        (n_label,) = catalog_rows(
            ws,
            "SELECT count(*) FROM examples WHERE dataset = ? AND coalesce(label_name, label::VARCHAR) = ?",
            [runs.dataset, label],
        )[0]
        assert screen.grid.total == n_label < runs.n_train
        assert await wait_until(
            app, pilot, lambda: all(h.total == n_label for h in screen.histograms.values()), timeout=20
        )

        # the map diff against the other seed: the transition table of the 110 shared examples
        await pilot.press("d")
        await settle(app, pilot)
        diff_screen = app.screen
        assert isinstance(diff_screen, MapDiffScreen)
        assert await wait_until(app, pilot, lambda: diff_screen.diff is not None, timeout=20)
        diff = diff_screen.diff
        assert (diff.run_a, diff.run_b) == (runs.run_a, runs.run_b) and diff.shared == runs.n_train
        assert f"{runs.n_train} shared examples" in screen_text(app)
        moved = [(a, b) for a in diff.regions for b in diff.regions if a != b and diff.count(a, b)]
        assert moved  # two seeds put some examples in other regions
        a, b = moved[0]
        await pilot.press(*["down"] * diff.regions.index(a))
        await pilot.press(*["right"] * diff.regions.index(b))
        assert diff_screen.cell_regions() == (a, b)
        await pilot.press("enter")
        await settle(app, pilot)
        cell = app.screen
        assert isinstance(cell, TransitionExamplesScreen) and cell.total == diff.count(a, b)
        assert {r["example_id"] for r in cell.rows} == {
            i for i in regions[0] if regions[0][i] == a and regions[1][i] == b
        }
        assert not app.errors, app.errors


# ---- item 4: examples -------------------------------------------------------------------------------------


async def test_examples_of_a_real_run_widths_sort_and_resize(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    recorded = dict(
        catalog_rows(ws, "SELECT example_id, confidence FROM example_metrics WHERE run_id = ?", [runs.run_a])
    )
    assert len(recorded) == runs.n_train
    app = make_app(ws)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id=runs.run_a)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ExamplesScreen) and screen.total == runs.n_train
        table = screen.query_one(PageTable)
        # the text column takes the free width at 160 columns (not the fixed 48)
        others = sum(c.width + 2 for c in table.columns if c.key != "text")
        assert column_width(table, "text") == 160 - others - 4 > 48
        # every page lays out its own ids: two digits on page 1, three on page 3 (ids 100..109), never cut
        widths = []
        for page in range(3):
            ids = column_values(table, "example_id")
            assert ids == table.keys and all("…" not in i for i in ids)
            assert len(ids) == min(PAGE_SIZE, runs.n_train - page * PAGE_SIZE)
            widths.append(column_width(table, "example_id"))
            # the values on screen are the run's recorded confidences
            assert column_values(table, "confidence") == [f"{recorded[i]:.3f}" for i in ids]
            await pilot.press("n")
            await settle(app, pilot)
        assert widths == [2, 2, 3]
        await pilot.press("p", "p")
        await settle(app, pilot)
        assert screen.page == 0 and column_width(table, "example_id") == 2

        # sorted by confidence: the column is marked with its direction and the rows follow the recorded values
        await pilot.press("s", "s")  # row -> label -> confidence
        await settle(app, pilot)
        assert screen.sorted_column() == "confidence"
        assert [c.key for c in table.columns if c.label.endswith("▲")] == ["confidence"]
        shown = [float(v) for v in column_values(table, "confidence")]
        assert shown == sorted(shown) and shown[0] == pytest.approx(min(recorded.values()), abs=5e-4)
        await pilot.press("d")
        await settle(app, pilot)
        assert [c.key for c in table.columns if c.label.endswith("▼")] == ["confidence"]
        assert not [c for c in table.columns if c.label.endswith("▲")]
        assert table.keys[0] == max(recorded, key=recorded.get)

        # a resize lays the page out again for the new width, the cursor kept
        await pilot.press("down", "down", "down")
        await pilot.resize_terminal(90, 30)
        await settle(app, pilot)
        others = sum(c.width + 2 for c in table.columns if c.key != "text")
        assert column_width(table, "text") == max(12, 90 - others - 4) < 48
        assert table.cursor_row == 3
        assert all(len(line) <= 90 for line in screen_text(app).splitlines())
        assert not app.errors


async def test_a_rejected_where_stays_then_a_real_one_counts_as_the_catalog(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    (median,) = catalog_rows(
        ws, "SELECT round(median(confidence), 4) FROM example_metrics WHERE run_id = ?", [runs.run_a]
    )[0]
    where = f"confidence < {median}"
    (expected,) = catalog_rows(
        ws, f"SELECT count(*) FROM example_metrics WHERE run_id = ? AND {where}", [runs.run_a]
    )[0]
    assert 0 < expected < runs.n_train
    app = make_app(ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id=runs.run_a)
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("w", *"no_such_column > 1", "enter")
        await settle(app, pilot)
        prompt = screen.query_one("#prompt", Input)
        label = screen.query_one("#prompt-label", Static)
        assert prompt.has_class("-active") and prompt.value == "no_such_column > 1"
        assert label.has_class("-error") and "no_such_column" in str(label.render())
        assert screen.total == runs.n_train and screen.filter.where is None  # nothing changed
        prompt.value = where
        await pilot.press("enter")
        await settle(app, pilot)
        assert not prompt.has_class("-active") and not label.has_class("-error")
        assert screen.filter.where == where and screen.total == expected
        assert all(float(v) < median + 5e-4 for v in column_values(screen.query_one(PageTable), "confidence"))
        assert f"{expected} rows" in screen_text(app)


# ---- item 4: detail ---------------------------------------------------------------------------------------


async def test_detail_of_a_real_run_steps_tags_and_counts_epochs_from_one(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    shards = duckdb.sql(
        f"SELECT example_id, epoch, gold_prob FROM {shard_scan_sql(ws.run_dir(runs.run_a))}"
    ).fetchall()
    gold = {(e, epoch): p for e, epoch, p in shards}
    assert {epoch for _, epoch in gold} == set(range(runs.epochs))  # the shards count epochs from 0
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id=runs.run_a)
        await settle(app, pilot)
        examples = app.screen
        table = examples.query_one(PageTable)
        first_page = list(table.keys)
        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.example_id == first_page[0]
        await pilot.press("j", "j")
        await settle(app, pilot)
        assert detail.example_id == first_page[2] and detail.detail.example_id == first_page[2]
        await pilot.press("k")
        await settle(app, pilot)
        assert detail.example_id == first_page[1]

        # the trajectory reads epoch 1..2, each the gold probability the run recorded for its epoch 0..1
        lines = str(detail.query_one("#traj-text", Static).render()).splitlines()
        assert len(lines) == runs.epochs
        for shown, line in enumerate(lines, start=1):
            assert line.startswith(f"epoch {shown}: gold p {gold[(first_page[1], shown - 1)]:.3f}"), line
        assert "epoch 0" not in screen_text(app)

        # the tag prompt shows above the footer and what is typed shows; the tag lands in the catalog
        await pilot.press("t")
        await settle(app, pilot)
        box = detail.query_one("#prompt-box")
        assert box.display and box.region.height >= 3
        assert box.region.bottom <= app.screen.query_one("Footer").region.y
        await pilot.press(*"real-noise")
        await settle(app, pilot)
        assert "real-noise" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert not box.display and "real-noise" in str(detail.query_one("#notes", Static).render())
        await pilot.press("a", *"two seeds disagree", "enter")
        await settle(app, pilot)
        assert "two seeds disagree" in str(detail.query_one("#notes", Static).render())

        # across the page edge: the last of page 1, then `j` brings the first of page 2
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is examples and table.cursor_key == first_page[1]
        await pilot.press("end", "enter")
        await settle(app, pilot)
        await pilot.press("j")
        await settle(app, pilot)
        assert examples.page == 1 and app.screen.example_id == table.keys[0] == str(PAGE_SIZE)
        assert not app.errors
    assert catalog_rows(ws, "SELECT example_id, tag FROM annotations WHERE tag IS NOT NULL") == [
        (first_page[1], "real-noise")
    ]


# ---- item 7: SQL console ----------------------------------------------------------------------------------


async def run_sql(app, pilot, sql: str | None = None) -> None:  # noqa: ANN001
    editor = app.screen.query_one(SqlEditor)
    if sql is not None:
        editor.text = sql
    editor.focus()
    await pilot.press("f5")
    await wait_until(app, pilot, lambda: not app.screen.running, timeout=30)
    await settle(app, pilot)


async def test_sql_console_over_the_real_runs(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_sql()
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, SqlScreen)
        editor = screen.query_one(SqlEditor)
        status = screen.query_one("#sql-status", Static)
        error = screen.query_one("#sql-error", Static)
        # three lines (enter breaks the line, it does not run): examples both runs recorded, per run
        await pilot.press(*"SELECT")
        editor.insert(" run_id, count(*),")
        await pilot.press("enter", *"avg")
        editor.insert("(confidence)")
        await pilot.press("enter")
        editor.insert("FROM example_metrics GROUP BY 1 ORDER BY 1")
        assert editor.document.line_count == 3 and not screen.running
        await run_sql(app, pilot)
        assert "2 row(s)" in str(status.render()) and not error.display
        table = screen.query_one(DataTable)
        expected = catalog_rows(
            ws,
            "SELECT run_id, count(*), avg(confidence) FROM example_metrics GROUP BY 1 ORDER BY 1",
        )
        assert [r[1] for r in expected] == [runs.n_train, runs.n_train]
        shown = [[str(c) for c in table.get_row_at(r)] for r in range(table.row_count)]
        assert [(run, int(n)) for run, n, _ in shown] == [(run, n) for run, n, _ in expected]
        assert [float(mean) for *_, mean in shown] == pytest.approx([mean for *_, mean in expected], abs=5e-5)

        # an error is said in place; the status does not stay `running ...`; the next query clears it
        await run_sql(app, pilot, "SELECT gold_prob FROM example_metrics")
        assert error.display and "gold_prob" in str(error.render())
        assert "running" not in str(status.render()) and "error" in str(status.render())
        await run_sql(app, pilot, f"SELECT example_id FROM example_metrics WHERE run_id = '{runs.run_b}'")
        assert not error.display and f"{runs.n_train} row(s)" in str(status.render())

        # history walks back through the three queries and forward to the draft
        editor.text = "SELECT 42"
        editor.focus()
        editor.move_cursor((0, 0))
        await pilot.press("up")
        assert editor.text.endswith(f"'{runs.run_b}'")
        await pilot.press("up")
        assert editor.text == "SELECT gold_prob FROM example_metrics"
        editor.move_cursor((0, 0))
        await pilot.press("up")
        assert editor.text.startswith("SELECT run_id, count(*),\navg(") and editor.document.line_count == 3
        editor.move_cursor((editor.document.line_count - 1, 0))
        await pilot.press("down", "down", "down")
        assert editor.text == "SELECT 42"

        # the longest real sentence, cut in the table, read whole in the cell viewer
        (longest,) = catalog_rows(
            ws,
            "SELECT text FROM examples WHERE dataset = ? ORDER BY length(text) DESC, row_idx LIMIT 1",
            [runs.dataset],
        )[0]
        assert len(longest) > 80
        await run_sql(
            app,
            pilot,
            f"SELECT example_id, text FROM examples WHERE dataset = '{runs.dataset}' "
            "ORDER BY length(text) DESC, row_idx LIMIT 3",
        )
        assert app.screen.focused is screen.query_one(DataTable)
        await pilot.press("right", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, CellModal) and app.screen.query_one("#cell-value").text == longest
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen

        # the per-example metrics of a run saved whole, CSV then Parquet, equal to the catalog's
        query = (
            "SELECT example_id, confidence, variability, correctness FROM example_metrics "
            f"WHERE run_id = '{runs.run_a}' ORDER BY example_id"
        )
        expected = catalog_rows(ws, query)
        await run_sql(app, pilot, query)
        for name in ("metrics.csv", "metrics.parquet"):
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            path_input = screen.query_one("#save-path", Input)
            assert "/exports/sql-" in path_input.value
            path_input.value = f"exports/{name}"
            await pilot.press("enter")
            assert await wait_until(app, pilot, lambda n=name: n in str(status.render()), timeout=30), str(
                error.render()
            )
        saved_csv = pacsv.read_csv(
            ws.root / "exports" / "metrics.csv",
            convert_options=pacsv.ConvertOptions(column_types={"example_id": pa.string()}),
        ).to_pylist()
        saved_parquet = pq.read_table(ws.root / "exports" / "metrics.parquet").to_pylist()
        assert len(expected) == runs.n_train
        assert [tuple(r.values()) for r in saved_parquet] == expected
        assert [r["example_id"] for r in saved_csv] == [r[0] for r in expected]
        assert [r["confidence"] for r in saved_csv] == pytest.approx([r[1] for r in expected], abs=1e-12)
    assert [m for m in app.errors if "gold_prob" not in m] == []


# ---- item 8: 80x24, help, header, quit --------------------------------------------------------------------


def fits(app, size: tuple[int, int]) -> bool:  # noqa: ANN001
    lines = screen_text(app).splitlines()
    return len(lines) == size[1] and all(len(line) <= size[0] for line in lines)


async def test_every_screen_of_the_real_workspace_at_80x24(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    size = (80, 24)
    app = make_app(ws)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen) and "home" in header_text(app) and fits(app, size)
        text = screen_text(app)
        for name, run_id in (("seed-1", runs.run_a), ("seed-2", runs.run_b)):
            # the runs table keeps each run's name, status and key metric (its evaluation's accuracy) in view
            evaluation = json.loads((ws.run_dir(run_id) / "eval" / f"{runs.held}.json").read_text())
            line = next(line for line in text.splitlines() if f" {name} " in line)
            assert " done " in line and "2/2" in line
            assert f"accuracy {evaluation['metrics']['accuracy']:.3f}" in line, line
        for key, screen_type, title, needle in (
            ("m", DataMapScreen, "data map", f"({runs.n_train} examples)"),
            ("e", ExamplesScreen, "examples", f"{runs.n_train} rows · page 1/3"),
            ("c", CasesScreen, "case studies", "ambiguous"),
            ("v", CompareScreen, "compare", runs.held),
            ("j", JobsScreen, "jobs", "seed-1  train"),
            ("s", SqlScreen, "SQL", "f5"),
        ):
            await pilot.press(key)
            await settle(app, pilot)
            assert isinstance(app.screen, screen_type), (key, app.screen)
            assert title.lower() in header_text(app).lower() and needle in screen_text(app), screen_text(app)
            assert fits(app, size), screen_text(app)
            await pilot.press("escape")
            await settle(app, pilot)
            assert isinstance(app.screen, HomeScreen) and "home" in header_text(app)

        # the job form scrolls: every field, reached from the keyboard, is in view with its value; escape: home
        await pilot.press("n")
        await settle(app, pilot)
        form = app.screen
        assert isinstance(form, JobForm)
        names = [f.name for f in form.form_fields()]
        assert len(names) > 13
        assert f"dataset         {runs.dataset}" in screen_text(app)  # the first field, above the focus
        seen = []
        for _ in names:
            field = app.focused
            assert field is not None and field.id is not None
            seen.append(field.id.removeprefix("f-"))
            assert 0 <= field.region.y and field.region.bottom <= size[1], (field.id, field.region)
            await pilot.press("tab")
        assert seen == [*names[1:], "launch"], seen  # every field in turn, then the launch button
        last = form.query_one(f"#f-{names[-1]}", Input)
        assert runs.held not in screen_text(app)
        last.value = runs.held
        assert f"{names[-1]:<16}{runs.held}" in screen_text(app).replace(
            "▊  ", ""
        )  # in view, and what is typed
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert not app.errors


async def test_help_header_and_quit_on_the_real_workspace(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_map(runs.run_b)
        await settle(app, pilot)
        assert "data map" in header_text(app)
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)  # a modal over the map: the map's header stays
        ids = [row[2] for row in app.screen.rows]
        own = [i for i in ids if i.startswith("datamap.")]
        assert len(own) >= 5 and ids[: len(own)] == own and ids.index("nav.back") > len(own) - 1
        await pilot.press("escape")
        await settle(app, pilot)
        await pilot.press("enter")  # the selected region's examples, then one of them
        await settle(app, pilot)
        assert isinstance(app.screen, ExamplesScreen) and "examples" in header_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, DetailScreen) and header_text(app).rstrip().endswith("— example")
        for screen_type, title in (
            (ExamplesScreen, "examples"),
            (DataMapScreen, "data map"),
            (HomeScreen, "home"),
        ):
            await pilot.press("escape")
            await settle(app, pilot)
            assert isinstance(app.screen, screen_type) and title in header_text(app), header_text(app)
        await pilot.press("q")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmModal) and "Quit dynascope?" in screen_text(app)
        await pilot.press("n")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen) and app.return_code is None
        await pilot.press("q", "y")
        assert await wait_until(app, pilot, lambda: app.return_code == 0, timeout=10)


# ---- items 1 and 6: a real run training in the background ---------------------------------------------------


def stop_jobs(ws, pids: list[int]) -> None:  # noqa: ANN001
    """Never leave a training process behind: let a frozen one go on, cancel it, and wait until every process the
    test saw is gone (a cancelled job still writes its checkpoint after its status says `cancelled`)."""
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            pids.append(job["pid"])
            try:
                os.kill(job["pid"], signal.SIGCONT)
            except ProcessLookupError:
                pass
            engine_jobs.cancel(ws, job["run_id"])
    deadline = time.monotonic() + 60
    while any(pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def home_job_row(app, run_id: str) -> list[str] | None:  # noqa: ANN001
    home = next(s for s in app.screen_stack if isinstance(s, HomeScreen))
    table = home.query_one("#jobs", DataTable)
    for index in range(table.row_count):
        if table.coordinate_to_cell_key((index, 0)).row_key.value == run_id:
            return [str(c) for c in table.get_row_at(index)]
    return None


def jobs_row(screen: JobsScreen, run_id: str) -> dict[str, str] | None:
    return next((dict(zip(JOB_COLUMNS, cells)) for key, cells in screen.last_rows if key == run_id), None)


LIVE_EPOCH = re.compile(r"training, epoch (\d+)/20")


def shown_epoch(app) -> int | None:  # noqa: ANN001
    """The epochs the map's title says the running run has finished (the title as built: on screen it may be cut)."""
    found = LIVE_EPOCH.search(app.screen.title_text())
    return int(found.group(1)) if found else None


async def map_follows_the_run(app, pilot, ws, run_id: str, pids: list[int]) -> None:  # noqa: ANN001
    """Item 1: the data map of the training run fills in epoch by epoch, with no key pressed."""
    app.open_map(run_id)
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, DataMapScreen)
    assert await wait_until(app, pilot, lambda: (shown_epoch(app) or 0) >= 1, timeout=120), (
        app.screen.title_text()
    )
    first = shown_epoch(app)
    assert screen.grid is not None and screen.grid.total == 32
    assert await wait_until(app, pilot, lambda: (shown_epoch(app) or 0) > first, timeout=120), (
        app.screen.title_text()
    )
    # frozen, the map catches up with the epochs the run has finished, and counts them as the catalog does
    pid = engine_jobs.job_info(ws, run_id)["pid"]
    pids.append(pid)
    os.kill(pid, signal.SIGSTOP)
    try:
        done = engine_jobs.job_info(ws, run_id)["epochs_done"]
        assert await wait_until(app, pilot, lambda: shown_epoch(app) == done, timeout=30), (
            app.screen.title_text()
        )
        await settle(app, pilot)
        c = screen.bounds.cartography
        recount = dict(
            catalog_rows(
                ws,
                f"""SELECT CASE WHEN variability >= {c.ambiguous_variability!r} THEN 'ambiguous'
                    WHEN confidence >= {c.easy_confidence!r} THEN 'easy' ELSE 'hard' END, count(*)
                    FROM example_metrics WHERE run_id = ? GROUP BY 1""",
                [run_id],
            )
        )
        assert {r: n for r, n in screen.counts.items() if n} == recount and sum(recount.values()) == 32
    finally:
        os.kill(pid, signal.SIGCONT)
    await pilot.press("escape")
    await settle(app, pilot)


async def test_a_real_run_training_in_the_background(trained_ws):  # noqa: ANN001
    ws, runs = trained_ws
    pids: list[int] = []
    try:
        await follow_a_live_run(ws, runs, pids)
    finally:
        stop_jobs(ws, pids)


async def follow_a_live_run(ws, runs, pids: list[int]) -> None:  # noqa: ANN001
    # many short epochs (32 examples, 4 steps): still training whenever the test cancels it, a cancel soon lands
    args = ("--epochs", "20", "--limit", "32", "--max-length", "32", "--batch-size", "8", "--seed", "3")
    started = run_cli(ws, "train", runs.dataset, *args, "--detach", "--json")
    assert started.code == 0, started.stderr
    run_id = started.json()["run_id"]
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        # item 1: the job started from the CLI is on home, training in the background, with its progress
        assert await wait_until(app, pilot, lambda: home_job_row(app, run_id) is not None, timeout=30)
        row = home_job_row(app, run_id)
        assert row[2] in ("starting", "running") and row[3].startswith("epoch 1/20"), row

        # item 6: the jobs screen lists it first (newest first), above the two finished runs
        await pilot.press("j")
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        assert await wait_until(app, pilot, lambda: len(jobs.last_rows) == 3, timeout=20)
        assert jobs.last_rows[0][0] == run_id and {k for k, _ in jobs.last_rows[1:]} == {
            runs.run_a,
            runs.run_b,
        }
        assert await wait_until(
            app, pilot, lambda: engine_jobs.job_info(ws, run_id)["epochs_done"] >= 1, timeout=180
        ), jobs_row(jobs, run_id)
        await map_follows_the_run(app, pilot, ws, run_id, pids)
        assert app.screen is jobs

        # one reading of progress: frozen (SIGSTOP), the jobs screen, home and `dynascope jobs` say the same
        pid = engine_jobs.job_info(ws, run_id)["pid"]
        pids.append(pid)
        os.kill(pid, signal.SIGSTOP)
        try:
            job = engine_jobs.job_info(ws, run_id)
            expected = progress_label(job)
            assert expected.startswith(f"epoch {job['epochs_done'] + 1}/20  ")
            jobs.poll()
            assert await wait_until(
                app, pilot, lambda: jobs_row(jobs, run_id)["progress"] == expected, timeout=10
            )
            assert jobs_row(jobs, run_id)["pid"] == str(pid)  # the pid column: a live process's
            listed = run_cli(ws, "jobs", env={"COLUMNS": "400"})
            assert expected in next(line for line in listed.stdout.splitlines() if run_id in line)
            home = next(s for s in app.screen_stack if isinstance(s, HomeScreen))
            home.action_refresh()
            assert await wait_until(
                app, pilot, lambda: (home_job_row(app, run_id) or [""] * 4)[3] == expected
            )

            # item 5: case studies exported while it trains say that it is still training
            app.open_cases(run_id)
            await settle(app, pilot)
            cases = app.screen
            assert isinstance(cases, CasesScreen) and cases.run_id == run_id and cases.studies
            await pilot.press("e")
            await settle(app, pilot)
            assert cases.last_export is not None and cases.last_export.name.startswith(
                f"case-studies-{run_id}-"
            )
            exported = cases.last_export.read_text()
            assert f"Run: **still training** ({job['epochs_done']} of 20 epochs done" in exported, exported[
                :400
            ]
            await pilot.press("escape")
            await settle(app, pilot)
            assert app.screen is jobs

            # cancel asks first: `n` keeps it training, `y` cancels
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
        assert await wait_until(
            app, pilot, lambda: jobs_row(jobs, run_id)["status"] == "cancelled", timeout=60
        )
        assert await wait_until(app, pilot, lambda: jobs_row(jobs, run_id)["pid"] == "", timeout=10)  # ended
        done = engine_jobs.job_info(ws, run_id)["epochs_done"]
        assert done >= 1 and "R resumes it" in screen_text(app)

        # R resumes the same run from its last complete epoch
        await pilot.press("R")
        assert await wait_until(
            app, pilot, lambda: jobs_row(jobs, run_id)["status"] in ("starting", "running"), timeout=30
        ), jobs_row(jobs, run_id)
        assert len(jobs.last_rows) == 3
        assert f"resume requested after epoch {done}" in "\n".join(jobs.query_one("#job-log").lines)
        assert not app.errors, app.errors
