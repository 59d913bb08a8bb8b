"""A light table for one page of rows: every row is plain text cut to fixed column widths and drawn as one Strip.

DataTable renders each cell through Rich (padding, wrapping, measuring) and drops its cache whenever rows change,
so swapping in a fresh page of 50 rows costs tens of milliseconds. Here a new page is a list of pre-cut lines and
a repaint is a string join per visible row, which keeps paging well inside the 100 ms the app aims for.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

CELL_GAP = 2  # blank cells between two columns


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int


def layout_line(cells: list[str], columns: list[Column]) -> str:
    """One row as a line: each cell padded or cut (with an ellipsis) to its column's width in terminal cells."""
    parts = []
    for text, column in zip(cells, columns):
        text = " ".join(text.split()) if "\n" in text or "\t" in text else text
        if cell_len(text) > column.width > 1:
            parts.append(set_cell_size(text, column.width - 1) + "…")
        else:
            parts.append(set_cell_size(text, column.width))
    return " " + (" " * CELL_GAP).join(parts) + " "


class PageTable(ScrollView, can_focus=True):
    """Rows of one page with a header and a row cursor; `enter` (or a click on the cursor row) selects a row."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First row", show=False),
        Binding("end", "cursor_to(-1)", "Last row", show=False),
        Binding("enter", "select", "Select", show=False),
    ]
    COMPONENT_CLASSES = {"page-table--header", "page-table--cursor", "page-table--even-row"}
    DEFAULT_CSS = """
    PageTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .page-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .page-table--even-row { background: $surface-lighten-1 50%; }
        & > .page-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .page-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    class RowMessage(Message):
        """A message about one row of the table (its key)."""

        def __init__(self, table: PageTable, row_key: str) -> None:
            super().__init__()
            self.table = table
            self.row_key = row_key

        @property
        def control(self) -> PageTable:
            return self.table

    class RowSelected(RowMessage):
        """Enter on a row."""

    class CursorMoved(RowMessage):
        """The cursor is on another row (a new page puts it on the first): for a panel about the row."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.columns: list[Column] = []
        self.keys: list[str] = []
        self.rows: list[list[str]] = []
        self.lines: list[str] = []
        self.header = ""
        self.cursor_row = 0

    # ---- content --------------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def get_row_at(self, index: int) -> list[str]:
        return self.rows[index]

    def set_page(self, columns: list[Column], rows: list[tuple[str, list[str]]]) -> None:
        """Show a new page: cursor back on the first row, scrolled to the top."""
        if columns != self.columns:
            self.columns = columns
            self.header = layout_line([c.label for c in columns], columns)
        self.keys = [key for key, _ in rows]
        self.rows = [cells for _, cells in rows]
        self.lines = [layout_line(cells, columns) for cells in self.rows]
        self.cursor_row = 0
        width = len(self.header)
        self.virtual_size = Size(width, len(self.lines) + 1)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()
        self.announce_cursor()

    def announce_cursor(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.CursorMoved(self, key))

    def clear(self) -> None:
        self.set_page(self.columns, [])

    @property
    def cursor_key(self) -> str | None:
        return self.keys[self.cursor_row] if 0 <= self.cursor_row < len(self.keys) else None

    # ---- drawing --------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("page-table--header")
            return Strip([Segment(self.header, style)]).crop_extend(scroll_x, scroll_x + width, style)
        index = scroll_y + y - 1
        if index >= len(self.lines):
            return Strip.blank(width, base)
        if index == self.cursor_row:
            style = base + self.get_component_rich_style("page-table--cursor")
        elif index % 2:
            style = base + self.get_component_rich_style("page-table--even-row")
        else:
            style = base
        return Strip([Segment(self.lines[index], style)]).crop_extend(scroll_x, scroll_x + width, style)

    # ---- cursor ---------------------------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        if not self.lines:
            return
        before = self.cursor_row
        self.cursor_row = min(len(self.lines) - 1, max(0, row))
        if self.cursor_row != before:
            self.announce_cursor()
        visible = max(1, self.size.height - 1)  # the header takes a line
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_cursor_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_cursor_to(self, row: int) -> None:
        self.move_cursor(len(self.lines) - 1 if row < 0 else row)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        index = self.scroll_offset.y + event.y - 1
        if 0 <= index < len(self.lines):
            if index == self.cursor_row:
                self.action_select()
            else:
                self.move_cursor(index)
