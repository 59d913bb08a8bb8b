"""Selections: a top-p% region (or a seeded random p%) of a run's examples becomes a new dataset.

The new dataset holds copies of the source dataset's rows (same example ids, same row order), names the source
as its `parent`, and gets a row in `selections`; all of it in one transaction. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import asdict, astuple, dataclass, field
from typing import Any

import duckdb

from engine.analysis.labelmix import LABEL_SQL, LabelMix
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
    per_group: dict[str, int]  # label -> examples selected (labelmix.LABEL_SQL)
    candidates_per_group: dict[str, int] = field(default_factory=dict)  # label -> the run's examples

    @property
    def mix(self) -> LabelMix:
        return LabelMix(self.candidates_per_group, {"selected": self.per_group})

    def label_report(self) -> str:
        """The label counts of the selection against the run's, and the labels it leaves out."""
        return self.mix.summary("selected")

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


@dataclass
class _Plan:
    """A selection worked out but not written: temp tables `ranked_source` (the candidates with their label
    `grp`) and `picked` (the chosen ids) exist on the connection until `_drop_plan_tables`."""

    run_id: str
    source: str
    region: str
    fraction: float
    balanced: bool
    seed: int
    bounds_text: str | None
    n_candidates: int
    per_group: dict[str, int]
    candidates_per_group: dict[str, int]

    def result(self, name: str) -> SelectionResult:
        return SelectionResult(
            name=name,
            run_id=self.run_id,
            source_dataset=self.source,
            region=self.region,
            fraction=self.fraction,
            balanced=self.balanced,
            seed=self.seed,
            bounds=self.bounds_text,
            n_examples=sum(self.per_group.values()),
            n_candidates=self.n_candidates,
            per_group=self.per_group,
            candidates_per_group=self.candidates_per_group,
        )


def _drop_plan_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("DROP TABLE IF EXISTS ranked_source")
    con.execute("DROP TABLE IF EXISTS picked")


def _plan(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    region: str,
    fraction: float,
    balanced: bool,
    seed: int,
    bounds: CartographyBounds | RobustnessBounds | None,
) -> _Plan:
    """Check the request and pick the examples into temp table `picked` (nothing is written to the catalog)."""
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
    # The candidates: the run's examples that are in its dataset, with the label used for balancing.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ranked_source AS
            SELECT m.*, {LABEL_SQL} AS grp
            FROM example_metrics m JOIN examples e ON e.dataset = ? AND e.example_id = m.example_id
            WHERE m.run_id = ?""",
        [source, run_id],
    )
    try:
        candidates = dict(con.execute("SELECT grp, count(*) FROM ranked_source GROUP BY grp").fetchall())
        if region_filter:  # a map region: the candidates' labels are the run's, the ranking is the region's
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE ranked_source AS SELECT * FROM ranked_source WHERE TRUE{region_filter}"
            )
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
        con.execute(f"CREATE OR REPLACE TEMP TABLE picked AS {top_fraction_sql(region, quotas, k, seed)}")
        per_group = dict(
            con.execute(
                """SELECT grp, count(*) FROM ranked_source WHERE example_id IN (SELECT example_id FROM picked)
                   GROUP BY grp ORDER BY grp"""
            ).fetchall()
        )
    except BaseException:
        _drop_plan_tables(con)
        raise
    return _Plan(
        run_id,
        source,
        region,
        fraction,
        balanced,
        seed,
        bounds_text,
        n,
        per_group,
        dict(sorted(candidates.items())),
    )


def preview_selection(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    region: str,
    fraction: float,
    *,
    balanced: bool = False,
    seed: int = 0,
    bounds: CartographyBounds | RobustnessBounds | None = None,
) -> SelectionResult:
    """What `select_examples` would select (counts and label mix), without writing anything (name '')."""
    try:
        return _plan(con, run_id, region, fraction, balanced, seed, bounds).result("")
    finally:
        _drop_plan_tables(con)


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
    if not name.strip():
        raise BadInputError("--name must not be empty")
    if con.execute("SELECT count(*) FROM datasets WHERE name = ?", [name]).fetchone()[0]:  # type: ignore[index]
        raise BadInputError(f"a dataset named '{name}' already exists; choose another --name")
    plan = _plan(con, run_id, region, fraction, balanced, seed, bounds)
    try:
        with transaction(con):
            con.execute(
                """INSERT INTO datasets (name, task, n_examples, source, format, label_names, is_pair, version, parent)
                   SELECT ?, task, (SELECT count(*) FROM picked), ?, format, label_names, is_pair, version, name
                   FROM datasets WHERE name = ?""",
                [
                    name,
                    describe_selection(run_id, region, plan.fraction, balanced, seed, plan.bounds_text),
                    plan.source,
                ],
            )
            con.execute(
                """INSERT INTO examples BY NAME
                   SELECT ? AS dataset, e.* EXCLUDE (dataset) FROM examples e
                   WHERE e.dataset = ? AND e.example_id IN (SELECT example_id FROM picked)""",
                [name, plan.source],
            )
            con.execute(
                """INSERT INTO selections (name, run_id, region, fraction, balanced, seed, bounds)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                [name, run_id, region, plan.fraction, balanced, seed, plan.bounds_text],
            )
    finally:
        _drop_plan_tables(con)
    return plan.result(name)


def region_example_ids(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    region: str,
    bounds: CartographyBounds | RobustnessBounds,
) -> list[str]:
    """The ids of every example of the run that the map puts in `region` under `bounds` (a selection's own rule,
    `--bounds`); nothing is written."""
    try:
        _plan(con, run_id, region, 1.0, False, 0, bounds)
        return [r[0] for r in con.execute("SELECT example_id FROM picked ORDER BY example_id").fetchall()]
    finally:
        _drop_plan_tables(con)
