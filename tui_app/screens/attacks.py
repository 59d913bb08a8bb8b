"""Attacks: every attack job's figures (Clean%, Aua%, success rate, #Query) and, for the highlighted one, its
per-example results with the changed words highlighted in the perturbed text (engine.analysis.attacks). A QA
attack (negation, entity-rename) shows its context from just before the change, EM / F1 before and after in
the title, and per example the question, the gold answers before and after, F1, or why it was not attacked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.attacks import (
    QA_METHODS,
    around_change,
    attack_examples,
    list_attacks,
    marked_segments,
    statuses_of,
)
from engine.analysis.format import fmt_value
from tui_app.screens.base import BaseScreen

CHANGED = "bold reverse"


def highlighted(text: str, changed: list[int] | None) -> Text:
    """The text with its changed words in reverse video."""
    out = Text()
    for part, is_changed in marked_segments(text, changed):
        out.append(part, style=CHANGED if is_changed else "")
    return out


@dataclass
class AttacksLoaded(Message):
    rows: list[dict[str, Any]]


@dataclass
class AttackExamplesLoaded(Message):
    run_id: str
    rows: list[dict[str, Any]]


class AttacksScreen(BaseScreen):
    TITLE_TEXT = "attacks"
    BINDINGS = [
        Binding("s", "status", "Status filter", id="attacks.status"),
        Binding("r", "refresh", "Refresh", id="attacks.refresh"),
    ]
    DEFAULT_CSS = """
    AttacksScreen #attacks-title { height: 1; padding: 0 1; background: $boost; }
    AttacksScreen #attacks { height: auto; max-height: 10; }
    AttacksScreen #attack-examples { height: 1fr; }
    AttacksScreen #attack-detail { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary; }
    """

    def __init__(self, run_id: str | None = None) -> None:
        super().__init__()
        self.attacks: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []
        self.chosen = run_id
        self.status: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="attacks-title")
        yield DataTable(id="attacks", zebra_stripes=True, cursor_type="row")
        yield DataTable(id="attack-examples", zebra_stripes=True, cursor_type="row")
        yield Static("", id="attack-detail")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#attacks", DataTable)
        for name, width in (
            ("attack run", 30),
            ("method", 9),
            ("attacked run", 22),
            ("dataset", 10),
            ("n", 4),
            ("Clean%", 6),
            ("Aua%", 6),
            ("success", 7),
            ("#Query", 6),
        ):
            table.add_column(name, width=width)
        examples = self.query_one("#attack-examples", DataTable)
        for name, width in (
            ("example", 10),
            ("status", 9),
            ("before", 8),
            ("after", 8),
            ("queries", 7),
            ("perturbed text (changed words highlighted)", 80),
        ):
            examples.add_column(name, width=width)
        table.focus()
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="attacks", exit_on_error=False)
    def load(self) -> None:
        with self.catalog(do_sync=True) as con:
            rows = list_attacks(con)
        self.post_message(AttacksLoaded(rows))

    def on_attacks_loaded(self, message: AttacksLoaded) -> None:
        self.attacks = message.rows
        table = self.query_one("#attacks", DataTable)
        table.clear()
        for row in self.attacks:
            table.add_row(
                row["run_id"],
                row["method"],
                row["source_run"],
                row["dataset"],
                str(row["n_examples"]),
                pct(row["clean_accuracy"]),
                pct(row["aua"]),
                pct(row["success_rate"]),
                fmt_value(row["avg_queries"], 1) if row["avg_queries"] is not None else "-",
                key=row["run_id"],
            )
        ids = [r["run_id"] for r in self.attacks]
        if not ids:
            self.query_one("#attacks-title", Static).update(
                "no attacks yet: `dynascope attack`, or n on the jobs screen (kind attack)"
            )
            self.mark_painted()
            return
        if self.chosen not in ids:
            self.chosen = ids[-1]
        table.move_cursor(row=ids.index(self.chosen))
        self.load_examples(self.chosen, self.status)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "attacks" and event.row_key.value and event.row_key.value != self.chosen:
            self.chosen = str(event.row_key.value)
            self.load_examples(self.chosen, self.status)
        elif event.data_table.id == "attack-examples":
            self.show_detail(event.cursor_row)

    @work(thread=True, exclusive=True, group="attack-examples", exit_on_error=False)
    def load_examples(self, run_id: str, status: str | None) -> None:
        with self.catalog() as con:
            rows = attack_examples(con, run_id, status)
        self.post_message(AttackExamplesLoaded(run_id, rows))

    def on_attack_examples_loaded(self, message: AttackExamplesLoaded) -> None:
        if message.run_id != self.chosen:
            return
        self.examples = message.rows
        table = self.query_one("#attack-examples", DataTable)
        table.clear()
        for row in self.examples:
            if row["status"] == "unattackable":
                shown = Text(f"not attacked: {row['reason']}", style="dim")
            else:
                shown = highlighted(*around_change(row["perturbed_text"] or "", row["changed_words"]))
            table.add_row(
                row["example_id"],
                row["status"],
                row["prediction_before"],
                row["prediction_after"] if row["prediction_after"] is not None else "-",
                str(row["queries"]),
                shown,
            )
        attack = self.chosen_attack()
        figures = ""
        if attack is not None and attack["f1"] is not None:
            figures = (
                f"EM {pct(attack['clean_accuracy'])} -> {pct(attack['aua'])}, "
                f"F1 {pct(attack['clean_f1'])} -> {pct(attack['f1'])}, "
                f"{attack['n_unattackable']} unattackable; "
            )
        self.query_one("#attacks-title", Static).update(
            f"{message.run_id}: {figures}{len(self.examples)} example(s), status {self.status or 'all'} "
            "(s next status, r refresh)"
        )
        self.show_detail(0)
        self.mark_painted()

    def show_detail(self, index: int) -> None:
        detail = self.query_one("#attack-detail", Static)
        if not 0 <= index < len(self.examples):
            detail.update("")
            return
        row = self.examples[index]
        attack = self.chosen_attack()
        if attack is not None and attack["method"] in QA_METHODS:
            detail.update(qa_detail(row))
            return
        text = Text()
        text.append(f"{row['example_id']}  {row['status']}  ", style="bold")
        text.append(f"{row['prediction_before']} -> {row['prediction_after']}, {row['queries']} queries")
        if row.get("similarity") is not None:
            text.append(f", similarity {row['similarity']:.3f}")
        text.append("\noriginal:  ")
        text.append(highlighted(row["text"] or "", row["changed_words"]))
        text.append("\nperturbed: ")
        text.append(highlighted(row["perturbed_text"] or "", row["changed_words"]))
        detail.update(text)

    def chosen_attack(self) -> dict[str, Any] | None:
        return next((a for a in self.attacks if a["run_id"] == self.chosen), None)

    def action_status(self) -> None:
        attack = self.chosen_attack()
        cycle: list[str | None] = [None, *statuses_of(attack["method"] if attack else None)]
        if self.status not in cycle:
            self.status = None
        self.status = cycle[(cycle.index(self.status) + 1) % len(cycle)]
        if self.chosen:
            self.load_examples(self.chosen, self.status)


def qa_detail(row: dict[str, Any]) -> Text:
    """One QA attack row: the question, the gold answers and predictions before and after with their F1, and
    the context around the change before and after (or why the example was not attacked)."""

    def golds(value: str | None) -> str:
        answers = json.loads(value or "[]")
        return " | ".join(a["text"] for a in answers) if answers else "(no answer)"

    text = Text()
    text.append(f"{row['example_id']}  {row['status']}  ", style="bold")
    text.append(f"Q: {row['text_pair']}")
    text.append(f"\nbefore: gold {golds(row['answers'])}; predicted {row['prediction_before']!r}")
    text.append(f", F1 {fmt_value(row['f1_before'])}")
    if row["status"] == "unattackable":
        text.append(f"\nnot attacked: {row['reason']}", style="dim")
        return text
    text.append(f"\nafter:  gold {golds(row['perturbed_answers'])}; predicted {row['prediction_after']!r}")
    text.append(f", F1 {fmt_value(row['f1_after'])}")
    text.append("\nattacked: ")
    text.append(highlighted(*around_change(row["perturbed_text"] or "", row["changed_words"])))
    return text


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
