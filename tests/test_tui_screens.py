"""The examples table, the example detail, the SQL console and what every screen shares (issue 12, items 4, 7, 8),
driven through Pilot on the app's test workspace (tests/tui_fixtures.py: real SST-2 / SQuAD examples from
../shared/data with runs synced into a real catalog)."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from textual.widgets import DataTable, Input, Static

import storage.catalog
from engine.analysis.sql import save_query_result
from engine.errors import BadInputError
from storage.catalog import open_catalog, open_console
from storage.queries import ReadOnlyViolation
from tests.test_tui_flows import sql_count
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.page_table import PageTable
from tui_app.screens.confirm import ConfirmModal
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.examples import PAGE_SIZE, ExamplesScreen
from tui_app.screens.help import HelpScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.sql import CellModal, SqlEditor, SqlScreen

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


def header_text(app) -> str:  # noqa: ANN001
    return screen_text(app).splitlines()[0]


def column_width(table: PageTable, key: str) -> int:
    return next(c.width for c in table.columns if c.key == key)


def cell_of(table: PageTable, row: int, key: str) -> str:
    return table.get_row_at(row)[[c.key for c in table.columns].index(key)]


# ---- item 4: examples -------------------------------------------------------------------------------------


async def test_examples_widths_follow_the_page_the_screen_and_the_sort(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id="sst2-run")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ExamplesScreen) and screen.total == 872
        table = screen.query_one(PageTable)
        # the text column takes the free width: every line fills the screen, and the text is wider than 48
        others = sum(c.width + 2 for c in table.columns if c.key != "text")
        assert column_width(table, "text") == 160 - others - 4 > 48
        with open_catalog(tui_ws) as con:
            longest_id = con.execute(
                "SELECT max(length(example_id)) FROM examples WHERE dataset = 'sst2-dev'"
            ).fetchone()[0]
        # ids are whole on every page (widths follow each page, not the first one)
        for _ in range(3):
            ids = [cell_of(table, r, "example_id") for r in range(table.row_count)]
            assert all("…" not in i for i in ids) and table.keys == ids
            await pilot.press("n")
            await settle(app, pilot)
        assert column_width(table, "example_id") <= max(longest_id, 2)
        # the sort column is marked, with its direction
        await pilot.press("s")
        await settle(app, pilot)
        assert "▲" in table.header
        marked = [c for c in table.columns if c.label.endswith("▲")]
        assert len(marked) == 1 and screen.sorted_column() == marked[0].key
        await pilot.press("d")
        await settle(app, pilot)
        assert [c.key for c in table.columns if c.label.endswith("▼")] == [marked[0].key]
        assert not [c for c in table.columns if c.label.endswith("▲")]
        # a resize lays the page out again for the new width, the cursor kept
        await pilot.press("down", "down")
        await pilot.resize_terminal(90, 30)
        await settle(app, pilot)
        others = sum(c.width + 2 for c in table.columns if c.key != "text")
        assert column_width(table, "text") == max(12, 90 - others - 4)
        assert table.cursor_row == 2
        assert all(len(line) <= 90 for line in screen_text(app).splitlines())
        assert not app.errors


async def test_a_rejected_where_stays_in_the_input_and_a_failed_load_offers_retry(tui_ws, monkeypatch):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id="sst2-run")
        await settle(app, pilot)
        screen = app.screen
        await pilot.press("w", *"no_such_column > 1", "enter")
        await settle(app, pilot)
        prompt = screen.query_one("#prompt", Input)
        label = screen.query_one("#prompt-label", Static)
        assert prompt.has_class("-active") and prompt.value == "no_such_column > 1"
        assert label.has_class("-error") and "no_such_column" in str(label.render())
        assert screen.total == 872 and screen.filter.where is None  # nothing changed
        prompt.value = "confidence < 0.3"
        await pilot.press("enter")
        await settle(app, pilot)
        assert not prompt.has_class("-active") and not label.has_class("-error")
        assert screen.filter.where == "confidence < 0.3"
        assert screen.total == sql_count(tui_ws, "confidence < 0.3")
        app.go_home()
        await settle(app, pilot)

        # another process holds the catalog: the examples say so in place and `r` tries again
        monkeypatch.setattr(storage.catalog, "LOCK_WAIT_S", 0.5)
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                "time.sleep(120)",
                str(tui_ws.catalog_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            await pilot.press("e")  # home's key: the examples of the latest run
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, ExamplesScreen)
            failure = screen.query_one("#load-error", Static)
            assert await wait_until(app, pilot, lambda: failure.display, timeout=30)
            assert "locked" in str(failure.render()) and "r retries" in str(failure.render())
            assert screen.query_one(PageTable).row_count == 0
        finally:
            holder.kill()
            holder.wait()
        await pilot.press("r")
        assert await wait_until(app, pilot, lambda: screen.total == 872, timeout=30)
        await settle(app, pilot)
        assert not failure.display and screen.query_one(PageTable).row_count == PAGE_SIZE


# ---- item 4: detail ---------------------------------------------------------------------------------------


async def test_detail_steps_through_the_list_shows_its_prompt_and_counts_epochs_from_one(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id="sst2-run")
        await settle(app, pilot)
        examples = app.screen
        table = examples.query_one(PageTable)
        first_page = list(table.keys)
        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.example_id == first_page[0]
        await pilot.press("j")
        await settle(app, pilot)
        assert detail.example_id == first_page[1] and detail.detail.example_id == first_page[1]
        await pilot.press("n", "k")
        await settle(app, pilot)
        assert detail.example_id == first_page[1]
        await pilot.press("p")
        await settle(app, pilot)
        assert detail.example_id == first_page[0]
        await pilot.press("k")  # the start of the list: stays
        await settle(app, pilot)
        assert detail.example_id == first_page[0]

        # epochs from 1, as the CLI counts them: 5 epochs read 1..5
        traj = str(detail.query_one("#traj-text", Static).render())
        assert traj.splitlines()[0].startswith("epoch 1:") and traj.splitlines()[-1].startswith("epoch 5:")
        assert "epoch 0" not in traj and "epoch 0=" not in str(detail.query_one("#legend", Static).render())

        # the tag prompt is on screen above the footer, and what is typed shows
        await pilot.press("t")
        await settle(app, pilot)
        box = detail.query_one("#prompt-box")
        footer_top = app.screen.query_one("Footer").region.y
        assert box.display and box.region.height >= 3 and box.region.bottom <= footer_top
        await pilot.press(*"label-noise")
        await settle(app, pilot)
        assert "label-noise" in screen_text(app)
        await pilot.press("enter")
        await settle(app, pilot)
        assert "label-noise" in str(detail.query_one("#notes", Static).render())
        assert not box.display

        # back on the list, the cursor is on the example the detail showed; across the page edge through `n`
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is examples and table.cursor_key == first_page[0]
        await pilot.press("end", "enter")
        await settle(app, pilot)
        assert app.screen.example_id == first_page[-1]
        await pilot.press("j")
        await settle(app, pilot)
        assert examples.page == 1 and app.screen.example_id == table.keys[0] not in first_page
        assert not app.errors
    with open_catalog(tui_ws) as con:
        tagged = con.execute("SELECT example_id FROM annotations WHERE tag = 'label-noise'").fetchall()
    assert tagged == [(first_page[0],)]


# ---- item 7: SQL console ----------------------------------------------------------------------------------


async def run_sql(app, pilot, sql: str | None = None) -> None:  # noqa: ANN001
    editor = app.screen.query_one(SqlEditor)
    if sql is not None:
        editor.text = sql
    editor.focus()
    await pilot.press("f5")
    await wait_until(app, pilot, lambda: not app.screen.running, timeout=30)
    await settle(app, pilot)


async def test_sql_console_editor_history_errors_cells_and_saving(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_sql()
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, SqlScreen)
        editor = screen.query_one(SqlEditor)
        assert editor.language == "sql"  # highlighted: tree-sitter's SQL grammar is installed
        # a query over several lines, typed as a user types it
        await pilot.press(
            *"SELECT count(*) AS n", "enter", *"FROM examples", "enter", *"WHERE dataset = 'sst2-dev'"
        )
        assert editor.document.line_count == 3
        await run_sql(app, pilot)
        status = screen.query_one("#sql-status", Static)
        assert "1 row(s)" in str(status.render()) and "872" in screen_text(app)

        # an error is said in place, and the status does not stay `running ...`
        await run_sql(app, pilot, "SELECT no_such_column FROM runs")
        error = screen.query_one("#sql-error", Static)
        assert error.display and "no_such_column" in str(error.render())
        assert "running" not in str(status.render()) and "error" in str(status.render())
        await run_sql(app, pilot, "SELECT run_id FROM runs ORDER BY run_id")
        assert not error.display and "3 row(s)" in str(status.render())

        # history: up on the first line brings back the earlier queries, down comes back to the draft
        editor.text = "SELECT 1"
        editor.focus()
        editor.move_cursor((0, 0))
        await pilot.press("up")
        assert editor.text == "SELECT run_id FROM runs ORDER BY run_id"
        await pilot.press("up")
        assert editor.text == "SELECT no_such_column FROM runs"
        editor.move_cursor((0, 0))
        await pilot.press("up")
        assert editor.text.startswith("SELECT count(*) AS n\nFROM examples")
        editor.move_cursor((editor.document.line_count - 1, 0))
        await pilot.press("down")
        assert editor.text == "SELECT no_such_column FROM runs"
        await pilot.press("down", "down")
        assert editor.text == "SELECT 1"

        # a long cell read whole
        await run_sql(
            app,
            pilot,
            "SELECT example_id, text_pair FROM examples WHERE dataset = 'squad-dev' "
            "ORDER BY length(text_pair) DESC LIMIT 5",
        )
        table = screen.query_one(DataTable)
        assert app.screen.focused is table
        await pilot.press("right", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, CellModal)
        with open_catalog(tui_ws) as con:
            context = con.execute(
                "SELECT text_pair FROM examples WHERE dataset = 'squad-dev' ORDER BY length(text_pair) DESC LIMIT 1"
            ).fetchone()[0]
        assert len(context) > 60 and app.screen.query_one("#cell-value").text == context
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen

        # the whole result saved, CSV then Parquet, through the read-only console connection
        await run_sql(
            app, pilot, "SELECT example_id, label FROM examples WHERE dataset = 'sst2-dev' ORDER BY row_idx"
        )
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        path_input = screen.query_one("#save-path", Input)
        assert path_input.value.endswith(".csv") and "/exports/sql-" in path_input.value
        csv_path = tui_ws.root / "exports" / "labels.csv"
        path_input.value = str(csv_path)
        await pilot.press("enter")
        assert await wait_until(app, pilot, lambda: "saved" in str(status.render()), timeout=30), (
            str(status.render()),
            str(error.render()),
            app.errors,
        )
        with open_catalog(tui_ws) as con:
            expected = con.execute(
                "SELECT example_id, label FROM examples WHERE dataset = 'sst2-dev' ORDER BY row_idx"
            ).fetchall()
        saved = pacsv.read_csv(
            csv_path, convert_options=pacsv.ConvertOptions(column_types={"example_id": pa.string()})
        )
        assert saved.column_names == ["example_id", "label"] and len(expected) == 872
        assert list(zip(*saved.to_pydict().values())) == expected
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        path_input.value = "exports/labels.parquet"  # relative: inside the workspace
        await pilot.press("enter")
        assert await wait_until(app, pilot, lambda: "labels.parquet" in str(status.render()), timeout=30)
        parquet = pq.read_table(tui_ws.root / "exports" / "labels.parquet")
        assert list(zip(*parquet.to_pydict().values())) == expected
        # a name that is neither: said in place, nothing written
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        path_input.value = "exports/labels.txt"
        await pilot.press("enter")
        assert await wait_until(app, pilot, lambda: error.display, timeout=30)
        assert ".csv or .parquet" in str(error.render())
        assert not (tui_ws.root / "exports" / "labels.txt").exists()
    assert [m for m in app.errors if ".csv or .parquet" not in m and "no_such_column" not in m] == []


@pytest.mark.parametrize(
    "sql", ["DELETE FROM runs", "COPY (SELECT 1 AS x) TO '{out}'", "SELECT * FROM read_text('/etc/hostname')"]
)
def test_saving_a_result_runs_on_the_read_only_connection(tui_ws, tmp_path, sql):  # noqa: ANN001
    out = tmp_path / "copied.csv"
    with open_console(tui_ws) as con:
        # the statement check words the obvious cases; the read-only connection refuses the rest
        with pytest.raises((ReadOnlyViolation, duckdb.Error)):
            save_query_result(con, sql.format(out=out), tmp_path / "result.csv")
        with pytest.raises(BadInputError, match=r"\.csv or \.parquet"):
            save_query_result(con, "SELECT 1", tmp_path / "result.json")
    assert not out.exists() and not (tmp_path / "result.csv").exists()
    with open_catalog(tui_ws) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 3


# ---- item 8: what every screen shares ---------------------------------------------------------------------


async def test_header_help_and_quit_on_home(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "home" in header_text(app)
        app.open_map("sst2-run")
        await settle(app, pilot)
        assert "data map" in header_text(app)
        await pilot.press("enter")  # the selected region's examples
        await settle(app, pilot)
        assert isinstance(app.screen, ExamplesScreen) and "examples" in header_text(app)

        # help: the screen's own keys first, then the shared ones
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        ids = [row[2] for row in app.screen.rows]
        own = [i for i in ids if i.startswith("examples.")]
        assert ids[: len(own)] == own and len(own) >= 8
        assert ids.index("nav.back") > ids.index(own[-1])
        await pilot.press("escape")
        await settle(app, pilot)

        # the header names the screen on top, also once the one above it closes
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, DataMapScreen) and "data map" in header_text(app)
        assert "examples" not in header_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen) and "home" in header_text(app)

        # q on home asks; n (or escape) stays, y quits
        await pilot.press("q")
        await settle(app, pilot)
        assert isinstance(app.screen, ConfirmModal) and "Quit dynascope?" in screen_text(app)
        await pilot.press("n")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen) and app.return_code is None
        await pilot.press("q", "x", "escape")  # a stray key does not confirm
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen) and app.return_code is None
        await pilot.press("q", "y")
        deadline = time.monotonic() + 10
        while app.return_code is None and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert app.return_code == 0


def test_a_missing_snapshot_fails_unless_updating(tmp_path, monkeypatch):  # noqa: ANN001
    import tests.tui_helpers as helpers

    monkeypatch.setattr(helpers, "SNAPSHOT_DIR", tmp_path)
    monkeypatch.delenv(helpers.UPDATE_ENV, raising=False)
    with pytest.raises(AssertionError, match="is missing"):
        helpers.check_snapshot("home-80x24", "text")
    assert not (tmp_path / "home-80x24.txt").exists()  # nothing written silently
    monkeypatch.setenv(helpers.UPDATE_ENV, "1")
    helpers.check_snapshot("home-80x24", "text")
    monkeypatch.delenv(helpers.UPDATE_ENV)
    helpers.check_snapshot("home-80x24", "text")
    with pytest.raises(AssertionError, match="differs"):
        helpers.check_snapshot("home-80x24", "other text")
