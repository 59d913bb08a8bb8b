"""The data map as binned counts (one SQL GROUP BY over the metrics) and as text.

Cartography map: x = variability, y = confidence (Swayamdipta et al.), on the fixed ranges [0, 0.5] x [0, 1]
(the largest possible std of a probability is 0.5), so maps of different runs line up. Robustness map
(Zheng et al.): x = sensitivity (mean adversarial loss), y = adversarial variability, on [0, max] of the run
(points beyond the last bin land in it).

A million-example run is binned by DuckDB in well under a second; the app draws the grid, never the points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb

from engine.analysis.regions import (
    CARTOGRAPHY_REGIONS,
    ROBUSTNESS_REGIONS,
    CartographyBounds,
    RobustnessBounds,
    default_bounds,
    region_sql,
)

AXES = {
    # kind: (x column, y column, x label, y label)
    "cartography": ("variability", "confidence", "variability", "confidence"),
    "robustness": ("sensitivity", "adv_variability", "sensitivity", "adversarial variability"),
}
SHADES = " .,:;=*#%@"  # density, low to high (log scale); no "-", "+" or "|": those draw the boundaries
REGION_MARK = {"easy": "e", "ambiguous": "a", "hard": "h", "robust": "r", "non-robust": "n", "swing": "s"}


@dataclass
class MapGrid:
    """Counts per cell. counts[row][col]: row 0 is the top (highest y), col 0 the left (lowest x)."""

    kind: str
    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_label: str
    y_label: str
    counts: list[list[int]]
    total: int
    bounds: CartographyBounds | RobustnessBounds
    region_counts: dict[str, int] = field(default_factory=dict)

    @property
    def max_count(self) -> int:
        return max((c for row in self.counts for c in row), default=0)

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        x0, x1 = self.x_range
        y0, y1 = self.y_range
        x = x0 + (col + 0.5) * (x1 - x0) / self.width
        y = y1 - (row + 0.5) * (y1 - y0) / self.height
        return x, y

    def col_of(self, x: float) -> int:
        x0, x1 = self.x_range
        return min(self.width - 1, max(0, math.floor((x - x0) / (x1 - x0) * self.width)))

    def row_of(self, y: float) -> int:
        y0, y1 = self.y_range
        return self.height - 1 - min(self.height - 1, max(0, math.floor((y - y0) / (y1 - y0) * self.height)))

    def region_at(self, row: int, col: int) -> str:
        """The map region of a cell's centre under the grid's bounds."""
        x, y = self.cell_center(row, col)
        b = self.bounds
        if isinstance(b, CartographyBounds):
            if x >= b.ambiguous_variability:
                return "ambiguous"
            return "easy" if y >= b.easy_confidence else "hard"
        if y >= b.swing_variability:
            return "swing"
        return "robust" if x < b.robust_sensitivity else "non-robust"


def _ranges(
    con: duckdb.DuckDBPyConnection, run_id: str, kind: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    if kind == "cartography":
        return (0.0, 0.5), (0.0, 1.0)
    xcol, ycol, _, _ = AXES[kind]
    row = con.execute(
        f"SELECT max({xcol}), max({ycol}) FROM example_metrics WHERE run_id = ? AND {xcol} IS NOT NULL",
        [run_id],
    ).fetchone()
    xmax = float(row[0]) if row and row[0] is not None and row[0] > 0 else 1.0
    ymax = float(row[1]) if row and row[1] is not None and row[1] > 0 else 1.0
    return (0.0, xmax), (0.0, ymax)


def bin_counts(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str = "cartography",
    width: int = 60,
    height: int = 20,
    bounds: CartographyBounds | RobustnessBounds | None = None,
) -> MapGrid:
    """Bin the run's examples into a width x height grid with one SQL GROUP BY; also count examples per region."""
    if kind not in AXES:
        raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(AXES)}")
    width, height = max(1, int(width)), max(1, int(height))
    bounds = bounds if bounds is not None else default_bounds(kind)
    xcol, ycol, xlabel, ylabel = AXES[kind]
    (x0, x1), (y0, y1) = _ranges(con, run_id, kind)
    rows = con.execute(
        f"""SELECT
                least({width - 1}, greatest(0, floor(({xcol} - {x0!r}) / {(x1 - x0)!r} * {width})))::INTEGER AS bx,
                least({height - 1}, greatest(0, floor(({ycol} - {y0!r}) / {(y1 - y0)!r} * {height})))::INTEGER AS by,
                count(*) AS n
            FROM example_metrics
            WHERE run_id = ? AND {xcol} IS NOT NULL AND {ycol} IS NOT NULL
            GROUP BY ALL""",
        [run_id],
    ).fetchall()
    counts = [[0] * width for _ in range(height)]
    total = 0
    for bx, by, n in rows:
        counts[height - 1 - by][bx] = int(n)
        total += int(n)
    names = CARTOGRAPHY_REGIONS if kind == "cartography" else ROBUSTNESS_REGIONS
    region_counts = {name: 0 for name in names}
    for region, n in con.execute(
        f"""SELECT {region_sql(kind, bounds)} AS region, count(*) FROM example_metrics
            WHERE run_id = ? AND {xcol} IS NOT NULL AND {ycol} IS NOT NULL GROUP BY ALL""",
        [run_id],
    ).fetchall():
        if region is not None:
            region_counts[region] = int(n)
    return MapGrid(
        kind, width, height, (x0, x1), (y0, y1), xlabel, ylabel, counts, total, bounds, region_counts
    )


