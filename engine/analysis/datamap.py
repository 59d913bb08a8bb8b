"""The data map as binned counts (one SQL GROUP BY over the metrics), drawn as text by `render_map` (the CLI's
`dynascope map`) and as a widget by the app: both draw the same `MapGrid`.

Cartography map: x = variability, y = confidence (Swayamdipta et al.), on the fixed ranges [0, 0.5] x [0, 1]
(the largest possible std of a probability is 0.5), so maps of different runs line up. Robustness map
(Zheng et al.): x = sensitivity (mean adversarial loss), y = adversarial variability, on [0, max] of the run
(points beyond the last bin land in it). The axes are `regions.AXES`.

A million-example run is binned by DuckDB in well under a second; the app draws the grid, never the points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from engine.analysis.bounds import run_bounds
from engine.analysis.labelmix import LABEL_SQL, LabelMix
from engine.analysis.regions import (
    AXES,
    REGIONS,
    Axis,
    Bounds,
    CartographyBounds,
    RegionRule,
    RobustnessBounds,
    kind_bounds,
    region_of,
    region_sql,
    rule_text,
)
from engine.analysis.sql import lit

SHADES = " .,:;=*#%@"  # density, low to high (log scale); no "-", "+" or "|": those draw the boundaries
REGION_MARK = {"easy": "e", "ambiguous": "a", "hard": "h", "robust": "r", "non-robust": "n", "swing": "s"}


@dataclass
class MapGrid:
    """Counts per cell of a run's map on [0, x_max] x [0, y_max]. counts[row][col]: row 0 is the top (highest
    y), col 0 the left (lowest x): the order in which the text map and the app's widget draw it."""

    kind: str
    width: int
    height: int
    x_max: float
    y_max: float
    counts: list[list[int]]
    total: int
    bounds: CartographyBounds | RobustnessBounds
    region_counts: dict[str, int] = field(default_factory=dict)
    run_id: str = ""
    rule: str = ""  # the region rule in words with its numbers (bounds.run_bounds)
    label: str | None = None  # a per-class map: only this gold label's examples
    colour_by: str = "region"
    # per cell (rows as in `counts`): the mean correctness (colour_by "correctness") or the majority label ("label")
    cell_colours: list[list[Any]] | None = None

    @property
    def x_axis(self) -> Axis:
        return AXES[self.kind][0]

    @property
    def y_axis(self) -> Axis:
        return AXES[self.kind][1]

    @property
    def x_label(self) -> str:
        return self.x_axis.label

    @property
    def y_label(self) -> str:
        return self.y_axis.label

    @property
    def x_range(self) -> tuple[float, float]:
        return 0.0, self.x_max

    @property
    def y_range(self) -> tuple[float, float]:
        return 0.0, self.y_max

    @property
    def max_count(self) -> int:
        return max((c for row in self.counts for c in row), default=0)

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """(x, y) at the centre of a cell."""
        return (col + 0.5) / self.width * self.x_max, (self.height - row - 0.5) / self.height * self.y_max

    def col_of(self, x: float) -> int:
        """The column holding x (as the binning SQL computes it, clamped to the grid)."""
        return min(self.width - 1, max(0, math.floor(x / self.x_max * self.width)))

    def row_of(self, y: float) -> int:
        """The row holding y (row 0 at the top)."""
        return self.height - 1 - min(self.height - 1, max(0, math.floor(y / self.y_max * self.height)))

    def region_at(self, row: int, col: int) -> str | None:
        """The map region of a cell's centre under the grid's bounds."""
        return region_of(self.kind, self.bounds, *self.cell_center(row, col))

    def cell_regions(
        self, bounds: CartographyBounds | RobustnessBounds | None = None
    ) -> list[list[str | None]]:
        """The region of every cell's centre (rows as in `counts`), under `bounds` or the grid's own."""
        rule = (bounds or self.bounds).rule()
        xcol, ycol = self.x_axis.column, self.y_axis.column
        return [
            [
                rule.region({xcol: x, ycol: y})
                for x, y in (self.cell_center(row, col) for col in range(self.width))
            ]
            for row in range(self.height)
        ]


