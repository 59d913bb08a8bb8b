"""`dynascope map-diff RUN_A RUN_B [--kind K] [--json]`: how the examples two runs share moved between the regions
of their data maps (engine.analysis.mapdiff), each run under its own fitted bounds unless given."""

from __future__ import annotations

import click

from engine.analysis.mapdiff import map_diff
from engine.analysis.regions import MAP_KINDS, CartographyBounds, RobustnessBounds, parse_bounds
from engine.cli.common import catalog, get_workspace, json_option, print_json, user_errors, workspace_option
from engine.errors import BadInputError


def _given(kind: str, text: str | None, option: str) -> CartographyBounds | RobustnessBounds | None:
    if text is None:
        return None
    try:
        return parse_bounds(kind, text)
    except ValueError as exc:
        raise BadInputError(f"{option}: {exc}") from exc


@click.command("map-diff")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--kind", type=click.Choice(MAP_KINDS), default="cartography", show_default=True)
@click.option("--bounds-a", default=None, help="fixed bounds A,B of RUN_A's map (default: fitted to the run)")
@click.option("--bounds-b", default=None, help="fixed bounds A,B of RUN_B's map (default: fitted to the run)")
@workspace_option
@json_option
@user_errors
def map_diff_cmd(
    run_a: str,
    run_b: str,
    kind: str,
    bounds_a: str | None,
    bounds_b: str | None,
    workspace: str | None,
    as_json: bool,
) -> None:
    """Region transitions between two runs over the same examples: rows = region in RUN_A, columns = region in
    RUN_B (easy -> hard, ...); the counts add up to the examples both runs share."""
    given_a = _given(kind, bounds_a, "--bounds-a")
    given_b = _given(kind, bounds_b, "--bounds-b")
    with catalog(get_workspace(workspace), read_only_ok=True) as con:
        diff = map_diff(con, run_a, run_b, kind, given_a, given_b)
    if as_json:
        print_json(diff.as_dict())
        return
    click.echo(f"{kind} map diff: {run_a} (rows) -> {run_b} (columns)")
    click.echo(f"  {run_a}: {diff.rule_a}")
    click.echo(f"  {run_b}: {diff.rule_b}")
    click.echo("")
    for line in diff.lines():
        click.echo(line)
    click.echo("")
    share = 100.0 * diff.moved() / diff.shared if diff.shared else 0.0
    click.echo(
        f"{diff.shared:,} shared examples, {diff.moved():,} ({share:.1f}%) changed region; "
        f"only in {run_a}: {diff.only_a:,}, only in {run_b}: {diff.only_b:,}"
    )


COMMANDS = (map_diff_cmd,)
