"""Regions of a data map, as SQL over the per-example metrics (columns of `example_metrics`).

Two ways to name a region, both used by the papers:

- *map regions* with adjustable boundaries (the app moves them from the keyboard):
  cartography (Swayamdipta et al. 2020): ambiguous = variability at or above a bound; below it, easy-to-learn =
  confidence at or above a bound, hard-to-learn = below it. Robustness (Zheng et al.): swing = adversarial
  variability at or above a bound; below it, robust = sensitivity (mean adversarial loss) below a bound,
  non-robust = at or above it.
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
from dataclasses import dataclass

CARTOGRAPHY_REGIONS = ("easy", "ambiguous", "hard")
ROBUSTNESS_REGIONS = ("robust", "swing", "non-robust")
SELECTION_REGIONS = ("easy", "ambiguous", "hard", "random", "robust", "non-robust", "swing")
MAP_KINDS = ("cartography", "robustness")


@dataclass(frozen=True)
class CartographyBounds:
    ambiguous_variability: float = 0.2  # variability at or above this is ambiguous
    easy_confidence: float = 0.5  # below the ambiguous band: confidence at or above this is easy, else hard


@dataclass(frozen=True)
class RobustnessBounds:
    swing_variability: float = 0.5  # adversarial-loss std at or above this is swing
    robust_sensitivity: float = 1.0  # below the swing band: sensitivity below this is robust, else non-robust


def cartography_region_sql(bounds: CartographyBounds = CartographyBounds()) -> str:
    """A CASE expression naming the cartography map region of a metrics row."""
    return (
        f"CASE WHEN variability >= {float(bounds.ambiguous_variability)!r} THEN 'ambiguous' "
        f"WHEN confidence >= {float(bounds.easy_confidence)!r} THEN 'easy' ELSE 'hard' END"
    )


def robustness_region_sql(bounds: RobustnessBounds = RobustnessBounds()) -> str:
    """A CASE expression naming the robustness map region of a metrics row (NULL without adversarial records)."""
    return (
        "CASE WHEN sensitivity IS NULL OR adv_variability IS NULL THEN NULL "
        f"WHEN adv_variability >= {float(bounds.swing_variability)!r} THEN 'swing' "
        f"WHEN sensitivity < {float(bounds.robust_sensitivity)!r} THEN 'robust' ELSE 'non-robust' END"
    )


def region_sql(kind: str, bounds: CartographyBounds | RobustnessBounds | None = None) -> str:
    if kind == "cartography":
        return cartography_region_sql(
            bounds if isinstance(bounds, CartographyBounds) else CartographyBounds()
        )
    if kind == "robustness":
        return robustness_region_sql(bounds if isinstance(bounds, RobustnessBounds) else RobustnessBounds())
    raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(MAP_KINDS)}")


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
