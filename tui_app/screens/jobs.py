"""Jobs: launch train / retrain-on-selection / evaluate from a form; watch progress, ETA, metrics and the log
of each (tailing events.jsonl on a throttled timer); cancel with a key. Jobs are detached processes: closing the
app never stops one, and jobs started from the CLI or before the app was opened show up too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Log, ProgressBar, Select, Static

from storage.artifacts import EventTail, RunState
from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace
from tui_app import data
from tui_app.screens.base import BaseModal, BaseScreen
from tui_app.screens.home import fill

JOB_COLUMNS = ["run", "kind", "dataset", "status", "epochs", "progress", "ETA", "pid"]

POLL_S = 1.0
JOB_KINDS = ("train", "retrain", "evaluate")
DEFAULTS = {
    "model": "",
    "epochs": "3",
    "max_length": "128",
    "batch_size": "32",
    "lr": "2e-5",
    "seed": "42",
    "limit": "",
    "eval": "",
    "fraction": "0.33",
    "region": "ambiguous",
    "source_run": "",
}


@dataclass
class JobsPolled(Message):
    jobs: list[dict[str, Any]]
    run_id: str | None
    state: RunState | None
    new_logs: list[str] = field(default_factory=list)


@dataclass
class JobLaunched(Message):
    run_id: str
    pid: int | None


@dataclass
class JobCancelled(Message):
    run_id: str
    ok: bool


def fmt_eta(seconds: Any) -> str:
    if seconds is None:
        return "-"
    seconds = int(float(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def job_fraction(job: dict[str, Any] | RunState) -> float:
    """Overall progress in [0, 1]: finished epochs plus the current epoch's share."""
    status: Any
    if isinstance(job, RunState):
        status, done, n_epochs, prog = job.status, job.epochs_done, job.n_epochs, job.progress
    else:
        status, done, n_epochs, prog = (
            job.get("status"),
            job.get("epochs_done") or 0,
            job.get("n_epochs"),
            job.get("progress") or {},
        )
    if status == "done":
        return 1.0
    n = n_epochs or 0
    if not n:
        return 0.0
    within = 0.0
    if prog.get("total") and int(prog.get("epoch", done)) >= done:
        within = min(1.0, float(prog.get("step", 0)) / float(prog["total"]))
    return min(1.0, (done + within) / n)


