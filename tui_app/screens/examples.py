"""Examples: a table paged by SQL (LIMIT/OFFSET); filters by region, label, metric range, text, tag and a
free SQL WHERE; sort by any metric; the active filter as a URL-like header line."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from engine.analysis.bounds import fitted_map_bounds
from engine.analysis.datasets import list_datasets
from engine.analysis.labelmix import map_label_mix
from engine.analysis.pages import METRICS, ExampleFilter, count_rows, query_page
from engine.analysis.provenance import GeneratedSummary, Provenance, generated_summary, get_provenance
from engine.analysis.regions import REGIONS
from engine.analysis.runs import get_run, latest_run_with_metrics
from tui_app.page_table import Column, PageTable
from tui_app.provenance_view import parent_line, provenance_text
from tui_app.screens.base import BaseScreen

PAGE_SIZE = 50  # rows a page (one LIMIT/OFFSET query)
TEXT_W = 48  # the text column before the screen has a size
MIN_TEXT_W = 12
COLUMN_MAX_W = {
    "example_id": 26,
    "text": 0,
}  # the widest a column gets (others: DEFAULT_MAX_W); 0: the free width
DEFAULT_MAX_W = 12
NARROW_DROP = ("row_idx",)  # left out, in this order, when the screen is too narrow for every column
KEY_HINTS = (
    "n/p page",
    "s sort",
    "d dir",
    "/ search",
    "w where",
    "g region",
    "b label",
    "f range",
    "t tag",
    "x clear",
)
SORT_MARKS = {False: "▲", True: "▼"}  # ascending, descending
RANGE_RE = re.compile(r"^\s*(\w+)\s*(?:=|\s)\s*(-?[\d.eE+-]*)\s*\.\.\s*(-?[\d.eE+-]*)\s*$")

PROMPTS = {
    "search": "search text (ILIKE), or an example id",
    "where": "SQL WHERE over the columns (e.g. confidence < 0.3 AND label = 1)",
    "label": "label (name or index; empty: any)",
    "range": "metric range, e.g. confidence 0.2..0.6 (empty: clear ranges)",
    "tag": "tag (empty: any)",
}


@dataclass
class PageLoaded(Message):
    filter: ExampleFilter
    page: int
    total: int | None
    columns: list[str]
    rows: list[tuple[Any, ...]]
    dataset: str
    elapsed_ms: float
    generated: GeneratedSummary | None = None  # with a count: the dataset's generation records, if generated


@dataclass
class ProvenanceLoaded(Message):
    """A generated example's provenance and parent, for the panel under the list."""

    dataset: str
    example_id: str
    provenance: Provenance | None


@dataclass
class MixShown(Message):
    """The label mix line of a region's examples (after its count: a join the first page need not wait for)."""

    filter: ExampleFilter
    text: str


@dataclass
class PagePrefetched(Message):
    """A neighbouring page read ahead, so the next `n`/`p` paints without a query."""

    filter: ExampleFilter
    page: int
    columns: list[str]
    rows: list[tuple[Any, ...]]


def parse_range(text: str) -> tuple[str, float | None, float | None]:
    match = RANGE_RE.match(text)
    if not match:
        raise ValueError(
            f"{text!r}: write METRIC LO..HI, e.g. confidence 0.2..0.6 (either side may be empty)"
        )
    metric, lo, hi = match.group(1), match.group(2), match.group(3)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    return metric, float(lo) if lo else None, float(hi) if hi else None


HEADERS = {
    "example_id": "id",
    "row_idx": "row",
    "label_name": "label",
    "confidence": "conf",
    "variability": "var",
    "correctness": "correct",
    "forgetting": "forget",
    "sensitivity": "sens",
    "adv_variability": "adv_var",
    "flip_rate": "flip",
    "aum": "aum",
    "region": "region",
    "text": "text",
}


def cell(value: Any, column: str, text_width: int = TEXT_W) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if column == "text":
        text = " ".join(text.split())
        return text[: text_width - 1] + "…" if len(text) > text_width else text
    return text