def axis_max(con: duckdb.DuckDBPyConnection, run_id: str, kind: str) -> tuple[float, float]:
    """The upper ends of the two axes: the fixed ones, else the run's maximum (1 when it has none)."""
    xaxis, yaxis = AXES[kind]
    if xaxis.fixed_max is not None and yaxis.fixed_max is not None:
        return xaxis.fixed_max, yaxis.fixed_max
    row = con.execute(
        f"SELECT max({xaxis.column}), max({yaxis.column}) FROM example_metrics WHERE run_id = ?", [run_id]
    ).fetchone()
    x_max = float(row[0]) if row and row[0] is not None and row[0] > 0 else 1.0
    y_max = float(row[1]) if row and row[1] is not None and row[1] > 0 else 1.0
    return xaxis.fixed_max or x_max, yaxis.fixed_max or y_max


COLOUR_BY = ("region", "label", "correctness")  # what colours the cells of the app's map


# the examples of `example_metrics m` (as `e`), for their gold label (`labelmix.LABEL_SQL`)
LABEL_JOINS = (
    " JOIN runs r ON r.run_id = m.run_id"
    " LEFT JOIN examples e ON e.dataset = r.dataset AND e.example_id = m.example_id"
)


def label_condition(label: str | None) -> str:
    """An AND term keeping one gold label's examples (needs LABEL_JOINS), or nothing."""
    return "" if label is None else f" AND {LABEL_SQL} = {lit(label)}"


def bin_counts(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str = "cartography",
    width: int = 60,
    height: int = 20,
    bounds: CartographyBounds | RobustnessBounds | Bounds | None = None,
    label: str | None = None,
    colour_by: str = "region",
) -> MapGrid:
    """Bin the run's examples into a width x height grid and count them per region, in one SQL GROUP BY over
    integer bin numbers and the region (one scan): a million-example run costs the same to draw as a thousand.
    Without `bounds`, the region boundaries are fitted to the run (`engine.analysis.bounds`). `label` keeps one
    gold label's examples (a per-class map); `colour_by` adds each cell's mean correctness or majority label."""
    if kind not in AXES:
        raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(AXES)}")
    if colour_by not in COLOUR_BY:
        raise ValueError(f"unknown colouring {colour_by!r}; choose one of {', '.join(COLOUR_BY)}")
    width, height = max(1, int(width)), max(1, int(height))
    chosen, rule = run_bounds(con, run_id, kind, None if bounds is None else kind_bounds(kind, bounds))
    xcol, ycol = (f"m.{a.column}" for a in AXES[kind])
    x_max, y_max = axis_max(con, run_id, kind)
    by_label = colour_by == "label"
    joins = LABEL_JOINS if by_label or label is not None else ""
    condition = label_condition(label)
    extra = {"region": "", "correctness": ", sum(m.correctness) AS s", "label": f", {LABEL_SQL} AS lab"}[
        colour_by
    ]
    cur = con.execute(
        f"""SELECT least(greatest(trunc({xcol} * {width / x_max!r})::INTEGER, 0), {width - 1}) AS bx,
                   least(greatest(trunc({ycol} * {height / y_max!r})::INTEGER, 0), {height - 1}) AS by,
                   {_qualified_region(kind, chosen)} AS reg,
                   count(*) AS n{extra}
            FROM example_metrics m{joins}
            WHERE m.run_id = ? AND isfinite({xcol}) AND isfinite({ycol}){condition}
            GROUP BY ALL""",
        [run_id],
    )
    counts = [[0] * width for _ in range(height)]
    regions = {name: 0 for name in REGIONS[kind]}
    sums: list[list[float]] = [[0.0] * width for _ in range(height)] if colour_by == "correctness" else []
    labels: dict[tuple[int, int], dict[str, int]] = {}
    total = 0
    for row_values in cur.fetchall():
        bx, by, reg, n = int(row_values[0]), int(row_values[1]), row_values[2], int(row_values[3])
        r = height - 1 - by
        counts[r][bx] += n
        total += n
        if reg is not None:
            regions[reg] = regions.get(reg, 0) + n
        if colour_by == "correctness":
            sums[r][bx] += float(row_values[4] or 0.0)
        elif by_label:
            cell = labels.setdefault((r, bx), {})
            cell[row_values[4] or ""] = cell.get(row_values[4] or "", 0) + n
    colours: list[list[Any]] | None = None
    if colour_by == "correctness":
        colours = [
            [sums[r][c] / counts[r][c] if counts[r][c] else None for c in range(width)] for r in range(height)
        ]
    elif by_label:
        colours = [[None] * width for _ in range(height)]
        for (r, c), per_label in labels.items():
            colours[r][c] = max(sorted(per_label), key=lambda lab: per_label[lab])  # ties: the first name
    return MapGrid(
        kind,
        width,
        height,
        x_max,
        y_max,
        counts,
        total,
        chosen,
        regions,
        run_id,
        rule,
        label=label,
        colour_by=colour_by,
        cell_colours=colours,
    )


