"""PageTable: lines cut to column widths (wide characters too), cursor and scrolling, enter selects a row."""

from __future__ import annotations

from rich.cells import cell_len
from textual.app import App, ComposeResult

from tui_app.page_table import Column, PageTable, layout_line

COLUMNS = [Column("id", "id", 4), Column("text", "text", 10)]


def test_layout_line_pads_and_cuts_in_terminal_cells() -> None:
    line = layout_line(["7", "short"], COLUMNS)
    assert line == " 7     short      "
    cut = layout_line(["123456", "a sentence far longer than ten"], COLUMNS)
    assert cut == " 123…  a sentenc… "
    wide = layout_line(["1", "東京大学の研究者たち"], COLUMNS)  # two cells a character
    assert cell_len(wide) == cell_len(line) and "…" in wide
    assert layout_line(["1", "tab\tand\nnewline"], COLUMNS) == " 1     tab and n… "


class TableApp(App[None]):
    def __init__(self, n_rows: int) -> None:
        super().__init__()
        self.n_rows = n_rows
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield PageTable(id="t")

    def on_mount(self) -> None:
        table = self.query_one(PageTable)
        table.set_page(COLUMNS, [(f"k{i}", [str(i), f"row {i}"]) for i in range(self.n_rows)])
        table.focus()

    def on_page_table_row_selected(self, event: PageTable.RowSelected) -> None:
        self.selected.append(event.row_key)


async def test_cursor_scrolls_and_enter_selects() -> None:
    app = TableApp(40)
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(PageTable)
        assert table.row_count == 40 and table.get_row_at(3) == ["3", "row 3"]
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        assert table.cursor_row == 2 and app.selected == ["k2"]
        await pilot.press("end")
        await pilot.pause()
        # The last row is on screen below the header: 10 lines show the header and 9 rows.
        assert table.cursor_row == 39 and table.scroll_offset.y == 40 - 9
        assert table.render_line(9).text.startswith(" 39")
        assert table.render_line(0).text.startswith(" id    text")
        await pilot.press("home", "enter")
        await pilot.pause()
        assert table.scroll_offset.y == 0 and app.selected == ["k2", "k0"]
        table.set_page(COLUMNS, [("only", ["1", "one row"])])
        await pilot.pause()
        assert (
            table.cursor_row == 0 and table.cursor_key == "only" and table.render_line(2).text.strip() == ""
        )
        table.clear()
        await pilot.press("enter")
        await pilot.pause()
        assert table.row_count == 0 and table.cursor_key is None and app.selected == ["k2", "k0"]


async def test_click_moves_the_cursor_and_a_second_click_selects() -> None:
    app = TableApp(5)
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(PageTable)
        await pilot.click(PageTable, offset=(3, 3))  # line 3: the header, then rows 0, 1, 2
        await pilot.pause()
        assert table.cursor_row == 2 and app.selected == []
        await pilot.click(PageTable, offset=(3, 3))
        await pilot.pause()
        assert app.selected == ["k2"]
        await pilot.click(PageTable, offset=(3, 0))  # the header selects nothing
        await pilot.pause()
        assert table.cursor_row == 2 and app.selected == ["k2"]
