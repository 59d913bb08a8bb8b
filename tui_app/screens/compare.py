"""Compare: runs x evaluation sets (accuracy, EM/F1, worst-case F1) from `evaluations`, with a bar chart, and
beside them the runs under attack as in the paper's Table 3: Clean%, then per attack method Aua% and #Q (mean model
queries per attacked example) of the run's latest attack of that method (engine.analysis.attacks.attack_table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, SelectionList, Static

from engine.analysis.attacks import attack_methods, attack_table, table3_values
from engine.analysis.evaluations import evaluations, metric_names, set_groups
from engine.analysis.runs import list_runs, run_label, run_summary
from tui_app.screens.base import BaseScreen
from tui_app.widgets import BarChart


@dataclass
class EvalsLoaded(Message):
    rows: list[dict[str, Any]]
    attacks: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]  # run id -> its row of engine.analysis.runs.list_runs (name, origin, ...)


class CompareScreen(BaseScreen):
    TITLE_TEXT = "compare"
    BINDINGS = [
        Binding("m", "metric", "Metric", id="compare.metric"),
        Binding("a", "all", "All runs", id="compare.all"),
        Binding("t", "curves", "Curves", id="compare.curves"),
        Binding("r", "refresh", "Refresh", id="compare.refresh"),
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-body { height: 1fr; }
    CompareScreen #runs-pick { width: 30%; max-width: 30; height: 1fr; }
    CompareScreen #compare-title { height: 1; padding: 0 1; background: $boost; }
    CompareScreen DataTable { height: auto; max-height: 12; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.attacks: list[dict[str, Any]] = []  # attack_table rows: (run, dataset) with Clean%, Aua%, #Query
        self.metric: str | None = None
        self.names: dict[str, str] = {}  # run id -> its name (or id)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="compare-title")
        with Horizontal(id="compare-body"):
            yield SelectionList[str](id="runs-pick")
            with Vertical():
                yield DataTable(id="compare-table", zebra_stripes=True, fixed_columns=1)
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
            attacks = attack_table(con)
            runs = {run["run_id"]: run for run in list_runs(con)}
        self.post_message(EvalsLoaded(rows, attacks, runs))

    def on_evals_loaded(self, message: EvalsLoaded) -> None:
        self.rows, self.attacks = message.rows, message.attacks
        names = metric_names(self.rows)
        if self.metric not in names:
            self.metric = names[0] if names else None
        picker = self.query_one(SelectionList)
        picker.clear_options()
        self.names = {run_id: run_label(run) for run_id, run in message.runs.items()}
        runs = list(dict.fromkeys(r["run_id"] for r in self.rows + self.attacks))
        # name, what it trained on and where a retrain came from ("ambiguous 33% of <run>"): runs told apart
        summaries = {run_id: run_summary(run) for run_id, run in message.runs.items()}
        picker.add_options([(summaries.get(run, run), run, True) for run in runs])
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

    def action_curves(self) -> None:
        """The picked runs' training curves overlaid, with the settings in which they differ."""
        picked = list(self.query_one(SelectionList).selected)
        if picked:
            self.app.open_run_view(picked)  # type: ignore[attr-defined]
        else:
            self.notify("pick runs first (space)", timeout=3)

    def paint(self) -> None:
        title = self.query_one("#compare-title", Static)
        if not self.rows and not self.attacks:
            title.update("no evaluations yet: evaluate a run from the jobs screen (j, n)")
            return
        chosen = set(self.query_one(SelectionList).selected)
        everyone = dict.fromkeys(row["run_id"] for row in self.rows + self.attacks)
        runs = [r for r in everyone if r in chosen]
        set_group = set_groups(self.rows)  # in-domain, adversarial, shift (engine.analysis.evaluations)
        sets = list(set_group)
        value = {(row["run_id"], row["eval_set"]): row["metrics"] for row in self.rows}
        metric = self.metric or ""
        attack_names, attack_cells = self.attack_columns(runs)
        if self.rows:
            title.update(
                f"metric: {metric}  (m next metric, space pick runs)   {len(runs)} run(s) x {len(sets)} set(s)"
            )
        else:
            title.update(
                f"{len(runs)} run(s) under attack   Aua%: accuracy under attack   #Q: queries per example"
            )
        table = self.query_one(DataTable)
        table.clear(columns=True)
        rows = []
        for run in runs:
            cells = []
            for eval_set in sets:
                v = value.get((run, eval_set), {}).get(metric)
                cells.append("" if v is None else f"{v:.3f}" if v <= 1 else f"{v:.1f}")
            rows.append([self.names.get(run, run), *cells, *attack_cells.get(run, [""] * len(attack_names))])
        # explicit widths: the table is rebuilt often and must not depend on when Textual measures it
        table.header_height = (
            2  # a set's label: its group over its name; an attack's: the method over the figure
        )
        for index, name in enumerate(["run", *[f"{set_group[s]}\n{s}" for s in sets], *attack_names]):
            width = max(len(line) for line in name.split("\n"))
            table.add_column(name, width=max([width] + [len(r[index]) for r in rows]))
        for row in rows:
            table.add_row(*row)
        if sets:
            series = [
                (self.names.get(run, run), [float(value.get((run, s), {}).get(metric) or 0.0) for s in sets])
                for run in runs
            ]
            self.query_one(BarChart).set_data(metric, sets, series)
        else:  # attacks only: the accuracies of the table, clean and under each attack
            groups = [n.replace("\n", " ").strip() for n in attack_names if not n.endswith("#Q")]
            picked = [row for row in self.attacks if row["run_id"] in chosen]
            series = [
                (
                    f"{self.run_name(row)} {row['dataset']}"
                    if len(self.attack_sets) > 1
                    else self.run_name(row),
                    values,
                )
                for row in picked
                for values in [self.accuracies(row)]
            ]
            self.query_one(BarChart).set_data("%", groups, series, title="Clean% and Aua% by attack")

    def run_name(self, row: dict[str, Any]) -> str:
        return self.names.get(row["run_id"], row["run_id"])

    @property
    def attack_sets(self) -> list[str]:
        return list(dict.fromkeys(row["dataset"] for row in self.attacks))

    def accuracies(self, row: dict[str, Any]) -> list[float]:
        """Clean% and each method's Aua% of one attack_table row (0 where missing), for the chart."""
        values = table3_values(row, attack_methods(self.attacks))
        return [float(v or 0.0) for v in values[0:1] + values[1::2]]

    def attack_columns(self, runs: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        """Column labels (two lines: what, then the figure) and each run's cells, most important first so that
        80 columns show them: Clean%, each method's Aua%, then each method's #Q; per attacked dataset, named in
        the label only when there are several."""
        methods = attack_methods(self.attacks)
        if not self.attacks:
            return [], {}
        # positions in table3_values: 0 Clean%, 1 + 2k method k's Aua%, 2 + 2k its #Query
        order = [0] + [1 + 2 * k for k in range(len(methods))] + [2 + 2 * k for k in range(len(methods))]
        labels = ["\nClean%"] + [f"{m}\nAua%" for m in methods] + [f"{m}\n#Q" for m in methods]
        datasets = self.attack_sets
        columns = [
            f"{d} {label.lstrip()}" if len(datasets) > 1 else label for d in datasets for label in labels
        ]
        cells: dict[str, list[str]] = {}
        for run in runs:
            per_set = {row["dataset"]: row for row in self.attacks if row["run_id"] == run}
            if not per_set:
                continue
            cells[run] = []
            for d in datasets:
                values = table3_values(per_set[d], methods) if d in per_set else [None] * len(order)
                cells[run] += ["" if values[i] is None else f"{values[i]:.1f}" for i in order]
        return columns, cells
