"""CLI commands for jobs: train, retrain, eval (their options derived from the job registry), jobs, job cancel.

    dynascope train DATASET [train options] [--detach] [--resume RUN] [--json]
    dynascope retrain RUN --region R (--fraction F | --bounds A,B) [--balanced] [--name NEW] [train options]
    dynascope eval RUN DATASET... [--batch-size B] [--detach] [--json]
    dynascope jobs [--json]
    dynascope job cancel RUN

`train` and `retrain` without --detach start the job as a child process (its own session, like a detached one)
and follow its events.jsonl with a progress bar; exit status 0 when the run is done, 1 when it failed or was
cancelled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.analysis.format import fmt_duration, fmt_value
from engine.analysis.progress import JobFollower
from engine.cli.common import (
    catalog,
    get_workspace,
    json_option,
    print_json,
    print_table,
    stderr,
    user_errors,
    workspace_option,
)
from engine.errors import BadInputError
from engine.jobs.evaluate import EVALUATE
from engine.jobs.retrain import RETRAIN
from engine.jobs.spec import JobKind
from engine.jobs.train import TRAIN
from storage.artifacts import TERMINAL_STATES, read_config
from storage.workspace import Workspace


def follow(ws: Workspace, run_id: str, proc: subprocess.Popen[bytes] | None, quiet: bool = False) -> str:
    """Show the job's progress from its events until it ends; returns its final status. Ctrl+C cancels the job
    (it stops at the next step, resumable); a second Ctrl+C stops following and leaves the job running."""
    from engine.jobs import cancel

    follower = JobFollower(ws.run_dir(run_id))
    status = "running"
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
                    if kind == "epoch_end":
                        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in event.get("metrics", {}).items())
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
                        f"epoch {p.epoch + 1}/{n_epochs}  loss {p.loss or 0:.4f}  "
                        f"{p.examples_per_s or 0:.1f} ex/s  eta {_fmt_s(p.eta_s)}"
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
_fmt = fmt_value
_fmt_s = fmt_duration


def kind_options(kind: JobKind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """click arguments and options for every field of a job kind: names, types, choices and help from the
    registry; no default here (None means "not given", so the kind's own default, or the source run's, applies)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(kind.fields):
            if f.argument:
                fn = click.argument(f.name, required=False, nargs=-1 if f.type is list else 1)(fn)
                continue
            if f.type is bool:
                fn = click.option(f.flag, f.name, is_flag=True, default=None, help=f.help_text())(fn)
                continue
            ptype: Any = click.Choice(f.choices) if f.choices else {int: int, float: float}.get(f.type, str)
            fn = click.option(
                f.flag, f.name, type=ptype, default=None, multiple=f.type is list, help=f.help_text()
            )(fn)
        return fn

    return decorate


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave (click reports an absent option as None, a repeatable one as ())."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if v not in (None, ())}