def shade(count: int, max_count: int) -> str:
    """A character for a cell's density: log-scaled, so sparse cells stay visible beside dense ones."""
    if count <= 0:
        return " "
    if max_count <= 1:
        return SHADES[-1]
    level = 1 + math.floor(math.log(count) / math.log(max_count) * (len(SHADES) - 2) + 1e-9)
    return SHADES[min(len(SHADES) - 1, max(1, level))]


def boundary_cells(grid: MapGrid) -> dict[tuple[int, int], str]:
    """(row, col) -> '|', '-' or '+' (where they meet) along the region boundaries."""
    cells: dict[tuple[int, int], str] = {}
    b = grid.bounds
    x0, x1 = grid.x_range
    y0, y1 = grid.y_range
    if isinstance(b, CartographyBounds):
        vx, hy = b.ambiguous_variability, b.easy_confidence
        # ambiguous | rest: a full-height vertical line; easy / hard: a horizontal line left of it
        if x0 <= vx <= x1:
            col = grid.col_of(vx)
            for row in range(grid.height):
                cells[(row, col)] = "|"
        if y0 <= hy <= y1:
            row = grid.row_of(hy)
            last = grid.col_of(vx) if x0 <= vx <= x1 else grid.width
            for col in range(0, last):
                cells[(row, col)] = "-"
            if last < grid.width:
                cells[(row, last)] = "+"
    else:
        vx, hy = b.robust_sensitivity, b.swing_variability
        # swing above a full-width horizontal line; robust | non-robust: a vertical line below it
        top = 0
        if y0 <= hy <= y1:
            row = grid.row_of(hy)
            top = row + 1
            for col in range(grid.width):
                cells[(row, col)] = "-"
        if x0 <= vx <= x1:
            col = grid.col_of(vx)
            for row in range(top, grid.height):
                cells[(row, col)] = "|"
            if top > 0:
                cells[(top - 1, col)] = "+"
    return cells


def render_map(grid: MapGrid, sparse_limit: int | None = None) -> list[str]:
    """The map as lines of text: shaded density (or region letters when there are few points), boundaries,
    axes with their ranges, and the count per region below."""
    sparse = grid.total <= (sparse_limit if sparse_limit is not None else grid.width)
    boundary = boundary_cells(grid)
    peak = grid.max_count
    y0, y1 = grid.y_range
    x0, x1 = grid.x_range
    label_w = 7
    lines = [f"{grid.y_label} (y) vs {grid.x_label} (x), {grid.total} examples"]
    hrow = next((r for (r, _), ch in boundary.items() if ch == "-"), None)
    vcol = next((c for (_, c), ch in boundary.items() if ch == "|"), None)
    for row in range(grid.height):
        chars = []
        for col in range(grid.width):
            n = grid.counts[row][col]
            line_char = boundary.get((row, col))
            if line_char:  # boundaries are drawn over the points: they must stay visible in dense areas
                chars.append(line_char)
            elif n:
                chars.append(REGION_MARK[grid.region_at(row, col)] if sparse else shade(n, peak))
            else:
                chars.append(" ")
        if row == 0:
            tick = f"{y1:.2f}"
        elif row == grid.height - 1:
            tick = f"{y0:.2f}"
        else:
            tick = ""
        lines.append(f"{tick:>{label_w - 1}} " + (">" if row == hrow else "|") + "".join(chars))
    axis = ["-"] * grid.width
    if vcol is not None:
        axis[vcol] = "^"
    lines.append(" " * label_w + "+" + "".join(axis))
    left, right = f"{x0:.2f}", f"{x1:.2f}"
    gap = max(1, grid.width - len(left) - len(right))
    lines.append(" " * (label_w + 1) + left + " " * gap + right)
    lines.append(" " * (label_w + 1) + f"{grid.x_label} ->".center(grid.width))
    b = grid.bounds
    if isinstance(b, CartographyBounds):
        lines.append(
            f"bounds: ambiguous if variability >= {b.ambiguous_variability:g}; "
            f"else easy if confidence >= {b.easy_confidence:g}, hard below"
        )
    else:
        lines.append(
            f"bounds: swing if adversarial variability >= {b.swing_variability:g}; "
            f"else robust if sensitivity < {b.robust_sensitivity:g}, non-robust above"
        )
    if sparse:
        marks = ", ".join(f"{m} = {r}" for r, m in REGION_MARK.items() if r in grid.region_counts)
        lines.append(f"points: {marks}")
    else:
        lines.append(f"density: '{SHADES[1]}' = 1 example per cell ... '{SHADES[-1]}' = {peak} (log scale)")
    for region, n in grid.region_counts.items():
        pct = 100.0 * n / grid.total if grid.total else 0.0
        lines.append(f"  {region:<11}{n:>10}  {pct:5.1f}%")
    return lines
