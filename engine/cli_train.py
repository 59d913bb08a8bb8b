"""CLI commands for training, evaluation and jobs (registered on `engine.cli.cli`).

    dynascope train DATASET [--model M] [--epochs N] [--max-length L] [--batch-size B] [--lr X] [--seed S]
                    [--limit N] [--dynamics inline|epoch-end] [--subset SELECTION] [--eval DATASET ...]
                    [--nproc P] [--detach] [--resume RUN] [--json]
    dynascope eval RUN DATASET [--json]
    dynascope jobs [--json]
    dynascope job cancel RUN
    dynascope job run RUN_DIR          (internal: the detached job process)

`train` without --detach starts the job as a child process (its own session, like a detached one) and follows
its events.jsonl with a progress bar; exit status 0 when the run is done, 1 when it failed or was cancelled.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.cli import (
    catalog,
    cli,
    get_workspace,
    json_option,
    print_json,
    print_table,
    stderr,
    user_errors,
    workspace_option,
)
from engine.errors import BadInputError
from storage.artifacts import TERMINAL_STATES, EventTail, read_config
from storage.workspace import Workspace


def follow(ws: Workspace, run_id: str, proc: subprocess.Popen[bytes] | None, quiet: bool = False) -> str:
    """Show the job's progress from its events until it ends; returns its final status. Ctrl+C cancels the job
    (it stops at the next step, resumable); a second Ctrl+C stops following and leaves the job running."""
    from engine.jobs import cancel

    tail = EventTail(ws.run_dir(run_id))
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
                for event in tail.read_new():
                    kind = event.get("type")
                    if kind == "progress":
                        total = event.get("total") or 1
                        n_epochs = event.get("n_epochs") or _n_epochs(ws, run_id)
                        info = (
                            f"epoch {event['epoch'] + 1}/{n_epochs}  loss {event.get('loss', 0):.4f}  "
                            f"{event.get('examples_per_s') or 0:.1f} ex/s  eta {_fmt_s(event.get('eta_s'))}"
                        )
                        bar.update(
                            task,
                            total=total * n_epochs,
                            completed=event["epoch"] * total + event["step"],
                            info=info,
                        )
                    elif kind == "epoch_end":
                        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in event.get("metrics", {}).items())
                        bar.console.print(f"epoch {event['epoch'] + 1} done: {metrics}", highlight=False)
                    elif kind == "log":
                        bar.console.print(str(event.get("message", "")), highlight=False)
                    elif kind == "state" and event.get("status") in TERMINAL_STATES:
                        status = event["status"]
                        if event.get("message") and status != "done":
                            bar.console.print(f"{status}: {event['message']}", highlight=False)
                if status in TERMINAL_STATES:
                    return status
                if proc is not None and proc.poll() is not None:
                    time.sleep(0.2)
                    if not any(
                        e.get("status") in TERMINAL_STATES
                        for e in tail.read_new()
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


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _fmt_s(v: Any) -> str:
    if v is None:
        return "?"
    v = int(v)
    return f"{v // 3600}:{v % 3600 // 60:02d}:{v % 60:02d}" if v >= 3600 else f"{v // 60}:{v % 60:02d}"


@cli.command("train")
@click.argument("dataset", required=False)
@click.option(
    "--model", default=None, help="Hugging Face model id or local folder (default: the offline MiniLM-L6)"
)
@click.option("--epochs", type=int, default=None, help="default 3")
@click.option("--max-length", type=int, default=None, help="tokens per input (default 128; QA 384)")
@click.option("--batch-size", type=int, default=None, help="examples per step and rank (default 16)")
@click.option("--lr", type=float, default=None, help="peak learning rate (default 5e-5)")
@click.option("--seed", type=int, default=None, help="default 42")
@click.option("--limit", type=int, default=None, help="train on the first N examples only")
@click.option("--dynamics", type=click.Choice(["inline", "epoch-end"]), default=None, help="default inline")
@click.option("--subset", default=None, help="train on the examples of this selection (a dataset of its own)")
@click.option(
    "--eval", "eval_sets", multiple=True, help="evaluate on this dataset after training (repeatable)"
)
@click.option("--grad-accum", type=int, default=None, help="micro-batches per optimizer step (default 1)")
@click.option(
    "--warmup-ratio", type=float, default=None, help="share of steps with linear warm-up (default 0.1)"
)
@click.option("--nproc", type=int, default=None, help="processes on this machine (torchrun ranks; default 1)")
@click.option("--detach", is_flag=True, help="start the job in the background and return")
@click.option("--resume", "resume_run", default=None, help="continue RUN from its last complete epoch")
@workspace_option
@json_option
@user_errors
def train_cmd(
    dataset: str | None,
    detach: bool,
    resume_run: str | None,
    eval_sets: tuple[str, ...],
    workspace: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Train a model on DATASET while recording per-example training dynamics."""
    from engine.jobs import create_run, resume, spawn

    ws = get_workspace(workspace)
    if resume_run:
        if dataset or any(v is not None for v in opts.values()) or eval_sets:
            raise BadInputError(
                "--resume continues a run with its own settings; give no DATASET or other options"
            )
        run_id = resume_run
        proc = resume(ws, run_id)
    else:
        if not dataset:
            raise BadInputError("missing DATASET (or --resume RUN); see `dynascope datasets`")
        run_id = create_run(ws, {"dataset": dataset, "eval": list(eval_sets), **opts})
        proc = spawn(ws, run_id)
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
        "evaluations": {name: _json(m) for name, m in evals},
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{run_id}: {status}, {summary['epochs_done']}/{summary['n_epochs']} epochs")
        for name, metrics in summary["evaluations"].items():
            click.echo(f"  eval {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items()))
    if status != "done":
        sys.exit(1)


def _json(text: str) -> Any:
    import json

    return json.loads(text)


@cli.command("eval")
@click.argument("run_id")
@click.argument("dataset")
@click.option("--batch-size", type=int, default=None, help="examples per forward pass (default: the run's)")
@workspace_option
@json_option
@user_errors
def eval_cmd(run_id: str, dataset: str, batch_size: int | None, workspace: str | None, as_json: bool) -> None:
    """Evaluate RUN on DATASET: accuracy, or SQuAD EM/F1 (v2.0: HasAns/NoAns; adversarial: worst case too)."""
    from engine.evaluation import eval_file_stem, evaluate_table, load_run_model
    from engine.jobs import export_dataset
    from engine.training import TrainConfig

    ws = get_workspace(workspace)
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
    result = {
        "run_id": run_id,
        "eval_set": dataset,
        "n_examples": summary["n_examples"],
        "metrics": summary["metrics"],
    }
    if as_json:
        print_json(result)
        return
    print_table(
        f"{run_id} on {dataset}", ["metric", "value"], [[k, _fmt(v)] for k, v in summary["metrics"].items()]
    )


@cli.command("jobs")
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


@cli.group("job")
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


@job_group.command("run", hidden=True)
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@user_errors
def job_run_cmd(run_dir: str) -> None:
    """Run the job in RUN_DIR in this process (what `train` and the app start detached)."""
    from engine.jobs import run_job

    sys.exit(run_job(Path(run_dir)))
