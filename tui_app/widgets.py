"""Widgets: the data map (binned density drawn as characters), the trajectory plot and the bar chart."""

from __future__ import annotations

import math
from itertools import groupby
from typing import Any

from rich.text import Text
from textual.widget import Widget
from textual_plotext import PlotextPlot

from engine.analysis.datamap import MapGrid, boundary_cells
from engine.analysis.regions import Bounds

REGION_COLOURS = {
    "easy": "green3",
    "ambiguous": "dodger_blue1",
    "hard": "red3",
    "robust": "green3",
    "swing": "dodger_blue1",
    "non-robust": "red3",
}
SHADES = "·░▒▓█"
LINE_CHARS = {"|": "│", "-": "─"}  # boundary_cells' lines, drawn in box-drawing characters
Y_LABEL_W = 6  # "1.00 ┤"


def grid_size(width: int, height: int) -> tuple[int, int]:
    """Cells of the map inside a widget of this size (axis labels take a margin)."""
    return max(4, width - Y_LABEL_W - 1), max(3, height - 3)


LABEL_COLOURS = ("magenta", "cyan", "yellow", "orange1", "green3", "dodger_blue1", "red3", "white")
CORRECTNESS_COLOURS = (
    "red3",
    "dark_orange",
    "yellow",
    "chartreuse3",
    "green3",
)  # wrong every epoch ... always right


def correctness_colour(value: float) -> str:
    return CORRECTNESS_COLOURS[
        min(len(CORRECTNESS_COLOURS) - 1, max(0, int(value * len(CORRECTNESS_COLOURS))))
    ]


def append_runs(text: Text, cells: list[tuple[str, str]]) -> None:
    """Append (character, style) cells as one span per run of equal style: every span is a segment to compose
    on each paint, and a map row is mostly runs of one region's colour."""
    for style, run in groupby(cells, key=lambda cell: cell[1]):
        text.append("".join(ch for ch, _ in run), style=style or None)


