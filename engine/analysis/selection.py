"""Selections: a top-p% region (or a seeded random p%) of a run's examples becomes a new dataset.

The new dataset holds copies of the source dataset's rows (same example ids, same row order), names the source
as its `parent`, and gets a row in `selections`; all of it in one transaction. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass
from typing import Any

import duckdb

from engine.analysis.regions import (
    ADVERSARIAL_REGIONS,
    SELECTION_REGIONS,
    CartographyBounds,
    RobustnessBounds,
    balanced_quotas,
    default_bounds,
    region_sql,
    selection_size,
    top_fraction_sql,
)
from engine.errors import BadInputError
from storage.catalog import transaction


@dataclass
class SelectionResult:
    name: str
    run_id: str
    source_dataset: str
    region: str
    fraction: float
    balanced: bool
    seed: int
    bounds: str | None
    n_examples: int
    n_candidates: int
    per_group: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_selection(
    run_id: str, region: str, fraction: float, balanced: bool, seed: int, bounds: str | None = None
) -> str:
    """How runs, jobs and compare name a selection: 'ambiguous 33% of <run>' (or its map boundaries)."""
    if bounds:
        return f"{region} (bounds {bounds}) of {run_id}"
    extra = (" balanced" if balanced else "") + (f" seed {seed}" if region == "random" else "")
    return f"{region} {fraction * 100:.3g}%{extra} of {run_id}"


def run_info(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The run's row and how many metrics it has; BadInputError for an unknown run."""
    row = con.execute(
        "SELECT run_id, kind, dataset, status, epochs_done, metrics_epochs FROM runs WHERE run_id = ?",
        [run_id],
    ).fetchone()
    if row is None:
        known = [
            r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 10").fetchall()
        ]
        hint = (
            f"; recent runs: {', '.join(known)}" if known else "; there are no runs yet (dynascope train ...)"
        )
        raise BadInputError(f"no run named '{run_id}'{hint}")
    info = dict(zip(("run_id", "kind", "dataset", "status", "epochs_done", "metrics_epochs"), row))
    counts = con.execute(
        """SELECT count(*), count(sensitivity), max(epochs) FROM example_metrics WHERE run_id = ?""", [run_id]
    ).fetchone()
    info["n_metrics"], info["n_adversarial"], info["max_epochs"] = counts if counts else (0, 0, None)
    return info


def require_metrics(info: dict[str, Any]) -> None:
    if not info["n_metrics"]:
        raise BadInputError(
            f"run '{info['run_id']}' has no per-example metrics yet (status {info['status']}, "
            f"{info['epochs_done']} epochs done): metrics appear once it has finished an epoch with dynamics recorded"
        )