def start_and_follow(ws: Workspace, run_id: str, proc: Any, detach: bool, as_json: bool) -> None:
    """--detach: report the pid and return; else follow the job to its end and print its summary."""
    if detach:
        if as_json:
            print_json({"run_id": run_id, "pid": proc.pid, "status": "running"})
        else:
            click.echo(f"started {run_id} (pid {proc.pid}); follow it with `dynascope jobs`")
        return
    status = follow(ws, run_id, proc, quiet=as_json)
    with catalog(ws) as con:  # sync registers the epochs, metrics and evaluations the job wrote
        row = con.execute(
            "SELECT status, epochs_done, n_epochs FROM runs WHERE run_id = ?", [run_id]
        ).fetchone()
        evals = con.execute(
            "SELECT eval_set, metrics FROM evaluations WHERE run_id = ? ORDER BY eval_set", [run_id]
        ).fetchall()
    summary: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "epochs_done": row[1] if row else 0,
        "n_epochs": row[2] if row else None,
        "evaluations": {name: json.loads(m) for name, m in evals},
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{run_id}: {status}, {summary['epochs_done']}/{summary['n_epochs']} epochs")
        for name, metrics in summary["evaluations"].items():
            click.echo(f"  eval {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items()))
    if status != "done":
        sys.exit(1)


@click.command("train", help=TRAIN.help)
@kind_options(TRAIN)
@click.option("--detach", is_flag=True, help="start the job in the background and return")
@click.option("--resume", "resume_run", default=None, help="continue RUN from its last complete epoch")
@workspace_option
@json_option
@user_errors
def train_cmd(
    detach: bool, resume_run: str | None, workspace: str | None, as_json: bool, **opts: Any
) -> None:
    from engine.jobs import create_run, resume, spawn

    ws = get_workspace(workspace)
    values = given(opts)
    if resume_run:
        if values:
            raise BadInputError(
                "--resume continues a run with its own settings; give no DATASET or other options"
            )
        run_id = resume_run
        proc = resume(ws, run_id)
    else:
        if not values.get("dataset"):
            raise BadInputError("missing DATASET (or --resume RUN); see `dynascope datasets`")
        run_id = create_run(ws, {"kind": "train", **values})
        proc = spawn(ws, run_id)
    start_and_follow(ws, run_id, proc, detach, as_json)


@click.command("retrain", help=RETRAIN.help)
@kind_options(RETRAIN)
@click.option("--detach", is_flag=True, help="start the job in the background and return")
@workspace_option
@json_option
@user_errors
def retrain_cmd(detach: bool, workspace: str | None, as_json: bool, **opts: Any) -> None:
    from engine.jobs import create_run, spawn

    ws = get_workspace(workspace)
    values = given(opts)
    if not values.get("run"):
        raise BadInputError("missing RUN: the run whose data map selects the examples; see `dynascope runs`")
    run_id = create_run(ws, {"kind": "retrain", **values})
    if not as_json:
        selection = (read_config(ws.run_dir(run_id)) or {}).get("selection") or {}
        stderr.print(
            f"selected {selection.get('n_examples')} examples into '{selection.get('name')}'", highlight=False
        )
    start_and_follow(ws, run_id, spawn(ws, run_id), detach, as_json)


@click.command("eval", help=EVALUATE.help)
@kind_options(EVALUATE)
@click.option("--detach", is_flag=True, help="run as a background job (its progress in `dynascope jobs`)")
@workspace_option
@json_option
@user_errors
def eval_cmd(detach: bool, workspace: str | None, as_json: bool, **opts: Any) -> None:
    """Without --detach the evaluation runs in this process (no job folder) and prints its metrics."""
    from engine.jobs import create_run, spawn

    ws = get_workspace(workspace)
    values = EVALUATE.parse(given(opts))
    if detach:
        run_id = create_run(ws, {"kind": "evaluate", **values})
        start_and_follow(ws, run_id, spawn(ws, run_id), True, as_json)
        return
    results = [evaluate_now(ws, values["run"], name, values.get("batch_size")) for name in values["eval"]]
    if as_json:
        print_json(results[0] if len(results) == 1 else results)
        return
    for result in results:
        print_table(
            f"{result['run_id']} on {result['eval_set']}",
            ["metric", "value"],
            [[k, _fmt(v)] for k, v in result["metrics"].items()],
        )


def evaluate_now(ws: Workspace, run_id: str, dataset: str, batch_size: int | None) -> dict[str, Any]:
    from engine.evaluation.scoring import eval_file_stem, evaluate_table, load_run_model
    from engine.jobs import export_dataset
    from engine.training.config import TrainConfig

    run_dir = ws.run_dir(run_id)
    config = read_config(run_dir)
    if config is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}; see `dynascope runs`")
    eval_file_stem(dataset)
    cfg = TrainConfig.from_dict(config)
    if batch_size:
        cfg.eval_batch_size = batch_size
    with catalog(ws) as con:  # read the set, then close: the model runs without holding the catalog
        table, meta = export_dataset(con, dataset, what="evaluation set")
    if table.num_rows == 0:
        raise BadInputError(f"'{dataset}' has no examples")
    with stderr.status(f"evaluating {run_id} on {dataset} ({table.num_rows} examples) ..."):
        model = load_run_model(run_dir, cfg)
        summary = evaluate_table(run_dir, model, cfg, dataset, table, meta)
    with catalog(ws):
        pass  # sync registers eval/<set>.parquet and its summary
    assert summary is not None
    return {
        "run_id": run_id,
        "eval_set": dataset,
        "n_examples": summary["n_examples"],
        "metrics": summary["metrics"],
    }


@click.command("jobs")
@workspace_option
@json_option
@user_errors
def jobs_cmd(workspace: str | None, as_json: bool) -> None:
    """List jobs from their run folders: status, epochs, live progress, pid."""
    from engine.jobs import list_jobs

    jobs = list_jobs(get_workspace(workspace))
    if as_json:
        print_json(jobs)
        return
    rows = []
    for j in jobs:
        p = j["progress"] or {}
        live = (
            f"epoch {p['epoch'] + 1} step {p['step']}/{p['total']} eta {_fmt_s(p.get('eta_s'))}"
            if p and j["alive"]
            else ""
        )
        rows.append(
            [
                j["run_id"],
                j["kind"],
                j["dataset"],
                j["status"],
                f"{j['epochs_done']}/{j['n_epochs']}",
                live,
                j["pid"] if j["alive"] else "",
            ]
        )
    print_table("jobs", ["run", "kind", "dataset", "status", "epochs", "progress", "pid"], rows)


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


COMMANDS = (train_cmd, retrain_cmd, eval_cmd, jobs_cmd, job_group)