class DataMapView(Widget, can_focus=True):
    """Draws a MapGrid (engine.analysis.datamap, the grid `dynascope map` prints too): one character per bin,
    shade by log density, colour by the region of the bin's centre (or by the cell's majority gold label, or its
    mean correctness), the two boundaries as lines with their values on the axes, the selected region in bold and
    the cell cursor in reverse."""

    DEFAULT_CSS = """
    DataMapView { height: 1fr; min-height: 8; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grid: MapGrid | None = None
        self.bounds = Bounds()
        self.selected: str | None = None
        self.message = "loading ..."
        self.cursor: tuple[int, int] | None = None  # (row, col) of the cell cursor
        self.label_colours: dict[str, str] = {}

    def show(
        self,
        grid: MapGrid | None,
        bounds: Bounds,
        selected: str | None,
        message: str = "",
        cursor: tuple[int, int] | None = None,
        label_colours: dict[str, str] | None = None,
    ) -> None:
        self.grid, self.bounds, self.selected, self.message = grid, bounds, selected, message
        self.cursor = cursor
        self.label_colours = label_colours or {}
        self.refresh()

    def cell_style(self, grid: MapGrid, row: int, col: int, region: str | None) -> str:
        if grid.colour_by != "region" and grid.cell_colours is not None:
            value = grid.cell_colours[row][col]
            if value is None:
                return "white"
            if grid.colour_by == "correctness":
                return correctness_colour(float(value))
            return self.label_colours.get(str(value), "white")
        return REGION_COLOURS.get(region or "", "white") + (" bold" if region == self.selected else "")

    def render(self) -> Text:
        grid = self.grid
        if grid is None or grid.total == 0:
            return Text(self.message or "no per-example metrics for this run yet", style="italic")
        kind = grid.kind
        bounds = self.bounds.of(kind)  # the bounds on screen, which the user may have moved since the binning
        regions = grid.cell_regions(bounds)
        boundary = boundary_cells(grid, bounds)
        junction = LINE_CHARS["|" if kind == "cartography" else "-"]  # the line that spans the map goes on
        vline, hline = self.bounds.lines(kind)
        hrow = grid.row_of(hline) if 0 <= hline <= grid.y_max else None
        vcol = grid.col_of(vline) if 0 <= vline <= grid.x_max else None
        peak = grid.max_count
        log_peak = math.log1p(peak)
        out = Text(no_wrap=True, overflow="crop")
        out.append(f"{grid.y_label} ↑", style="bold")
        out.append("\n")
        for row in range(grid.height):
            by = grid.height - 1 - row  # bins counted from the bottom
            y_top = (by + 1) / grid.height * grid.y_max
            if row == hrow:  # the horizontal boundary's value, always on the axis
                out.append(f"{hline:5.3g}"[:5].rjust(5) + "┼", style="bold bright_white")
            else:
                label = f"{y_top:5.2f}" if by in (grid.height - 1, 0) or by == grid.height // 2 else "     "
                out.append(label + "┤", style="dim")
            cells: list[tuple[str, str]] = []
            for col in range(grid.width):
                n = grid.counts[row][col]
                region = regions[row][col]
                line = boundary.get((row, col))
                cursor = " reverse" if self.cursor == (row, col) else ""
                if n:
                    level = min(len(SHADES) - 1, int(math.log1p(n) / log_peak * (len(SHADES) - 1) + 0.5))
                    style = self.cell_style(grid, row, col, region)
                    if line:
                        style += " underline"
                    cells.append((SHADES[max(level, 0)], style + cursor))
                elif line:
                    cells.append((junction if line == "+" else LINE_CHARS[line], "bright_white" + cursor))
                else:
                    cells.append((" ", cursor.strip()))
            append_runs(out, cells)
            out.append("\n")
        axis = ["─"] * grid.width
        if vcol is not None:
            axis[vcol] = "┴"
        out.append("     └" + "".join(axis) + "\n", style="dim")
        out.append_text(self.x_labels(grid, vline, vcol))
        return out

    @staticmethod
    def x_labels(grid: MapGrid, vline: float, vcol: int | None) -> Text:
        """0 at the left, the axis end at the right, the vertical boundary's value under its line (always shown),
        and the axis name where it fits."""
        width = grid.width + Y_LABEL_W
        chars = [" "] * width
        styles: list[str] = ["dim"] * width

        def put(at: int, text: str, style: str) -> None:
            at = max(0, min(width - len(text), at))
            for i, ch in enumerate(text):
                chars[at + i], styles[at + i] = ch, style

        right = f"{grid.x_max:.3g}"
        put(Y_LABEL_W, "0", "dim")
        put(width - len(right), right, "dim")
        taken = [(Y_LABEL_W, Y_LABEL_W + 1), (width - len(right), width)]
        if vcol is not None:
            value = f"{vline:.4g}"
            at = max(
                Y_LABEL_W + 2, min(width - len(right) - len(value) - 1, Y_LABEL_W + vcol - len(value) // 2)
            )
            put(at, value, "bold bright_white")
            taken.append((at, at + len(value)))
        name = f"{grid.x_label} →"
        taken.sort()
        gaps = [(a[1] + 1, b[0] - 1) for a, b in zip(taken, taken[1:])]
        start, stop = max(gaps, key=lambda g: g[1] - g[0], default=(0, 0))
        if stop - start >= len(name):
            put(start + (stop - start - len(name)) // 2, name, "dim")
        text = Text(no_wrap=True, overflow="crop")
        append_runs(text, list(zip(chars, styles)))
        return text


class Plot(PlotextPlot):
    """A plotext plot drawn from the widget's own data: `draw` fills a cleared figure, on mount and on new data."""

    def on_mount(self) -> None:
        self.replot()

    def replot(self) -> None:
        self.plt.clear_data()
        self.plt.clear_figure()
        self.draw(self.plt)
        self.refresh()

    def draw(self, plt: Any) -> None:
        """Each plot draws its data here (an empty figure by default)."""


