"""The base of the app's modal screens (forms, help): escape cancels, worker errors go to the app's handler; and a
yes/no question (quit, cancel a job) that answers True only on an explicit yes."""

from __future__ import annotations

from typing import TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker

T = TypeVar("T")


class BaseModal(ModalScreen[T]):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="modal.cancel")]

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # type: ignore[attr-defined]


class ConfirmModal(BaseModal[bool]):
    """`question` with y / n: `y` answers True; `n`, escape and `q` answer False (a stray key never confirms)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape,q", "answer(False)", "No", id="confirm.no"),
    ]
    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical { width: 60; max-width: 100%; height: auto; border: round $warning;
                              background: $surface; padding: 0 1; }
    ConfirmModal #confirm-keys { color: $text-muted; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="confirm-question", markup=False)
            yield Static("y yes   n / escape no", id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
