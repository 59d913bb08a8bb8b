"""Case studies: per region, a seeded sample of representative examples (nearest the region's centre, or random)
with their tags; exported to Markdown (every region, or the one under the cursor), a new file each time, named by
run, region and time, saying whether the run was complete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.bounds import fitted_map_bounds
from engine.analysis.cases import (
    case_studies,
    case_studies_markdown,
    export_path,
    run_completeness,
    tags_text,
)
from engine.analysis.regions import Bounds
from engine.analysis.runs import get_run, latest_run_with_metrics, run_label
from storage.artifacts import write_new_file
from tui_app.screens.base import BaseScreen
from tui_app.widgets import fill_table

CASE_COLUMNS = ["region", "#", "example", "conf", "var", "correct", "tags", "text"]


@dataclass
class CasesLoaded(Message):
    run: dict[str, Any] | None
    studies: dict[str, list[dict[str, Any]]]


@dataclass
class CasesExported(Message):
    path: Path


class CasesScreen(BaseScreen):
    TITLE_TEXT = "case studies"
    BINDINGS = [
        Binding("enter", "open", "Open", id="cases.open"),
        Binding("m", "mode", "Centre/random", id="cases.mode"),
        Binding("s", "reseed", "New seed", id="cases.seed"),
        Binding("plus,equals_sign", "size(1)", "More", id="cases.more"),
        Binding("minus", "size(-1)", "Fewer", id="cases.fewer"),
        Binding("e", "export", "Export .md", id="cases.export"),
        Binding("x", "export_region", "Export region", id="cases.export_region"),
    ]
    DEFAULT_CSS = """
    CasesScreen #cases-title { height: 1; padding: 0 1; background: $boost; }
    CasesScreen DataTable { height: 1fr; }
    """

    def __init__(
        self,
        run_id: str | None = None,
        kind: str = "cartography",
        bounds: Bounds | None = None,
        per_region: int = 5,
        mode: str = "centre",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.run_id, self.kind = run_id, kind
        self.given_bounds = bounds  # None: the run's fitted boundaries (engine.analysis.bounds)
        self.bounds = bounds or Bounds()
        self.per_region, self.mode, self.seed = per_region, mode, seed
        self.run: dict[str, Any] | None = None
        self.studies: dict[str, list[dict[str, Any]]] = {}
        self.last_export: Path | None = None
        self.exports: list[Path] = []  # every file this screen wrote, in order

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="cases-title")
        yield DataTable(id="cases", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        fill_table(table, CASE_COLUMNS, [])
        table.focus()
        self.load()

    def describe(self) -> str:
        how = "nearest the centre" if self.mode == "centre" else f"random, seed {self.seed}"
        return f"{self.per_region} per region, {how}"

    @work(thread=True, exclusive=True, group="cases", exit_on_error=False)
    def load(self) -> None:
        with self.catalog(do_sync=True) as con:
            run_id = self.run_id or latest_run_with_metrics(con)
            run = get_run(con, run_id) if run_id else None
            if run is None:
                self.post_message(CasesLoaded(None, {}))
                return
            kind = self.kind if run["n_adv"] else "cartography"
            self.kind = kind
            if self.given_bounds is None:
                self.bounds = fitted_map_bounds(con, run["run_id"])
            studies = case_studies(
                con, run["run_id"], run["dataset"], kind, self.bounds, self.per_region, self.mode, self.seed
            )
        self.post_message(CasesLoaded(run, studies))

    def on_cases_loaded(self, message: CasesLoaded) -> None:
        title = self.query_one("#cases-title", Static)
        if message.run is None:
            title.update("no run with per-example metrics yet")
            return
        self.run, self.studies = message.run, message.studies
        self.run_id = message.run["run_id"]
        running = "" if message.run.get("status") == "done" else f" ({message.run.get('status')})"
        title.update(
            f"run {run_label(message.run)}{running} · {self.kind} · {self.bounds.describe(self.kind)} · "
            f"{self.describe()}"
        )
        rows: list[tuple[str | None, list[str]]] = []
        for region, found in message.studies.items():
            for row in found:
                text = " ".join(str(row["text"]).split())
                rows.append(
                    (
                        f"{region}\t{row['example_id']}",
                        [
                            region,
                            str(row["rnk"]),
                            str(row["example_id"]),
                            f"{row['confidence']:.3f}",
                            f"{row['variability']:.3f}",
                            f"{row['correctness']:.2f}",
                            tags_text(row.get("annotations") or [])[:24],
                            text[:60],
                        ],
                    )
                )
        fill_table(self.query_one(DataTable), CASE_COLUMNS, rows, max_width=60)

    def action_mode(self) -> None:
        self.mode = "random" if self.mode == "centre" else "centre"
        self.load()

    def action_reseed(self) -> None:
        self.mode = "random"
        self.seed += 1
        self.load()

    def action_size(self, delta: int) -> None:
        self.per_region = max(1, min(50, self.per_region + delta))
        self.load()

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if self.run is None or table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key:
            self.app.open_detail(self.run["dataset"], str(key).split("\t", 1)[1], self.run_id)  # type: ignore[attr-defined]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_export(self) -> None:
        """Every region's case studies into one new file."""
        if self.run is None:
            return
        self.export(self.run, self.studies, f"all-{self.kind}")

    def action_export_region(self) -> None:
        """The case studies of the region under the cursor into a new file."""
        table = self.query_one(DataTable)
        if self.run is None or table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        region = str(key).split("\t", 1)[0]
        self.export(self.run, {region: self.studies.get(region, [])}, region)

    @work(thread=True, group="cases-export", exit_on_error=False)
    def export(self, run: dict[str, Any], studies: dict[str, list[dict[str, Any]]], region: str) -> None:
        now = datetime.now(timezone.utc)
        text = case_studies_markdown(
            run["run_id"],
            run["dataset"],
            self.kind,
            self.bounds,
            self.mode,
            self.seed,
            studies,
            name=run.get("name"),
            completeness=run_completeness(self.ws, run),  # as the run's events say now
            exported_at=now,
        )
        path = write_new_file(export_path(self.ws, run, region, now), text.encode())
        self.post_message(CasesExported(path))

    def on_cases_exported(self, message: CasesExported) -> None:
        self.last_export = message.path
        self.exports.append(message.path)
        self.notify(f"case studies written to {message.path}", timeout=6)
