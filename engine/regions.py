"""Regions of a data map, as SQL over the per-example metrics (columns of `example_metrics`).

Cartography (Swayamdipta et al. 2020): ambiguous = high variability; below that, easy-to-learn = high
confidence, hard-to-learn = low confidence. Robustness (Zheng et al.): swing = high adversarial variability;
below that, robust = low sensitivity (adversarial loss), non-robust = high sensitivity. The boundaries are
adjustable (the app moves them from the keyboard).
"""

from __future__ import annotations

from dataclasses import dataclass

CARTOGRAPHY_REGIONS = ("easy", "ambiguous", "hard")
ROBUSTNESS_REGIONS = ("robust", "swing", "non-robust")


@dataclass(frozen=True)
class CartographyBounds:
    ambiguous_variability: float = 0.2  # variability at or above this is ambiguous
    easy_confidence: float = 0.5  # below the ambiguous band: confidence at or above this is easy, else hard


@dataclass(frozen=True)
class RobustnessBounds:
    swing_variability: float = 0.5  # adversarial-loss std at or above this is swing
    robust_sensitivity: float = 1.0  # below the swing band: sensitivity below this is robust, else non-robust


def cartography_region_sql(bounds: CartographyBounds = CartographyBounds()) -> str:
    return (
        f"CASE WHEN variability >= {float(bounds.ambiguous_variability)!r} THEN 'ambiguous' "
        f"WHEN confidence >= {float(bounds.easy_confidence)!r} THEN 'easy' ELSE 'hard' END"
    )


def robustness_region_sql(bounds: RobustnessBounds = RobustnessBounds()) -> str:
    return (
        f"CASE WHEN adv_variability >= {float(bounds.swing_variability)!r} THEN 'swing' "
        f"WHEN sensitivity < {float(bounds.robust_sensitivity)!r} THEN 'robust' ELSE 'non-robust' END"
    )
