"""Jobs: launch train / retrain-on-selection / evaluate from a form; watch progress, ETA, metrics and the log
of each (tailing events.jsonl on a throttled timer); cancel with a key. Jobs are detached processes: closing the
app never stops one, and jobs started from the CLI or before the app was opened show up too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Log, ProgressBar, Select, Static
from textual.widgets._select import SelectOverlay  # the list of a Select: its pick message

from engine.analysis.datasets import list_datasets
from engine.analysis.progress import GenerationFigures, JobFollower, progress_label, progress_of
from engine.analysis.runs import run_label, runs_overview
from engine.errors import BadInputError
from engine.jobs import ACTIVE_STATES, list_jobs
from engine.jobs.registry import KINDS
from engine.jobs.spec import Field, JobKind
from storage.artifacts import BROKEN, BrokenRunError, RunState
from tui_app.screens.base import BaseScreen
from tui_app.screens.confirm import ConfirmModal
from tui_app.screens.home import fill
from tui_app.screens.modal import BaseModal

JOB_COLUMNS = ["run", "kind", "dataset", "status", "progress", "ETA", "pid"]
# the statuses a job can be resumed from (from its last complete epoch; `created`: never launched)
RESUMABLE = ("interrupted", "cancelled", "failed", "created")

POLL_S = 1.0


@dataclass
class JobsPolled(Message):
    jobs: list[dict[str, Any]]
    run_id: str | None
    state: RunState | None
    new_logs: list[str] = field(default_factory=list)
    generation: GenerationFigures | None = None  # a generate job's figures


@dataclass
class JobLaunched(Message):
    run_id: str
    pid: int | None


@dataclass
class JobCancelled(Message):
    run_id: str
    ok: bool


@dataclass
class JobResumed(Message):
    run_id: str
    pid: int


def reasons_text(counts: dict[str, int]) -> str:
    """`2 (too-long 1, no-pairs 1)`: the total, then each reason by count, most frequent first."""
    total = sum(counts.values())
    if not total:
        return "0"
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{total} (" + ", ".join(f"{reason} {n}" for reason, n in ranked) + ")"


def generation_lines(fig: GenerationFigures) -> list[str]:
    """A generate job's panel in two lines (each cut to the screen's width by the caller): items handled,
    accepted and rejected with reasons; failed requests with reasons, requests, cache hits and tokens."""
    total = "?" if fig.total is None else str(fig.total)
    first = f"items {fig.done}/{total} · accepted {fig.accepted} · rejected {reasons_text(fig.rejected)}"
    second = [f"failed {reasons_text(fig.failed)}"]
    if fig.requests is not None:
        second.append(f"requests {fig.requests}")
    if fig.cache_hits is not None:
        second.append(f"cache hits {fig.cache_hits}")
    if fig.tokens is not None:
        second.append(f"tokens {fig.prompt_tokens or 0} in, {fig.completion_tokens or 0} out")
    return [first, " · ".join(second)]


def fmt_eta(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(float(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class FormContext:
    """What the form needs to know beyond the registry: the datasets (with their task, for task-dependent
    defaults), the runs, and how many examples a retrain preset selects."""

    datasets: dict[str, str]  # name -> task
    runs: list[str]
    inherited: dict[str, dict[str, Any]] = field(default_factory=dict)  # run -> its settings (retrain)


class FormSelect(Select[str]):
    """A form's drop-down: once an option is picked (Enter in the list), the next field takes the focus, as
    Enter does in a text field; Escape from the list leaves the focus here."""

    @on(SelectOverlay.UpdateSelection)
    def _move_on_after_pick(self, event: SelectOverlay.UpdateSelection) -> None:
        # runs before Select's own handler (handlers go subclass first), which re-focuses the select and closes
        # the list; move on once that is done
        self.call_after_refresh(self._focus_next_field)

    def _focus_next_field(self) -> None:
        # a pick that lays the form out again (a generate pipeline) may have replaced this select meanwhile: the
        # form then focuses its successor itself (JobForm.refocus)
        if not self.is_attached:
            return
        if self.screen.focused is self:
            self.screen.focus_next()


class JobForm(BaseModal[dict[str, Any]]):
    """The launch form of a job kind, derived from its registry entry (engine.jobs.registry): the fields, their
    defaults (by the dataset's task; for retrain, the source run's settings) and their validation are the CLI's.
    Changing the kind, the dataset or the source run lays the form out again, keeping what the user typed."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel", id="jobform.cancel"),
        Binding("ctrl+s", "submit", "Launch", id="jobform.launch"),
    ]
    DEFAULT_CSS = """
    JobForm { align: center middle; }
    JobForm > VerticalScroll { width: 78; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                               background: $surface; padding: 0 1; }
    JobForm .row { height: 1; }
    JobForm .row Label { width: 16; padding: 0 1 0 0; }
    JobForm .row Input, JobForm .row Select { width: 1fr; }
    JobForm #form-note { height: auto; color: $warning; }
    JobForm #form-preview { height: auto; color: $text-muted; }
    JobForm #form-buttons { height: 3; margin-top: 1; align-horizontal: right; }
    """

    def __init__(self, context: FormContext, preset: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.context = context
        preset = dict(preset or {})
        self.kind_name = str(preset.pop("kind", None) or "train")
        if self.kind_name not in KINDS:
            self.kind_name = "train"
        self.note = str(preset.pop("note", "") or "")
        self.typed: dict[str, str] = {k: "" if v is None else text_of(v) for k, v in preset.items()}
        # the first dataset / run is what the selects show: known from the start, it lays out nothing again
        self.typed.setdefault("dataset", next(iter(context.datasets), ""))
        self.typed.setdefault("run", next(iter(context.runs), ""))

    @property
    def kind(self) -> JobKind:
        return KINDS[self.kind_name]

    def form_fields(self) -> list[Field]:
        """The kind's form fields shown for the choices made (a field with `when` only for its values)."""
        return [f for f in self.kind.fields if f.form and self.shown(f)]

    def shown(self, f: Field) -> bool:
        if f.when is None:
            return True
        name, values = f.when
        return self.choice(name) in values

    def choice(self, name: str) -> str:
        """The value of a drop-down that lays out other fields: typed, else its default, else its first option
        (what a drop-down without a blank shows)."""
        value = self.typed.get(name) or text_of(self.kind.defaults().get(name))
        if value:
            return value
        choices = self.kind.field(name).choices
        return choices[0] if choices else ""

    def controllers(self) -> set[str]:
        """The fields whose value decides which other fields the form shows."""
        return {f.when[0] for f in self.kind.fields if f.when is not None}

    def defaults(self) -> dict[str, Any]:
        """The kind's defaults for the chosen dataset's task; for retrain, the chosen source run's settings."""
        dataset = self.typed.get("dataset") or next(iter(self.context.datasets), "")
        values = self.kind.defaults(self.context.datasets.get(dataset))
        if self.kind_name == "retrain":
            run = self.typed.get("run") or ""
            values |= self.context.inherited.get(run, {})
        return values

    def compose(self) -> ComposeResult:
        defaults = self.defaults()
        with VerticalScroll():
            yield Static(f"[b]New {self.kind_name} job[/b]  (ctrl+s launch, escape cancel)")
            yield Static(self.kind.help, id="form-help")
            yield shown_if_set(Static(self.note, id="form-note"), self.note)
            yield shown_if_set(Static("", id="form-preview"), "")
            yield Horizontal(
                Label("kind"),
                FormSelect(
                    [(k, k) for k in KINDS],
                    value=self.kind_name,
                    allow_blank=False,
                    id="f-kind",
                    compact=True,
                ),
                classes="row",
            )
            controllers = self.controllers()
            for f in self.form_fields():
                value = self.typed.get(f.name, text_of(defaults.get(f.name)))
                if f.name in controllers:  # what it shows is what laid the form out
                    value = self.choice(f.name)
                yield Horizontal(Label(f.label), self.widget_for(f, value), classes="row")
            with Horizontal(id="form-buttons"):
                yield Button("Launch", variant="primary", id="launch")
                yield Button("Cancel", id="cancel")

    def widget_for(self, f: Field, value: str) -> Input | Select[str]:
        options: list[str] | None = None
        if f.name == "dataset" or f.picks == "dataset":
            options = list(self.context.datasets)
        elif (f.name == "run" and f.argument) or f.picks == "run":
            options = list(self.context.runs)
        elif f.choices:
            options = list(f.choices)
        elif f.type is bool:
            options = ["no", "yes"]
            value = "yes" if value.lower() in ("yes", "true", "1") else "no"
        if options is None:
            # one line a field (compact, as the drop-downs): a kind's whole form fits at 80x24 or nearly
            return Input(value=value, id=f"f-{f.name}", placeholder=f.help[:60], compact=True)
        return FormSelect(
            [(o, o) for o in options],
            value=value if value in options else Select.NULL,
            allow_blank=not f.required and f.type is not bool,
            id=f"f-{f.name}",
            compact=True,
        )

    def on_mount(self) -> None:
        first = next((w for w in self.query(Input)), None)
        if first is not None:
            first.focus()
        self.schedule_preview()

    # ---- the kind's preview (retrain: the selection's size and label mix) ------------------------------

    _preview_timer: Any = None

    def schedule_preview(self) -> None:
        """Preview the values on the form a moment after the last change (typing does not query per key)."""
        if self.kind.preview is None:
            shown_if_set(self.query_one("#form-preview", Static), "")
            return
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(0.3, self.start_preview)

    def start_preview(self) -> None:
        if self.kind.preview is None:  # the kind changed since the preview was scheduled
            shown_if_set(self.query_one("#form-preview", Static), "")
            return
        try:
            raw = {f.name: self.value(f.name) for f in self.form_fields()}
        except NoMatches:  # the form is being laid out again: the next change previews
            return
        self.preview(self.kind_name, raw)

    @work(thread=True, exclusive=True, group="form-preview", exit_on_error=False)
    def preview(self, kind_name: str, raw: dict[str, str]) -> None:
        kind = KINDS[kind_name]
        if kind.preview is None:
            return
        try:
            text = kind.preview(self.app.workspace, raw)  # type: ignore[attr-defined]
        except BadInputError as exc:
            text = f"[$error]{exc}[/]"
        self.app.call_from_thread(self.show_preview, kind_name, text)

    def show_preview(self, kind_name: str, text: str) -> None:
        if kind_name == self.kind_name and self.is_attached:
            shown_if_set(self.query_one("#form-preview", Static), text)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.schedule_preview()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter moves to the next field, as in a form on paper; only ctrl+s (or the Launch button) launches."""
        event.stop()
        self.focus_next()

    def value(self, name: str) -> str:
        widget = self.query_one(f"#f-{name}")
        if isinstance(widget, Select):
            return "" if widget.value is Select.NULL else str(widget.value)
        return str(widget.value).strip()  # type: ignore[attr-defined]

    def remember(self) -> None:
        """What is on the form now, so a new layout keeps it."""
        for f in self.form_fields():
            self.typed[f.name] = self.value(f.name)

    def on_select_changed(self, event: Select.Changed) -> None:
        self.schedule_preview()
        name = (event.select.id or "").removeprefix("f-")
        if name == "kind" and event.value != self.kind_name and event.value is not Select.NULL:
            self.remember()
            self.kind_name = str(event.value)
            self.relayout(name)
        elif (
            name in self.controllers() and event.value is not Select.NULL and self.choice(name) != event.value
        ):
            self.remember()  # what was typed stays: only which fields show changes
            self.relayout(name, keep=True)
        elif (
            name in ("dataset", "run")
            and self.kind.field(name).argument
            and self.typed.get(name) != self.value(name)
        ):
            self.remember()
            self.relayout(name)

    def relayout(self, changed: str, keep: bool = False) -> None:
        """Lay the form out again for a new kind, dataset or source run: the settings follow the new defaults
        (QA's longer max length, the new source run's), the choices made so far stay. `keep`: a choice that
        only shows other fields (a generate pipeline) keeps every value."""
        for f in self.form_fields():
            if not keep and f.name not in ("dataset", "run", "region", "kind") and f.name in self.typed:
                del self.typed[f.name]
        self.refresh(recompose=True)
        # the focused widget was replaced: focus its successor, so keys keep reaching the form
        self.call_after_refresh(self.refocus, changed)

    def refocus(self, name: str) -> None:
        for widget in self.query(f"#f-{name}"):
            widget.focus()
            return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        try:
            spec = self.collect()
        except BadInputError as exc:
            self.notify(str(exc), severity="error", timeout=6)
            return
        self.dismiss(spec)

    def collect(self) -> dict[str, Any]:
        """The form's values, checked by the kind's own fields (the CLI's messages)."""
        raw = {f.name: self.value(f.name) for f in self.form_fields()}
        return {"kind": self.kind_name, **self.kind.parse(raw)}


def shown_if_set(widget: Static, text: str) -> Static:
    """A line of the form that takes no room while it has nothing to say."""
    widget.update(text)
    widget.display = bool(text)
    return widget


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class JobsScreen(BaseScreen):
    TITLE_TEXT = "jobs"
    BINDINGS = [
        Binding("n", "new", "New job", id="jobs.new"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("R", "resume_job", "Resume", id="jobs.resume"),
        Binding("m", "map", "Data map", id="jobs.map"),
        Binding("t", "curves", "Curves", id="jobs.curves", show=False),
        Binding("r", "refresh", "Refresh", id="jobs.refresh", show=False),  # it polls every second anyway
    ]
    DEFAULT_CSS = """
    JobsScreen #jobs-table { height: 1fr; }
    JobsScreen #job-detail { height: 1fr; border-top: solid $panel; }
    JobsScreen #job-title { height: 1; padding: 0 1; text-style: bold; }
    JobsScreen #job-progress { height: 1; padding: 0 1; }
    JobsScreen #job-metrics { height: auto; max-height: 3; padding: 0 1; }
    JobsScreen #job-metrics.generation { text-wrap: nowrap; text-overflow: ellipsis; }
    JobsScreen #job-log { height: 1fr; }
    """

    def __init__(
        self, run_id: str | None = None, new: bool = False, preset: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.want_run = run_id
        self.open_form = new
        self.preset = preset
        self.jobs: list[dict[str, Any]] = []
        self.followers: dict[str, JobFollower] = {}
        self.shown_run: str | None = None
        self.last_rows: list[tuple[str, list[str]]] = []
        self.launched: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        with Vertical(id="job-detail"):
            yield Static("no job selected", id="job-title")
            yield ProgressBar(total=1.0, show_eta=False, id="job-progress")
            yield Static("", id="job-metrics")
            yield Log(id="job-log", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#jobs-table", DataTable)
        fill(table, [], JOB_COLUMNS)
        table.focus()
        self.poll()
        self.set_interval(POLL_S, self.poll)
        if self.open_form:
            self.call_after_refresh(self.action_new)

    def selected_run(self) -> str | None:
        table = self.query_one("#jobs-table", DataTable)
        if table.row_count == 0:
            return self.want_run
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return str(key) if key is not None else None

    def poll(self) -> None:
        self.poll_jobs(self.selected_run())

    def action_refresh(self) -> None:
        self.poll()

    @work(thread=True, exclusive=True, group="jobs-poll", exit_on_error=False)
    def poll_jobs(self, run_id: str | None) -> None:
        jobs = list_jobs(self.ws)  # newest first
        if run_id is None and jobs:
            run_id = jobs[0]["run_id"]
        state, new_logs, generation = None, [], None
        job = next((j for j in jobs if j["run_id"] == run_id), None)
        broken = job is not None and job.get("status") == BROKEN
        if run_id is not None and not broken:  # a broken run's log may be what cannot be read
            follower = self.followers.setdefault(run_id, JobFollower(self.ws.run_dir(run_id)))
            state = follower.state
            for event in follower.poll():
                if event.get("type") == "log":
                    new_logs.append(str(event.get("message", "")))
                elif event.get("type") == "state":
                    new_logs.append(f"[{event.get('status')}] {event.get('message') or ''}".rstrip())
                elif event.get("type") == "epoch_end":
                    metrics = ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in (event.get("metrics") or {}).items()
                    )
                    # events count epochs from 0; shown from 1, as the CLI prints "epoch 1 done"
                    new_logs.append(f"epoch {int(event.get('epoch') or 0) + 1} done: {metrics}")
            if job is not None and job.get("kind") == "generate":
                generation = follower.generation()
        self.post_message(JobsPolled(jobs, run_id, state, new_logs[-200:], generation))

    def on_jobs_polled(self, message: JobsPolled) -> None:
        self.jobs = message.jobs
        rows = []
        for job in message.jobs:
            prog = job.get("progress") or {}
            rows.append(
                (
                    job["run_id"],
                    [
                        run_label(job),
                        str(job.get("kind") or ""),
                        str(job.get("dataset") or ""),
                        str(job.get("status", "?")),
                        progress_label(job),
                        fmt_eta(prog.get("eta_s")) if job.get("status") == "running" else "-",
                        str(job.get("pid") or "")
                        if job.get("alive")
                        else "",  # as the CLI: a live process only
                    ],
                )
            )
        if rows != self.last_rows:
            table = self.query_one("#jobs-table", DataTable)
            fill(table, rows, JOB_COLUMNS)
            if self.want_run is not None:
                for index, (key, _) in enumerate(rows):
                    if key == self.want_run:
                        table.move_cursor(row=index)
                self.want_run = None
            self.last_rows = rows
        self.show_detail(message)

    def show_detail(self, message: JobsPolled) -> None:
        run_id, state = message.run_id, message.state
        log = self.query_one("#job-log", Log)
        if run_id != self.shown_run:
            log.clear()
            self.shown_run = run_id
        job = next((j for j in message.jobs if j["run_id"] == run_id), None)
        if job is not None and job.get("status") == BROKEN:
            self.query_one("#job-title", Static).update(Text(f"{run_id} · broken"))
            self.query_one("#job-progress", ProgressBar).update(total=1.0, progress=0)
            folder = self.ws.run_dir(str(run_id))
            self.query_one("#job-metrics", Static).update(  # Text: the reason may hold a '['
                Text(f"this run folder cannot be read: {job.get('message')} (fix or remove {folder})")
            )
            return
        if run_id is None or state is None:
            self.query_one("#job-title", Static).update("no jobs yet: n launches one")
            return
        prog = state.progress
        # the listing's reading (starting, interrupted), with the progress of the events followed here
        status = str(job["status"]) if job is not None else state.status
        progress = progress_of(job if job is not None else state)
        self.query_one("#job-title", Static).update(
            f"{run_id} · {status} · {progress.label}"
            + (
                f" · ETA {fmt_eta(prog.get('eta_s'))}"
                if state.status == "running" and prog.get("eta_s") is not None
                else ""
            )
            + (
                f" · {prog['examples_per_s']:.1f} ex/s"
                if state.status == "running" and prog.get("examples_per_s")
                else ""
            )
        )
        self.query_one("#job-progress", ProgressBar).update(total=1.0, progress=progress.fraction)
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in state.metrics.items()]
        if message.generation is not None:  # the generation panel replaces the metrics (its usage is in it)
            parts = []
        if prog.get("loss") is not None and state.status == "running":
            parts.insert(0, f"step loss {float(prog['loss']):.4f}")
        if state.message and state.status in ("failed", "cancelled"):
            parts.append(f"message: {state.message}")
        if status in RESUMABLE:
            parts.append("R resumes it")
        metrics = self.query_one("#job-metrics", Static)
        # the generation panel: one line each, cut with an ellipsis at the screen's width (2-3 lines at 80x24)
        metrics.set_class(message.generation is not None, "generation")
        if message.generation is not None:
            lines = generation_lines(message.generation) + (["  ".join(parts)] if parts else [])
            metrics.update(Text("\n".join(lines)))  # Text: a reason is shown as written, never as markup
        else:
            metrics.update("  ".join(parts) or "no metrics yet")
        if message.new_logs:
            log.write_lines(message.new_logs)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value != self.shown_run:
            self.poll()

    # ---- launch / cancel ------------------------------------------------------------------------------

    def action_new(self) -> None:
        self.open_new(self.preset)

    @work(thread=True, exclusive=True, group="jobs-form", exit_on_error=False)
    def open_new(self, preset: dict[str, Any] | None) -> None:
        from engine.jobs.retrain import source_settings

        with self.catalog(do_sync=True) as con:  # a run launched a moment ago is a source to pick
            datasets = {d["name"]: d["task"] for d in list_datasets(con)}
            trained = {k.name for k in KINDS.values() if k.trains_model}  # runs with a model and a data map
            runs = [r["run_id"] for r in runs_overview(con) if r.get("kind") in trained]
        inherited = {}
        for run in list(runs):
            try:
                inherited[run] = {
                    k: v for k, v in source_settings(self.ws, run).items() if k not in ("dataset", "task")
                }
            except BadInputError:
                continue
            except BrokenRunError:  # its config.json broke after it was registered: not a source to pick
                runs.remove(run)
        self.app.call_from_thread(self.push_form, FormContext(datasets, runs, inherited), preset)

    def push_form(self, context: FormContext, preset: dict[str, Any] | None) -> None:
        self.app.push_screen(JobForm(context, preset), self.on_form_done)

    def on_form_done(self, spec: dict[str, Any] | None) -> None:
        opened_for_form, self.open_form = self.open_form, False
        if spec:
            self.notify(f"launching a {spec['kind']} job ...", timeout=3)
            self.launch(spec)
        elif opened_for_form and self.app.screen is self and len(self.app.screen_stack) > 2:
            self.app.pop_screen()  # opened only for the form (n on home, a retrain key): back where the user was

    @work(thread=True, exclusive=False, group="jobs-launch", exit_on_error=False)
    def launch(self, spec: dict[str, Any]) -> None:
        from engine import jobs as engine_jobs

        run_id = engine_jobs.create_run(self.ws, spec)  # the kind's own launcher (retrain selects first)
        pid = engine_jobs.launch(self.ws, run_id)
        self.post_message(JobLaunched(run_id, pid))

    def on_job_launched(self, message: JobLaunched) -> None:
        self.launched.append(message.run_id)
        self.want_run = message.run_id
        self.notify(
            f"job {message.run_id} started (pid {message.pid}); it keeps running if you close the app",
            timeout=5,
        )
        self.poll()

    def action_cancel_job(self) -> None:
        run_id = self.selected_run()
        if run_id is None:
            return
        job = next((j for j in self.jobs if j["run_id"] == run_id), None)
        if job is not None and job.get("status") not in ACTIVE_STATES:
            self.notify(f"{run_id} is not running ({job['status']})", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel(run_id)

        self.app.push_screen(
            ConfirmModal(
                f"Cancel job {run_id}? It stops at its next step; R resumes it later from its last complete epoch.",
                yes="Cancel the job",
                no="Keep it running",
            ),
            answered,
        )

    @work(thread=True, exclusive=False, group="jobs-cancel", exit_on_error=False)
    def cancel(self, run_id: str) -> None:
        from engine import jobs as engine_jobs

        ok = bool(engine_jobs.cancel(self.ws, run_id))
        self.post_message(JobCancelled(run_id, ok))

    def on_job_cancelled(self, message: JobCancelled) -> None:
        if message.ok:
            self.notify(f"cancelling {message.run_id} (it checkpoints and stops)", timeout=4)
        else:
            self.notify(f"{message.run_id} was not running", severity="warning", timeout=4)
        self.poll()

    def action_resume_job(self) -> None:
        run_id = self.selected_run()
        if run_id is None:
            return
        job = next((j for j in self.jobs if j["run_id"] == run_id), None)
        if job is not None and job.get("status") not in RESUMABLE:
            self.notify(f"{run_id} cannot be resumed ({job['status']})", timeout=3)
            return
        self.resume(run_id)

    @work(thread=True, exclusive=False, group="jobs-resume", exit_on_error=False)
    def resume(self, run_id: str) -> None:
        from engine import jobs as engine_jobs

        proc = engine_jobs.resume(self.ws, run_id)  # refused (BadInputError: a notification) when it cannot
        self.post_message(JobResumed(run_id, proc.pid))

    def on_job_resumed(self, message: JobResumed) -> None:
        self.notify(f"resuming {message.run_id} from its last complete epoch (pid {message.pid})", timeout=4)
        self.poll()

    def action_map(self) -> None:
        self.app.open_map(self.selected_run())  # type: ignore[attr-defined]

    def action_curves(self) -> None:
        self.app.open_run_view(self.selected_run())  # type: ignore[attr-defined]
