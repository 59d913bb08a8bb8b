"""The base of the app's modal screens (forms, help): escape cancels, worker errors go to the app's handler; and a
yes/no question (quit, cancel a job) that answers True only on an explicit yes."""

from __future__ import annotations

from typing import TypeVar

from textual.binding import Binding
from textual.screen import ModalScreen
from textual.worker import Worker

T = TypeVar("T")


class BaseModal(ModalScreen[T]):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="modal.cancel")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # type: ignore[attr-defined]
