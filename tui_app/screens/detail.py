"""One example: its text (for QA the question and the context with the gold answer and each epoch's predicted
span highlighted), its per-epoch trajectory, and the user's tags and notes (stored in `annotations`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Static

from engine.analysis.examples import (
    ExampleDetail,
    add_annotation,
    get_annotations,
    get_example,
    prediction_span,
)
from engine.analysis.pages import METRICS
from engine.analysis.provenance import Provenance, get_provenance
from tui_app.provenance_view import parent_text, provenance_text
from tui_app.screens.base import BaseScreen
from tui_app.widgets import TrajectoryPlot

SPAN_STYLES = [
    "black on magenta",
    "black on dodger_blue1",
    "black on yellow",
    "black on cyan",
    "black on orange1",
]
GOLD_STYLE = "bold black on green3"


@dataclass
class DetailLoaded(Message):
    detail: ExampleDetail
    provenance: Provenance | None = None  # a generated example's: its parent and how it was made


@dataclass
class AnnotationSaved(Message):
    annotations: list[dict[str, Any]]
    what: str
    example_id: str


def shown_epoch(epoch: int) -> int:
    """Epochs are stored from 0 (shards, events) and shown from 1, as the CLI prints them ("epoch 1 done")."""
    return int(epoch) + 1


def epoch_ranges(epochs: list[int]) -> str:
    """Stored epochs as the 1-based ranges a user reads: [0, 1, 2, 4] -> "1-3,5"."""
    epochs = [shown_epoch(e) for e in epochs]
    out, start, prev = [], None, None
    for e in sorted(epochs):
        if start is None:
            start = prev = e
        elif prev is not None and e == prev + 1:
            prev = e
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = e
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


def qa_context(detail: ExampleDetail) -> tuple[Text, Text]:
    """The context with the gold answer(s) and the predicted spans highlighted, and a legend."""
    context = str(detail.record.get("text_pair") or "")
    text = Text(context)
    legend = Text()
    spans: dict[tuple[int, int], list[int]] = {}
    misses: dict[str, list[int]] = {}
    for row in detail.trajectory:
        pred = row.get("prediction")
        span = prediction_span(pred, context)
        if span is None:
            if pred not in (None, ""):
                misses.setdefault(str(pred), []).append(int(row["epoch"]))
            continue
        spans.setdefault(span, []).append(int(row["epoch"]))
    for index, (span, epochs) in enumerate(sorted(spans.items(), key=lambda kv: min(kv[1]))):
        style = SPAN_STYLES[index % len(SPAN_STYLES)]
        text.stylize(style, span[0], span[1])
        legend.append(" pred ", style=style)
        legend.append(f" epoch {epoch_ranges(epochs)}: {context[span[0] : span[1]]!r}\n")
    for pred, epochs in misses.items():
        legend.append(f" pred  epoch {epoch_ranges(epochs)}: {pred!r} (not in the context)\n", style="italic")
    for answer in detail.answers:
        start = answer.get("answer_start")
        if isinstance(start, int) and start >= 0:
            text.stylize(GOLD_STYLE, start, start + len(str(answer.get("text", ""))))
    if detail.answers:
        legend.append(" gold ", style=GOLD_STYLE)
        legend.append(" " + "; ".join(dict.fromkeys(repr(a.get("text")) for a in detail.answers)) + "\n")
    elif detail.record.get("is_impossible"):
        legend.append(" gold: no answer (unanswerable)\n", style="italic")
    return text, legend


def metrics_line(metrics: dict[str, Any]) -> str:
    parts = []
    for name in METRICS:
        value = metrics.get(name)
        if value is not None:
            parts.append(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}")
    return "  ".join(parts)


def trajectory_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        mark = "✓" if row.get("correct") else "✗"
        prob = row.get("gold_prob")
        line = (
            f"epoch {shown_epoch(row['epoch'])}: gold p {prob:.3f} {mark}"
            if prob is not None
            else f"epoch {shown_epoch(row['epoch'])}"
        )
        if row.get("loss") is not None:
            line += f"  loss {row['loss']:.3f}"
        if row.get("adv_loss") is not None:
            line += f"  adv loss {row['adv_loss']:.3f}" + (
                " (attack flipped)" if row.get("adv_correct") is False else ""
            )
        pred = row.get("prediction")
        if pred is not None:
            pred = " ".join(str(pred).split())
            line += f"  pred {pred[:40]!r}"
        lines.append(line)
    return "\n".join(lines)


class DetailScreen(BaseScreen):
    TITLE_TEXT = "example"
    BINDINGS = [
        Binding("j,n", "step(1)", "Next example", id="detail.next"),
        Binding("k,p", "step(-1)", "Prev example", id="detail.previous"),
        Binding("t", "prompt('tag')", "Add tag", id="detail.tag"),
        Binding("a", "prompt('note')", "Add note", id="detail.note"),
    ]
    DEFAULT_CSS = """
    DetailScreen #head { height: auto; padding: 0 1; background: $boost; }
    DetailScreen #body-row { height: auto; }
    DetailScreen #body { width: 1fr; height: auto; padding: 1 1 0 1; }
    DetailScreen #parent { width: 1fr; height: auto; padding: 1 1 0 1; border-left: solid $panel; display: none; }
    DetailScreen #provenance { height: auto; padding: 0 1; border-top: solid $panel; display: none; }
    DetailScreen #legend { height: auto; padding: 0 1; }
    DetailScreen #traj-text { height: auto; padding: 0 1; color: $text-muted; }
    DetailScreen #notes { height: auto; padding: 1 1; }
    DetailScreen #prompt-box { height: auto; display: none; background: $boost; padding: 0 1; }
    DetailScreen #prompt-box.-active { display: block; }
    DetailScreen #prompt-label { height: 1; color: $text-muted; }
    DetailScreen #prompt { height: 3; }
    """

    def __init__(
        self,
        dataset: str,
        example_id: str,
        run_id: str | None = None,
        neighbour: Callable[[str, int], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.dataset, self.example_id, self.run_id = dataset, example_id, run_id
        self.neighbour = neighbour  # the list it was opened from: the example `step` rows away
        self.detail: ExampleDetail | None = None
        self.provenance: Provenance | None = None
        self.prompt_kind: str | None = None
        self.body_text = Text()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="scroll"):
            yield Static("loading ...", id="head")
            yield Static("", id="provenance")  # a generated example: how it was made, on the first screen
            with Horizontal(id="body-row"):  # ... and its parent beside it
                yield Static("", id="body")
                yield Static("", id="parent")
            yield Static("", id="legend")
            yield TrajectoryPlot(id="trajectory")
            yield Static("", id="traj-text")
            yield Static("", id="notes")
        with Vertical(id="prompt-box"):  # above the footer, never under it: what is typed is seen
            yield Static("", id="prompt-label")
            yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#scroll").focus()
        self.load()

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def load(self) -> None:
        with self.catalog(do_sync=True) as con:
            detail = get_example(con, self.ws, self.dataset, self.example_id, self.run_id)
            provenance = get_provenance(con, self.dataset, self.example_id)
        self.post_message(DetailLoaded(detail, provenance))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        detail = self.detail = message.detail
        record = detail.record
        head = Text()
        head.append(f"{detail.dataset} / {detail.example_id}", style="bold")
        if detail.run_id:
            head.append(f"   run {detail.run_id}")
        if record.get("label_name") is not None or record.get("label") is not None:
            head.append(f"   gold label: {record.get('label_name') or record.get('label')}")
        if record.get("title"):
            head.append(f"   title: {record['title']}")
        if detail.metrics:
            head.append("\n" + metrics_line(detail.metrics), style="dim")
        self.query_one("#head", Static).update(head)
        body = Text()
        legend = Text()
        if detail.task == "qa":
            body.append("question: ", style="bold")
            body.append(str(record.get("text") or "") + "\n\n")
            context, legend = qa_context(detail)
            body.append("context: ", style="bold")
            body.append_text(context)
        else:
            body.append(str(record.get("text") or ""))
            if record.get("text_pair"):
                body.append("\n\n")
                body.append(str(record["text_pair"]))
            preds = [(int(r["epoch"]), r.get("prediction")) for r in detail.trajectory]
            if preds:
                legend.append("predicted: " + "  ".join(f"epoch {shown_epoch(e)}={p}" for e, p in preds))
        self.body_text = body
        if message.provenance is not None:  # beside its parent: say which side is which
            body = Text.assemble(("generated example\n", "bold"), body)
        self.query_one("#body", Static).update(body)
        self.show_provenance(message.provenance)
        self.query_one("#legend", Static).update(legend)
        plot = self.query_one(TrajectoryPlot)
        plot.display = bool(detail.trajectory)
        plot.set_trajectory(detail.trajectory)
        traj = (
            trajectory_table(detail.trajectory)
            if detail.trajectory
            else (
                "no training dynamics for this example" + ("" if detail.run_id else " (open it from a run)")
            )
        )
        self.query_one("#traj-text", Static).update(traj)
        self.show_annotations(detail.annotations)

    def show_provenance(self, provenance: Provenance | None) -> None:
        """A generated example: its parent beside it, and how it was made under both."""
        self.provenance = provenance
        parent = self.query_one("#parent", Static)
        panel = self.query_one("#provenance", Static)
        parent.display = panel.display = provenance is not None
        if provenance is not None:
            parent.update(parent_text(provenance))
            panel.update(provenance_text(provenance))

    def show_annotations(self, annotations: list[dict[str, Any]]) -> None:
        tags = sorted({a["tag"] for a in annotations if a.get("tag")})
        notes = [a for a in annotations if a.get("note")]
        text = Text()
        text.append("tags: ", style="bold")
        text.append(", ".join(tags) if tags else "(none: t adds one)")
        text.append("\nnotes:", style="bold")
        if not notes:
            text.append(" (none: a adds one)")
        for note in notes:
            text.append(f"\n  {note['created']}  {note['note']}")
        self.query_one("#notes", Static).update(text)

    # ---- annotations ---------------------------------------------------------------------------------

    def action_step(self, step: int) -> None:
        """The next (1) / previous (-1) example of the list this detail was opened from."""
        if self.neighbour is None:
            self.notify("opened outside a list: no next / previous example", timeout=3)
            return
        key = self.neighbour(self.example_id, step)
        if key is None:
            self.notify("the end of the list" if step > 0 else "the start of the list", timeout=2)
            return
        self.example_id = key
        self.query_one("#head", Static).update(f"loading {key} ...")
        self.query_one("#scroll", VerticalScroll).scroll_home(animate=False)
        self.load()

    def action_prompt(self, kind: str) -> None:
        self.prompt_kind = kind
        self.query_one("#prompt-label", Static).update(
            f"{'tag' if kind == 'tag' else 'note'} for {self.example_id}: enter saves, escape cancels"
        )
        prompt = self.query_one("#prompt", Input)
        prompt.placeholder = "e.g. label-noise" if kind == "tag" else "a note"
        prompt.value = ""
        self.query_one("#prompt-box").add_class("-active")
        prompt.focus()

    def close_prompt(self) -> None:
        self.prompt_kind = None
        self.query_one("#prompt-box").remove_class("-active")
        self.query_one("#scroll").focus()

    def action_back(self) -> None:
        if self.prompt_kind is not None:
            self.close_prompt()
            return
        super().action_back()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        kind = self.prompt_kind
        value = event.value.strip()
        self.close_prompt()
        if kind and value:
            self.save(kind, value, self.example_id)

    @work(thread=True, exclusive=False, group="annotate", exit_on_error=False)
    def save(self, kind: str, value: str, example_id: str) -> None:
        with self.catalog(write=True) as con:
            add_annotation(
                con,
                self.dataset,
                example_id,
                tag=value if kind == "tag" else None,
                note=value if kind == "note" else None,
            )
            annotations = get_annotations(con, self.dataset, example_id)
        self.post_message(AnnotationSaved(annotations, f"{kind} saved on {example_id}: {value}", example_id))

    def on_annotation_saved(self, message: AnnotationSaved) -> None:
        if message.example_id == self.example_id:  # not an example stepped away from meanwhile
            self.show_annotations(message.annotations)
        self.notify(message.what, timeout=3)
