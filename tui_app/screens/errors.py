"""Error analysis across adversarial variants (engine.analysis.error_analysis): per original question of an
evaluated adversarial set, the variants that fooled the run, how many answered from the inserted sentence, and
the map regions of the nearest training examples; the highlighted question's variants and neighbours below.
The nearest examples need the run's encoder, so the table is computed in a worker (a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.error_analysis import adversarial_evaluations
from tui_app.screens.base import BaseScreen


@dataclass
class ErrorsLoaded(Message):
    choices: list[tuple[str, str]]
    result: dict[str, Any] | None


class ErrorAnalysisScreen(BaseScreen):
    TITLE_TEXT = "error analysis"
    BINDINGS = [
        Binding("v", "next_set", "Next run/set", id="errors.next"),
        Binding("r", "refresh", "Refresh", id="errors.refresh"),
    ]
    DEFAULT_CSS = """
    ErrorAnalysisScreen #errors-title { height: auto; max-height: 2; padding: 0 1; background: $boost; }
    ErrorAnalysisScreen #errors { height: 1fr; }
    ErrorAnalysisScreen #errors-detail { height: auto; max-height: 9; padding: 0 1; border-top: solid $primary; }
    """

    def __init__(self, run_id: str | None = None, eval_set: str | None = None) -> None:
        super().__init__()
        self.chosen = (run_id, eval_set) if run_id and eval_set else None
        self.choices: list[tuple[str, str]] = []
        self.questions: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("computing the error analysis ...", id="errors-title")
        yield DataTable(id="errors", zebra_stripes=True, cursor_type="row")
        yield Static("", id="errors-detail")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#errors", DataTable)
        for name, width in (
            ("original", 24),
            ("right", 5),
            ("fooled", 6),
            ("inserted", 8),
            ("nearest", 9),
            ("easy/amb/hard", 13),
        ):
            table.add_column(name, width=width)
        table.focus()
        self.load(self.chosen)

    def action_refresh(self) -> None:
        self.load(self.chosen)

    def action_next_set(self) -> None:
        if len(self.choices) > 1 and self.chosen in self.choices:
            self.chosen = self.choices[(self.choices.index(self.chosen) + 1) % len(self.choices)]
            self.query_one("#errors-title", Static).update(
                f"computing {self.chosen[0]} on {self.chosen[1]} ..."
            )
            self.load(self.chosen)

    @work(thread=True, exclusive=True, group="errors", exit_on_error=False)
    def load(self, chosen: tuple[str, str] | None) -> None:
        from engine.evaluation.neighbours import error_analysis

        with self.catalog(do_sync=True) as con:
            choices = adversarial_evaluations(con)
        if chosen not in choices:
            chosen = choices[0] if choices else None
        result = error_analysis(self.ws, chosen[0], chosen[1]) if chosen else None
        self.post_message(ErrorsLoaded(choices, result))

    def on_errors_loaded(self, message: ErrorsLoaded) -> None:
        self.choices = message.choices
        title = self.query_one("#errors-title", Static)
        table = self.query_one("#errors", DataTable)
        table.clear()
        if message.result is None:
            title.update(
                "no evaluation on an adversarial set yet: dynascope eval RUN ADDSENT-SET (AddSent, AddOneSent)"
            )
            self.mark_painted()
            return
        result = message.result
        self.chosen = (result["run_id"], result["eval_set"])
        self.questions = result["questions"]
        for q in self.questions:
            regions = q["neighbour_regions"]
            table.add_row(
                q["original_id"],
                "yes" if q["correct"] else "no",
                f"{len(q['fooled'])}/{q['n_variants']}",
                str(q["from_inserted"]),
                q["nearest_region"] or "-",
                f"{regions['easy']}/{regions['ambiguous']}/{regions['hard']}",
            )
        s = result["summary"]
        title.update(
            f"{result['run_id']} on {result['eval_set']}: {s['n_fooled']} of {s['n_originals_right']} right "
            f"originals fooled; {s['n_fooled_from_inserted']} of {s['n_fooled_variants']} fooled variants answered "
            f"from the inserted sentence (v next of {len(self.choices)})"
        )
        self.show_detail(0)
        self.mark_painted()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail(event.cursor_row)

    def show_detail(self, index: int) -> None:
        detail = self.query_one("#errors-detail", Static)
        if not 0 <= index < len(self.questions):
            detail.update("")
            return
        q = self.questions[index]
        text = Text()
        text.append(f"{q['original_id']}  ", style="bold")
        text.append(
            f"Q: {q['question']}\ngold {' | '.join(q['golds']) or '(none)'}; predicted {q['prediction']!r}"
        )
        for v in q["variants"]:
            mark = "FOOLED " if v["fooled"] else ""
            where = {True: "from the inserted sentence", False: "from the original text", None: "-"}
            text.append(
                f"\n{v['example_id']}: {mark}predicted {v['prediction']!r} ({where[v['from_inserted']]})"
            )
        near = ", ".join(
            f"{n['example_id']} {n['region'] or '-'} {n['similarity']:.2f}" for n in q["neighbours"]
        )
        text.append(f"\nnearest training examples: {near}")
        detail.update(text)
