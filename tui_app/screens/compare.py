"""Compare: runs x evaluation sets (accuracy, EM/F1, worst-case F1) from `evaluations`, with a bar chart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, SelectionList, Static

from engine.analysis.evaluations import evaluations, metric_names
from tui_app.screens.base import BaseScreen
from tui_app.widgets import BarChart


@dataclass
class EvalsLoaded(Message):
    rows: list[dict[str, Any]]


class CompareScreen(BaseScreen):
    TITLE_TEXT = "compare"
    BINDINGS = [
        Binding("m", "metric", "Metric", id="compare.metric"),
        Binding("a", "all", "All runs", id="compare.all"),
        Binding("r", "refresh", "Refresh", id="compare.refresh"),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #runs-pick { width: 30; height: 1fr; }
    CompareScreen #compare-title { height: 1; padding: 0 1; background: $boost; }
    CompareScreen DataTable { height: auto; max-height: 12; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.metric: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-title")
        with Horizontal(id="compare-body"):
            yield SelectionList[str](id="runs-pick")
            with Vertical():
                yield DataTable(id="compare-table", zebra_stripes=True)
                yield BarChart(id="bars")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(SelectionList).focus()
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        with self.catalog(do_sync=True) as con:
            rows = evaluations(con)
        self.post_message(EvalsLoaded(rows))

    def on_evals_loaded(self, message: EvalsLoaded) -> None:
        self.rows = message.rows
        names = metric_names(self.rows)
        if self.metric not in names:
            self.metric = names[0] if names else None
        picker = self.query_one(SelectionList)
        picker.clear_options()
        origins = {r["run_id"]: r.get("origin") for r in self.rows}
        runs = list(dict.fromkeys(r["run_id"] for r in self.rows))
        # a retrain says what it trained on ("ambiguous 33% of <run>"), so two runs can be told apart
        picker.add_options([(f"{run} ({origins[run]})" if origins[run] else run, run, True) for run in runs])
        self.paint()

    def on_selection_list_selected_changed(self) -> None:
        self.paint()

    def action_metric(self) -> None:
        names = metric_names(self.rows)
        if names:
            self.metric = (
                names[(names.index(self.metric) + 1) % len(names)] if self.metric in names else names[0]
            )
            self.paint()

    def action_all(self) -> None:
        self.query_one(SelectionList).select_all()

    def paint(self) -> None:
        title = self.query_one("#compare-title", Static)
        if not self.rows:
            title.update("no evaluations yet: evaluate a run from the jobs screen (j, n)")
            return
        chosen = set(self.query_one(SelectionList).selected)
        runs = [r for r in dict.fromkeys(row["run_id"] for row in self.rows) if r in chosen]
        sets = list(dict.fromkeys(row["eval_set"] for row in self.rows))
        value = {(row["run_id"], row["eval_set"]): row["metrics"] for row in self.rows}
        metric = self.metric or ""
        title.update(
            f"metric: {metric}  (m next metric, space pick runs)   {len(runs)} run(s) x {len(sets)} set(s)"
        )
        table = self.query_one(DataTable)
        table.clear(columns=True)
        rows = []
        for run in runs:
            cells = []
            for eval_set in sets:
                v = value.get((run, eval_set), {}).get(metric)
                cells.append("" if v is None else f"{v:.3f}" if v <= 1 else f"{v:.1f}")
            rows.append([run, *cells])
        # explicit widths: the table is rebuilt often and must not depend on when Textual measures it
        for index, name in enumerate(["run", *sets]):
            table.add_column(name, width=max([len(name)] + [len(r[index]) for r in rows]))
        for row in rows:
            table.add_row(*row)
        series = [(run, [float(value.get((run, s), {}).get(metric) or 0.0) for s in sets]) for run in runs]
        self.query_one(BarChart).set_data(metric, sets, series)
