"""One CLI command per job kind, generated from the registry (engine.jobs.registry): `train`, `retrain`, `eval`.

Each field of a kind becomes an argument or an option (name, type, choices and help from the field; no default
here: an absent option means the kind's default, or the source run's for retrain). Every command also takes
--detach, --json, --workspace, and --resume RUN for a resumable kind. Without --detach the job process is
started and followed with a progress bar (exit 0 when done, 1 when it failed or was cancelled), or, for a kind
that runs inline (eval), the work happens in this process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from engine.analysis.format import fmt_value
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
from engine.cli.jobs import follow
from engine.errors import BadInputError
from engine.jobs.registry import KINDS
from engine.jobs.spec import JobKind
from storage.artifacts import read_config
from storage.generated import read_generated_summary
from storage.workspace import Workspace


def kind_options(kind: JobKind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """click arguments and options for every field of a job kind."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(kind.fields):
            if f.argument:
                fn = click.argument(f.name, required=False, nargs=-1 if f.type is list else 1)(fn)
                continue
            if (
                f.type is bool
            ):  # --x / --no-x: unset (None) when neither is given, so retrain can turn one off
                off = "--no-" + f.flag[2:]
                fn = click.option(f"{f.flag}/{off}", f.name, default=None, help=f.help_text())(fn)
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
        attack = con.execute(
            """SELECT source_run, dataset, method, n_examples, clean_accuracy, aua, success_rate, avg_queries,
                      clean_f1, f1, n_unattackable
               FROM attacks WHERE run_id = ?""",
            [run_id],
        ).fetchone()
    summary: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "epochs_done": row[1] if row else 0,
        "n_epochs": row[2] if row else None,
        "evaluations": {name: json.loads(m) for name, m in evals},
    }
    generated = read_generated_summary(ws.run_dir(run_id))
    if generated is not None:  # a generate job: its new dataset (engine.jobs.generate)
        summary["generated"] = generated
    if attack is not None:  # an attack job: its figures (engine.jobs.attack)
        keys = ("source_run", "dataset", "method", "n_examples", "clean_accuracy", "aua", "success_rate")
        summary["attack"] = dict(zip((*keys, "avg_queries", "clean_f1", "f1", "n_unattackable"), attack))
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{run_id}: {status}, {summary['epochs_done']}/{summary['n_epochs']} epochs")
        for name, metrics in summary["evaluations"].items():
            click.echo(f"  eval {name}: " + ", ".join(f"{k} {fmt_value(v)}" for k, v in metrics.items()))
        if "generated" in summary:
            g = summary["generated"]
            click.echo(
                f"  dataset {g['dataset']}: {g['accepted']} examples from {g['sources']} sources; "
                f"rejected: {g['rejected'] or 'none'}"
            )
        if "attack" in summary:
            a = summary["attack"]
            click.echo(
                f"  {a['method']} attack on {a['source_run']} ({a['dataset']}, {a['n_examples']} examples): "
                f"Clean% {fmt_value(a['clean_accuracy'])}, Aua% {fmt_value(a['aua'])}, "
                f"success rate {fmt_value(a['success_rate'])}, #Query {fmt_value(a['avg_queries'])}"
            )
            if a["f1"] is not None:  # a QA attack (EM is Clean% and Aua% above)
                click.echo(
                    f"  F1 {fmt_value(a['clean_f1'])} -> {fmt_value(a['f1'])} under attack; "
                    f"{a['n_unattackable']} example(s) could not be attacked (reasons: attack_results.reason)"
                )
    if status != "done":
        sys.exit(1)


def print_inline(results: Any, as_json: bool) -> None:
    if as_json:
        print_json(results[0] if isinstance(results, list) and len(results) == 1 else results)
        return
    for result in results if isinstance(results, list) else [results]:
        metrics = result.get("metrics") or {}
        print_table(
            f"{result.get('run_id')} on {result.get('eval_set')}",
            ["metric", "value"],
            [[k, fmt_value(v)] for k, v in metrics.items()],
        )


def kind_command(kind: JobKind) -> click.Command:
    """The command of one job kind."""

    def body(
        detach: bool, workspace: str | None, as_json: bool, resume_run: str | None = None, **opts: Any
    ) -> None:
        from engine.jobs import create_run, resume, spawn

        ws = get_workspace(workspace)
        values = given(opts)
        if resume_run:
            if values:
                raise BadInputError(
                    f"--resume continues a run with its own settings; give no other {kind.command} options"
                )
            start_and_follow(ws, resume_run, resume(ws, resume_run), detach, as_json)
            return
        required = [f for f in kind.fields if f.required and f.argument and f.name not in values]
        if required:
            f = required[0]
            raise BadInputError(f"missing {f.name.upper()}: {f.help}")
        if kind.inline is not None and not detach:
            with stderr.status(f"{kind.command}: running in this process ..."):
                results = kind.inline(ws, values)
            print_inline(results, as_json)
            return
        run_id = create_run(ws, {"kind": kind.name, **values})
        if kind.announce is not None and not as_json:
            stderr.print(kind.announce(read_config(ws.run_dir(run_id)) or {}), highlight=False)
        start_and_follow(ws, run_id, spawn(ws, run_id), detach, as_json)

    fn: Callable[..., Any] = user_errors(body)
    fn = json_option(fn)
    fn = workspace_option(fn)
    if kind.resumable:
        fn = click.option(
            "--resume", "resume_run", default=None, help="continue RUN from its last complete epoch"
        )(fn)
    detach_help = (
        "run as a background job (its progress in `dynascope jobs`)"
        if kind.inline is not None
        else "start the job in the background and return"
    )
    fn = click.option("--detach", is_flag=True, help=detach_help)(fn)
    fn = kind_options(kind)(fn)
    return click.command(kind.command, help=kind.help)(fn)


COMMANDS = tuple(kind_command(kind) for kind in KINDS.values())
