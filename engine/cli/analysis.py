"""CLI commands for metrics, maps, selections and imported dynamics (registered on `engine.cli.cli`).

dynascope metrics RUN [--json | --parquet OUT] [--region R] [--limit N] [--bounds A,B]
dynascope map RUN [--kind cartography|robustness] [--width W --height H] [--bounds A,B] [--json]
dynascope select RUN --region R --fraction F [--balanced] [--seed S] --name NEW [--json]
dynascope import-dynamics DIR --format cartography --dataset NAME [--name RUN] [--json]
dynascope compare [RUN ...] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.analysis.bounds import run_bounds
from engine.analysis.format import fmt_value
from engine.analysis.metrics import metrics_query, region_summary
from engine.analysis.regions import (
    CARTOGRAPHY_REGIONS,
    MAP_KINDS,
    ROBUSTNESS_REGIONS,
    SELECTION_REGIONS,
    CartographyBounds,
    RobustnessBounds,
    parse_bounds,
)
from engine.analysis.selection import require_metrics, run_info
from engine.cli.common import (
    catalog,
    get_workspace,
    json_option,
    print_json,
    stderr_console,
    user_errors,
    workspace_option,
)
from engine.errors import BadInputError


def _bounds(kind: str, text: str | None) -> CartographyBounds | RobustnessBounds:
    try:
        return parse_bounds(kind, text)
    except ValueError as exc:
        raise BadInputError(str(exc)) from exc


@click.command("metrics")
@click.argument("run")
@click.option(
    "--parquet",
    "parquet_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="write all rows to this Parquet file",
)
@click.option(
    "--region",
    type=click.Choice(CARTOGRAPHY_REGIONS + ROBUSTNESS_REGIONS),
    default=None,
    help="only this map region",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="at most N rows (--json; the table shows 10 by default)",
)
@click.option(
    "--bounds",
    default=None,
    help="cartography map bounds AMBIGUOUS_VARIABILITY,EASY_CONFIDENCE (default: fitted to the run)",
)
@click.option(
    "--robust-bounds",
    default=None,
    help="robustness map bounds SWING_VARIABILITY,ROBUST_SENSITIVITY (default: fitted to the run)",
)
@workspace_option
@json_option
@user_errors
def metrics_cmd(
    run: str,
    parquet_out: str | None,
    region: str | None,
    limit: int | None,
    bounds: str | None,
    robust_bounds: str | None,
    workspace: str | None,
    as_json: bool,
) -> None:
    """Per-example metrics of a run (confidence, variability, correctness, forgetting, AUM, EL2N, and
    sensitivity / adversarial variability / flip rate when recorded), with label and map regions.

    correct_epochs = correctness x epochs is allenai/cartography's `correctness`."""
    if as_json and parquet_out:
        raise BadInputError("choose one of --json and --parquet")
    given_cart = _bounds("cartography", bounds) if bounds is not None else None
    given_rob = _bounds("robustness", robust_bounds) if robust_bounds is not None else None
    with catalog(get_workspace(workspace), read_only_ok=True) as con:
        info = run_info(con, run)
        require_metrics(info)
        # the regions of the map: the given bounds, else those fitted to the run (as `dynascope map` draws)
        cart, cart_rule = run_bounds(con, run, "cartography", given_cart)
        rob, rob_rule = run_bounds(con, run, "robustness", given_rob)
        assert isinstance(cart, CartographyBounds) and isinstance(rob, RobustnessBounds)  # narrows for mypy
        if parquet_out:
            sql, params = metrics_query(info, cart, rob, region, limit)
            out = Path(parquet_out).expanduser().resolve()
            if not out.parent.is_dir():
                raise BadInputError(f"--parquet {parquet_out}: the folder {out.parent} does not exist")
            quoted = out.as_posix().replace("'", "''")
            con.execute(f"COPY ({sql}) TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)", params)
            n = con.execute(f"SELECT count(*) FROM read_parquet('{quoted}')").fetchone()[0]  # type: ignore[index]
            click.echo(f"wrote {n} rows of run '{run}' to {out}")
            return
        if as_json:
            sql, params = metrics_query(info, cart, rob, region, limit)
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            print_json(rows)
            return
        summary = region_summary(con, info, cart, rob)
        sql, params = metrics_query(info, cart, rob, region, 10 if limit is None else limit)
        cur = con.execute(sql, params)
        sample = cur.fetchall()
        cols = [d[0] for d in cur.description]
    click.echo(
        f"run {run}: {info['n_metrics']} examples, {info['max_epochs']} epochs (dataset {info['dataset']})"
    )
    click.echo(f"cartography regions: {cart_rule}")
    if info["n_adversarial"]:
        click.echo(f"robustness regions: {rob_rule}")
    click.echo("")
    for line in text_table(
        ["map", "region", "examples", "confidence", "variability", "correctness", "forgetting"], summary
    ):
        click.echo(line)
    shown = [
        "example_id",
        "label_name",
        "region",
        "confidence",
        "variability",
        "correctness",
        "forgetting",
        "aum",
    ]
    if info["n_adversarial"]:
        shown += ["robustness_region", "sensitivity", "flip_rate"]
    idx = [cols.index(c) for c in shown]
    click.echo("")
    click.echo(f"first {len(sample)} examples (all of them: --json or --parquet OUT)")
    for line in text_table(shown, [[r[i] for i in idx] for r in sample]):
        click.echo(line)