def _qualified_region(kind: str, bounds: CartographyBounds | RobustnessBounds) -> str:
    """The region rule over `example_metrics m` (the columns qualified: a join brings other tables' columns)."""
    rule = bounds.rule()
    return RegionRule(
        tuple(replace(c, column=f"m.{c.column}") for c in rule.cuts),
        rule.otherwise,
        tuple(f"m.{c}" for c in rule.required),
    ).sql()


def region_counts(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    kind: str,
    bounds: CartographyBounds | RobustnessBounds | Bounds | None = None,
) -> dict[str, int]:
    """Examples per region under the bounds (every region of the kind, zero included), in one scan."""
    xcol, ycol = (a.column for a in AXES[kind])
    region = region_sql(kind, kind_bounds(kind, bounds))
    names = REGIONS[kind]
    filters = ", ".join(f"count(*) FILTER (WHERE r = {lit(name)})" for name in names)
    row = con.execute(
        f"""SELECT {filters} FROM (SELECT {region} AS r FROM example_metrics
            WHERE run_id = ? AND isfinite({xcol}) AND isfinite({ycol}))""",
        [run_id],
    ).fetchone()
    return {name: int(row[i]) if row else 0 for i, name in enumerate(names)}


def shade(count: int, max_count: int) -> str:
    """A character for a cell's density: log-scaled, so sparse cells stay visible beside dense ones."""
    if count <= 0:
        return " "
    if max_count <= 1:
        return SHADES[-1]
    level = 1 + math.floor(math.log(count) / math.log(max_count) * (len(SHADES) - 2) + 1e-9)
    return SHADES[min(len(SHADES) - 1, max(1, level))]


def boundary_cells(
    grid: MapGrid, bounds: CartographyBounds | RobustnessBounds | None = None
) -> dict[tuple[int, int], str]:
    """(row, col) -> '|', '-' or '+' (where they meet) along the region boundaries (`bounds`, else the grid's).
    The line that spans the whole map is the first rule's: cartography's vertical one, robustness's horizontal."""
    cells: dict[tuple[int, int], str] = {}
    b = bounds if bounds is not None else grid.bounds
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


def render_map(grid: MapGrid, sparse_limit: int | None = None, mix: LabelMix | None = None) -> list[str]:
    """The map as lines of text: shaded density (or region letters when there are few points), boundaries,
    axes with their ranges, the region rule, and the count per region below (with its label mix, if given)."""
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
                chars.append(
                    REGION_MARK.get(grid.region_at(row, col) or "", "?") if sparse else shade(n, peak)
                )
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
    lines.append(f"regions: {grid.rule or rule_text(grid.bounds)}")
    if sparse:
        marks = ", ".join(f"{m} = {r}" for r, m in REGION_MARK.items() if r in grid.region_counts)
        lines.append(f"points: {marks}")
    else:
        lines.append(f"density: '{SHADES[1]}' = 1 example per cell ... '{SHADES[-1]}' = {peak} (log scale)")
    for region, n in grid.region_counts.items():
        pct = 100.0 * n / grid.total if grid.total else 0.0
        lines.append(f"  {region:<11}{n:>10}  {pct:5.1f}%")
        if mix is not None:
            lines.append(f"  {'':<11}{mix.summary(region)}")
    if mix is not None:
        lines.append("  (labels: examples in the region, its share of them vs the share among all examples)")
    return lines
