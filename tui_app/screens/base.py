"""What every screen shares: back / help / search keys, the workspace, and one-unit-of-work catalog access."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import duckdb
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker

from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace

T = TypeVar("T")
_noted_read_only: set[str] = set()  # workspaces the app said were read-only (once per process)


class BaseScreen(Screen[None]):
    """`q`/`escape` back, `?` help, `/` search; subclasses add their own keys (each binding has an id)."""

    BINDINGS = [
        Binding("q,escape", "back", "Back", id="nav.back"),
        Binding("question_mark", "help", "Help", id="nav.help"),
        Binding("slash", "search", "Search", id="nav.search", show=False),
    ]
    TITLE_TEXT = "dynascope"

    @property
    def ws(self) -> Workspace:
        return self.app.workspace  # type: ignore[attr-defined,no-any-return]

    @contextmanager
    def catalog(self, do_sync: bool = False, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the catalog for one unit of work (call from a worker thread), optionally syncing first. A read
        (not `write`) on an unwritable workspace opens it read-only, unsynced, and says so once."""
        with open_catalog(self.ws, read_only_ok=not write) as con:
            if do_sync:
                report = sync(self.ws, con)
                if report.read_only and str(self.ws.root) not in _noted_read_only:
                    _noted_read_only.add(str(self.ws.root))
                    self.app.notify(  # thread-safe
                        f"the workspace {self.ws.root} is not writable: showing the catalog as it is",
                        severity="warning",
                        timeout=8,
                        markup=False,
                    )
            yield con

    def with_catalog(self, fn: Callable[..., T], *args: Any, do_sync: bool = False) -> T:
        with self.catalog(do_sync) as con:
            return fn(con, *args)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The screen's own sub-title (Screen.SUB_TITLE, set before the header is composed): the header names the
        # screen on top, and the one below again once it closes (an app-wide sub-title kept the closed one's).
        super().__init_subclass__(**kwargs)
        cls.SUB_TITLE = cls.TITLE_TEXT

    def on_mount(self) -> None:
        """Subclasses call this first (kept as the place for what every screen does on mount)."""

    painted_at = 0.0  # perf_counter() when the screen's latest data was on screen (bench/tui.py reads it)

    def mark_painted(self) -> None:
        self.painted_at = time.perf_counter()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: every screen hands its workers' endings to the app's one handler.
        self.app.on_worker_state_changed(event)  # type: ignore[attr-defined]

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:  # the bottom screen: `q` there quits, and one stray key must not end the session
            from tui_app.screens.confirm import ConfirmModal

            def answered(yes: bool | None) -> None:
                if yes:
                    self.app.exit()

            self.app.push_screen(ConfirmModal("Quit dynascope? (running jobs go on)"), answered)

    def action_help(self) -> None:
        from tui_app.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self))

    def action_search(self) -> None:
        self.notify("no search on this screen", timeout=2)
