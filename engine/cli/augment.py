"""`dynascope extra-answers`: a QA dataset with rule-based synthetic second answer spans (seed 001)."""

from __future__ import annotations

import click

from engine.cli.common import (
    catalog,
    get_workspace,
    json_option,
    print_json,
    require_writable,
    user_errors,
    workspace_option,
)
from engine.importing.extra_answers import add_extra_answers


@click.command("extra-answers")
@click.argument("dataset")
@click.option(
    "--fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="share of the answerable questions that get a second answer",
)
@click.option("--seed", type=int, default=0, show_default=True, help="which questions, which answers")
@click.option("--name", default=None, help="the new dataset's name [default: DATASET-extra]")
@workspace_option
@json_option
@user_errors
def extra_answers_cmd(
    dataset: str, fraction: float, seed: int, name: str | None, workspace: str | None, as_json: bool
) -> None:
    """Copy QA DATASET, adding in a share of its answerable questions a sentence that holds a second, synthetic
    answer (the answer sentence with another answer of the same shape), labelled as an additional gold span."""
    ws = get_workspace(workspace)
    require_writable(ws)
    with catalog(ws) as con:
        result = add_extra_answers(con, dataset, fraction=fraction, seed=seed, name=name)
    if as_json:
        print_json(
            {
                "name": result.name,
                "n_examples": result.n_examples,
                "n_added": result.n_added,
                "skipped": result.skipped,
            }
        )
        return
    click.echo(
        f"'{result.name}': {result.n_examples} questions, {result.n_added} with a synthetic second answer"
    )
    for reason, count in result.skipped.items():
        click.echo(f"  not changed ({reason}): {count}")


COMMANDS = (extra_answers_cmd,)