def text_table(columns: list[str], rows: list[list[Any]], digits: int = 4) -> list[str]:
    """Plain aligned columns (numbers right-aligned, floats to `digits` decimals): readable in a pipe, a log or
    a narrow terminal."""
    cells = [[fmt_value(v, digits) for v in row] for row in rows]
    numeric = [
        all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows if r[i] is not None)
        for i in range(len(columns))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    return [line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells]


@click.command("map")
@click.argument("run")
@click.option("--kind", type=click.Choice(MAP_KINDS), default="cartography", show_default=True)
@click.option("--width", type=click.IntRange(min=10, max=400), default=60, show_default=True)
@click.option("--height", type=click.IntRange(min=5, max=200), default=20, show_default=True)
@click.option(
    "--bounds",
    default=None,
    help="fixed region bounds A,B: cartography AMBIGUOUS_VARIABILITY,EASY_CONFIDENCE, robustness "
    "SWING_VARIABILITY,ROBUST_SENSITIVITY (default: fitted to the run, the rule is printed with the map)",
)
@workspace_option
@json_option
@user_errors
def map_cmd(
    run: str, kind: str, width: int, height: int, bounds: str | None, workspace: str | None, as_json: bool
) -> None:
    """Print the data map as text: x = variability, y = confidence (cartography), or x = sensitivity,
    y = adversarial variability (robustness); region boundaries drawn, counts per region below."""
    from engine.analysis.datamap import bin_counts, render_map
    from engine.analysis.labelmix import map_label_mix

    chosen = _bounds(kind, bounds) if bounds is not None else None  # None: fitted to the run
    with catalog(get_workspace(workspace), read_only_ok=True) as con:
        info = run_info(con, run)
        require_metrics(info)
        if kind == "robustness" and not info["n_adversarial"]:
            raise BadInputError(
                f"run '{run}' recorded no adversarial dynamics, so it has no robustness map; "
                "train with --adversarial-dynamics, or use --kind cartography"
            )
        grid = bin_counts(con, run, kind, width, height, chosen)
        mix = map_label_mix(con, run, kind, grid.bounds)
    if as_json:
        print_json(
            {
                "run_id": run,
                "kind": kind,
                "x": grid.x_label,
                "y": grid.y_label,
                "x_range": grid.x_range,
                "y_range": grid.y_range,
                "counts": grid.counts,
                "total": grid.total,
                "bounds": vars(grid.bounds),
                "bounds_fitted": chosen is None,
                "rule": grid.rule,
                "regions": grid.region_counts,
                "label_mix": {"all": mix.overall, **mix.groups},
            }
        )
        return
    click.echo(f"data map of run {run} ({kind})")
    for line in render_map(grid, mix=mix):
        click.echo(line)


