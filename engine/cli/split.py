"""`dynascope split`: a dataset's articles divided into two new datasets (train / test parts)."""

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
from engine.importing.split import SPLIT_BY, default_names, split_dataset


@click.command("split")
@click.argument("dataset")
@click.option(
    "--by", type=click.Choice(SPLIT_BY), default="title", show_default=True, help="what stays together"
)
@click.option(
    "--fraction",
    type=float,
    default=0.5,
    show_default=True,
    help="share of the articles in the first (train) part, between 0 and 1",
)
@click.option("--seed", type=int, default=0, show_default=True, help="which articles go where")
@click.option("--train-name", default=None, help="the first part's name [default: DATASET-train]")
@click.option("--test-name", default=None, help="the second part's name [default: DATASET-test]")
@workspace_option
@json_option
@user_errors
def split_cmd(
    dataset: str,
    by: str,
    fraction: float,
    seed: int,
    train_name: str | None,
    test_name: str | None,
    workspace: str | None,
    as_json: bool,
) -> None:
    """Split DATASET by article title into two new datasets that share no article (deterministic by --seed)."""
    ws = get_workspace(workspace)
    require_writable(ws)
    train_default, test_default = default_names(dataset)
    with catalog(ws) as con:
        parts = split_dataset(
            con,
            dataset,
            by=by,
            fraction=fraction,
            seed=seed,
            names=(train_name or train_default, test_name or test_default),
        )
    if as_json:
        print_json([{"name": p.name, "n_titles": p.n_titles, "n_examples": p.n_examples} for p in parts])
        return
    for part in parts:
        click.echo(f"'{part.name}': {part.n_examples} questions from {part.n_titles} articles")


COMMANDS = (split_cmd,)
