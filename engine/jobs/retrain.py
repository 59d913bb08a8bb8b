"""The `retrain` job kind: select a region of a run's data map and train on it with the source run's settings.

    dynascope retrain RUN --region R (--fraction F | --bounds A,B) [--balanced] [--seed S] [--name NEW] [overrides]

The selection is recorded in the catalog (a dataset of its own plus a `selections` row, engine.analysis.selection)
and the new run records its source run and selection, so runs, jobs and compare can say "ambiguous 33% of <run>".
Every hyperparameter left unset is the source run's; `--seed` also seeds a random selection.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.analysis.labelmix import LabelMix
from engine.analysis.regions import ADVERSARIAL_REGIONS, SELECTION_REGIONS, parse_bounds
from engine.analysis.runs import origin
from engine.errors import BadInputError
from engine.jobs.mitigation import for_retrain
from engine.jobs.mitigation import source_info as mitigation_source
from engine.jobs.spec import Field, JobKind
from engine.jobs.train import EVAL, HYPERPARAMETERS, TRAIN, TRAIN_SETTINGS, create_train_run, run_train_job
from storage.artifacts import read_config
from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace

SOURCE = Field("run", str, "the run whose data map selects the examples", required=True, argument=True)
REGION = Field("region", str, "the region to select", required=True, choices=SELECTION_REGIONS)
FRACTION = Field(
    "fraction",
    float,
    "the top F of the region's ranking (ambiguous: highest variability, ...)",
    default=0.33,
    minimum=0,
    maximum=1,
    exclusive_minimum=True,
)
BOUNDS = Field(
    "bounds",
    str,
    "every example the map puts in the region with these boundaries: A,B = ambiguous variability, easy "
    "confidence (robustness map: swing variability, robust sensitivity)",
)
BALANCED = Field("balanced", bool, "equal share per label (with --fraction)", default=False)
NAME = Field("name", str, "name of the selection's dataset and of the run (default: <run>-<region>-<F>pct)")
# Unset means "as the source run": the same settings with no default of their own.
INHERITED = tuple(
    dataclasses.replace(f, default=None, help=f"{f.help}; default: the source run's") for f in TRAIN_SETTINGS
)


def selection_name(
    run_id: str,
    region: str,
    fraction: float | None,
    bounds: str | None,
    balanced: bool = False,
    seed: int = 0,
) -> str:
    """The default name of a selection: every choice that changes what is selected is in it, so two different
    selections never claim one name (a balanced and a plain one, two seeds of random)."""
    if bounds:
        return f"{run_id}-{region}-bounds-{bounds.replace(',', '-')}"
    name = f"{run_id}-{region}-{round(float(fraction or 0) * 100):d}pct"
    if balanced:
        name += "-balanced"
    if region == "random" and seed:
        name += f"-seed{int(seed)}"
    return name


def source_settings(ws: Workspace, run_id: str) -> dict[str, Any]:
    """The source run's hyperparameters (what the retrain inherits), from its config.json."""
    config = read_config(ws.run_dir(run_id))
    if config is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}; see `dynascope runs`")
    if "dynamics" not in config.get("artifacts", ["dynamics"]):  # configs before the registry: a training run
        raise BadInputError(f"run '{run_id}' is a {config.get('kind')} job; retrain needs a training run")
    # not --limit: the selection is already drawn from the examples the source run trained on
    inherited = {n: config.get(n) for n in HYPERPARAMETERS if n != "limit" and config.get(n) is not None}
    inherited["eval"] = [m["name"] for m in config.get("eval_sets") or []]
    return inherited | {"dataset": config.get("dataset"), "task": config.get("task")}


def existing_selection(
    con: Any, name: str, run_id: str, region: str, spec: dict[str, Any], seed: int
) -> dict[str, Any] | None:
    """The same selection made before (same run, region, fraction or bounds, balance, seed) is reused; a
    different one under the same name is refused (select_examples says so)."""
    row = con.execute(
        """SELECT s.run_id, s.region, s.fraction, s.balanced, s.seed, s.bounds, d.n_examples, d.parent
           FROM selections s JOIN datasets d ON d.name = s.name WHERE s.name = ?""",
        [name],
    ).fetchone()
    if row is None:
        return None
    wanted = (run_id, region, spec.get("fraction", 1.0), bool(spec.get("balanced")), seed, spec.get("bounds"))
    if (row[0], row[1], row[2], bool(row[3]), row[4], row[5]) != wanted:
        return None
    return {
        "name": name,
        "run_id": run_id,
        "source_dataset": row[7],
        "region": region,
        "fraction": row[2],
        "balanced": bool(row[3]),
        "seed": row[4],
        "bounds": row[5],
        "n_examples": row[6],
    }


