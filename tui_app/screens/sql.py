"""SQL console: a multi-line editor (SQL highlighting where the grammar is installed), a history, read-only queries
over the catalog with results in a table, errors said in place, a cell viewer for long values, and saving a whole
result to CSV / Parquet (engine.analysis.sql: the query runs on the read-only console connection)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static, TextArea
from textual.widgets.text_area import LanguageDoesNotExist
from textual.worker import Worker, WorkerState

from engine.analysis.sql import default_result_path, save_query_result
from storage.catalog import open_console
from storage.queries import run_readonly_sql
from tui_app.screens.base import BaseScreen
from tui_app.screens.modal import BaseModal

MAX_ROWS = 1000
EXAMPLE_SQL = "SELECT run_id, status, epochs_done FROM runs"
HISTORY_FILE = "sql-history.jsonl"  # in the workspace folder: the queries run there, newest last
HISTORY_MAX = 200
CELL_W = 60  # a cell wider than this is cut in the table; enter shows it whole
TABLES = "datasets examples runs artifacts example_metrics evaluations predictions annotations selections"


@dataclass
class SqlResult(Message):
    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    elapsed_ms: float


@dataclass
class ResultSaved(Message):
    path: Path
    rows: int


def cell_text(value: Any) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


class SqlEditor(TextArea):
    """The query editor: `up` on the first line and `down` on the last step through the history (as a shell)."""

    @dataclass
    class HistoryStep(Message):
        step: int

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0:
            self.post_message(self.HistoryStep(-1))
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] >= self.document.line_count - 1:
            self.post_message(self.HistoryStep(1))
            return
        super().action_cursor_down(select)


def sql_editor() -> SqlEditor:
    """The editor with SQL highlighting when tree-sitter's SQL grammar is installed, plain text otherwise."""
    options: dict[str, Any] = {
        "id": "sql",
        "show_line_numbers": False,
        "soft_wrap": True,
        "tab_behavior": "focus",
    }
    try:
        return cast(SqlEditor, SqlEditor.code_editor(language="sql", **options))
    except LanguageDoesNotExist:
        return cast(SqlEditor, SqlEditor.code_editor(language=None, **options))


class CellModal(BaseModal[None]):
    """One cell's whole value, scrollable (JSON pretty-printed), read-only."""

    BINDINGS = [Binding("escape,q,enter", "dismiss_none", "Close", id="sql.cell_close")]
    DEFAULT_CSS = """
    CellModal { align: center middle; }
    CellModal > Vertical { width: 90%; height: 80%; border: round $accent; background: $surface; padding: 0 1; }
    CellModal TextArea { height: 1fr; }
    """

    def __init__(self, title: str, value: Any) -> None:
        super().__init__()
        self.title_text = title
        text = cell_text(value)
        if isinstance(value, str) and value[:1] in "[{":
            try:
                text = json.dumps(json.loads(value), indent=2, ensure_ascii=False)
            except ValueError:
                pass
        elif isinstance(value, (dict, list)):
            text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        self.value_text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"{self.title_text}  ({len(self.value_text):,} characters; escape closes)", markup=False
            )
            yield TextArea(self.value_text, read_only=True, soft_wrap=True, id="cell-value")