def select_examples(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    region: str,
    fraction: float,
    name: str,
    *,
    balanced: bool = False,
    seed: int = 0,
    bounds: CartographyBounds | RobustnessBounds | None = None,
) -> SelectionResult:
    """Create dataset `name` from the top `fraction` of the run's examples in `region` (or a random fraction);
    with `bounds`, from every example the map puts in `region` under those boundaries (fraction is ignored)."""
    if region not in SELECTION_REGIONS:
        raise BadInputError(f"unknown region '{region}'; choose one of {', '.join(SELECTION_REGIONS)}")
    bounds_text = None
    region_filter = ""
    if bounds is not None:
        kind = "robustness" if region in ADVERSARIAL_REGIONS else "cartography"
        if region == "random" or not isinstance(bounds, type(default_bounds(kind))):
            raise BadInputError(f"--bounds selects a region of the {kind} map; '{region}' is not one")
        if balanced:
            raise BadInputError(
                "--balanced works with --fraction (a ranking), not with --bounds (a map region)"
            )
        bounds_text = ",".join(f"{v:g}" for v in astuple(bounds))
        region_filter = f" AND ({region_sql(kind, bounds)}) = '{region}'"
        fraction = 1.0
    if not (0 < fraction <= 1):
        raise BadInputError(f"--fraction {fraction}: must be in (0, 1], e.g. 0.33 for the top 33%")
    if not name.strip():
        raise BadInputError("--name must not be empty")
    info = run_info(con, run_id)
    require_metrics(info)
    if region in ADVERSARIAL_REGIONS and not info["n_adversarial"]:
        raise BadInputError(
            f"region '{region}' needs adversarial dynamics, and run '{run_id}' recorded none; "
            "train with --adversarial-dynamics, or choose easy, ambiguous, hard or random"
        )
    source = info["dataset"]
    ds = con.execute("SELECT task FROM datasets WHERE name = ?", [source]).fetchone() if source else None
    if ds is None:
        raise BadInputError(
            f"run '{run_id}' was trained on dataset '{source}', which is not in the catalog any more"
        )
    if con.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0]:  # type: ignore[index]
        raise BadInputError(f"a dataset named '{name}' already exists; choose another --name")

    # The candidates: the run's examples that are in its dataset, with the group used for balancing
    # (the class label; for QA, answerable or not).
    con.execute(
        """CREATE OR REPLACE TEMP TABLE ranked_source AS
           SELECT m.*, coalesce(e.label_name, e.label::VARCHAR,
                                   CASE WHEN e.is_impossible THEN 'unanswerable' WHEN NOT e.is_impossible THEN 'answerable' END,
                                   '') AS grp
           FROM example_metrics m JOIN examples e ON e.dataset = ? AND e.example_id = m.example_id
           WHERE m.run_id = ?"""
        + region_filter,
        [source, run_id],
    )
    try:
        n = con.execute("SELECT count(*) FROM ranked_source").fetchone()[0]  # type: ignore[index]
        if n == 0 and bounds_text:
            raise BadInputError(
                f"no example of run '{run_id}' is in region '{region}' with bounds {bounds_text}"
            )
        if n == 0:
            raise BadInputError(f"none of run '{run_id}''s examples are in its dataset '{source}'")
        k = selection_size(fraction, n)
        quotas = None
        if balanced:
            counts = dict(con.execute("SELECT grp, count(*) FROM ranked_source GROUP BY grp").fetchall())
            quotas = balanced_quotas(counts, k)
        picked_sql = top_fraction_sql(region, quotas, k, seed)
        with transaction(con):
            con.execute(f"CREATE OR REPLACE TEMP TABLE picked AS {picked_sql}")
            con.execute(
                """INSERT INTO datasets (name, task, n_examples, source, format, label_names, is_pair, version, parent)
                   SELECT ?, task, (SELECT count(*) FROM picked), ?, format, label_names, is_pair, version, name
                   FROM datasets WHERE name = ?""",
                [name, describe_selection(run_id, region, fraction, balanced, seed, bounds_text), source],
            )
            con.execute(
                """INSERT INTO examples BY NAME
                   SELECT ? AS dataset, e.* EXCLUDE (dataset) FROM examples e
                   WHERE e.dataset = ? AND e.example_id IN (SELECT example_id FROM picked)""",
                [name, source],
            )
            con.execute(
                """INSERT INTO selections (name, run_id, region, fraction, balanced, seed, bounds)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [name, run_id, region, fraction, balanced, seed, bounds_text],
            )
        per_group = dict(
            con.execute(
                """SELECT grp, count(*) FROM ranked_source WHERE example_id IN (SELECT example_id FROM picked)
                   GROUP BY grp ORDER BY grp"""
            ).fetchall()
        )
        selected = sum(per_group.values())
    finally:
        con.execute("DROP TABLE IF EXISTS ranked_source")
        con.execute("DROP TABLE IF EXISTS picked")
    return SelectionResult(
        name=name,
        run_id=run_id,
        source_dataset=source,
        region=region,
        fraction=fraction,
        balanced=balanced,
        seed=seed,
        bounds=bounds_text,
        n_examples=selected,
        n_candidates=n,
        per_group=per_group,
    )