class TrajectoryPlot(Plot):
    """Gold probability per epoch (line), correct / wrong marks, and the adversarial loss when recorded."""

    DEFAULT_CSS = """
    TrajectoryPlot { height: 14; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trajectory: list[dict[str, Any]] = []

    def set_trajectory(self, trajectory: list[dict[str, Any]]) -> None:
        self.trajectory = trajectory
        self.replot()

    def draw(self, plt: Any) -> None:
        rows = self.trajectory
        with_adv = any(r.get("adv_loss") is not None for r in rows)
        plt.title(
            "trajectory: gold probability per epoch"
            + (" (left), adversarial loss (right)" if with_adv else "")
        )
        plt.xlabel("epoch")
        if rows:
            epochs = [int(r["epoch"]) + 1 for r in rows]  # shown from 1, as everywhere
            probs = [float(r["gold_prob"]) if r.get("gold_prob") is not None else 0.0 for r in rows]
            plt.plot(epochs, probs, marker="braille", color="cyan", label="gold prob")
            ok = [(e, p) for e, p, r in zip(epochs, probs, rows) if r.get("correct")]
            bad = [(e, p) for e, p, r in zip(epochs, probs, rows) if not r.get("correct")]
            if ok:
                plt.scatter(
                    [e for e, _ in ok], [p for _, p in ok], marker="●", color="green", label="correct"
                )
            if bad:
                plt.scatter([e for e, _ in bad], [p for _, p in bad], marker="x", color="red", label="wrong")
            adv = [(e, float(r["adv_loss"])) for e, r in zip(epochs, rows) if r.get("adv_loss") is not None]
            if adv:
                plt.plot(
                    [e for e, _ in adv], [v for _, v in adv], yside="right", color="magenta", label="adv loss"
                )
            plt.ylim(0, 1)
            plt.xticks([float(e) for e in epochs], [str(e) for e in epochs])
            plt.xlim(min(epochs) - 0.2, max(epochs) + 0.2)


class BarChart(Plot):
    """Grouped bars: one group per evaluation set, one bar per run."""

    DEFAULT_CSS = """
    BarChart { height: 1fr; min-height: 8; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups: list[str] = []
        self.series: list[tuple[str, list[float]]] = []
        self.metric = ""
        self.chart_title: str | None = None

    def set_data(
        self, metric: str, groups: list[str], series: list[tuple[str, list[float]]], title: str | None = None
    ) -> None:
        """Bars of `metric` per group and run; `title` replaces "<metric> by evaluation set"."""
        self.metric, self.groups, self.series, self.chart_title = metric, groups, series, title
        self.replot()

    def draw(self, plt: Any) -> None:
        plt.title(self.chart_title or f"{self.metric or 'metric'} by evaluation set")
        if self.groups and self.series:
            if len(self.series) == 1:
                plt.bar(self.groups, self.series[0][1], label=self.series[0][0])
            else:
                plt.multiple_bar(  # the stub says `label`; plotext takes `labels`
                    self.groups,
                    [values for _, values in self.series],
                    labels=[n for n, _ in self.series],  # type: ignore[call-arg]
                )


def fill_table(
    table: Any,
    columns: list[str],
    rows: list[tuple[str | None, list[str]]],
    max_width: int = 60,
    fixed: dict[str, int] | None = None,
) -> None:
    """Replace a DataTable's columns and rows with explicit column widths (from the contents), keeping the cursor
    on the same row key when it is still there. Explicit widths make the layout independent of when Textual
    measures the table (a snapshot taken right after a refresh is the same every time); cells are Text, never
    markup (a sentence with "[...]" in it stays as it is)."""
    current = None
    if table.row_count:
        try:
            current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no cell under the cursor
            current = None
    fixed = fixed or {}
    table.clear(columns=True)
    for index, name in enumerate(columns):
        width = fixed.get(name) or min(max_width, max([len(name)] + [len(r[index]) for _, r in rows]))
        table.add_column(name, width=width, key=name)
    for key, cells in rows:
        table.add_row(*[Text(c, no_wrap=True, overflow="ellipsis") for c in cells], key=key)
    if current is not None:
        for index, (key, _) in enumerate(rows):
            if key == current:
                table.move_cursor(row=index)
                break
