"""Which examples of `--from` a generate job starts from: every one (sampled), the examples of a saved selection
(`--selection S`, made by `dynascope select`), or for `augment-region` the examples a run's data map puts in a
region (`--region R [--bounds A,B]`, what the map sends in two keys).

Both restrictions go through the selections' own rule (engine.analysis.selection), and are recorded in the run's
config as a `selection` object like a retrain's, so the runs listing says where the sources came from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import duckdb

from engine.analysis.regions import ADVERSARIAL_REGIONS, parse_bounds
from engine.errors import BadInputError
from storage.workspace import Workspace


def saved_selection(
    con: duckdb.DuckDBPyConnection, name: str, dataset: str
) -> tuple[list[str], dict[str, Any]]:
    """(example ids, description) of the saved selection `name`, which must have been made from `dataset`."""
    row = con.execute(
        """SELECT s.run_id, s.region, s.fraction, s.balanced, s.seed, s.bounds, d.parent
           FROM selections s JOIN datasets d ON d.name = s.name WHERE s.name = ?""",
        [name],
    ).fetchone()
    if row is None:
        known = [
            r[0]
            for r in con.execute("SELECT name FROM selections ORDER BY created_at DESC LIMIT 10").fetchall()
        ]
        hint = f"known: {', '.join(known)}" if known else "there are none yet (dynascope select RUN ...)"
        raise BadInputError(f"no selection named '{name}' (--selection); {hint}")
    run_id, region, fraction, balanced, seed, bounds, parent = row
    if parent != dataset:
        raise BadInputError(
            f"selection '{name}' holds examples of '{parent}', not of '{dataset}': pass --from {parent} "
            f"(or --from {name} without --selection)"
        )
    ids = [r[0] for r in con.execute("SELECT example_id FROM examples WHERE dataset = ?", [name]).fetchall()]
    described = {"name": name, "run_id": run_id, "region": region, "fraction": fraction,
                 "balanced": bool(balanced), "seed": seed, "bounds": bounds}  # fmt: skip
    return ids, described


def map_region(
    con: duckdb.DuckDBPyConnection,
    ws: Workspace,
    run_id: str,
    region: str,
    bounds_text: str | None,
    dataset: str,
) -> tuple[list[str], dict[str, Any]]:
    """(example ids, description) of every example run `run_id`'s map puts in `region`: with the boundaries
    `bounds_text` ("A,B"), else those fitted to the run (what the map draws when they were not moved)."""
    from engine.analysis.fitted_cache import cached_fitted_bounds
    from engine.analysis.selection import region_example_ids, run_info

    if region == "random":
        raise BadInputError("--region random is not a map region; make a random selection (dynascope select)")
    info = run_info(con, run_id)
    if info["dataset"] != dataset:
        raise BadInputError(
            f"run {run_id} was trained on '{info['dataset']}', so its map's regions are examples of that "
            f"dataset, not of '{dataset}': pass --from {info['dataset']}"
        )
    kind = "robustness" if region in ADVERSARIAL_REGIONS else "cartography"
    if bounds_text:
        try:
            bounds = parse_bounds(kind, bounds_text)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
    else:
        bounds = cached_fitted_bounds(con, ws, run_id, adversarial=kind == "robustness").of(kind)
    text = ",".join(f"{v:g}" for v in dataclasses.astuple(bounds))
    ids = region_example_ids(con, run_id, region, bounds)
    if not ids:
        raise BadInputError(f"run {run_id}'s map puts no example in '{region}' with bounds {text}")
    return ids, {"name": None, "run_id": run_id, "region": region, "fraction": 1.0, "balanced": False,
                 "seed": 0, "bounds": text}  # fmt: skip


def restrict_sources(
    con: duckdb.DuckDBPyConnection, ws: Workspace, config: dict[str, Any]
) -> tuple[set[str] | None, dict[str, Any] | None]:
    """The ids the job may start from (None: all of --from) and the `selection` object for its config."""
    selection, region = config.get("selection"), config.get("region")
    if config.get("bounds") and not region:
        raise BadInputError("--bounds goes with --region (the boundaries of the map that draws the region)")
    if not selection and not region:
        return None, None
    if selection and region:
        raise BadInputError("give either --selection S or --region R, not both")
    if region:
        if config["pipeline"] != "augment-region":
            raise BadInputError(
                f"--region is augment-region's (a region of --run's data map); for {config['pipeline']} save "
                "the region as a selection (dynascope select RUN --region R ...) and pass --selection"
            )
        if not config.get("run"):
            raise BadInputError("--region needs the run whose data map draws it (--run RUN)")
        ids, described = map_region(con, ws, config["run"], region, config.get("bounds"), config["from"])
    else:
        ids, described = saved_selection(con, str(selection), config["from"])
    return set(ids), described
