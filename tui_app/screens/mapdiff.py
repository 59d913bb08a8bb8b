"""Map diff: the region transition table of two runs over the same examples (engine.analysis.mapdiff), each cell
opening its examples (TransitionExamplesScreen); `o` takes another run as B, `s` swaps the two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.fitted_cache import cached_fitted_bounds
from engine.analysis.mapdiff import MapDiff, diff_candidates, map_diff, transition_examples
from engine.analysis.regions import rule_text
from engine.errors import BadInputError
from tui_app.screens.base import BaseScreen
from tui_app.widgets import REGION_COLOURS

PAGE = 100


@dataclass
class DiffLoaded(Message):
    diff: MapDiff | None
    candidates: list[str]
    error: str = ""


class MapDiffScreen(BaseScreen):
    TITLE_TEXT = "map diff"
    BINDINGS = [
        Binding("enter", "open_cell", "Examples of the cell", id="mapdiff.open_cell"),
        Binding("o", "other_run", "Other run as B", id="mapdiff.other_run"),
        Binding("s", "swap", "Swap A/B", id="mapdiff.swap"),
    ]
    DEFAULT_CSS = """
    MapDiffScreen #diff-title { height: auto; padding: 0 1; }
    MapDiffScreen DataTable { height: auto; max-height: 12; margin: 1 1; }
    MapDiffScreen #diff-status { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, run_a: str, run_b: str | None = None, kind: str = "cartography") -> None:
        super().__init__()
        self.run_a, self.run_b, self.kind = run_a, run_b, kind
        self.diff: MapDiff | None = None
        self.candidates: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading ...", id="diff-title")
        yield DataTable(id="transitions", cursor_type="cell")
        yield Static("", id="diff-status")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataTable).focus()
        self.load(self.run_a, self.run_b, self.kind)

    @work(thread=True, exclusive=True, group="mapdiff", exit_on_error=False)
    def load(self, run_a: str, run_b: str | None, kind: str) -> None:
        with self.catalog(do_sync=True) as con:
            candidates = diff_candidates(con, run_a)
            run_b = run_b or (candidates[0] if candidates else None)
            if run_b is None:
                self.post_message(
                    DiffLoaded(None, candidates, f"no other run with metrics to compare {run_a} with")
                )
                return
            try:
                # each run's fitted bounds, from the map screen's cache (a fit scans the run's metrics)
                fitted = [
                    cached_fitted_bounds(con, self.ws, run, adversarial=kind == "robustness").of(kind)
                    for run in (run_a, run_b)
                ]
                diff = map_diff(con, run_a, run_b, kind, *fitted)
            except BadInputError as exc:
                self.post_message(DiffLoaded(None, candidates, str(exc)))
                return
        self.post_message(DiffLoaded(diff, candidates))

    def on_diff_loaded(self, message: DiffLoaded) -> None:
        self.candidates = message.candidates
        table = self.query_one(DataTable)
        table.clear(columns=True)
        if message.diff is None:
            self.query_one("#diff-title", Static).update(message.error)
            self.mark_painted()
            return
        diff = self.diff = message.diff
        self.run_b = diff.run_b
        self.query_one("#diff-title", Static).update(
            Text.assemble(
                (f"{diff.kind} map diff: ", "bold"),
                f"rows = region in A {diff.run_a}, columns = region in B {diff.run_b}\n",
                f"A: {rule_text(diff.bounds_a)} (fitted to the run)\nB: {rule_text(diff.bounds_b)} (fitted to the run)",
            )
        )
        table.add_column("A \\ B", key="from")
        for region in diff.regions:
            table.add_column(Text(region, style=REGION_COLOURS.get(region, "")), key=region, width=12)
        table.add_column("total", key="total", width=12)
        for a in diff.regions:
            cells: list[Any] = [Text(a, style=REGION_COLOURS.get(a, ""))]
            for b in diff.regions:
                cells.append(
                    Text(f"{diff.count(a, b):,}", style="bold" if a != b else "dim", justify="right")
                )
            cells.append(Text(f"{diff.row_total(a):,}", justify="right"))
            table.add_row(*cells, key=a)
        totals = [Text(f"{diff.col_total(b):,}", justify="right") for b in diff.regions]
        table.add_row("total", *totals, Text(f"{diff.shared:,}", justify="right"), key="total")
        table.move_cursor(row=0, column=1)
        share = 100.0 * diff.moved() / diff.shared if diff.shared else 0.0
        self.query_one("#diff-status", Static).update(
            f"{diff.shared:,} shared examples, {diff.moved():,} ({share:.1f}%) changed region; "
            f"only in A: {diff.only_a:,}, only in B: {diff.only_b:,}\n"
            "⏎ the examples of a cell · o another run as B · s swap A and B"
        )
        self.call_after_refresh(self.mark_painted)

    def cell_regions(self) -> tuple[str, str] | None:
        """(region in A, region in B) under the cursor; None on the labels and totals."""
        if self.diff is None:
            return None
        row, col = self.query_one(DataTable).cursor_coordinate
        regions = self.diff.regions
        if row >= len(regions) or not 1 <= col <= len(regions):
            return None
        return regions[row], regions[col - 1]

    def action_open_cell(self) -> None:
        cell = self.cell_regions()
        if self.diff is None or cell is None:
            self.notify("put the cursor on a cell of the table", timeout=2)
            return
        self.app.push_screen(TransitionExamplesScreen(self.diff, *cell))

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        self.action_open_cell()

    def action_other_run(self) -> None:
        if not self.candidates:
            return
        at = self.candidates.index(self.run_b) if self.run_b in self.candidates else -1
        self.run_b = self.candidates[(at + 1) % len(self.candidates)]
        self.load(self.run_a, self.run_b, self.kind)

    def action_swap(self) -> None:
        if self.run_b is not None:
            self.run_a, self.run_b = self.run_b, self.run_a
            self.load(self.run_a, self.run_b, self.kind)