@click.command("select")
@click.argument("run")
@click.option(
    "--region", required=True, type=click.Choice(SELECTION_REGIONS), help="which top-p% region (or random)"
)
@click.option("--fraction", required=True, type=float, help="share of the run's examples, in (0, 1]")
@click.option("--balanced", is_flag=True, help="an equal share per label, as far as each label has examples")
@click.option("--seed", type=int, default=0, show_default=True, help="for --region random")
@click.option("--name", required=True, help="name of the new dataset")
@workspace_option
@json_option
@user_errors
def select_cmd(
    run: str,
    region: str,
    fraction: float,
    balanced: bool,
    seed: int,
    name: str,
    workspace: str | None,
    as_json: bool,
) -> None:
    """Make a new dataset NAME from the top FRACTION of a run's examples in a region: easy (highest confidence),
    ambiguous (highest variability), hard (lowest confidence), robust (lowest sensitivity), non-robust (highest
    sensitivity), swing (highest adversarial variability), or a seeded random FRACTION."""
    from engine.analysis.selection import select_examples

    with catalog(get_workspace(workspace)) as con:
        result = select_examples(con, run, region, fraction, name, balanced=balanced, seed=seed)
    if as_json:
        print_json(result.as_dict())
        return
    click.echo(
        f"selected {result.n_examples} of {result.n_candidates} examples ({region}, {fraction:g}"
        f"{', balanced' if balanced else ''}) into dataset '{name}' (parent '{result.source_dataset}')"
    )
    click.echo(f"  {result.label_report()}  (share of the selection vs of the run's examples)")
    if result.mix.missing("selected") and not balanced:
        click.echo("  --balanced gives every label an equal share as far as it has examples")


@click.command("import-dynamics")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["cartography"]), default="cartography", show_default=True)
@click.option(
    "--dataset", required=True, help="the dataset the dynamics were logged on (guids = example ids)"
)
@click.option(
    "--name", "run_name", default=None, help="run id for the import (default: import-<dataset>-<time>)"
)
@workspace_option
@json_option
@user_errors
def import_dynamics_cmd(
    directory: Path, fmt: str, dataset: str, run_name: str | None, workspace: str | None, as_json: bool
) -> None:
    """Import training dynamics logged by allenai/cartography (dynamics_epoch_N.jsonl files) as a run."""
    from engine.importing.cartography import import_cartography

    ws = get_workspace(workspace)
    stderr = stderr_console()
    with stderr.status(f"reading {directory} ..."):
        result = import_cartography(ws, directory, dataset, run_name)
    if as_json:
        print_json(vars(result))
        return
    for note in result.notes:
        stderr.print(f"note: {note}", highlight=False)
    click.echo(
        f"imported {result.epochs} epochs of dynamics for {result.n_examples} examples of '{dataset}' "
        f"as run {result.run_id}"
    )


@click.command("compare")
@click.argument("runs", nargs=-1)
@workspace_option
@json_option
@user_errors
def compare_cmd(runs: tuple[str, ...], workspace: str | None, as_json: bool) -> None:
    """Runs under attack side by side, like the paper's Table 3: per run and attacked dataset, Clean% and, per
    method, Aua% (accuracy under attack) and #Query (mean model queries per attacked example) of its latest
    attack of that method. Without RUN: every attacked run.

    Clean% is measured on the attacked examples (their clean predictions in the attack results), so it and the
    Aua% beside it count the same examples; --json gives fractions and each attack's own figures and run id."""
    from engine.analysis.attacks import attack_methods, attack_table, table3_columns, table3_values

    with catalog(get_workspace(workspace), read_only_ok=True) as con:
        for run in runs:
            run_info(con, run)  # an unknown run: exit 2 with the recent runs named
        rows = attack_table(con, list(dict.fromkeys(runs)) or None)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no attacks yet: dynascope attack RUN DATASET --method pgd|word-swap|char-swap")
        return
    methods = attack_methods(rows)
    table = [
        [row["run_id"], row["dataset"], row["n_examples"] or None, *table3_values(row, methods)]
        for row in rows
    ]
    for line in text_table(["run", "dataset", "n", *table3_columns(methods)], table, digits=1):
        click.echo(line)
    for row in rows:
        for method, attack in row["attacks"].items():
            if attack["n_examples"] != row["n_examples"]:
                click.echo(
                    f"note: {row['run_id']}: {method} attacked {attack['n_examples']} of the {row['n_examples']} "
                    f"examples of {row['dataset']} (Clean% counts them all, its Aua% its own)"
                )
    click.echo("")
    click.echo("Clean%: accuracy on the attacked examples before the attack; Aua%: accuracy under attack;")
    click.echo("#Query: mean model queries per attacked example (one correct before the attack).")
    click.echo(
        "The latest attack per run, dataset and method; all of them: dynascope sql 'SELECT * FROM attacks'"
    )
    origins = [f"  {row['run_id']}: {row['origin']}" for row in rows if row.get("origin")]
    if origins:
        click.echo("trained on:")
        for line in dict.fromkeys(origins):
            click.echo(line)


COMMANDS = (metrics_cmd, map_cmd, select_cmd, import_dynamics_cmd, compare_cmd)
