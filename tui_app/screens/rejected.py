"""A generated dataset's rejected records (kept in `generation_provenance`, never in `examples`): each one's reject
reason and text, and under the list the highlighted record's provenance and parent, as for a kept example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.provenance import (
    REJECTED_LIMIT,
    GeneratedSummary,
    Provenance,
    generated_summary,
    get_provenance,
    rejected_records,
)
from tui_app.provenance_view import parent_line, provenance_text
from tui_app.screens.base import BaseScreen
from tui_app.widgets import fill_table


@dataclass
class RejectedLoaded(Message):
    summary: GeneratedSummary | None
    rows: list[dict[str, Any]]


@dataclass
class RecordLoaded(Message):
    example_id: str
    provenance: Provenance | None


class RejectedScreen(BaseScreen):
    TITLE_TEXT = "rejected records"
    DEFAULT_CSS = """
    RejectedScreen #rejected-title { height: auto; padding: 0 1; background: $boost; }
    RejectedScreen DataTable { height: 1fr; }
    RejectedScreen #rejected-provenance { height: auto; max-height: 8; padding: 0 1; border-top: solid $panel; }
    """

    def __init__(self, dataset: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.rows: list[dict[str, Any]] = []
        self.provenance: Provenance | None = None
        self._timer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"rejected records of {self.dataset} ...", id="rejected-title")
        yield DataTable(id="rejected", cursor_type="row", zebra_stripes=True)
        yield Static("", id="rejected-provenance")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="rejected", exit_on_error=False)
    def load(self) -> None:
        with self.catalog() as con:
            summary = generated_summary(con, self.dataset)
            rows = rejected_records(con, self.dataset)
        self.post_message(RejectedLoaded(summary, rows))

    def on_rejected_loaded(self, message: RejectedLoaded) -> None:
        self.rows = message.rows
        title = message.summary.line() if message.summary else f"{self.dataset} was not generated"
        total = sum(message.summary.rejected.values()) if message.summary else 0
        if total > len(self.rows):
            title += f" · the first {REJECTED_LIMIT:,} listed"
        self.query_one("#rejected-title", Static).update(Text(title))
        width = max(20, self.app.size.width - 50)
        fill_table(
            self.query_one(DataTable),
            ["id", "reason", "text"],
            [
                (r["example_id"], [r["example_id"], str(r["reason"]), " ".join(str(r["text"] or "").split())])
                for r in self.rows
            ],  # fmt: skip
            max_width=width,
            fixed={"id": 20, "reason": 22},
        )
        if not self.rows:
            self.query_one("#rejected-provenance", Static).update("no rejected records")
        self.call_after_refresh(self.mark_painted)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is None:
            return
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.1, lambda: self.load_record(str(key)))

    @work(thread=True, exclusive=True, group="rejected-record", exit_on_error=False)
    def load_record(self, example_id: str) -> None:
        with self.catalog() as con:
            found = get_provenance(con, self.dataset, example_id)
        self.post_message(RecordLoaded(example_id, found))

    def on_record_loaded(self, message: RecordLoaded) -> None:
        self.provenance = message.provenance
        if message.provenance is None:
            return
        text = provenance_text(message.provenance)
        text.append("\n")
        text.append_text(parent_line(message.provenance))
        self.query_one("#rejected-provenance", Static).update(text)
