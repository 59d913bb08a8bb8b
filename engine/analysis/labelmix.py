"""The label mix of a map's regions (or of a selection) against the run's examples as a whole.

A region can be skewed by label (the "ambiguous" third of a 3-class run held no example of one class, the "hard"
third was two thirds one class); the map, a region's examples and every selection show it. The label of an
example is its class name (else its class index); for QA, answerable or unanswerable. Selections balance by the
same label (`LABEL_SQL`), so what is shown is what balancing evens out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from engine.analysis.regions import AXES, REGIONS, CartographyBounds, RobustnessBounds, region_sql

# an example's label, over `examples e` (one definition: selections balance by it, maps show it)
LABEL_SQL = """coalesce(e.label_name, e.label::VARCHAR,
                        CASE WHEN e.is_impossible THEN 'unanswerable' WHEN NOT e.is_impossible THEN 'answerable' END,
                        '')"""


@dataclass
class LabelMix:
    """Label counts overall (`overall`) and per region or selection (`groups`)."""

    overall: dict[str, int]
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Every label, the most frequent overall first."""
        return sorted(self.overall, key=lambda label: (-self.overall[label], label))

    def missing(self, group: str) -> list[str]:
        """Labels of the run that `group` holds no example of."""
        counts = self.groups.get(group, {})
        return [label for label in self.labels if not counts.get(label)]

    def lines(self, group: str, limit: int = 6, width: int = 12) -> list[str]:
        """'label  n  share (share overall)' per label, the most frequent overall first; at most `limit`."""
        counts = self.groups.get(group, {})
        total = sum(counts.values())
        overall_total = sum(self.overall.values())
        out = []
        for label in self.labels[:limit]:
            n = counts.get(label, 0)
            share = 100.0 * n / total if total else 0.0
            base = 100.0 * self.overall[label] / overall_total if overall_total else 0.0
            out.append(f"{(label or '-')[:width]:<{width}}{n:>8,} {share:4.0f}% ({base:.0f}%)")
        if len(self.labels) > limit:
            out.append(f"... {len(self.labels) - limit} more labels")
        return out

    def summary(self, group: str) -> str:
        """One line: 'label n (share, overall share), ...', and the labels left out."""
        counts = self.groups.get(group, {})
        total = sum(counts.values())
        overall_total = sum(self.overall.values())
        parts = [
            f"{label or '-'}: {counts.get(label, 0)} ({100.0 * counts.get(label, 0) / total if total else 0:.0f}% "
            f"vs {100.0 * self.overall[label] / overall_total if overall_total else 0:.0f}%)"
            for label in self.labels
        ]
        text = "labels: " + ", ".join(parts)
        missing = self.missing(group)
        if missing and total:
            text += f"; no example of {', '.join(repr(m) for m in missing)}"
        return text


def map_label_mix(
    con: duckdb.DuckDBPyConnection, run_id: str, kind: str, bounds: CartographyBounds | RobustnessBounds
) -> LabelMix:
    """Label counts per region of the run's `kind` map under `bounds`, and over all the examples on the map."""
    xcol, ycol = (f"m.{a.column}" for a in AXES[kind])
    rows = con.execute(
        f"""SELECT {region_sql(kind, bounds)} AS region, {LABEL_SQL} AS label, count(*)
            FROM example_metrics m
            JOIN runs r ON r.run_id = m.run_id
            LEFT JOIN examples e ON e.dataset = r.dataset AND e.example_id = m.example_id
            WHERE m.run_id = ? AND isfinite({xcol}) AND isfinite({ycol})
            GROUP BY ALL""",
        [run_id],
    ).fetchall()
    mix = LabelMix({}, {region: {} for region in REGIONS[kind]})
    for region, label, n in rows:
        label = label or ""
        mix.overall[label] = mix.overall.get(label, 0) + int(n)
        mix.groups.setdefault(region, {})[label] = int(n)
    return mix