@dataclass
class TransitionPage(Message):
    rows: list[dict[str, Any]]
    page: int


class TransitionExamplesScreen(BaseScreen):
    """The examples of one cell of a map diff (region in A -> region in B), a page at a time, with both runs'
    confidence and variability; enter opens an example."""

    TITLE_TEXT = "map diff: examples"
    BINDINGS = [
        Binding("n,pagedown", "page(1)", "Next page", id="transition.next"),
        Binding("p,pageup", "page(-1)", "Previous page", id="transition.previous"),
        Binding("enter", "open", "Detail", id="transition.open"),
    ]
    DEFAULT_CSS = """
    TransitionExamplesScreen #transition-title { height: auto; padding: 0 1; }
    TransitionExamplesScreen DataTable { height: 1fr; }
    """

    def __init__(self, diff: MapDiff, region_a: str, region_b: str) -> None:
        super().__init__()
        self.diff, self.region_a, self.region_b = diff, region_a, region_b
        self.total = diff.count(region_a, region_b)
        self.page = 0
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.title_text(), id="transition-title")
        yield DataTable(id="transition-examples", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def title_text(self) -> str:
        pages = max(1, -(-self.total // PAGE))
        return (
            f"{self.region_a} in {self.diff.run_a} -> {self.region_b} in {self.diff.run_b}: "
            f"{self.total:,} examples · page {self.page + 1}/{pages}"
        )

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for name, width in (
            ("example_id", 14),
            ("label", 10),
            ("conf A→B", 13),
            ("var A→B", 13),
            ("text", None),
        ):
            table.add_column(name, key=name, width=width)
        table.focus()
        self.load(0)

    @work(thread=True, exclusive=True, group="transition", exit_on_error=False)
    def load(self, page: int) -> None:
        with self.catalog() as con:
            rows = transition_examples(con, self.diff, self.region_a, self.region_b, PAGE, page * PAGE)
        self.post_message(TransitionPage(rows, page))

    def on_transition_page(self, message: TransitionPage) -> None:
        self.page, self.rows = message.page, message.rows
        table = self.query_one(DataTable)
        table.clear()
        text_w = max(20, self.size.width - 58)
        for r in message.rows:
            table.add_row(
                Text(str(r["example_id"]), overflow="ellipsis", no_wrap=True),
                Text(str(r["label_name"] or ""), overflow="ellipsis", no_wrap=True),
                f"{r['confidence_a']:.2f}→{r['confidence_b']:.2f}",
                f"{r['variability_a']:.2f}→{r['variability_b']:.2f}",
                Text(str(r["text"] or "")[: text_w * 2], overflow="ellipsis", no_wrap=True),
                key=str(r["example_id"]),
            )
        self.query_one("#transition-title", Static).update(self.title_text())
        self.call_after_refresh(self.mark_painted)

    def action_page(self, step: int) -> None:
        last = max(0, -(-self.total // PAGE) - 1)
        page = min(last, max(0, self.page + step))
        if page != self.page:
            self.load(page)

    def action_open(self) -> None:
        if not self.rows:
            return
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.rows):
            self.app.open_detail(self.diff.dataset_a, str(self.rows[row]["example_id"]), self.diff.run_a)  # type: ignore[attr-defined]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()
