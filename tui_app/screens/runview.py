"""The run view: live training curves of one run, or of several runs overlaid (from compare), read from the run
folders (engine.analysis.curves; never the catalog, so a run still training is drawn as it goes).

One run: loss per step (binned to the plot's width) with each epoch's mean training loss; batch accuracy per step
with each epoch's training accuracy and the chosen per-epoch metric (`m` cycles through them: evaluation metrics
when the run scores its --eval sets each epoch or at its end, adversarial ones when recorded); below, the per-epoch
table. Several runs: each run's loss per step, and each run's chosen metric, one colour per run; below, the
settings in which the runs differ. The screen polls the folders about once a second while a run trains.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import Resize
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.curves import Curve, RunCurves, differing_settings, downsample
from engine.analysis.format import fmt_duration
from tui_app.screens.base import BaseScreen
from tui_app.widgets import Plot, fill_table

POLL_S = 1.0
STEP_ACCURACY = "accuracy/step"


class CurvePlot(Plot):
    """Lines (x in epochs) and per-epoch points; each line binned to at most two points per cell of the plot's
    width (braille draws two columns a cell), so a long run costs what a short one does to draw."""

    DEFAULT_CSS = """
    CurvePlot { height: 1fr; min-height: 7; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title_text = ""
        self.lines: list[Curve] = []
        self.points: list[Curve] = []
        self.empty_text = "no data yet"

    def set_curves(self, title: str, lines: list[Curve], points: list[Curve], empty_text: str) -> None:
        self.title_text, self.lines, self.points, self.empty_text = title, lines, points, empty_text
        self.replot()

    def on_resize(self, event: Resize) -> None:
        self.replot()  # the binning follows the width

    def max_points(self) -> int:
        return max(8, 2 * (self.size.width or 40))

    def drawn(self) -> list[tuple[str, list[float], list[float]]]:
        """What the plot draws: (label, x, y) of every line after binning, then of every set of points."""
        out = []
        for curve in self.lines:
            x, y = downsample(curve.x, curve.y, self.max_points())
            out.append((curve.label, x, y))
        for curve in self.points:
            out.append((curve.label, curve.x, curve.y))
        return out

    def draw(self, plt: Any) -> None:
        drawn = [d for d in self.drawn() if d[1]]
        plt.title(self.title_text if drawn else f"{self.title_text}: {self.empty_text}")
        plt.xlabel("epoch")
        n_lines = sum(1 for c in self.lines if c.x)
        for index, (label, x, y) in enumerate(drawn):
            if index < n_lines:
                plt.plot(x, y, marker="braille", label=label)
            else:
                plt.scatter(x, y, marker="●", label=label)


@dataclass
class CurvesPolled(Message):
    """What the screen shows, built from the runs' folders in a worker (the UI thread only paints)."""

    title: str
    loss_lines: list[Curve]
    loss_points: list[Curve]
    metric_lines: list[Curve]
    metric_points: list[Curve]
    metric_choices: list[str]
    table_columns: list[str]
    table_rows: list[list[str]]
    running: bool
    changed: bool
    summaries: list[str] = field(default_factory=list)
    metric: str | None = None  # the per-epoch metric on the right-hand plot


class RunViewScreen(BaseScreen):
    TITLE_TEXT = "run view"
    BINDINGS = [
        Binding("m", "metric", "Metric", id="runview.metric"),
        Binding("r", "refresh", "Refresh", id="runview.refresh", show=False),
    ]
    DEFAULT_CSS = """
    RunViewScreen #run-title { height: auto; max-height: 3; padding: 0 1; background: $boost; }
    RunViewScreen #plots { height: 2fr; min-height: 8; }
    RunViewScreen #run-table { height: 1fr; min-height: 4; }
    """

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = list(dict.fromkeys(run_ids))
        self.curves: list[RunCurves] = []
        self.metric: str | None = None
        self.choices: list[str] = []
        self.last: CurvesPolled | None = None
        self.polls = 0  # polls painted (tests wait on it)
        # a worker replaced by a newer one (exclusive) still runs to its end: one reader of the folders at a time
        self.reading = threading.Lock()

    @property
    def several(self) -> bool:
        return len(self.run_ids) > 1

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading ...", id="run-title")
        with Horizontal(id="plots"):
            yield CurvePlot(id="loss-plot")
            yield CurvePlot(id="metric-plot")
        yield DataTable(id="run-table", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.curves = [RunCurves(self.ws, run_id) for run_id in self.run_ids]
        self.query_one(DataTable).focus()
        self.poll_runs(self.metric, force=True)
        self.set_interval(POLL_S, self.poll)

    def poll(self) -> None:
        """The timer's poll: painted again only when a run's files changed."""
        self.poll_runs(self.metric, force=False)

    def action_refresh(self) -> None:
        self.poll_runs(self.metric, force=True)

    def action_metric(self) -> None:
        if self.choices:
            index = self.choices.index(self.metric) + 1 if self.metric in self.choices else 0
            self.metric = self.choices[index % len(self.choices)]
            self.poll_runs(self.metric, force=True)

    # ---- reading (worker thread) ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="runview-poll", exit_on_error=False)
    def poll_runs(self, metric: str | None, force: bool = True) -> None:
        with self.reading:
            changed = False
            for curves in self.curves:
                if curves.running or not curves.config:  # a finished run's files no longer change
                    changed = curves.poll() or changed
            if not (changed or force or self.last is None):
                return
            message = self.build(metric, changed)
        self.post_message(message)

    def metric_choices(self) -> list[str]:
        names: list[str] = []
        for curves in self.curves:
            names += [n for n in curves.epoch_metric_names() if n not in names]
        evals = [n for n in names if n.startswith("eval/")]
        others = [n for n in names if not n.startswith("eval/")]
        if self.several:
            return evals + others + [STEP_ACCURACY]
        # one run: its loss and training accuracy are drawn anyway; the choice adds a third curve
        return evals + [n for n in others if n not in ("train_loss", "train_accuracy")]

    def build(self, metric: str | None, changed: bool) -> CurvesPolled:
        choices = self.metric_choices()
        if metric not in choices:
            metric = choices[0] if choices else None
        several = self.several
        width = self.query_one("#loss-plot", CurvePlot).max_points()  # binned here, off the UI thread
        # a run from before the step log (no steps.jsonl): its epoch means stand in for its steps when overlaid
        loss_lines = [
            c.step_curve("loss", width) if c.n_steps or not several else c.epoch_curve("train_loss")
            for c in self.curves
        ]
        loss_points = [] if several else [c.epoch_curve("train_loss") for c in self.curves]
        metric_lines: list[Curve] = []
        metric_points: list[Curve] = []
        if several:
            for c in self.curves:
                if metric == STEP_ACCURACY:
                    metric_lines.append(c.step_curve("accuracy", width))
                elif metric is not None:
                    metric_lines.append(c.epoch_curve(metric))
        elif self.curves:
            c = self.curves[0]
            metric_lines.append(c.step_curve("accuracy", width))
            metric_points = [c.epoch_curve(m) for m in ["train_accuracy", *([metric] if metric else [])]]
        if several:  # one colour per run, in the same order on both plots: the run's name says it all
            for lines in (loss_lines, metric_lines):
                for curve, c in zip(lines, self.curves):
                    curve.label = c.label
        if several:
            columns, rows = self.settings_table()
        else:
            columns, rows = self.curves[0].epoch_table() if self.curves else (["epoch"], [])
        return CurvesPolled(
            title=self.title_line(),
            loss_lines=loss_lines,
            loss_points=loss_points,
            metric_lines=metric_lines,
            metric_points=metric_points,
            metric_choices=choices,
            table_columns=columns,
            table_rows=rows,
            running=any(c.running for c in self.curves),
            changed=changed,
            summaries=[c.summary for c in self.curves],
            metric=metric,
        )

    def settings_table(self) -> tuple[list[str], list[list[str]]]:
        configs = {c.run_id: c.config for c in self.curves}
        differ = differing_settings(configs)
        columns = ["setting", *[c.label for c in self.curves]]
        rows = [[key, *values] for key, values in differ]
        if not rows:
            rows = [["(the runs' settings are the same)", *["" for _ in self.curves]]]
        return columns, rows

    def title_line(self) -> str:
        parts = []
        for c in self.curves:
            p = c.progress
            status = c.problem and f"broken: {c.problem}" or p.status
            line = f"{c.summary} · {status}"
            if p.n_epochs:
                line += (
                    f" · epoch {min(p.epochs_done + (0 if c.state.finished else 1), p.n_epochs)}/{p.n_epochs}"
                )
                line += f" {100 * p.fraction:.0f}%"
            if c.running and p.status == "running":
                line += f" · eta {fmt_duration(p.eta_s)}"
            parts.append(line)
        return (
            "\n".join(parts) if len(parts) <= 3 else "\n".join(parts[:2] + [f"... and {len(parts) - 2} more"])
        )

    # ---- painting (UI thread) ------------------------------------------------------------------------

    def on_curves_polled(self, message: CurvesPolled) -> None:
        self.choices = message.metric_choices
        self.metric = message.metric
        self.last = message
        self.query_one("#run-title", Static).update(Text(message.title))
        which = "per step, by run" if self.several else "per step · epoch mean"
        self.query_one("#loss-plot", CurvePlot).set_curves(
            f"loss ({which})", message.loss_lines, message.loss_points, "no steps logged yet"
        )
        if self.several:
            title = f"{self.metric or 'no metric yet'}  (m: next metric)"
        else:
            title = "accuracy/step · train_accuracy" + (f" · {self.metric}  (m: next)" if self.metric else "")
        self.query_one("#metric-plot", CurvePlot).set_curves(
            title, message.metric_lines, message.metric_points, "no epoch finished yet"
        )
        fill_table(
            self.query_one(DataTable),
            message.table_columns,
            [(str(i), row) for i, row in enumerate(message.table_rows)],
            max_width=40,
        )
        self.polls += 1
        self.mark_painted()
