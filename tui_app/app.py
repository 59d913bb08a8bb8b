"""The dynascope app: home, data map, examples, example detail, case studies, jobs, compare and a SQL console.

Rules (DESIGN.md, "The terminal app"): heavy work runs in thread workers that post typed messages; the UI thread
only paints; the catalog is opened for one unit of work and closed (never held); a failed worker becomes a
notification, never a traceback on screen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.analysis.curves import latest_active_run
from engine.analysis.pages import ExampleFilter
from engine.analysis.regions import RANKING, Bounds
from storage.workspace import Workspace
from tui_app.config import Settings, load_settings
from tui_app.screens.attacks import AttacksScreen
from tui_app.screens.cases import CasesScreen
from tui_app.screens.compare import CompareScreen
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.errors import ErrorAnalysisScreen
from tui_app.screens.examples import ExamplesScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.jobs import JobsScreen
from tui_app.screens.runview import RunViewScreen
from tui_app.screens.sql import SqlScreen

__all__ = ["DynascopeApp", "HomeScreen"]


class DynascopeApp(App[None]):
    TITLE = "dynascope"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", show=False, priority=True),
        Binding("f1", "help", "Help", id="app.help", show=False),
    ]
    NOTIFICATION_TIMEOUT = 5

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings | None = None,
        config_path: Path | None = None,
        demo: bool = False,
    ) -> None:
        super().__init__()
        self.workspace = workspace
        self.demo = demo  # opened by `dynascope demo`: set the demo up in the background
        self.demo_status = ""  # what the demo setup last said (home shows it until it is replaced)
        self.demo_run: str | None = None
        self.settings = settings or load_settings(config_path)
        if not os.environ.get("TEXTUAL_ANIMATIONS"):
            self.animation_level = "none"  # over SSH every frame costs; nothing here needs motion
        self.sub_title = str(workspace.root)
        self.errors: list[str] = []

    def on_mount(self) -> None:
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self.settings.theme:
            if self.settings.theme in self.available_themes:
                self.theme = self.settings.theme
            else:
                self.notify(
                    f"unknown theme {self.settings.theme!r}; keeping {self.theme}", severity="warning"
                )
        for problem in self.settings.problems:
            self.notify(problem, severity="warning", timeout=8)
        self.push_screen(HomeScreen())
        if self.demo:
            self.set_up_demo()

    # ---- the demo: datasets imported and its run started while the app is already on screen -----------

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def set_up_demo(self) -> None:
        from engine.demo import start_demo

        try:
            self.demo_run = start_demo(
                self.workspace, log=lambda text: self.call_from_thread(self.demo_says, text)
            )
        except Exception as exc:
            self.call_from_thread(self.demo_says, f"demo setup failed: {exc or type(exc).__name__}")
            raise  # and the one handler notifies it

    def demo_says(self, text: str) -> None:
        self.demo_status = text.strip()
        for screen in self.screen_stack:
            if isinstance(screen, HomeScreen):
                screen.show_demo_status(self.demo_status)

    # ---- errors: one handler for every worker --------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker is reported (screens forward theirs here): a notification, never a
        traceback on screen, and the app goes on."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            text = str(error) or type(error).__name__
            self.errors.append(text)
            self.notify(text, title=type(error).__name__, severity="error", timeout=10, markup=False)

    # ---- navigation ----------------------------------------------------------------------------------

    def open_map(
        self, run_id: str | None = None, kind: str = "cartography", bounds: Bounds | None = None
    ) -> None:
        self.push_screen(DataMapScreen(run_id, kind, bounds))

    def open_examples(
        self,
        run_id: str | None = None,
        dataset: str | None = None,
        region: str | None = None,
        kind: str = "cartography",
        bounds: Bounds | None = None,
    ) -> None:
        if region is not None and run_id is not None:
            # most typical of the region first (engine.analysis.regions.RANKING: the order top-p% selections use)
            metric, order = RANKING.get(region, ("confidence", "ASC"))
            flt = ExampleFilter(
                dataset="",
                run_id=run_id,
                kind=kind,
                region=region,
                bounds=bounds or Bounds(),
                sort=metric,
                descending=order == "DESC",
            )
            self.push_screen(ExamplesScreen(flt))
        else:
            self.push_screen(ExamplesScreen(None, run_id=run_id, dataset=dataset))

    def open_detail(
        self,
        dataset: str,
        example_id: str,
        run_id: str | None = None,
        neighbour: Callable[[str, int], str | None] | None = None,
    ) -> None:
        """`neighbour(example_id, step)`: the example `step` rows away in the list it was opened from (j/k)."""
        self.push_screen(DetailScreen(dataset, example_id, run_id, neighbour))

    def open_cases(
        self, run_id: str | None = None, kind: str = "cartography", bounds: Bounds | None = None
    ) -> None:
        self.push_screen(CasesScreen(run_id, kind, bounds))

    def open_jobs(
        self, run_id: str | None = None, new: bool = False, preset: dict[str, Any] | None = None
    ) -> None:
        self.push_screen(JobsScreen(run_id, new=new, preset=preset))

    def open_run_view(self, run_ids: str | list[str] | None = None) -> None:
        """The live curves of a run, or of several runs overlaid; none given: the newest run."""
        if run_ids is None:
            run_ids = latest_active_run(self.workspace)
            if run_ids is None:
                self.notify("no runs yet: train one from the jobs screen (j, n)", timeout=4)
                return
        self.push_screen(RunViewScreen([run_ids] if isinstance(run_ids, str) else run_ids))

    def open_compare(self) -> None:
        self.push_screen(CompareScreen())

    def open_sql(self) -> None:
        self.push_screen(SqlScreen())

    def open_attacks(self, run_id: str | None = None) -> None:
        self.push_screen(AttacksScreen(run_id))

    def open_error_analysis(self, run_id: str | None = None, eval_set: str | None = None) -> None:
        self.push_screen(ErrorAnalysisScreen(run_id, eval_set))

    def go_home(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def action_help(self) -> None:
        action = getattr(self.screen, "action_help", None)
        if action is not None:
            action()

    # ---- command palette: every screen and the current screen's keys ---------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Home", "Back to the home screen", self.go_home)
        yield SystemCommand("Data map", "Confidence vs variability of the latest run", self.open_map)
        yield SystemCommand("Examples", "The examples table of the latest run", self.open_examples)
        yield SystemCommand("Case studies", "Representative examples per region", self.open_cases)
        yield SystemCommand("Jobs", "Running and finished jobs, with progress and logs", self.open_jobs)
        yield SystemCommand(
            "New job", "Launch train / retrain / evaluate / attack", lambda: self.open_jobs(new=True)
        )
        yield SystemCommand(
            "Run curves", "Live loss / accuracy / evaluation curves of the newest run", self.open_run_view
        )
        yield SystemCommand("Compare runs", "Runs x evaluation sets", self.open_compare)
        yield SystemCommand("SQL console", "Read-only SQL over the catalog", self.open_sql)
        yield SystemCommand(
            "Attacks", "Clean%, Aua%, #Query per attack; examples with the changed words", self.open_attacks
        )
        yield SystemCommand(
            "Error analysis",
            "Adversarial variants that fooled a run, spans from the inserted sentence, nearest training regions",
            self.open_error_analysis,
        )
        seen = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.system or binding.action in seen:
                continue
            if binding.action in ("back", "help", "search", "quit"):
                continue
            seen.add(binding.action)
            node = active.node

            def run(node: Any = node, action: str = binding.action) -> None:
                self.call_later(self.run_action, action, node)

            yield SystemCommand(
                f"{type(screen).__name__.replace('Screen', '')}: {binding.description}",
                f"key {self.get_key_display(binding)}",
                run,
            )
