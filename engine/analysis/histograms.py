"""The dataset-cartography paper's three histograms (confidence, variability, correctness) of a run, binned in SQL
in one scan (GROUPING SETS), so a million-example run costs a few dozen bars to draw, never a million points."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from engine.analysis.datamap import LABEL_JOINS, label_condition
from engine.analysis.regions import AXES

BINS = 20
METRICS = ("confidence", "variability", "correctness")  # the paper's three, in its order


@dataclass
class Histogram:
    metric: str
    lo: float
    hi: float
    counts: list[int]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def edges(self) -> list[float]:
        step = (self.hi - self.lo) / len(self.counts)
        return [self.lo + i * step for i in range(len(self.counts) + 1)]

    def centres(self) -> list[float]:
        edges = self.edges()
        return [(a + b) / 2 for a, b in zip(edges, edges[1:])]


def metric_histograms(
    con: duckdb.DuckDBPyConnection, run_id: str, bins: int = BINS, label: str | None = None
) -> dict[str, Histogram]:
    """Confidence on [0, 1] and variability on [0, 0.5] (the map's fixed axes) in `bins` bins; correctness in
    one bar per number of correct epochs (0 .. the run's epochs). `label` keeps one gold label's examples."""
    conf_max = AXES["cartography"][1].fixed_max or 1.0
    var_max = AXES["cartography"][0].fixed_max or 0.5
    row = con.execute("SELECT max(epochs) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
    epochs = max(1, int(row[0])) if row and row[0] else 1
    bins = max(1, int(bins))
    cur = con.execute(
        f"""SELECT bc, bv, bk, count(*) FROM (
                SELECT least(greatest(trunc(m.confidence * {bins / conf_max!r})::INTEGER, 0), {bins - 1}) AS bc,
                       least(greatest(trunc(m.variability * {bins / var_max!r})::INTEGER, 0), {bins - 1}) AS bv,
                       least(greatest(round(m.correctness * {epochs})::INTEGER, 0), {epochs}) AS bk
                FROM example_metrics m{LABEL_JOINS if label is not None else ""}
                WHERE m.run_id = ? AND isfinite(m.confidence) AND isfinite(m.variability){label_condition(label)})
            GROUP BY GROUPING SETS ((bc), (bv), (bk))""",
        [run_id],
    )
    out = {
        "confidence": Histogram("confidence", 0.0, conf_max, [0] * bins),
        "variability": Histogram("variability", 0.0, var_max, [0] * bins),
        # bar k: k correct epochs, centred on k / epochs
        "correctness": Histogram("correctness", -0.5 / epochs, 1 + 0.5 / epochs, [0] * (epochs + 1)),
    }
    for bc, bv, bk, n in cur.fetchall():
        if bc is not None:
            out["confidence"].counts[int(bc)] += int(n)
        elif bv is not None:
            out["variability"].counts[int(bv)] += int(n)
        elif bk is not None:
            out["correctness"].counts[int(bk)] += int(n)
    return out
