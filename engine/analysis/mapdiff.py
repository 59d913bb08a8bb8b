"""Map diff: how the examples two runs share moved between the regions of their data maps (easy -> hard, ...).

Each run's regions come from the one region rule (`regions.region_sql`) under that run's own bounds: the given
ones, else those fitted to the run (`bounds.run_bounds`), exactly as `dynascope metrics` names them. So a
transition table recounts from the two runs' `metrics --json`. Examples are matched by example id (a retrain on
a selection keeps the source's ids); the table covers every example both runs have metrics for, an example
without a region in one run (no adversarial records for the robustness map) counted under NO_REGION.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from engine.analysis.bounds import run_bounds
from engine.analysis.regions import REGIONS, CartographyBounds, RobustnessBounds, region_sql, rule_text
from engine.analysis.sql import lit, rows_as_dicts
from engine.errors import BadInputError

NO_REGION = "(none)"  # an example with no region in a run (a NULL metric)


@dataclass
class MapDiff:
    run_a: str
    run_b: str
    kind: str
    bounds_a: CartographyBounds | RobustnessBounds
    bounds_b: CartographyBounds | RobustnessBounds
    transitions: dict[tuple[str, str], int]  # (region in A, region in B) -> shared examples
    shared: int  # examples both runs have metrics for
    only_a: int
    only_b: int
    rule_a: str = ""
    rule_b: str = ""
    regions: tuple[str, ...] = field(default_factory=tuple)  # rows and columns of the table, in map order
    dataset_a: str = ""  # run A's dataset: the texts of the examples listed

    def count(self, region_a: str, region_b: str) -> int:
        return self.transitions.get((region_a, region_b), 0)

    def moved(self) -> int:
        """Shared examples whose region differs between the runs."""
        return sum(n for (a, b), n in self.transitions.items() if a != b)

    def row_total(self, region_a: str) -> int:
        return sum(n for (a, _), n in self.transitions.items() if a == region_a)

    def col_total(self, region_b: str) -> int:
        return sum(n for (_, b), n in self.transitions.items() if b == region_b)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "kind": self.kind,
            "bounds_a": vars(self.bounds_a),
            "bounds_b": vars(self.bounds_b),
            "rule_a": self.rule_a,
            "rule_b": self.rule_b,
            "shared": self.shared,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "moved": self.moved(),
            "regions": list(self.regions),
            "transitions": [
                {"from": a, "to": b, "examples": n}
                for (a, b), n in sorted(self.transitions.items(), key=lambda kv: self._order(kv[0]))
            ],
        }

    def _order(self, pair: tuple[str, str]) -> tuple[int, int]:
        index = {r: i for i, r in enumerate(self.regions)}
        return index.get(pair[0], len(index)), index.get(pair[1], len(index))

    def lines(self) -> list[str]:
        """The transition table as text: rows = region in A, columns = region in B, with totals."""
        cols = list(self.regions)
        width = max(10, *(len(c) + 2 for c in cols))
        corner = "A \\ B"
        head = f"{corner:<12}" + "".join(f"{c:>{width}}" for c in cols) + f"{'total':>{width}}"
        out = [head]
        for a in cols:
            cells = "".join(f"{self.count(a, b):>{width},}" for b in cols)
            out.append(f"{a:<12}{cells}{self.row_total(a):>{width},}")
        totals = "".join(f"{self.col_total(b):>{width},}" for b in cols)
        out.append(f"{'total':<12}{totals}{self.shared:>{width},}")
        return out


def _region_relation(run_id: str, kind: str, bounds: CartographyBounds | RobustnessBounds) -> str:
    return (
        f"SELECT example_id, coalesce({region_sql(kind, bounds)}, {lit(NO_REGION)}) AS r "
        f"FROM example_metrics WHERE run_id = {lit(run_id)}"
    )


def _bounds_of(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str,
    given: CartographyBounds | RobustnessBounds | None,
) -> tuple[CartographyBounds | RobustnessBounds, str]:
    if given is not None:
        return given, rule_text(given, ("given", "given"))
    return run_bounds(con, run_id, kind, None)


def map_diff(
    con: duckdb.DuckDBPyConnection,
    run_a: str,
    run_b: str,
    kind: str = "cartography",
    bounds_a: CartographyBounds | RobustnessBounds | None = None,
    bounds_b: CartographyBounds | RobustnessBounds | None = None,
) -> MapDiff:
    """The region transition table of two runs (module docstring); BadInputError when a run is unknown, has no
    metrics, or the two share no example."""
    if kind not in REGIONS:
        raise BadInputError(f"unknown map kind {kind!r}; choose one of {', '.join(REGIONS)}")
    sizes, datasets = {}, {}
    for run_id in (run_a, run_b):
        row = con.execute("SELECT dataset FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            raise BadInputError(f"no run named '{run_id}' (dynascope runs lists them)")
        datasets[run_id] = row[0] or ""
        n = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
        sizes[run_id] = int(n[0]) if n else 0
        if not sizes[run_id]:
            raise BadInputError(
                f"run '{run_id}' has no per-example metrics yet: a map diff needs a finished epoch of each run"
            )
    chosen_a, rule_a = _bounds_of(con, run_a, kind, bounds_a)
    chosen_b, rule_b = _bounds_of(con, run_b, kind, bounds_b)
    rows = con.execute(
        f"""SELECT a.r, b.r, count(*) FROM ({_region_relation(run_a, kind, chosen_a)}) a
            JOIN ({_region_relation(run_b, kind, chosen_b)}) b USING (example_id) GROUP BY ALL"""
    ).fetchall()
    transitions = {(str(ra), str(rb)): int(n) for ra, rb, n in rows}
    shared = sum(transitions.values())
    if shared == 0:
        raise BadInputError(
            f"runs '{run_a}' and '{run_b}' share no example: a map diff compares two runs over the same examples "
            "(the same dataset, or a selection of it)"
        )
    regions = REGIONS[kind] + ((NO_REGION,) if any(NO_REGION in pair for pair in transitions) else ())
    return MapDiff(
        run_a,
        run_b,
        kind,
        chosen_a,
        chosen_b,
        transitions,
        shared,
        sizes[run_a] - shared,
        sizes[run_b] - shared,
        rule_a,
        rule_b,
        regions,
        datasets[run_a],
    )


def transition_examples(
    con: duckdb.DuckDBPyConnection,
    diff: MapDiff,
    region_a: str,
    region_b: str,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """One page of the examples in a cell of the table (region A -> region B), with their text and both runs'
    confidence and variability; in run A's dataset order."""
    cur = con.execute(
        f"""SELECT a.example_id, e.label_name, e.text,
                   ma.confidence AS confidence_a, mb.confidence AS confidence_b,
                   ma.variability AS variability_a, mb.variability AS variability_b
            FROM ({_region_relation(diff.run_a, diff.kind, diff.bounds_a)}) a
            JOIN ({_region_relation(diff.run_b, diff.kind, diff.bounds_b)}) b USING (example_id)
            JOIN example_metrics ma ON ma.run_id = $run_a AND ma.example_id = a.example_id
            JOIN example_metrics mb ON mb.run_id = $run_b AND mb.example_id = a.example_id
            LEFT JOIN examples e ON e.dataset = $dataset AND e.example_id = a.example_id
            WHERE a.r = $ra AND b.r = $rb
            ORDER BY e.row_idx NULLS LAST, a.example_id
            LIMIT {int(limit)} OFFSET {int(offset)}""",
        {
            "run_a": diff.run_a,
            "run_b": diff.run_b,
            "dataset": diff.dataset_a,
            "ra": region_a,
            "rb": region_b,
        },
    )
    return rows_as_dicts(cur)


def diff_candidates(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """The runs a map diff of `run_id` can be taken against: the others with metrics, those over the same
    dataset first (a retrain over a selection keeps the ids, so it may share examples too), newest first."""
    rows = con.execute(
        """SELECT r.run_id FROM runs r, (SELECT dataset FROM runs WHERE run_id = $run) a
           WHERE r.run_id <> $run AND r.metrics_epochs > 0
           ORDER BY (r.dataset IS NOT DISTINCT FROM a.dataset) DESC, r.created_at DESC, r.run_id""",
        {"run": run_id},
    ).fetchall()
    return [r[0] for r in rows]