class ExamplesScreen(BaseScreen):
    TITLE_TEXT = "examples"
    BINDINGS = [
        Binding("enter", "open", "Open", id="examples.open"),
        Binding("n,right_square_bracket", "page(1)", "Next page", id="examples.next_page"),
        Binding("p,left_square_bracket", "page(-1)", "Prev page", id="examples.prev_page", show=False),
        Binding("s", "sort", "Sort", id="examples.sort"),
        Binding("d", "direction", "Asc/desc", id="examples.direction", show=False),
        Binding("g", "region", "Region", id="examples.region"),
        Binding("w", "prompt('where')", "WHERE", id="examples.where"),
        Binding("b", "prompt('label')", "Label", id="examples.label", show=False),
        Binding("f", "prompt('range')", "Range", id="examples.range", show=False),
        Binding("t", "prompt('tag')", "Tag", id="examples.tag", show=False),
        Binding("x", "clear", "Clear filters", id="examples.clear", show=False),
        Binding("r", "retry", "Retry", id="examples.retry", show=False),
        Binding("v", "rejected", "Rejected records", id="examples.rejected", show=False),
    ]
    DEFAULT_CSS = """
    ExamplesScreen #url { height: 1; padding: 0 1; background: $boost; }
    ExamplesScreen #mix { height: auto; max-height: 2; padding: 0 1; color: $text-muted; display: none; }
    ExamplesScreen #prompt-label { height: auto; max-height: 3; padding: 0 1; color: $text-muted; display: none; }
    ExamplesScreen #prompt-label.-error { color: $error; }
    ExamplesScreen #load-error { height: auto; padding: 1 1; color: $error; display: none; }
    ExamplesScreen #prompt { height: 1; border: none; padding: 0 1; display: none; }
    ExamplesScreen #prompt.-active, ExamplesScreen #prompt-label.-active { display: block; }
    ExamplesScreen PageTable { height: 1fr; }
    ExamplesScreen #page-status { height: 1; padding: 0 1; color: $text-muted; }
    ExamplesScreen #provenance { height: auto; max-height: 10; padding: 0 1; border-top: solid $panel;
                                 display: none; }
    """

    def __init__(
        self, flt: ExampleFilter | None = None, run_id: str | None = None, dataset: str | None = None
    ) -> None:
        super().__init__()
        self.filter = flt
        self.want_run = run_id
        self.want_dataset = dataset
        self.page = 0
        self.total: int | None = None
        self.columns: list[str] = []
        self.prompt_kind: str | None = None
        self.last_ms = 0.0
        self.pages_loaded = 0
        self.prefetched: dict[int, PagePrefetched] = {}  # neighbours of the current page, for self.filter
        self.shown: PagePrefetched | None = None  # the page on screen, kept as a neighbour when paging away
        self.text_width = TEXT_W
        self.pending_prompt = (
            False  # a submitted filter prompt stays open until its page loads (or says why not)
        )
        self.failed: tuple[ExampleFilter | None, int, bool] | None = None  # the load that `r` retries
        self.generated: GeneratedSummary | None = (
            None  # the dataset's generation, when a generate job made it
        )
        self.provenance: Provenance | None = None  # the highlighted generated example's, in the panel
        self._provenance_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="url")
        yield Static("", id="mix")
        yield Static("", id="prompt-label")
        yield Input(id="prompt")
        yield Static("", id="load-error", markup=False)
        yield PageTable(id="examples")
        yield Static("", id="provenance")
        yield Static("", id="page-status")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(PageTable).focus()
        self.failed = (self.filter, 0, True)
        self.load(self.filter, 0, True)

    # ---- loading --------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="examples", exit_on_error=False)
    def load(
        self, flt: ExampleFilter | None, page: int, count: bool, cached: frozenset[int] = frozenset()
    ) -> None:
        started = time.perf_counter()
        with self.catalog(do_sync=count) as con:
            if flt is None:
                flt = self.initial_filter(con)
            elif flt.run_id and not flt.dataset:
                run = get_run(con, flt.run_id)
                if run is None:
                    raise LookupError(f"no run named {flt.run_id!r}")
                flt = replace(flt, dataset=run["dataset"])
            if flt is None:
                self.post_message(PageLoaded(ExampleFilter(dataset=""), 0, 0, [], [], "", 0.0))
                return
            if flt.run_id and flt.bounds is None:  # the regions of the run's map: its fitted boundaries
                flt = replace(flt, bounds=fitted_map_bounds(con, flt.run_id))
            total = count_rows(con, flt) if count else None
            result = query_page(con, flt, PAGE_SIZE, page * PAGE_SIZE)
            generated = generated_summary(con, flt.dataset) if count else None
            elapsed = (time.perf_counter() - started) * 1000
            self.post_message(
                PageLoaded(flt, page, total, result.columns, result.rows, flt.dataset, elapsed, generated)
            )
            if count:
                self.post_message(MixShown(flt, self.region_mix(con, flt)))
            known = total if total is not None else self.total
            self.read_ahead(con, flt, page, known or 0, cached)

    def region_mix(self, con: Any, flt: ExampleFilter) -> str:
        """The label mix of the region shown (against all the run's examples), or '' without a region."""
        if not (flt.region and flt.run_id):
            return ""
        mix = map_label_mix(con, flt.run_id, flt.kind, flt.map_bounds.of(flt.kind))
        return f"{flt.region}: {mix.summary(flt.region)}"

    def on_mix_shown(self, message: MixShown) -> None:
        if message.filter == self.filter or self.filter is None:
            widget = self.query_one("#mix", Static)
            widget.update(message.text)
            widget.display = bool(message.text)

    @work(thread=True, exclusive=True, group="examples-prefetch", exit_on_error=False)
    def prefetch(self, flt: ExampleFilter, page: int, total: int, cached: frozenset[int]) -> None:
        with self.catalog() as con:
            self.read_ahead(con, flt, page, total, cached)

    def read_ahead(self, con: Any, flt: ExampleFilter, page: int, total: int, cached: frozenset[int]) -> None:
        """Read the pages either side of `page` (the next one first) while the catalog is open anyway."""
        last = max(0, -(-total // PAGE_SIZE) - 1)
        for neighbour in (page + 1, page - 1):
            if 0 <= neighbour <= last and neighbour not in cached:
                result = query_page(con, flt, PAGE_SIZE, neighbour * PAGE_SIZE)
                self.post_message(PagePrefetched(flt, neighbour, result.columns, result.rows))

    def initial_filter(self, con: Any) -> ExampleFilter | None:
        run_id = self.want_run
        if run_id is None and self.want_dataset is None:
            run_id = latest_run_with_metrics(con)
        if run_id is not None:
            run = get_run(con, run_id)
            if run is None:
                raise LookupError(f"no run named {run_id!r}")
            if run["n_metrics"]:
                return ExampleFilter(dataset=run["dataset"], run_id=run_id)
            return ExampleFilter(dataset=run["dataset"])
        if self.want_dataset is None:
            datasets = list_datasets(con)
            if not datasets:
                return None
            return ExampleFilter(dataset=datasets[0]["name"])
        return ExampleFilter(dataset=self.want_dataset)

    def on_page_prefetched(self, message: PagePrefetched) -> None:
        if message.filter == self.filter and abs(message.page - self.page) <= 1:
            self.prefetched[message.page] = message

    def on_page_loaded(self, message: PageLoaded) -> None:
        self.last_ms = message.elapsed_ms
        self.pages_loaded += 1
        if message.filter != self.filter or message.total is not None:
            self.prefetched.clear()  # another filter (or a fresh count): what was read ahead is for the old one
        if not message.dataset:
            self.query_one("#url", Static).update("no datasets yet: dynascope import FILE --name NAME")
            return
        self.filter = message.filter
        self.page = message.page
        self.shown = PagePrefetched(message.filter, message.page, message.columns, message.rows)
        if message.total is not None:
            self.total = message.total
            self.show_generated(message.generated)
        self.columns = message.columns
        self.show_rows()
        self.show_failure(None)
        if self.pending_prompt and message.total is not None:
            self.pending_prompt = False
            self.close_prompt()
        self.update_header()
        self.prefetched = {p: m for p, m in self.prefetched.items() if abs(p - self.page) <= 1}
        self.call_after_refresh(self.mark_painted)

    # ---- a generated dataset: the highlighted example's provenance and parent under the list --------------

    def show_generated(self, generated: GeneratedSummary | None) -> None:
        self.generated = generated
        panel = self.query_one("#provenance", Static)
        panel.display = generated is not None
        if generated is None:
            self.provenance = None
        else:
            panel.update(self.summary_text())

    def summary_text(self) -> Text:
        assert self.generated is not None
        return Text(self.generated.line() + (" · v lists them" if self.generated.rejected else ""))

    def action_rejected(self) -> None:
        """A generated dataset's rejected records, with their reasons."""
        if self.generated is None or self.filter is None:
            self.notify("only a generated dataset has rejected records", timeout=3)
            return
        from tui_app.screens.rejected import RejectedScreen

        self.app.push_screen(RejectedScreen(self.filter.dataset))

    def on_page_table_cursor_moved(self, event: PageTable.CursorMoved) -> None:
        event.stop()
        if self.generated is None or self.filter is None:
            return
        if self._provenance_timer is not None:
            self._provenance_timer.stop()
        dataset, key = self.filter.dataset, event.row_key
        # a moment after the cursor stops: holding a key down reads one row, not every row passed
        self._provenance_timer = self.set_timer(0.1, lambda: self.load_provenance(dataset, key))

    @work(thread=True, exclusive=True, group="provenance", exit_on_error=False)
    def load_provenance(self, dataset: str, example_id: str) -> None:
        with self.catalog() as con:
            found = get_provenance(con, dataset, example_id)
        self.post_message(ProvenanceLoaded(dataset, example_id, found))

    def on_provenance_loaded(self, message: ProvenanceLoaded) -> None:
        table = self.query_one(PageTable)
        if self.generated is None or self.filter is None or message.dataset != self.filter.dataset:
            return
        if message.example_id != table.cursor_key:
            return
        self.provenance = message.provenance
        text = self.summary_text()
        if message.provenance is None:
            text.append(f"\n{message.example_id}: no provenance record", style="italic")
        else:
            text.append("\n")
            text.append_text(provenance_text(message.provenance))
            text.append("\n")
            text.append_text(parent_line(message.provenance))
        self.query_one("#provenance", Static).update(text)

    def show_rows(self, keep_cursor: bool = False) -> None:
        """Lay out the page on screen for the screen's width now (each page and each resize)."""
        if self.shown is None:
            return
        table = self.query_one(PageTable)
        cursor = table.cursor_row
        layout = self.column_layout(self.shown.columns, self.shown.rows)
        where = {name: index for index, name in enumerate(self.shown.columns)}
        self.columns = [c.key for c in layout]  # as on screen (a narrow screen drops or moves some)
        table.set_page(
            layout,
            [
                (str(row[0]), [cell(row[where[c.key]], c.key, self.text_width) for c in layout])
                for row in self.shown.rows
            ],
        )
        if keep_cursor:
            table.move_cursor(cursor)

    def sorted_column(self) -> str | None:
        """The column on screen that the rows are sorted by (`label` sorts the label_name column)."""
        if self.filter is None or self.shown is None:
            return None
        columns = self.shown.columns
        sort = self.filter.sort_column()
        if sort not in columns and sort == "label" and "label_name" in columns:
            return "label_name"
        return sort if sort in columns else None

    def column_layout(self, columns: list[str], rows: list[tuple[Any, ...]]) -> list[Column]:
        """Column widths from this page's values (each capped), the sort column's header marked ▲/▼, and the text
        column taking the rest of the screen's width. On a narrow screen the most important columns stay in view:
        the row number goes first (the id names the example), then the text moves to the end (it scrolls)."""
        marked = self.sorted_column()
        labels = {}
        for name in columns:
            label = HEADERS.get(name, name)
            if name == marked and self.filter is not None:
                label += SORT_MARKS[self.filter.descending]
            labels[name] = label
        widths = {}
        for index, name in enumerate(columns):
            if name == "text":
                continue
            longest = max([len(cell(r[index], name)) for r in rows] + [len(labels[name])])
            widths[name] = min(longest, max(COLUMN_MAX_W.get(name, DEFAULT_MAX_W), len(labels[name])))
        width = (self.size.width or self.app.size.width) - 2  # the table's vertical scrollbar
        order = list(columns)
        for drop in NARROW_DROP:
            if sum(widths[n] + 2 for n in order if n in widths) + MIN_TEXT_W + 2 <= width:
                break
            if drop in order:
                order.remove(drop)
        used = sum(widths[n] + 2 for n in order if n in widths) + 2
        self.text_width = max(MIN_TEXT_W, width - used)
        if used + self.text_width > width and "text" in order:
            order.remove("text")
            order.append("text")
        return [Column(n, labels[n], self.text_width if n == "text" else widths[n]) for n in order]

    def on_resize(self) -> None:
        self.show_rows(keep_cursor=True)
        if self.filter is not None and self.shown is not None:
            self.update_header()

    def update_header(self) -> None:
        assert self.filter is not None
        self.query_one("#url", Static).update(self.filter.url(self.page))
        total = self.total or 0
        pages = max(1, -(-total // PAGE_SIZE))
        status = f"{total:,} rows · page {self.page + 1}/{pages} · " + (
            f"{self.last_ms:.0f} ms" if self.last_ms else "read ahead"
        )
        room = (self.size.width or self.app.size.width) - 2 - len(status) - len(" · ? all keys")
        hints: list[str] = []
        for hint in KEY_HINTS:  # as many as the width holds, the most used first
            if sum(len(h) + 2 for h in hints) + len(hint) + 2 > room:
                break
            hints.append(hint)
        self.query_one("#page-status", Static).update(" · ".join([status, "  ".join([*hints, "? all keys"])]))

    def apply(self, flt: ExampleFilter) -> None:
        self.failed = (flt, 0, True)  # what `r` retries should this load fail
        self.load(flt, 0, True)

    # ---- a load that failed: said in place, `r` retries ----------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "examples" and event.state == WorkerState.ERROR:
            error = event.worker.error
            text = str(error) or type(error).__name__
            if self.pending_prompt and self.prompt_kind is not None:
                self.pending_prompt = False
                self.prompt_error(text)
            else:
                self.show_failure(text)
        super().on_worker_state_changed(event)

    def show_failure(self, text: str | None) -> None:
        widget = self.query_one("#load-error", Static)
        widget.display = text is not None
        if text is not None:
            widget.update(f"could not load the examples: {text}\n\nr retries, q goes back")
            self.query_one("#page-status", Static).update("not loaded · r retry")

    def action_retry(self) -> None:
        if self.failed is not None:
            flt, page, count = self.failed
            self.query_one("#load-error", Static).update("loading again ...")
            self.load(flt, page, count)

    # ---- keys -----------------------------------------------------------------------------------------

    def action_page(self, delta: int) -> None:
        if self.filter is None or self.total is None:
            return
        last = max(0, -(-self.total // PAGE_SIZE) - 1)
        page = min(last, max(0, self.page + delta))
        if page == self.page:
            return
        if self.shown is not None and self.shown.filter == self.filter:
            self.prefetched[self.page] = self.shown  # the page we leave is a neighbour of the next one
        ahead = self.prefetched.pop(page, None)
        if ahead is None:
            self.failed = (self.filter, page, False)
            self.load(self.filter, page, False, frozenset(self.prefetched))
            return
        self.on_page_loaded(
            PageLoaded(ahead.filter, page, None, ahead.columns, ahead.rows, ahead.filter.dataset, 0.0)
        )
        self.prefetch(self.filter, page, self.total, frozenset(self.prefetched))

    def action_sort(self) -> None:
        if self.filter is None:
            return
        options = ["row_idx", "label", *(METRICS if self.filter.run_id else ())]
        current = self.filter.sort_column()
        nxt = options[(options.index(current) + 1) % len(options)] if current in options else options[0]
        self.apply(replace(self.filter, sort=nxt))

    def action_direction(self) -> None:
        if self.filter is not None:
            self.apply(replace(self.filter, descending=not self.filter.descending))

    def action_region(self) -> None:
        if self.filter is None or not self.filter.run_id:
            self.notify("regions need a run with per-example metrics", timeout=3)
            return
        options: list[str | None] = [*REGIONS[self.filter.kind], None]
        current = self.filter.region
        nxt = options[(options.index(current) + 1) % len(options)] if current in options else options[0]
        self.apply(replace(self.filter, region=nxt))

    def action_clear(self) -> None:
        if self.filter is not None:
            self.apply(
                ExampleFilter(dataset=self.filter.dataset, run_id=self.filter.run_id, kind=self.filter.kind)
            )

    def action_search(self) -> None:
        self.action_prompt("search")

    def action_prompt(self, kind: str) -> None:
        if self.filter is None:
            return
        self.prompt_kind = kind
        label = self.query_one("#prompt-label", Static)
        label.update(PROMPTS[kind] + "  (enter apply, escape cancel)")
        label.remove_class("-error")
        prompt = self.query_one("#prompt", Input)
        current = {
            "search": self.filter.search,
            "where": self.filter.where,
            "label": self.filter.label,
            "tag": self.filter.tag,
            "range": " ".join(
                f"{m} {lo if lo is not None else ''}..{hi if hi is not None else ''}"
                for m, lo, hi in self.filter.ranges[-1:]
            ),
        }[kind]
        prompt.value = current or ""
        label.add_class("-active")
        prompt.add_class("-active")
        prompt.focus()

    def prompt_error(self, text: str) -> None:
        """Why the filter in the prompt was rejected, in place of the prompt's hint; the input keeps the text."""
        label = self.query_one("#prompt-label", Static)
        label.update(Text(f"{text}  (fix it and press enter, escape cancels)"))
        label.add_class("-error")
        self.query_one("#prompt", Input).focus()

    def close_prompt(self) -> None:
        self.prompt_kind = None
        self.pending_prompt = False
        self.query_one("#prompt-label", Static).remove_class("-active", "-error")
        self.query_one("#prompt", Input).remove_class("-active")
        self.query_one(PageTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.filter is None or self.prompt_kind is None:
            return
        value = event.value.strip() or None
        kind = self.prompt_kind
        flt = self.filter
        try:
            if kind == "search":
                flt = replace(flt, search=value)
            elif kind == "where":
                flt = replace(flt, where=value)
            elif kind == "label":
                flt = replace(flt, label=value)
            elif kind == "tag":
                flt = replace(flt, tag=value)
            elif kind == "range":
                if value is None:
                    flt = replace(flt, ranges=())
                else:
                    metric, lo, hi = parse_range(value)
                    kept = tuple(r for r in flt.ranges if r[0] != metric)
                    flt = replace(flt, ranges=(*kept, (metric, lo, hi)))
        except ValueError as exc:
            self.prompt_error(str(exc))
            return
        self.pending_prompt = True  # closed when the page loads; a rejected filter stays in the input
        self.apply(flt)

    def action_back(self) -> None:
        if self.prompt_kind is not None:
            self.close_prompt()
            return
        super().action_back()

    def action_open(self) -> None:
        key = self.query_one(PageTable).cursor_key
        if self.filter is not None and key is not None:
            self.app.open_detail(  # type: ignore[attr-defined]
                self.filter.dataset, key, self.filter.run_id, neighbour=self.neighbour
            )

    def neighbour(self, example_id: str, step: int) -> str | None:
        """The example `step` rows from `example_id` in this list (the detail's next / previous), moving the
        cursor there so that going back lands on it; across a page edge through the page read ahead. None at
        either end of the list, or while the next page is still being read."""
        table = self.query_one(PageTable)
        if example_id not in table.keys:
            return None
        index = table.keys.index(example_id) + step
        if 0 <= index < len(table.keys):
            table.move_cursor(index)
            return table.keys[index]
        page = self.page + (1 if step > 0 else -1)
        if page not in self.prefetched:
            return None
        self.action_page(1 if step > 0 else -1)
        table.action_cursor_to(0 if step > 0 else -1)
        return table.cursor_key

    def on_page_table_row_selected(self, event: PageTable.RowSelected) -> None:
        event.stop()
        self.action_open()
