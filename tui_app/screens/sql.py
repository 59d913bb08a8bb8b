"""SQL console: read-only queries over the catalog, results in a table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static

from storage.catalog import open_console
from storage.queries import run_readonly_sql
from tui_app.screens.base import BaseScreen

MAX_ROWS = 1000
EXAMPLE_SQL = "SELECT run_id, status, epochs_done FROM runs"


@dataclass
class SqlResult(Message):
    columns: list[str]
    rows: list[tuple[Any, ...]]
    elapsed_ms: float


class SqlScreen(BaseScreen):
    TITLE_TEXT = "SQL console"
    BINDINGS = [Binding("e", "edit", "Edit query", id="sql.edit")]
    DEFAULT_CSS = """
    SqlScreen #sql { height: 3; }
    SqlScreen DataTable { height: 1fr; }
    SqlScreen #sql-status { height: 1; padding: 0 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=f"read-only SQL, e.g. {EXAMPLE_SQL}", id="sql")
        yield DataTable(id="sql-result", zebra_stripes=True)
        yield Static(
            "tables: datasets examples runs artifacts example_metrics evaluations predictions "
            "annotations selections",
            id="sql-status",
        )
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(Input).focus()

    def action_edit(self) -> None:
        self.query_one(Input).focus()

    def action_search(self) -> None:
        self.action_edit()

    def action_back(self) -> None:
        if self.focused is self.query_one(Input) and self.query_one(DataTable).row_count:
            self.query_one(DataTable).focus()
            return
        super().action_back()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.query_one("#sql-status", Static).update("running ...")
            self.run_query(event.value)

    @work(thread=True, exclusive=True, group="sql", exit_on_error=False)
    def run_query(self, sql: str) -> None:
        started = time.perf_counter()
        with open_console(self.ws) as con:  # read-only, nothing outside the catalog, a time limit
            result = run_readonly_sql(con, sql, limit=MAX_ROWS)
        self.post_message(SqlResult(result.columns, result.rows, (time.perf_counter() - started) * 1000))

    def on_sql_result(self, message: SqlResult) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        rows = [
            ["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row]
            for row in message.rows
        ]
        for index, name in enumerate(message.columns):
            width = max([len(name)] + [len(r[index]) for r in rows[:200]])
            table.add_column(name, width=min(width, 60))
        for row in rows:
            table.add_row(*row)
        more = f" (first {MAX_ROWS})" if len(message.rows) >= MAX_ROWS else ""
        self.query_one("#sql-status", Static).update(
            f"{len(message.rows):,} row(s){more} in {message.elapsed_ms:.0f} ms"
        )
        table.focus()
