"""CLI commands that follow jobs: `jobs` (every run folder with its live progress), `job cancel RUN`, and `follow`,
the progress bar that `train` / `retrain` / `eval --detach` show while their job runs (engine.cli.kinds).
"""

from __future__ import annotations

import subprocess
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.analysis.format import fmt_duration, fmt_value
from engine.analysis.progress import JobFollower, progress_label
from engine.cli.common import (
    get_workspace,
    json_option,
    print_json,
    print_table,
    stderr,
    user_errors,
    workspace_option,
)
from engine.errors import BadInputError
from storage.artifacts import TERMINAL_STATES, read_config
from storage.workspace import Workspace


def follow(ws: Workspace, run_id: str, proc: subprocess.Popen[bytes] | None, quiet: bool = False) -> str:
    """Show the job's progress from its events until it ends; returns its final status. Ctrl+C cancels the job
    (it stops at the next step, resumable); a second Ctrl+C stops following and leaves the job running."""
    from engine.jobs import cancel

    follower = JobFollower(ws.run_dir(run_id))
    status = "running"
    # With the job's process at hand, the events before its launch (its `running` state, which the launcher
    # writes with its pid) belong to an earlier job of the run (a resume): its end is not this job's.
    launched = proc.pid if proc is not None else None
    ours = launched is None
    interrupted = 0
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=stderr, disable=quiet, transient=False) as bar:
        task = bar.add_task(run_id, total=None, info="starting ...")
        while True:
            try:
                events = follower.poll()
                for event in events:
                    kind = event.get("type")
                    ours = ours or (kind == "state" and event.get("pid") == launched)
                    if not ours:
                        continue
                    if kind == "epoch_end":
                        metrics = ", ".join(
                            f"{k} {fmt_value(v)}" for k, v in event.get("metrics", {}).items()
                        )
                        bar.console.print(f"epoch {event['epoch'] + 1} done: {metrics}", highlight=False)
                    elif kind == "log":
                        bar.console.print(str(event.get("message", "")), highlight=False)
                    elif kind == "state" and event.get("status") in TERMINAL_STATES:
                        status = event["status"]
                        if event.get("message") and status != "done":
                            bar.console.print(f"{status}: {event['message']}", highlight=False)
                if any(e.get("type") == "progress" for e in events):
                    p = follower.progress()
                    n_epochs = p.n_epochs or _n_epochs(ws, run_id)
                    completed, total = p.steps(n_epochs)
                    info = (
                        f"{p.label}  loss {p.loss or 0:.4f}  "
                        f"{p.examples_per_s or 0:.1f} ex/s  eta {fmt_duration(p.eta_s)}"
                    )
                    bar.update(task, total=total, completed=completed, info=info)
                if status in TERMINAL_STATES:
                    return status
                if proc is not None and proc.poll() is not None:
                    time.sleep(0.2)
                    if not any(
                        e.get("status") in TERMINAL_STATES
                        for e in follower.poll()
                        if e.get("type") == "state"
                    ):
                        bar.console.print(
                            f"the job process exited with status {proc.returncode} without finishing; "
                            f"see {ws.run_dir(run_id) / 'job.log'}"
                        )
                        return "failed"
                time.sleep(0.25)
            except KeyboardInterrupt:
                interrupted += 1
                if interrupted > 1:
                    bar.console.print(f"stopped following; the job goes on (dynascope job cancel {run_id})")
                    return "running"
                bar.console.print("cancelling the job (ctrl+c again to stop following) ...")
                cancel(ws, run_id)


def _n_epochs(ws: Workspace, run_id: str) -> int:
    return int((read_config(ws.run_dir(run_id)) or {}).get("epochs") or 1)


# the one formatter of the read layer: a metric to 4 decimals ('-' when missing), a duration as m:ss / h:mm:ss


@click.command("jobs")
@workspace_option
@json_option
@user_errors
def jobs_cmd(workspace: str | None, as_json: bool) -> None:
    """List jobs from their run folders, newest first: status, progress (epoch i/n and overall %), ETA, pid. A run folder that cannot be read is
    listed as `broken`, with the reason (its `message` in --json)."""
    from engine.jobs import list_jobs

    jobs = list_jobs(get_workspace(workspace))
    if as_json:
        print_json(jobs)
        return
    rows = []
    for j in jobs:
        eta = (j["progress"] or {}).get("eta_s") if j["status"] == "running" else None
        rows.append(
            [
                j["run_id"],
                j.get("name") or "",
                j["kind"],
                j["dataset"],
                f"broken: {j['message']}" if j["status"] == "broken" else j["status"],
                progress_label(j),
                fmt_duration(eta) if eta is not None else "",
                j["pid"] if j["alive"] else "",
            ]
        )
    print_table("jobs", ["run", "name", "kind", "dataset", "status", "progress", "eta", "pid"], rows)


@click.group("job")
def job_group() -> None:
    """Manage one job."""


@job_group.command("cancel")
@click.argument("run_id")
@workspace_option
@user_errors
def job_cancel_cmd(run_id: str, workspace: str | None) -> None:
    """Stop a running job (it ends as cancelled; resume it later with `train --resume RUN`)."""
    from engine.jobs import cancel, job_info

    ws = get_workspace(workspace)
    if not cancel(ws, run_id):
        raise BadInputError(f"run '{run_id}' is not running (status {job_info(ws, run_id)['status']})")
    click.echo(f"sent SIGTERM to {run_id}; it stops at the next step")


COMMANDS = (jobs_cmd, job_group)
