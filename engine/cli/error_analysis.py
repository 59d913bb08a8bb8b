"""`dynascope error-analysis RUN --set S [--k K] [--json]`: per original question of an evaluated adversarial set
(AddSent, AddOneSent), the variants that fooled the run, whether their predicted span came from the inserted
sentence, and the training-map region of the question's nearest training examples (the run's encoder)."""

from __future__ import annotations

import click

from engine.cli.common import (
    get_workspace,
    json_option,
    print_json,
    print_table,
    user_errors,
    workspace_option,
)


@click.command("error-analysis")
@click.argument("run")
@click.option(
    "--set", "eval_set", required=True, help="an adversarial set RUN was evaluated on (dynascope eval)"
)
@click.option(
    "--k", type=click.IntRange(min=1), default=5, show_default=True, help="nearest training examples"
)
@workspace_option
@json_option
@user_errors
def error_analysis_cmd(run: str, eval_set: str, k: int, workspace: str | None, as_json: bool) -> None:
    """Which adversarial variants fooled RUN, per original question of SET: fooled = the original answered right
    (exact match) and the variant wrong; "inserted" = the fooled variants whose predicted span lies in the
    inserted sentence only; the regions (easy / ambiguous / hard, default bounds) of the K training examples
    nearest the original question by the run's encoder."""
    from engine.evaluation.neighbours import error_analysis

    result = error_analysis(get_workspace(workspace), run, eval_set, k)
    if as_json:
        print_json(result)
        return
    rows = [
        [
            q["original_id"],
            "yes" if q["correct"] else "no",
            f"{len(q['fooled'])}/{q['n_variants']}",
            str(q["from_inserted"]),
            q["nearest_region"] or "-",
            " ".join(f"{r[:4]} {n}" for r, n in q["neighbour_regions"].items()),
        ]
        for q in result["questions"]
    ]
    print_table(
        f"{run} on {eval_set}: variants that fooled the run",
        ["original", "right", "fooled", "inserted", "nearest", f"regions of {k} nearest"],
        rows,
    )
    s = result["summary"]
    click.echo(
        f"{s['n_fooled']} of {s['n_originals_right']} originals answered right were fooled by a variant; "
        f"{s['n_fooled_from_inserted']} of {s['n_fooled_variants']} fooled variants answered from the inserted "
        "sentence. inserted: variants (any) whose predicted span lies in the inserted sentence only."
    )
    click.echo(f"regions: {result['regions']}")


COMMANDS = (error_analysis_cmd,)
