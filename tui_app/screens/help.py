"""`?`: the keys of the screen it was opened from, with the binding ids used for remapping."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui_app.config import config_path
from tui_app.screens.modal import BaseModal
from tui_app.widgets import fill_table


def screen_keys(screen: Screen[Any]) -> list[tuple[str, str, str]]:
    """(key, description, binding id) of every binding active on the screen, the app's included: the screen's own
    keys first, then those of the focused widget, then the keys every screen shares (back, help, quit)."""
    # the screen's own: declared by its class itself, not inherited from the base every screen shares
    own_ids = {b.id for b in type(screen).__dict__.get("BINDINGS", []) if isinstance(b, Binding)}
    grouped: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if not binding.description or binding.system:
            continue
        if active.node is screen and binding.id in own_ids:
            rank = 0
        elif active.node is screen or active.node is screen.app:
            rank = 2
        else:
            rank = 1  # the focused widget's
        label = screen.app.get_key_display(binding)
        _, keys = grouped.setdefault((binding.description, binding.id or ""), (rank, []))
        if label not in keys:
            keys.append(label)
    ordered = sorted(grouped.items(), key=lambda item: item[1][0])  # stable: each group keeps its own order
    return [(" ".join(keys), description, ident) for (description, ident), (_, keys) in ordered]


class HelpScreen(BaseModal[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_none", "Close", id="help.close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 76; max-width: 100%; height: auto; max-height: 90%; border: round $accent;
                            background: $surface; padding: 0 1; }
    HelpScreen DataTable { height: auto; max-height: 24; }
    """

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.rows = screen_keys(screen)
        self.title_text = f"Keys: {type(screen).__name__.replace('Screen', '')}"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"[b]{self.title_text}[/b]  (ctrl+p: every command)")
            table: DataTable[str] = DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)
            fill_table(table, ["key", "action", "id (remap in config)"], [(None, list(r)) for r in self.rows])
            yield table
            yield Static(
                f"remap keys in {config_path()}, table [keymap]: id = key", markup=False, classes="dim"
            )