class SqlScreen(BaseScreen):
    TITLE_TEXT = "SQL console"
    BINDINGS = [
        Binding("f5,ctrl+r", "run", "Run", id="sql.run", priority=True),
        Binding("ctrl+s", "save", "Save result", id="sql.save", priority=True),
        Binding("e", "edit", "Edit query", id="sql.edit"),
    ]
    DEFAULT_CSS = """
    SqlScreen #sql { height: 5; max-height: 8; }
    SqlScreen #sql-error { height: auto; max-height: 5; padding: 0 1; color: $error; background: $error 10%;
                           display: none; }
    SqlScreen #save-box { height: auto; display: none; padding: 0 1; background: $boost; }
    SqlScreen #save-box.-active { display: block; }
    SqlScreen #save-label { height: 1; color: $text-muted; }
    SqlScreen #save-path { height: 3; }
    SqlScreen DataTable { height: 1fr; }
    SqlScreen #sql-status { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: list[str] = []
        self.history_at = 0  # len(history): the query being written, not yet in the history
        self.draft = ""
        self.last_sql: str | None = None  # the query of the result on screen (what ctrl+s saves)
        self.rows: list[tuple[Any, ...]] = []
        self.columns: list[str] = []
        self.running = False

    def compose(self) -> ComposeResult:
        yield Header()
        editor = sql_editor()
        editor.placeholder = f"read-only SQL, e.g. {EXAMPLE_SQL}   (f5 or ctrl+r runs, up/down: history)"
        yield editor
        yield Static("", id="sql-error", markup=False)
        with Vertical(id="save-box"):
            yield Static(
                "save the whole result as (.csv or .parquet): enter saves, escape cancels", id="save-label"
            )
            yield Input(id="save-path")
        yield DataTable(id="sql-result", zebra_stripes=True, cursor_type="cell")
        yield Static(f"tables: {TABLES}", id="sql-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.history = self.read_history()
        self.history_at = len(self.history)
        self.query_one(SqlEditor).focus()

    # ---- history ---------------------------------------------------------------------------------------

    @property
    def history_path(self) -> Path:
        return self.ws.root / HISTORY_FILE

    def read_history(self) -> list[str]:
        try:
            lines = self.history_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        out = []
        for line in lines[-HISTORY_MAX:]:
            try:
                out.append(str(json.loads(line)["sql"]))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line costs that entry only
        return out

    def remember(self, sql: str) -> None:
        if self.history and self.history[-1] == sql:
            self.history_at = len(self.history)
            return
        self.history.append(sql)
        self.history_at = len(self.history)
        try:
            with self.history_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"sql": sql, "at": time.time()}) + "\n")
        except OSError:
            pass  # an unwritable workspace keeps the history for this session only

    def on_sql_editor_history_step(self, message: SqlEditor.HistoryStep) -> None:
        editor = self.query_one(SqlEditor)
        target = self.history_at + message.step
        if not 0 <= target <= len(self.history) or target == self.history_at:
            return
        if self.history_at == len(self.history):
            self.draft = editor.text  # what was being written comes back after the newest entry
        self.history_at = target
        editor.text = self.draft if target == len(self.history) else self.history[target]
        row = 0 if message.step > 0 else editor.document.line_count - 1
        editor.move_cursor((row, len(editor.document.get_line(row))))

    # ---- running --------------------------------------------------------------------------------------

    def action_edit(self) -> None:
        self.query_one(SqlEditor).focus()

    def action_search(self) -> None:
        self.action_edit()

    def action_back(self) -> None:
        if self.query_one("#save-box").has_class("-active"):
            self.close_save()
            return
        if self.focused is self.query_one(SqlEditor) and self.query_one(DataTable).row_count:
            self.query_one(DataTable).focus()
            return
        super().action_back()

    def action_run(self) -> None:
        sql = self.query_one(SqlEditor).text.strip()
        if not sql:
            self.show_error("write a query first, e.g. " + EXAMPLE_SQL)
            return
        self.remember(sql)
        self.show_error(None)
        self.running = True
        self.query_one("#sql-status", Static).update("running ...")
        self.run_query(sql)

    @work(thread=True, exclusive=True, group="sql", exit_on_error=False)
    def run_query(self, sql: str) -> None:
        started = time.perf_counter()
        with open_console(self.ws) as con:  # read-only, nothing outside the catalog, a time limit
            result = run_readonly_sql(con, sql, limit=MAX_ROWS)
        self.post_message(SqlResult(sql, result.columns, result.rows, (time.perf_counter() - started) * 1000))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group in ("sql", "sql-save") and event.state == WorkerState.ERROR:
            error = event.worker.error
            what = "the query failed" if event.worker.group == "sql" else "the result was not saved"
            self.running = False
            self.show_error(f"{what}: {error or type(error).__name__}")
            self.query_one("#sql-status", Static).update(
                f"error · fix the query, f5 runs it again · {TABLES}"
            )
        super().on_worker_state_changed(event)  # the app's one handler: a notification too

    def show_error(self, text: str | None) -> None:
        widget = self.query_one("#sql-error", Static)
        widget.display = text is not None
        widget.update(text or "")

    def on_sql_result(self, message: SqlResult) -> None:
        self.running = False
        self.last_sql, self.columns, self.rows = message.sql, message.columns, message.rows
        table = self.query_one(DataTable)
        table.clear(columns=True)
        rows = [[cell_text(v) for v in row] for row in message.rows]
        for index, name in enumerate(message.columns):
            width = max([len(name)] + [len(r[index]) for r in rows[:200]])
            table.add_column(name, width=min(width, CELL_W))
        for row in rows:
            table.add_row(*row)
        more = f" (first {MAX_ROWS}; ctrl+s saves all)" if len(message.rows) >= MAX_ROWS else ""
        self.query_one("#sql-status", Static).update(
            f"{len(message.rows):,} row(s){more} in {message.elapsed_ms:.0f} ms · "
            "enter: whole cell  ctrl+s: save  e: edit"
        )
        table.focus()

    # ---- a cell's whole value ---------------------------------------------------------------------------

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        row, column = event.coordinate.row, event.coordinate.column
        if row < len(self.rows) and column < len(self.columns):
            name = self.columns[column]
            self.app.push_screen(CellModal(f"row {row + 1}, {name}", self.rows[row][column]))

    # ---- saving ---------------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.last_sql is None:
            self.show_error("run a query first: ctrl+s saves the result on screen (all its rows)")
            return
        box = self.query_one("#save-box")
        box.add_class("-active")
        path_input = self.query_one("#save-path", Input)
        path_input.value = str(default_result_path(self.ws.root))
        path_input.focus()
        path_input.cursor_position = len(path_input.value)

    def close_save(self) -> None:
        self.query_one("#save-box").remove_class("-active")
        self.query_one(DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id != "save-path" or self.last_sql is None:
            return
        raw = event.value.strip()
        if not raw:
            return
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.ws.root / path
        self.close_save()
        self.query_one("#sql-status", Static).update(f"saving to {path} ...")
        self.save(self.last_sql, path)

    @work(thread=True, exclusive=True, group="sql-save", exit_on_error=False)
    def save(self, sql: str, path: Path) -> None:
        with open_console(self.ws) as con:
            rows = save_query_result(con, sql, path)
        self.post_message(ResultSaved(path, rows))

    def on_result_saved(self, message: ResultSaved) -> None:
        self.show_error(None)
        self.query_one("#sql-status", Static).update(f"saved {message.rows:,} row(s) to {message.path}")
        self.notify(f"saved {message.rows:,} row(s) to {message.path}", timeout=5, markup=False)
