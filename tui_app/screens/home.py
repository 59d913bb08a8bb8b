"""Home: datasets, runs and running jobs at a glance; the way into every screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from engine.analysis.datasets import list_datasets
from engine.analysis.progress import progress_label, workspace_fingerprint
from engine.analysis.runs import run_label, runs_overview
from engine.errors import BadInputError
from tui_app.screens.base import BaseScreen
from tui_app.widgets import fill_table

DATASET_COLUMNS = ["name", "task", "examples", "source"]
# the most important first: at 80 columns the run, its status and its figure stay in view
RUN_COLUMNS = ["run", "status", "key metric", "epochs", "kind", "dataset", "created"]
JOB_COLUMNS = ["run", "kind", "status", "progress", "pid"]
# a job that ended so while home watched it stays listed (and is notified): a background failure is never lost
ENDED_BADLY = ("failed", "interrupted")

REFRESH_S = 2.0


@dataclass
class HomeLoaded(Message):
    datasets: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    fingerprint: tuple[Any, ...]


def short_source(source: str | None, keep: int = 2) -> str:
    """A file path cut to its last `keep` parts, so the table width does not depend on where the data lives."""
    if not source:
        return ""
    parts = source.replace("\\", "/").split("/")
    if len(parts) <= keep + 1:
        return source
    return "…/" + "/".join(parts[-keep:])


class HomeScreen(BaseScreen):
    TITLE_TEXT = "home"
    BINDINGS = [
        Binding("q", "back", "Quit", id="home.quit"),
        Binding("enter", "open", "Open", id="home.open", show=False),
        Binding("m", "map", "Data map", id="home.map"),
        Binding("e", "examples", "Examples", id="home.examples"),
        Binding("c", "cases", "Case studies", id="home.cases", show=False),
        Binding("j", "jobs", "Jobs", id="home.jobs"),
        Binding("t", "curves", "Curves", id="home.curves", show=False),
        Binding("v", "compare", "Compare", id="home.compare", show=False),
        Binding("s", "sql", "SQL", id="home.sql", show=False),
        Binding("n", "new_job", "New job", id="home.new_job"),
        Binding("r", "refresh", "Refresh", id="home.refresh", show=False),
    ]
    DEFAULT_CSS = """
    HomeScreen .section-title { padding: 0 1; text-style: bold; height: 1; }
    HomeScreen DataTable { height: 1fr; }
    HomeScreen #runs { height: 2fr; }
    HomeScreen #status { padding: 0 1; color: $text-muted; height: 1; }
    HomeScreen #demo-status { padding: 0 1; height: auto; max-height: 2; display: none; }
    HomeScreen #demo-status.failed { color: $error; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.fingerprint: tuple[Any, ...] | None = None
        self.runs: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []  # the jobs table's
        self.watched: dict[str, str] = {}  # run id -> status, of the jobs seen starting or running here
        self.ended: dict[str, dict[str, Any]] = {}  # jobs that failed or were interrupted while watched

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Datasets", classes="section-title")
        yield DataTable(id="datasets", cursor_type="row", zebra_stripes=True)
        yield Static("Runs", classes="section-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("Jobs", classes="section-title")
        yield DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="demo-status")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        fill(self.query_one("#datasets", DataTable), [], DATASET_COLUMNS)
        fill(self.query_one("#runs", DataTable), [], RUN_COLUMNS)
        fill(self.query_one("#jobs", DataTable), [], JOB_COLUMNS)
        self.query_one("#runs", DataTable).focus()
        self.show_demo_status(getattr(self.app, "demo_status", ""))
        self.load(force=True)
        self.set_interval(REFRESH_S, self.poll)

    def on_screen_resume(self) -> None:
        self.load(force=False)  # only when a job, the CLI or another screen changed something

    def poll(self) -> None:
        if self.app.screen is self:
            self.load(force=False)

    def action_refresh(self) -> None:
        self.load(force=True)

    def show_demo_status(self, said: str, jobs: list[dict[str, Any]] | None = None) -> None:
        """The demo's line (hidden when the app is not a demo): its run's status and progress once the setup
        (DynascopeApp.set_up_demo) has named it and it is listed, else what the setup said last."""
        from engine.jobs import ACTIVE_STATES

        run_id = getattr(self.app, "demo_run", None)
        job = next((j for j in (self.jobs if jobs is None else jobs) if j["run_id"] == run_id), None)
        text, failed = said, "failed" in said
        if job is not None:
            status = job["status"]
            text = f"demo run {run_id}: {status}, {progress_label(job)}"
            if status in ACTIVE_STATES:
                text += " (training in the background; it goes on when the app is closed)"
            elif status in ENDED_BADLY:
                text += f" ({job.get('message') or 'see its log'}; j, then R resumes it)"
            failed = status in ENDED_BADLY
        line = self.query_one("#demo-status", Static)
        line.update(Text(text))
        line.display = bool(text)
        line.set_class(failed, "failed")

    @work(thread=True, exclusive=True, group="home", exit_on_error=False)
    def load(self, force: bool) -> None:
        from engine.jobs import ACTIVE_STATES, list_jobs

        fingerprint = workspace_fingerprint(self.ws)
        if not force and fingerprint == self.fingerprint:
            # a job killed outright writes nothing: ask the watched ones whether their process is still there
            if all(status_now(self.ws, run_id) == status for run_id, status in list(self.watched.items())):
                return
        with self.catalog(do_sync=True) as con:
            datasets = list_datasets(con)
            runs = runs_overview(con, self.ws)
        demo_run = getattr(self.app, "demo_run", None)
        jobs = [
            j
            for j in list_jobs(self.ws)  # newest first
            if j.get("status") in ACTIVE_STATES
            or (j.get("status") in ENDED_BADLY and (j["run_id"] in self.watched or j["run_id"] in self.ended))
            or j["run_id"] == demo_run
        ]
        self.post_message(HomeLoaded(datasets, runs, jobs, workspace_fingerprint(self.ws)))

    def on_home_loaded(self, message: HomeLoaded) -> None:
        from engine.jobs import ACTIVE_STATES

        self.fingerprint = message.fingerprint
        self.runs = message.runs
        self.jobs = message.jobs
        previous = self.watched
        self.watched = {j["run_id"]: j["status"] for j in message.jobs if j["status"] in ACTIVE_STATES}
        for job in message.jobs:
            run_id, status = job["run_id"], job["status"]
            if status in ENDED_BADLY and run_id in previous:
                self.ended[run_id] = job
                self.notify(
                    f"job {run_id} {status}: {job.get('message') or 'see its log on the jobs screen'}"
                    " (j: jobs, where R resumes it)",
                    severity="error",
                    timeout=15,
                    markup=False,
                )
        fill(
            self.query_one("#datasets", DataTable),
            [
                (d["name"], [d["name"], d["task"], f"{d['n_examples']:,}", short_source(d["source"])])
                for d in message.datasets
            ],
            DATASET_COLUMNS,
        )
        fill(
            self.query_one("#runs", DataTable),
            [
                (
                    r["run_id"],
                    [
                        run_label(r),
                        r["status"],
                        r["key_metric"] if r.get("reason") is None else r["reason"],  # a broken run: why
                        f"{r['epochs_done']}/{r['n_epochs'] or '?'}",
                        r["kind"],
                        r["dataset"] or "",
                        r["created"] or "",
                    ],
                )
                for r in message.runs
            ],
            RUN_COLUMNS,
        )
        fill(
            self.query_one("#jobs", DataTable),
            [
                (
                    j["run_id"],
                    [
                        run_label(j),
                        j.get("kind") or "",
                        j["status"],
                        progress_label(j),
                        str(j.get("pid") or "") if j.get("alive") else "",  # a live process only
                    ],
                )
                for j in message.jobs
            ],
            JOB_COLUMNS,
        )
        self.show_demo_status(getattr(self.app, "demo_status", ""))
        hint = "" if message.datasets else "  (import one: dynascope import FILE --name NAME)"
        self.query_one("#status", Static).update(
            f"{len(message.datasets)} dataset(s), {len(message.runs)} run(s), "
            f"{len(self.watched)} job(s) running"
            f"{hint}   m map  e examples  c cases  j jobs  v compare  s sql  ? help"
        )

    # ---- navigation ----------------------------------------------------------------------------------

    def selected(self, table_id: str) -> str | None:
        table = self.query_one(table_id, DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key and key.value is not None else None

    def selected_run(self) -> str | None:
        return self.selected("#runs")

    def action_open(self) -> None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id == "datasets":
            name = self.selected("#datasets")
            if name:
                self.app.open_examples(dataset=name)  # type: ignore[attr-defined]
        elif isinstance(focused, DataTable) and focused.id == "jobs":
            self.app.open_jobs(self.selected("#jobs"))  # type: ignore[attr-defined]
        else:
            self.action_map()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_map(self) -> None:
        self.app.open_map(self.selected_run())  # type: ignore[attr-defined]

    def action_examples(self) -> None:
        if (
            isinstance(self.focused, DataTable)
            and self.focused.id == "datasets"
            and self.selected("#datasets")
        ):
            self.app.open_examples(dataset=self.selected("#datasets"))  # type: ignore[attr-defined]
        else:
            self.app.open_examples(run_id=self.selected_run())  # type: ignore[attr-defined]

    def action_cases(self) -> None:
        self.app.open_cases(self.selected_run())  # type: ignore[attr-defined]

    def action_jobs(self) -> None:
        self.app.open_jobs()  # type: ignore[attr-defined]

    def action_curves(self) -> None:
        """The live curves of the job (jobs table focused) or run under the cursor."""
        focused = self.focused
        if isinstance(focused, DataTable) and focused.id == "jobs" and self.selected("#jobs"):
            self.app.open_run_view(self.selected("#jobs"))  # type: ignore[attr-defined]
        else:
            self.app.open_run_view(self.selected_run())  # type: ignore[attr-defined]

    def action_compare(self) -> None:
        self.app.open_compare()  # type: ignore[attr-defined]

    def action_sql(self) -> None:
        self.app.open_sql()  # type: ignore[attr-defined]

    def action_new_job(self) -> None:
        self.app.open_jobs(new=True)  # type: ignore[attr-defined]

    def action_search(self) -> None:
        self.app.open_examples(run_id=self.selected_run())  # type: ignore[attr-defined]


def status_now(ws: Any, run_id: str) -> str | None:
    from engine.jobs import job_info

    try:
        return str(job_info(ws, run_id)["status"])
    except BadInputError:  # the run folder went away
        return None


def fill(table: DataTable[Any], rows: list[tuple[str, list[Any]]], columns: list[str]) -> None:
    fill_table(table, columns, [(key, ["" if c is None else str(c) for c in cells]) for key, cells in rows])
