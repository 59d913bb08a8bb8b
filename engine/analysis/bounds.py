"""Default map boundaries fitted to the run and its task, so every region of the default map holds examples.

Fixed numbers (ambiguous if variability >= 0.2, easy if confidence >= 0.5) suit a binary task trained to high
accuracy; on a 3-class task trained for 3 epochs they called 96% of the examples hard. The default is therefore
read off the run itself, with one rule for both maps:

- the band (ambiguous; swing on the robustness map) is the run's top third by the band's metric (variability;
  adversarial variability): its boundary is the metric's upper tercile;
- the rest is split at the median of the other metric over the examples below the band (confidence; sensitivity),
  so the map's regions and the papers' top-33% selections tell the same story. For classification the split is
  never below chance, 1/C for C classes: an example the model gives less than chance probability is not easy to
  learn, however the run went. QA has no fixed chance: the median alone.

The fitted numbers are rounded to `DECIMALS` places before they are used, so the rule printed with the map
(`regions.rule_text`) recomputes its counts exactly. The user can still move them, or give fixed ones (--bounds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from engine.analysis.regions import (
    AXES,
    Bounds,
    CartographyBounds,
    RobustnessBounds,
    default_bounds,
    rule_text,
)

BAND_QUANTILE = 2 / 3  # the band holds the top third
DECIMALS = 4
SMALLEST_BAND = 10.0**-DECIMALS  # a band boundary of 0 would put every example in the band

# kind -> (band metric, split metric): the columns the two boundaries of `AXES` cut
_FIT_COLUMNS = {
    "cartography": ("variability", "confidence"),
    "robustness": ("adv_variability", "sensitivity"),
}


@dataclass(frozen=True)
class FittedBounds:
    bounds: CartographyBounds | RobustnessBounds
    rule: str  # the rule in words, with its numbers and where they came from
    chance: float | None  # 1/C for a C-class task, None for QA and the robustness map


def n_classes(con: duckdb.DuckDBPyConnection, dataset: str | None) -> int | None:
    """The number of classes of a classification dataset (its label names, else its distinct labels); None for
    QA or an unknown dataset."""
    row = con.execute("SELECT task, label_names FROM datasets WHERE name = ?", [dataset]).fetchone()
    if row is None or row[0] != "classification":
        return None
    if row[1]:
        names = json.loads(row[1])
        if isinstance(names, list) and names:
            return len(names)
    found = con.execute(
        "SELECT count(DISTINCT label) FROM examples WHERE dataset = ? AND label IS NOT NULL", [dataset]
    ).fetchone()
    return int(found[0]) if found and found[0] else None


def fit_bounds(con: duckdb.DuckDBPyConnection, run_id: str, kind: str = "cartography") -> FittedBounds:
    """The default boundaries of the run's `kind` map (module docstring); the fixed defaults when the run has
    no metrics for that map."""
    band_col, split_col = _FIT_COLUMNS[kind]
    xcol, ycol = (a.column for a in AXES[kind])
    # a run whose loss went NaN has NaN metrics: they have no place on the map, nor in its boundaries
    present = f"run_id = ? AND isfinite({xcol}) AND isfinite({ycol})"
    # one statement, one scan of the run's rows: the tercile, then the median of the rows below it
    row = con.execute(
        f"""WITH m AS MATERIALIZED (
                SELECT {band_col} AS b, {split_col} AS s FROM example_metrics WHERE {present}),
            cut AS (SELECT greatest(round(quantile_cont(b, {BAND_QUANTILE!r}), {DECIMALS}), {SMALLEST_BAND!r}) AS band
                    FROM m)
            SELECT band, (SELECT median(s) FROM m WHERE b < band) FROM cut""",
        [run_id],
    ).fetchone()
    if row is None or row[0] is None:
        fixed = default_bounds(kind)
        return FittedBounds(fixed, rule_text(fixed, ("no metrics yet: the fixed default", "")), None)
    band = max(round(float(row[0]), DECIMALS), SMALLEST_BAND)
    median = round(float(row[1]), DECIMALS) if row[1] is not None else None
    band_why = "the run's top third"
    chance = None
    if kind == "cartography":
        dataset = con.execute("SELECT dataset FROM runs WHERE run_id = ?", [run_id]).fetchone()
        classes = n_classes(con, dataset[0] if dataset else None)
        chance = 1.0 / classes if classes else None
        if median is None:
            split, split_why = (
                CartographyBounds().easy_confidence,
                "nothing below the band: the fixed default",
            )
        elif chance is not None and median < chance:
            split = round(chance, DECIMALS)
            split_why = f"chance, 1/{classes}: the median of the rest, {median!r}, is below it"
        else:
            split = median
            split_why = "the median of the rest" + (f", above chance 1/{classes}" if classes else "")
        fitted: CartographyBounds | RobustnessBounds = CartographyBounds(band, split)
    else:
        if median is None:
            split, split_why = (
                RobustnessBounds().robust_sensitivity,
                "nothing below the band: the fixed default",
            )
        else:
            split, split_why = median, "the median of the rest"
        fitted = RobustnessBounds(band, split)
    return FittedBounds(fitted, rule_text(fitted, (band_why, split_why)), chance)


def run_bounds(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str,
    bounds: CartographyBounds | RobustnessBounds | None,
) -> tuple[CartographyBounds | RobustnessBounds, str]:
    """The bounds a map of the run uses and its rule in words: the given ones, else the fitted defaults."""
    if bounds is not None:
        return bounds, rule_text(bounds, ("given", "given"))
    fitted = fit_bounds(con, run_id, kind)
    return fitted.bounds, fitted.rule


def fitted_map_bounds(con: duckdb.DuckDBPyConnection, run_id: str, adversarial: bool = True) -> Bounds:
    """Both maps' fitted boundaries, as the app holds them (a map with no metrics keeps the fixed defaults;
    `adversarial=False` says the run has no robustness map, which then is not fitted)."""
    cartography = fit_bounds(con, run_id, "cartography").bounds
    robustness = fit_bounds(con, run_id, "robustness").bounds if adversarial else RobustnessBounds()
    assert isinstance(cartography, CartographyBounds) and isinstance(robustness, RobustnessBounds)
    return Bounds(cartography, robustness)