class JobForm(BaseModal[dict[str, Any]]):
    """The launch form: sensible defaults, a kind, and the fields that kind needs."""

    BINDINGS = [
        Binding("escape", "dismiss_none", "Cancel", id="jobform.cancel"),
        Binding("ctrl+s", "submit", "Launch", id="jobform.launch"),
    ]
    DEFAULT_CSS = """
    JobForm { align: center middle; }
    JobForm > VerticalScroll { width: 78; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                               background: $surface; padding: 0 1; }
    JobForm .row { height: 3; }
    JobForm .row Label { width: 16; padding: 1 1 0 0; }
    JobForm .row Input, JobForm .row Select { width: 1fr; }
    JobForm #form-buttons { height: 3; align-horizontal: right; }
    """

    def __init__(self, datasets: list[str], runs: list[str], preset: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.datasets, self.runs = datasets, runs
        self.preset = {**DEFAULTS, **{k: "" if v is None else str(v) for k, v in (preset or {}).items()}}

    def field_row(self, label: str, name: str) -> Horizontal:
        return Horizontal(Label(label), Input(value=self.preset.get(name, ""), id=f"f-{name}"), classes="row")

    def compose(self) -> ComposeResult:
        kind = self.preset.get("kind") or "train"
        dataset = self.preset.get("dataset") or (self.datasets[0] if self.datasets else "")
        with VerticalScroll():
            yield Static("[b]New job[/b]  (ctrl+s launch, escape cancel)")
            yield Horizontal(
                Label("kind"),
                Select(
                    [(k, k) for k in JOB_KINDS],
                    value=kind if kind in JOB_KINDS else "train",
                    allow_blank=False,
                    id="f-kind",
                    compact=True,
                ),
                classes="row",
            )
            yield Horizontal(
                Label("dataset"),
                Select(
                    [(d, d) for d in self.datasets],
                    value=dataset if dataset in self.datasets else Select.NULL,
                    id="f-dataset",
                    compact=True,
                ),
                classes="row",
            )
            yield self.field_row("model", "model")
            yield self.field_row("epochs", "epochs")
            yield self.field_row("max length", "max_length")
            yield self.field_row("batch size", "batch_size")
            yield self.field_row("learning rate", "lr")
            yield self.field_row("seed", "seed")
            yield self.field_row("limit (examples)", "limit")
            yield self.field_row("eval sets", "eval")
            yield self.field_row("source run", "source_run")
            yield self.field_row("region", "region")
            yield self.field_row("fraction", "fraction")
            with Horizontal(id="form-buttons"):
                yield Button("Launch", variant="primary", id="launch")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-epochs", Input).focus()

    def value(self, name: str) -> str:
        return self.query_one(f"#f-{name}", Input).value.strip()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_submit()
        else:
            self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        try:
            spec = self.collect()
        except ValueError as exc:
            self.notify(str(exc), severity="error", timeout=6)
            return
        self.dismiss(spec)

    def collect(self) -> dict[str, Any]:
        kind = str(self.query_one("#f-kind", Select).value)
        dataset_value = self.query_one("#f-dataset", Select).value
        dataset = None if dataset_value is Select.NULL else str(dataset_value)
        spec: dict[str, Any] = {"kind": kind}

        def number(name: str, cast: type, minimum: float | None = None) -> Any:
            raw = self.value(name)
            if not raw:
                return None
            try:
                value = cast(raw)
            except ValueError:
                raise ValueError(f"{name.replace('_', ' ')}: {raw!r} is not a {cast.__name__}") from None
            if minimum is not None and value < minimum:
                raise ValueError(f"{name.replace('_', ' ')} must be at least {minimum}")
            return value

        for name, cast, minimum in (
            ("epochs", int, 1),
            ("max_length", int, 8),
            ("batch_size", int, 1),
            ("lr", float, 0.0),
            ("seed", int, None),
            ("limit", int, 1),
        ):
            value = number(name, cast, minimum)
            if value is not None:
                spec[name] = value
        if self.value("model"):
            spec["model"] = self.value("model")
        evals = [s.strip() for s in self.value("eval").split(",") if s.strip()]
        if evals:
            spec["eval"] = evals
        if kind == "train":
            if not dataset:
                raise ValueError("choose a dataset to train on")
            spec["dataset"] = dataset
        elif kind == "retrain":
            source = self.value("source_run")
            if not source:
                raise ValueError("retrain needs a source run (the run whose data map selects the subset)")
            spec["source_run"] = source
            spec["region"] = self.value("region") or "ambiguous"
            spec["fraction"] = number("fraction", float, 0.0) or 0.33
            if dataset:
                spec["dataset"] = dataset
        elif kind == "evaluate":
            source = self.value("source_run")
            if not source:
                raise ValueError("evaluate needs the run to evaluate (source run)")
            spec["source_run"] = source
            if not evals:
                if not dataset:
                    raise ValueError("choose the dataset to evaluate on (dataset or eval sets)")
                spec["eval"] = [dataset]
        return spec


def selection_name(spec: dict[str, Any]) -> str:
    return f"{spec['source_run']}-{spec['region']}-{int(round(float(spec['fraction']) * 100))}pct"


def make_selection(ws: Workspace, spec: dict[str, Any], name: str) -> str:
    """The top-p% selection of the source run's region as a dataset (engine.selection); returns the source
    dataset. An existing selection of the same name is reused."""
    from engine.selection import select_examples
    from storage.datasets import dataset_exists

    with open_catalog(ws) as con:
        sync(ws, con)
        row = con.execute("SELECT dataset FROM runs WHERE run_id = ?", [spec["source_run"]]).fetchone()
        if row is None:
            raise LookupError(f"no run named {spec['source_run']!r}")
        if not dataset_exists(con, name):
            select_examples(
                con,
                spec["source_run"],
                spec["region"],
                float(spec["fraction"]),
                name,
                seed=int(spec.get("seed") or 0),
            )
    return str(row[0])


def build_config(spec: dict[str, Any], source_dataset: str | None = None) -> dict[str, Any]:
    """The engine's job config (engine.jobs.create_run) from the form's spec."""
    config = {k: v for k, v in spec.items() if k not in ("region", "fraction", "source_run")}
    config["kind"] = "train"
    config.setdefault("dynamics", "inline")
    if spec["kind"] == "retrain":
        config["dataset"] = source_dataset or spec.get("dataset")
        config["subset"] = selection_name(spec)
    return config


class JobsScreen(BaseScreen):
    TITLE_TEXT = "jobs"
    BINDINGS = [
        Binding("n", "new", "New job", id="jobs.new"),
        Binding("c", "cancel_job", "Cancel job", id="jobs.cancel"),
        Binding("m", "map", "Data map", id="jobs.map"),
        Binding("r", "refresh", "Refresh", id="jobs.refresh"),
    ]
    DEFAULT_CSS = """
    JobsScreen #jobs-table { height: 1fr; }
    JobsScreen #job-detail { height: 1fr; border-top: solid $panel; }
    JobsScreen #job-title { height: 1; padding: 0 1; text-style: bold; }
    JobsScreen #job-progress { height: 1; padding: 0 1; }
    JobsScreen #job-metrics { height: auto; max-height: 3; padding: 0 1; }
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
        self.tails: dict[str, tuple[EventTail, RunState]] = {}
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
        jobs = data.list_jobs(self.ws)
        if run_id is None and jobs:
            run_id = jobs[-1]["run_id"]
        state, new_logs = None, []
        if run_id is not None:
            tail, state = self.tails.get(run_id) or (EventTail(self.ws.run_dir(run_id)), RunState())
            for event in tail.read_new():
                state.apply(event)
                if event.get("type") == "log":
                    new_logs.append(str(event.get("message", "")))
                elif event.get("type") == "state":
                    new_logs.append(f"[{event.get('status')}] {event.get('message') or ''}".rstrip())
                elif event.get("type") == "epoch_end":
                    metrics = ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in (event.get("metrics") or {}).items()
                    )
                    new_logs.append(f"epoch {event.get('epoch')} done: {metrics}")
            self.tails[run_id] = (tail, state)
        self.post_message(JobsPolled(jobs, run_id, state, new_logs[-200:]))

    def on_jobs_polled(self, message: JobsPolled) -> None:
        self.jobs = message.jobs
        rows = []
        for job in message.jobs:
            prog = job.get("progress") or {}
            status = job.get("status", "?")
            if status in ("running", "created") and job.get("alive") is False:
                status += " (no process)"
            rows.append(
                (
                    job["run_id"],
                    [
                        job["run_id"],
                        str(job.get("kind") or ""),
                        str(job.get("dataset") or ""),
                        status,
                        f"{job.get('epochs_done', 0)}/{job.get('n_epochs') or '?'}",
                        f"{100 * job_fraction(job):3.0f}%",
                        fmt_eta(prog.get("eta_s")) if job.get("status") == "running" else "-",
                        str(job.get("pid") or ""),
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
        if run_id is None or state is None:
            self.query_one("#job-title", Static).update("no jobs yet: n launches one")
            return
        prog = state.progress
        self.query_one("#job-title", Static).update(
            f"{run_id} · {state.status} · epoch {state.epochs_done}/{state.n_epochs or '?'}"
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
        self.query_one("#job-progress", ProgressBar).update(total=1.0, progress=job_fraction(state))
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in state.metrics.items()]
        if prog.get("loss") is not None and state.status == "running":
            parts.insert(0, f"step loss {float(prog['loss']):.4f}")
        if state.message and state.status in ("failed", "cancelled"):
            parts.append(f"message: {state.message}")
        self.query_one("#job-metrics", Static).update("  ".join(parts) or "no metrics yet")
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
        with self.catalog() as con:
            datasets = [d["name"] for d in data.list_datasets(con)]
            runs = [r["run_id"] for r in data.list_runs(con)]
        self.app.call_from_thread(self.push_form, datasets, runs, preset)

    def push_form(self, datasets: list[str], runs: list[str], preset: dict[str, Any] | None) -> None:
        self.app.push_screen(JobForm(datasets, runs, preset), self.on_form_done)

    def on_form_done(self, spec: dict[str, Any] | None) -> None:
        if spec:
            self.notify(f"launching a {spec['kind']} job ...", timeout=3)
            self.launch(spec)

    @work(thread=True, exclusive=False, group="jobs-launch", exit_on_error=False)
    def launch(self, spec: dict[str, Any]) -> None:
        from engine import jobs as engine_jobs

        if (
            spec["kind"] == "evaluate"
        ):  # a job of its own, with progress events; scores land on the source run
            run_id = engine_jobs.create_run(
                self.ws, {"kind": "evaluate", "run": spec["source_run"], "eval": list(spec["eval"])}
            )
            self.post_message(JobLaunched(run_id, engine_jobs.launch(self.ws, run_id)))
            return
        source = make_selection(self.ws, spec, selection_name(spec)) if spec["kind"] == "retrain" else None
        run_id = engine_jobs.create_run(self.ws, build_config(spec, source))
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
        if job is not None and job.get("status") in ("done", "failed", "cancelled"):
            self.notify(f"{run_id} already ended ({job['status']})", timeout=3)
            return
        self.cancel(run_id)

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

    def action_map(self) -> None:
        self.app.open_map(self.selected_run())  # type: ignore[attr-defined]