def selection_request(values: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The retrain's parsed values (fraction defaulted unless bounds are given, bounds normalised) and the
    parsed bounds (None for a top-F ranking)."""
    spec = RETRAIN.parse(values)
    if "fraction" in spec and "bounds" in spec:
        raise BadInputError(
            "give either --fraction F (a top-F ranking) or --bounds A,B (a map region), not both"
        )
    if "bounds" not in spec:
        spec["fraction"] = spec.get("fraction", FRACTION.default)
        return spec, None
    kind = "robustness" if spec["region"] in ADVERSARIAL_REGIONS else "cartography"
    try:
        bounds = parse_bounds(kind, spec["bounds"])
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    spec["bounds"] = ",".join(f"{v:g}" for v in dataclasses.astuple(bounds))
    return spec, bounds


def preview_retrain(ws: Workspace, values: dict[str, Any]) -> str:
    """What the selection would hold: its size and label mix, and a warning when it leaves a label out."""
    from engine.analysis.selection import preview_selection

    spec, bounds = selection_request(values)
    with open_catalog(ws) as con:
        sync(ws, con)
        result = preview_selection(
            con,
            spec["run"],
            spec["region"],
            float(spec.get("fraction", 1.0)),
            balanced=bool(spec.get("balanced")),
            seed=int(spec.get("seed", 0)),
            bounds=bounds,
        )
    if bounds is None:
        text = f"selects {result.n_examples} of {result.n_candidates} examples; {result.label_report()}"
    else:
        text = f"selects all {result.n_examples} examples the map puts in '{spec['region']}'; {result.label_report()}"
    if result.mix.missing("selected") and not result.balanced and bounds is None:
        text += " (balanced: yes gives every label a share)"
    return text


def create_retrain_run(ws: Workspace, values: dict[str, Any]) -> str:
    from engine.analysis.selection import select_examples

    spec, bounds = selection_request(values)
    source = spec["run"]
    region = spec["region"]
    inherited = for_retrain(source_settings(ws, source), spec, source)
    name = spec.get("name") or selection_name(
        source,
        region,
        spec.get("fraction"),
        spec.get("bounds"),
        balanced=bool(spec.get("balanced")),
        seed=int(spec.get("seed", 0)),
    )
    seed = int(spec.get("seed", 0))
    with open_catalog(ws) as con:
        sync(ws, con)
        wanted = inherited | spec
        if wanted.get("mitigation", "none") != "none":  # refused before the selection is written
            mitigation_source(ws, con, wanted["mitigation_from"])
        selection = existing_selection(con, name, source, region, spec, seed)
        if selection is None:
            selection = select_examples(
                con,
                source,
                region,
                float(spec.get("fraction", 1.0)),
                name,
                balanced=bool(spec.get("balanced")),
                seed=seed,
                bounds=bounds,
            ).as_dict()
    overrides = {k: v for k, v in spec.items() if k in HYPERPARAMETERS or k == "eval"}
    train_values = {k: v for k, v in inherited.items() if k not in ("task",)} | overrides
    train_values |= {
        "kind": "retrain",
        "name": selection["name"],  # the run is known by its selection's name
        "subset": selection["name"],
        "source_run": source,
        "selection": selection,
    }
    return create_train_run(ws, train_values)


def announce(config: dict[str, Any]) -> str:
    selection = config.get("selection") or {}
    text = (
        f"selected {selection.get('n_examples')} examples into '{selection.get('name')}' ({origin(config)})"
    )
    if selection.get("per_group"):  # a selection made now (a reused one was reported when it was made)
        mix = LabelMix(selection.get("candidates_per_group") or {}, {"selected": selection["per_group"]})
        text += f"; {mix.summary('selected')}"
        if mix.missing("selected") and not selection.get("balanced") and not selection.get("bounds"):
            text += " (--balanced gives every label a share)"
    return text


RETRAIN = JobKind(
    name="retrain",
    help="Select a region of RUN's data map and train on it with RUN's settings (any train option overrides).",
    fields=(
        SOURCE,
        REGION,
        FRACTION,
        BOUNDS,
        BALANCED,
        NAME,
        *INHERITED,
        dataclasses.replace(EVAL, help=f"{EVAL.help}; default: the source run's"),
    ),
    create=create_retrain_run,
    run=run_train_job,
    artifacts=TRAIN.artifacts,
    announce=announce,
    preview=preview_retrain,
)
