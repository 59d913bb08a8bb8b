"""Regions of a data map, as SQL over the per-example metrics (columns of `example_metrics`).

Two ways to name a region, both used by the papers:

- *map regions* with adjustable boundaries (the app moves them from the keyboard):
  cartography (Swayamdipta et al. 2020): ambiguous = variability at or above a bound; below it, easy-to-learn =
  confidence at or above a bound, hard-to-learn = below it. Robustness (Zheng et al.): swing = adversarial
  variability at or above a bound; below it, robust = sensitivity (mean adversarial loss) below a bound,
  non-robust = at or above it. Each rule exists once, as data (`RegionRule`, from the bounds dataclasses):
  `region_sql` reads it as a SQL CASE, `region_of` as Python (the app colours map cells with it); both map
  kinds share `AXES`.
- *top p% selections*, which is how the papers pick training subsets: easy = highest confidence, ambiguous =
  highest variability, hard = lowest confidence; robust = lowest sensitivity, non-robust = highest sensitivity,
  swing = highest adversarial variability. Ties are broken by example id, so a selection is deterministic.
  `random` is the seeded baseline (order by md5(seed:example_id): the same on every machine and version).

Optionally label-balanced: every label gets an equal share of the selection as far as it has examples; what a
small label cannot fill goes to the others (water-filling).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

CARTOGRAPHY_REGIONS = ("easy", "ambiguous", "hard")
ROBUSTNESS_REGIONS = ("robust", "swing", "non-robust")
SELECTION_REGIONS = ("easy", "ambiguous", "hard", "random", "robust", "non-robust", "swing")
MAP_KINDS = ("cartography", "robustness")
REGIONS = {"cartography": CARTOGRAPHY_REGIONS, "robustness": ROBUSTNESS_REGIONS}


@dataclass(frozen=True)
class Axis:
    """One axis of a data map: the metric column, its label, and its fixed maximum (None: the run's maximum).
    Every axis starts at 0."""

    column: str
    label: str
    fixed_max: float | None = None


# kind -> (x axis, y axis): the same axes for the app's map, `dynascope map` and the region rules below
AXES: dict[str, tuple[Axis, Axis]] = {
    # the largest possible std of a probability is 0.5: maps of different runs line up
    "cartography": (Axis("variability", "variability", 0.5), Axis("confidence", "confidence", 1.0)),
    "robustness": (
        Axis("sensitivity", "sensitivity"),
        Axis("adv_variability", "adversarial variability"),
    ),
}


@dataclass(frozen=True)
class Cut:
    """One step of a region rule: a row whose `column op bound` holds (and no earlier cut's) is in `region`."""

    column: str
    op: str  # ">=" or "<"
    bound: float
    region: str


@dataclass(frozen=True)
class RegionRule:
    """A map's region rule as data, so the SQL CASE and the Python `region_of` are two readings of one rule.

    `required` columns: a row with any of them NULL has no region (NULL). Otherwise the first cut that holds
    names the region, else `otherwise`. A NULL value never satisfies a cut (as in SQL)."""

    cuts: tuple[Cut, ...]
    otherwise: str
    required: tuple[str, ...] = ()

    def sql(self) -> str:
        """A CASE expression over the columns of `example_metrics`."""
        whens = []
        if self.required:
            nulls = " OR ".join(f"{c} IS NULL" for c in self.required)
            whens.append(f"WHEN {nulls} THEN NULL")
        whens += [f"WHEN {c.column} {c.op} {float(c.bound)!r} THEN '{c.region}'" for c in self.cuts]
        return f"CASE {' '.join(whens)} ELSE '{self.otherwise}' END"

    def region(self, values: Mapping[str, float | None]) -> str | None:
        """The region of one row (column -> value), by the same rule as `sql()`."""
        if any(values.get(c) is None for c in self.required):
            return None
        for cut in self.cuts:
            value = values.get(cut.column)
            if value is None:
                continue
            if (value >= cut.bound) if cut.op == ">=" else (value < cut.bound):
                return cut.region
        return self.otherwise


@dataclass(frozen=True)
class CartographyBounds:
    ambiguous_variability: float = 0.2  # variability at or above this is ambiguous
    easy_confidence: float = 0.5  # below the ambiguous band: confidence at or above this is easy, else hard

    def rule(self) -> RegionRule:
        return RegionRule(
            (
                Cut("variability", ">=", self.ambiguous_variability, "ambiguous"),
                Cut("confidence", ">=", self.easy_confidence, "easy"),
            ),
            "hard",
        )


@dataclass(frozen=True)
class RobustnessBounds:
    swing_variability: float = 0.5  # adversarial-loss std at or above this is swing
    robust_sensitivity: float = 1.0  # below the swing band: sensitivity below this is robust, else non-robust

    def rule(self) -> RegionRule:
        return RegionRule(
            (
                Cut("adv_variability", ">=", self.swing_variability, "swing"),
                Cut("sensitivity", "<", self.robust_sensitivity, "robust"),
            ),
            "non-robust",
            required=("sensitivity", "adv_variability"),
        )


def cartography_region_sql(bounds: CartographyBounds = CartographyBounds()) -> str:
    """A CASE expression naming the cartography map region of a metrics row."""
    return bounds.rule().sql()


def robustness_region_sql(bounds: RobustnessBounds = RobustnessBounds()) -> str:
    """A CASE expression naming the robustness map region of a metrics row (NULL without adversarial records)."""
    return bounds.rule().sql()


def region_sql(kind: str, bounds: CartographyBounds | RobustnessBounds | None = None) -> str:
    if kind == "cartography":
        return cartography_region_sql(
            bounds if isinstance(bounds, CartographyBounds) else CartographyBounds()
        )
    if kind == "robustness":
        return robustness_region_sql(bounds if isinstance(bounds, RobustnessBounds) else RobustnessBounds())
    raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")


def region_of(
    kind: str, bounds: CartographyBounds | RobustnessBounds | Bounds | None, x: float | None, y: float | None
) -> str | None:
    """The region of a point (x, y) in the map's axes (AXES[kind]): the rule of `region_sql`, in Python."""
    xaxis, yaxis = AXES[kind]
    return kind_bounds(kind, bounds).rule().region({xaxis.column: x, yaxis.column: y})


def kind_bounds(
    kind: str, bounds: CartographyBounds | RobustnessBounds | Bounds | None
) -> CartographyBounds | RobustnessBounds:
    """The bounds of one map kind, given that kind's, both maps' (the app's `Bounds`) or None (the defaults)."""
    if isinstance(bounds, Bounds):
        return bounds.of(kind)
    return bounds if bounds is not None else default_bounds(kind)


# kind -> (the bound drawn as the vertical line, on x; the bound drawn as the horizontal line, on y)
LINE_FIELDS = {
    "cartography": ("ambiguous_variability", "easy_confidence"),
    "robustness": ("robust_sensitivity", "swing_variability"),
}


@dataclass(frozen=True)
class Bounds:
    """Both maps' region boundaries, as the app holds them (it moves them from the keyboard)."""

    cartography: CartographyBounds = CartographyBounds()
    robustness: RobustnessBounds = RobustnessBounds()

    def region_sql(self, kind: str) -> str:
        if kind == "robustness":
            return robustness_region_sql(self.robustness)
        return cartography_region_sql(self.cartography)

    def of(self, kind: str) -> CartographyBounds | RobustnessBounds:
        return self.robustness if kind == "robustness" else self.cartography

    def region_of(self, kind: str, x: float, y: float) -> str | None:
        """The region of a point (x, y) in the map's axes: the same rule as the SQL."""
        return region_of(kind, self.of(kind), x, y)

    def lines(self, kind: str) -> tuple[float, float]:
        """(vertical boundary on x, horizontal boundary on y)."""
        b, (xname, yname) = self.of(kind), LINE_FIELDS[kind]
        return float(getattr(b, xname)), float(getattr(b, yname))

    def moved(self, kind: str, axis: str, delta: float) -> Bounds:
        """A copy with the vertical ('x') or horizontal ('y') boundary moved by delta: kept >= 0 and, on an axis
        with a fixed range, within it."""
        i = 0 if axis == "x" else 1
        name, top = LINE_FIELDS[kind][i], AXES[kind][i].fixed_max
        b = self.of(kind)
        value = max(0.0, getattr(b, name) + delta)
        if top is not None:
            value = min(top, value)
        b = replace(b, **{name: round(value, 4)})
        if isinstance(b, RobustnessBounds):
            return replace(self, robustness=b)
        return replace(self, cartography=b)

    def describe(self, kind: str) -> str:
        if kind == "robustness":
            b = self.robustness
            return f"swing adv_var>={b.swing_variability:g}  robust sens<{b.robust_sensitivity:g}"
        c = self.cartography
        return f"ambiguous var>={c.ambiguous_variability:g}  easy conf>={c.easy_confidence:g}"


def rule_text(bounds: CartographyBounds | RobustnessBounds, why: tuple[str, str] = ("", "")) -> str:
    """The region rule in words with its numbers (printed with every map; `why` says where each number came
    from, for fitted bounds). The numbers are printed exactly as the rule uses them."""
    band, split = (f" ({w})" if w else "" for w in why)
    if isinstance(bounds, RobustnessBounds):
        return (
            f"swing if adversarial variability >= {float(bounds.swing_variability)!r}{band}; "
            f"else robust if sensitivity < {float(bounds.robust_sensitivity)!r}{split}, non-robust above"
        )
    return (
        f"ambiguous if variability >= {float(bounds.ambiguous_variability)!r}{band}; "
        f"else easy if confidence >= {float(bounds.easy_confidence)!r}{split}, hard below"
    )


def default_bounds(kind: str) -> CartographyBounds | RobustnessBounds:
    if kind == "cartography":
        return CartographyBounds()
    if kind == "robustness":
        return RobustnessBounds()
    raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")


def parse_bounds(kind: str, text: str | None) -> CartographyBounds | RobustnessBounds:
    """'A,B' from the command line: (ambiguous variability, easy confidence) for cartography,
    (swing variability, robust sensitivity) for robustness. None gives the defaults."""
    if text is None:
        return default_bounds(kind)
    parts = [p.strip() for p in text.split(",")]
    try:
        a, b = (float(p) for p in parts)
    except ValueError:
        names = (
            "AMBIGUOUS_VARIABILITY,EASY_CONFIDENCE"
            if kind == "cartography"
            else "SWING_VARIABILITY,ROBUST_SENSITIVITY"
        )
        raise ValueError(f"--bounds {text!r}: expected two numbers {names}") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"--bounds {text!r}: the bounds must be finite numbers")
    return CartographyBounds(a, b) if kind == "cartography" else RobustnessBounds(a, b)


# ---- top p% selections ------------------------------------------------------------------------------------

# region -> (metric column, SQL order); the first rows in this order are the most typical of the region.
RANKING: dict[str, tuple[str, str]] = {
    "easy": ("confidence", "DESC"),
    "ambiguous": ("variability", "DESC"),
    "hard": ("confidence", "ASC"),
    "robust": ("sensitivity", "ASC"),
    "non-robust": ("sensitivity", "DESC"),
    "swing": ("adv_variability", "DESC"),
}
ADVERSARIAL_REGIONS = ("robust", "non-robust", "swing")


def rank_order_sql(region: str, seed: int = 0, alias: str = "") -> str:
    """ORDER BY terms that put the most typical examples of `region` first (deterministic for a seed)."""
    prefix = f"{alias}." if alias else ""
    if region == "random":
        return f"md5('{int(seed)}:' || {prefix}example_id), {prefix}example_id"
    if region not in RANKING:
        raise ValueError(f"unknown region {region!r}; choose one of {', '.join(SELECTION_REGIONS)}")
    metric, order = RANKING[region]
    return f"{prefix}{metric} {order} NULLS LAST, {prefix}example_id"


def selection_size(fraction: float, n: int) -> int:
    """How many of `n` examples a fraction selects: floor(fraction * n), at least one when n > 0."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction must be in (0, 1]; got {fraction}")
    if n <= 0:
        return 0
    return max(1, min(n, math.floor(fraction * n + 1e-9)))


def balanced_quotas(counts: Mapping[str, int], k: int) -> dict[str, int]:
    """Split `k` over groups as evenly as their sizes allow (water-filling, smallest group first).

    Every group gets ceil/floor of an equal share; a group smaller than its share gives all it has and the rest
    is spread over the larger groups. The quotas sum to min(k, total)."""
    quotas = {g: 0 for g in counts}
    remaining = min(k, sum(counts.values()))
    order = sorted(counts, key=lambda g: (counts[g], g))
    for i, group in enumerate(order):
        left = len(order) - i
        share = -(-remaining // left)  # ceil
        quotas[group] = min(counts[group], share)
        remaining -= quotas[group]
    return quotas


def top_fraction_sql(region: str, quota_by_group: Mapping[str, int] | None, k: int, seed: int = 0) -> str:
    """SQL over a relation `ranked_source(example_id, grp, <metrics>)` that yields the selected example ids.

    Without quotas: the first k in region order. With quotas: the first quota[g] of every group g."""
    order = rank_order_sql(region, seed)
    if not quota_by_group:
        return f"SELECT example_id FROM ranked_source ORDER BY {order} LIMIT {int(k)}"
    cases = " ".join(
        f"WHEN grp = '{str(g).replace(chr(39), chr(39) * 2)}' THEN {int(q)}"
        for g, q in quota_by_group.items()
    )
    return f"""
        SELECT example_id FROM (
            SELECT example_id, grp, row_number() OVER (PARTITION BY grp ORDER BY {order}) AS pos FROM ranked_source
        ) WHERE pos <= CASE {cases} ELSE 0 END
    """
