"""The dynascope app: a home screen listing the workspace's datasets (more screens grow from here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from storage.catalog import open_catalog
from storage.datasets import list_datasets
from storage.sync import sync
from storage.workspace import Workspace


@dataclass
class DatasetsLoaded(Message):
    datasets: list[dict[str, Any]]


class HomeScreen(Screen[None]):
    BINDINGS = [Binding("r", "refresh", "Refresh", id="home.refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Datasets", classes="section-title")
        yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#datasets", DataTable)
        table.add_columns("name", "task", "examples", "source")
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_datasets()

    @work(thread=True, exclusive=True, group="home")
    def load_datasets(self) -> None:
        ws: Workspace = self.app.workspace  # type: ignore[attr-defined]
        with open_catalog(ws) as con:
            sync(ws, con)
            items = list_datasets(con)
        self.post_message(DatasetsLoaded(items))

    def on_datasets_loaded(self, message: DatasetsLoaded) -> None:
        table = self.query_one("#datasets", DataTable)
        table.clear()
        for item in message.datasets:
            table.add_row(item["name"], item["task"], f"{item['n_examples']:,}", item["source"], key=item["name"])
        count = len(message.datasets)
        hint = "" if count else "  (import one: dynascope import FILE --name NAME)"
        self.query_one("#status", Static).update(f"{count} dataset(s){hint}")


class DynascopeApp(App[None]):
    TITLE = "dynascope"
    CSS = """
    .section-title { padding: 0 1; text-style: bold; }
    #status { padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [Binding("q", "quit", "Quit", id="app.quit")]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        self.sub_title = str(workspace.root)

    def on_mount(self) -> None:
        self.push_screen(HomeScreen())

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.notify(str(event.worker.error), title="error", severity="error", timeout=8)
