"""Data map: confidence vs variability (or sensitivity vs adversarial variability), drawn from binned counts,
coloured by region (or gold label, or correctness), boundaries movable from the keyboard with their values on the
axes, live counts per region; a cell cursor listing a cell's examples, per-class maps, the paper's three
histograms, the map diff against another run; a running run's map follows it epoch by epoch."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, Static

from engine.analysis.datamap import COLOUR_BY, MapGrid, bin_counts, region_counts
from engine.analysis.fitted_cache import cached_fitted_bounds
from engine.analysis.histograms import METRICS as HIST_METRICS
from engine.analysis.histograms import Histogram, metric_histograms
from engine.analysis.labelmix import LabelMix, map_label_mix
from engine.analysis.pages import ExampleFilter
from engine.analysis.progress import JobFollower
from engine.analysis.regions import REGIONS, Bounds
from engine.analysis.runs import get_run, latest_run_with_metrics
from tui_app.histogram_plot import HistogramPlot
from tui_app.screens.base import BaseScreen
from tui_app.widgets import LABEL_COLOURS, REGION_COLOURS, DataMapView, correctness_colour, grid_size


@dataclass
class MapLoaded(Message):
    run: dict[str, Any] | None
    kind: str
    grid: MapGrid | None
    counts: dict[str, int]
    bounds: Bounds
    fitted: Bounds | None = None  # the run's fitted defaults, when they were (re)computed for this load


@dataclass
class MixLoaded(Message):
    mix: LabelMix
    kind: str
    bounds: Bounds


@dataclass
class HistogramsLoaded(Message):
    histograms: dict[str, Histogram]
    run_id: str
    label: str | None


@dataclass
class CountsLoaded(Message):
    counts: dict[str, int]
    bounds: Bounds


LIVE_S = 3.0  # how often the map of a running job looks for a newly finished epoch (events.jsonl only)
SIDE_W = 34  # the counts panel
MIX_LABELS = 4  # labels listed in the panel (the most frequent first)
CHROME_H = 3  # header, title line, footer


LEGEND = (  # at most SIDE_W - 2 characters a line
    "←→↑↓ move the lines  x a cell\n1-3/tab region  ⏎ examples\n"
    "o colour  p class  g histograms\nd map diff  t robustness\nc case studies  0 reset\n"
    "A more like the region (LLM)"
)


class DataMapScreen(BaseScreen):
    TITLE_TEXT = "data map"
    BINDINGS = [
        Binding("left,h", "move('x', -1)", "Line ←", id="datamap.x_down", show=False),
        Binding("right,l", "move('x', 1)", "Line →", id="datamap.x_up", show=False),
        Binding("down,j", "move('y', -1)", "Line ↓", id="datamap.y_down", show=False),
        Binding("up,k", "move('y', 1)", "Line ↑", id="datamap.y_up", show=False),
        Binding("1", "select_region(0)", "Region 1", show=False, id="datamap.region1"),
        Binding("2", "select_region(1)", "Region 2", show=False, id="datamap.region2"),
        Binding("3", "select_region(2)", "Region 3", show=False, id="datamap.region3"),
        Binding("tab", "next_region", "Next region", id="datamap.next_region", show=False),
        Binding("enter", "open_region", "Examples", id="datamap.open_region"),
        Binding("t", "toggle_kind", "Cartography/robustness", id="datamap.toggle_kind", show=False),
        Binding("c", "cases", "Case studies", id="datamap.cases"),
        Binding("R", "retrain", "Retrain on region", id="datamap.retrain"),
        Binding("A", "augment", "Augment region", id="datamap.augment", show=False),
        Binding("0", "reset", "Reset bounds", id="datamap.reset", show=False),
        # in the side panel's legend and in help, not the footer: each footer key is a widget to mount and style
        # on every open of the map
        Binding("x", "toggle_cursor", "Cell cursor", id="datamap.cell_cursor", show=False),
        Binding("o", "cycle_colour", "Colour by", id="datamap.colour_by", show=False),
        Binding("p", "cycle_class", "Per-class map", id="datamap.per_class", show=False),
        Binding("g", "toggle_histograms", "Histograms", id="datamap.histograms", show=False),
        Binding("d", "map_diff", "Map diff", id="datamap.map_diff", show=False),
    ]
    DEFAULT_CSS = """
    DataMapScreen #map-title { height: 1; padding: 0 1; text-style: bold; }
    DataMapScreen #map-body { height: 1fr; }
    DataMapScreen DataMapView { width: 1fr; height: 1fr; }
    DataMapScreen #side { width: 34; padding: 0 1; border-left: solid $panel; }
    DataMapScreen #counts { height: auto; }
    DataMapScreen #mix { height: auto; margin-top: 1; }
    DataMapScreen #legend { height: auto; color: $text-muted; margin-top: 1; }
    DataMapScreen #hist { width: 34; border-left: solid $panel; display: none; }
    DataMapScreen.histograms #hist { display: block; }
    DataMapScreen.histograms #side { display: none; }
    """

    def __init__(
        self, run_id: str | None = None, kind: str = "cartography", bounds: Bounds | None = None
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.kind = kind
        # None until the first load: then the boundaries fitted to the run (engine.analysis.bounds)
        self.bounds: Bounds = bounds or Bounds()
        self.fitted: Bounds | None = None
        self._fit_on_load = bounds is None
        self.mix: LabelMix | None = None
        self.grid: MapGrid | None = None
        self.run: dict[str, Any] | None = None
        self.counts: dict[str, int] = {}
        self.selected_region: str = REGIONS[kind][0]
        self._grid_size: tuple[int, int] = (0, 0)
        self._resize_timer: Any = None
        self._follower: tuple[str, JobFollower] | None = None  # the run being watched for new epochs
        self.loaded = False
        self.cursor: tuple[int, int] | None = None  # (row, col) of the cell cursor, None when off
        self.colour_by = "region"
        self.label: str | None = None  # a per-class map: only this gold label's examples
        self.labels: list[
            str
        ] = []  # the run's gold labels (from the label mix), for colours and per-class maps
        self.histograms: dict[str, Histogram] | None = None
        self.show_histograms = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="map-title")
        with Horizontal(id="map-body"):
            yield DataMapView(id="map")
            with Vertical(id="side"):
                yield Static("", id="counts")
                yield Static("", id="mix")
                yield Static(LEGEND, id="legend")
            yield Vertical(id="hist")  # the histograms, mounted on first use (g): the map opens without them
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(DataMapView).focus()
        # Start the query now, sized from the terminal (the layout is not measured before the first refresh);
        # a resize handler re-bins if the map turns out to have another size.
        width, height = self.app.size
        self._grid_size = grid_size(width - SIDE_W, height - CHROME_H)
        self.load_map(self.run_id, self.kind, self.load_bounds(), *self._grid_size)
        self.set_interval(LIVE_S, self.check_live)

    def load_bounds(self) -> Bounds | None:
        """None (fit them again) while the user has not moved the fitted boundaries: a running run's map
        follows its own distribution epoch by epoch."""
        if self._fit_on_load or (self.fitted is not None and self.bounds == self.fitted):
            return None
        return self.bounds

    def check_live(self) -> None:
        """A run still training gains epochs: re-read the map when its events say one more finished."""
        if (
            self.run is not None
            and self.run.get("status") in ("created", "running")
            and self.app.screen is self
        ):
            self.watch_run(self.run["run_id"], int(self.run.get("epochs_done") or 0))

    @work(thread=True, exclusive=True, group="map-live", exit_on_error=False)
    def watch_run(self, run_id: str, epochs_seen: int) -> None:
        if self._follower is None or self._follower[0] != run_id:
            self._follower = (run_id, JobFollower(self.ws.run_dir(run_id)))
        follower = self._follower[1]
        follower.poll()  # only the events added since the last look
        state = follower.state
        if state.epochs_done != epochs_seen or state.finished:
            self.app.call_from_thread(self.reload)

    def reload(self) -> None:
        view = self.query_one(DataMapView)
        self._grid_size = grid_size(view.size.width, view.size.height)
        self.load_map(self.run_id, self.kind, self.load_bounds(), *self._grid_size)

    def on_resize(self) -> None:
        if self._resize_timer is not None:
            self._resize_timer.stop()
        self._resize_timer = self.set_timer(0.2, self._maybe_reload)

    def _maybe_reload(self) -> None:
        view = self.query_one(DataMapView)
        if grid_size(view.size.width, view.size.height) != self._grid_size and self.loaded:
            self.reload()

    @work(thread=True, exclusive=True, group="map", exit_on_error=False)
    def load_map(self, run_id: str | None, kind: str, bounds: Bounds | None, width: int, height: int) -> None:
        """The map under `bounds`, or (None) under the boundaries fitted to the run (cached per run and metrics
        epochs); the label mix follows once the map is on screen."""
        label, colour_by = self.label, self.colour_by
        with self.catalog(do_sync=True) as con:
            run_id = run_id or latest_run_with_metrics(con)
            if run_id is None:
                self.post_message(MapLoaded(None, kind, None, {}, bounds or Bounds()))
                return
            run = get_run(con, run_id)
            if run is None:
                raise LookupError(f"no run named {run_id!r}")
            if kind == "robustness" and not run["n_adv"]:
                kind = "cartography"
            fitted = None
            if bounds is None:
                fitted = bounds = cached_fitted_bounds(con, self.ws, run_id, adversarial=bool(run["n_adv"]))
            grid = bin_counts(con, run_id, kind, width, height, bounds, label=label, colour_by=colour_by)
        self.post_message(MapLoaded(run, kind, grid, grid.region_counts, bounds, fitted))

    @work(thread=True, exclusive=True, group="mix", exit_on_error=False)
    def load_mix(self, run_id: str, kind: str, bounds: Bounds) -> None:
        """The label mix per region (a join with the examples: after the map, so it never delays the paint)."""
        with self.catalog() as con:
            mix = map_label_mix(con, run_id, kind, bounds.of(kind))
        self.post_message(MixLoaded(mix, kind, bounds))

    def on_mix_loaded(self, message: MixLoaded) -> None:
        if message.bounds == self.bounds and message.kind == self.kind:
            self.mix = message.mix
            self.labels = sorted(message.mix.overall)
            self.paint_mix()
            if self.colour_by == "label":
                self.paint()

    def on_map_loaded(self, message: MapLoaded) -> None:
        self.loaded = True
        self.run = message.run
        if message.run is None:
            self.query_one("#map-title", Static).update(
                "no run with per-example metrics yet: train one (j, n)"
            )
            self.query_one(DataMapView).show(None, self.bounds, None, "no run with per-example metrics yet")
            return
        self.run_id = message.run["run_id"]
        self.bounds = message.bounds
        if message.fitted is not None:
            self.fitted = message.fitted
            self._fit_on_load = False
        if message.kind != self.kind:
            self.kind = message.kind
            self.selected_region = REGIONS[self.kind][0]
        self.grid = message.grid
        self.counts = message.counts
        if self.cursor is not None and self.grid is not None:
            self.cursor = (
                min(self.cursor[0], self.grid.height - 1),
                min(self.cursor[1], self.grid.width - 1),
            )
        self.paint()
        self.call_after_refresh(self.after_map_painted)

    def after_map_painted(self) -> None:
        """Mark the paint, then the slower reads (the label mix joins the examples): never before the map."""
        self.mark_painted()
        if self.run is not None:
            self.load_mix(self.run["run_id"], self.kind, self.bounds)
            if self.show_histograms:
                self.load_histograms(self.run["run_id"], self.label)

    @work(thread=True, exclusive=True, group="counts", exit_on_error=False)
    def load_counts(self, run_id: str, kind: str, bounds: Bounds) -> None:
        with self.catalog() as con:
            counts = region_counts(con, run_id, kind, bounds)
        self.post_message(CountsLoaded(counts, bounds))
        self.load_mix(run_id, kind, bounds)

    def on_counts_loaded(self, message: CountsLoaded) -> None:
        if message.bounds == self.bounds:
            self.counts = message.counts
            self.paint()

    def label_colours(self) -> dict[str, str]:
        return {lab: LABEL_COLOURS[i % len(LABEL_COLOURS)] for i, lab in enumerate(self.labels)}

    def title_text(self) -> str:
        """The boundaries first, so they stay readable at 80 columns; then a running run's state (before the run
        id, which can be long enough to push it off a 120-column line), the run and the view."""
        run = self.run or {}
        origin = "fitted to the run" if self.bounds == self.fitted else "moved"
        parts = [f"{self.bounds.describe(self.kind)} ({origin})"]
        if run.get("status") in ("created", "starting", "running"):
            parts.append(f"training, epoch {run.get('epochs_done') or 0}/{run.get('n_epochs') or '?'}")
        parts.append(f"run {run.get('run_id', '?')}")
        parts.append(f"{run.get('dataset') or '?'} · {self.kind}")
        if self.label is not None:
            parts.append(f"label {self.label} only")
        if self.colour_by != "region":
            parts.append(f"colour: {self.colour_by}")
        return " · ".join(parts)

    def paint(self) -> None:
        self.query_one("#map-title", Static).update(self.title_text())
        self.query_one(DataMapView).show(
            self.grid,
            self.bounds,
            self.selected_region,
            cursor=self.cursor,
            label_colours=self.label_colours(),
        )
        total = sum(self.counts.values())
        lines = [f"[b]{self.kind}[/b]  ({total:,} examples)"]
        for index, region in enumerate(REGIONS[self.kind], start=1):
            n = self.counts.get(region, 0)
            share = 100.0 * n / total if total else 0.0
            mark = "▶" if region == self.selected_region else " "
            colour = REGION_COLOURS[region]
            lines.append(f"{mark}{index} [{colour}]■[/] {region:<10}{n:>9,} {share:5.1f}%")
        self.query_one("#counts", Static).update("\n".join(lines))
        self.paint_mix()

    def paint_mix(self) -> None:
        """The selected region's labels: its count and share of each, against the share among all examples; or
        under the cell cursor, the cell; or what the colours mean."""
        if self.cursor is not None and self.grid is not None:
            self.query_one("#mix", Static).update(self.cell_text())
            return
        if self.colour_by == "correctness":
            steps = "".join(f"[{correctness_colour(v / 4)}]■[/]" for v in range(5))
            self.query_one("#mix", Static).update(f"[b]colour: mean correctness[/b]\n0 {steps} 1")
            return
        if self.colour_by == "label" and self.labels:
            colours = self.label_colours()
            lines = ["[b]colour: majority gold label[/b]"]
            lines += [f"[{colours[lab]}]■[/] {lab[:26]}" for lab in self.labels[:MIX_LABELS]]
            self.query_one("#mix", Static).update("\n".join(lines))
            return
        if self.mix is None:
            self.query_one("#mix", Static).update("labels: ...")
            return
        region = self.selected_region
        lines = [f"[b]labels in {region}[/b] (vs all)"]
        lines += self.mix.lines(region, limit=MIX_LABELS, width=10)
        missing = self.mix.missing(region)
        if missing and self.counts.get(region):
            lines.append(f"[$warning]no {', '.join(m or '-' for m in missing[:3])}[/]")
        self.query_one("#mix", Static).update("\n".join(lines))

    # ---- keys ----------------------------------------------------------------------------------------

    def step(self, axis: str) -> float:
        if self.kind == "cartography":
            return 0.01 if axis == "x" else 0.05
        if self.grid is None:
            return 0.05
        raw = (self.grid.x_max if axis == "x" else self.grid.y_max) / 40
        return float(f"{raw:.1g}")  # one significant digit: the bounds stay readable

    def action_move(self, axis: str, direction: int) -> None:
        if self.run is None:
            return
        if self.cursor is not None:
            self.move_cursor(axis, direction)
            return
        self.bounds = self.bounds.moved(self.kind, axis, direction * self.step(axis))
        self.paint()
        self.load_counts(self.run["run_id"], self.kind, self.bounds)

    def action_reset(self) -> None:
        if self.run is None:
            return
        self.bounds = self.fitted or Bounds()
        self.paint()
        self.load_counts(self.run["run_id"], self.kind, self.bounds)

    def action_select_region(self, index: int) -> None:
        regions = REGIONS[self.kind]
        if 0 <= index < len(regions):
            self.selected_region = regions[index]
            self.paint()

    def action_next_region(self) -> None:
        regions = REGIONS[self.kind]
        self.selected_region = regions[(regions.index(self.selected_region) + 1) % len(regions)]
        self.paint()

    def action_toggle_kind(self) -> None:
        if self.run is None:
            return
        if not self.run.get("n_adv"):
            self.notify("this run has no adversarial records: only the cartography map", timeout=3)
            return
        self.kind = "robustness" if self.kind == "cartography" else "cartography"
        self.selected_region = REGIONS[self.kind][0]
        self.reload()

    def action_open_region(self) -> None:
        if self.run is None:
            return
        if self.cursor is not None:
            self.open_cell()
            return
        self.app.open_examples(  # type: ignore[attr-defined]
            run_id=self.run["run_id"], region=self.selected_region, kind=self.kind, bounds=self.bounds
        )

    def action_search(self) -> None:
        self.action_open_region()

    def action_cases(self) -> None:
        if self.run is not None:
            self.app.open_cases(self.run["run_id"], kind=self.kind, bounds=self.bounds)  # type: ignore[attr-defined]

    def action_retrain(self) -> None:
        """Retrain on the selected region: with the boundaries on screen when the user moved them (every example
        the map puts in the region), else the top-F ranking of the region; the form says which and how many."""
        if self.run is None:
            return
        if self.label is not None:  # the counts on screen are one class's; a retrain selects from all of them
            self.notify(
                "a retrain selects from every class: press p until the map shows all classes", timeout=4
            )
            return
        from engine.analysis.regions import RANKING, selection_size
        from engine.jobs.retrain import FRACTION

        region = self.selected_region
        preset: dict[str, Any] = {"kind": "retrain", "run": self.run["run_id"], "region": region}
        bounds = self.bounds.of(self.kind)
        total = sum(self.counts.values())
        if self.fitted is None or bounds != self.fitted.of(self.kind):
            preset["bounds"] = ",".join(f"{v:g}" for v in astuple(bounds))
            preset["fraction"] = None
            preset["note"] = (
                f"selects every example in '{region}' with the boundaries on screen "
                f"({self.bounds.describe(self.kind)}): {self.counts.get(region, 0)} examples"
            )
        else:
            fraction = float(FRACTION.default)
            metric, order = RANKING.get(region, ("variability", "DESC"))
            preset["note"] = (
                f"selects the top {fraction:.0%} of '{region}' by {metric} "
                f"({'highest' if order == 'DESC' else 'lowest'} first): {selection_size(fraction, total)} of "
                f"{total} examples (move the map's boundaries to select a map region instead)"
            )
        self.app.open_jobs(new=True, preset=preset)  # type: ignore[attr-defined]

    def action_augment(self) -> None:
        """Ask an LLM for label-preserving rewrites of the selected region's examples (`augment-region`, checked
        by this run): the jobs form opens preset with the run, the region and the boundaries on screen, and the
        endpoint of the last generate job; ctrl+s launches it."""
        if self.run is None:
            return
        if self.run.get("task") != "classification":
            self.notify(
                f"augment-region rewrites classification examples; run {self.run['run_id']} is a "
                f"{self.run.get('task') or 'unknown'} run (for QA: generate --pipeline extra-answers or context)",
                severity="warning",
                timeout=6,
            )
            return
        if self.label is not None:  # the counts on screen are one class's; the region holds every class
            self.notify(
                "augment-region rewrites the region's examples of every class: press p until the map shows "
                "all classes",
                timeout=4,
            )
            return
        region = self.selected_region
        shown = self.counts.get(region, 0)
        if not shown:
            self.notify(f"no example is in '{region}' with these boundaries", timeout=3)
            return
        bounds = self.bounds.of(self.kind)
        preset: dict[str, Any] = {
            "kind": "generate",
            "pipeline": "augment-region",
            "from": self.run["dataset"],
            "run": self.run["run_id"],
            "region": region,
            "bounds": ",".join(f"{v:g}" for v in astuple(bounds)),
            "n": shown,
            "note": (
                f"rewrites each of the {shown} examples the map puts in '{region}' "
                f"({self.bounds.describe(self.kind)}); run {self.run['run_id']} checks each rewrite's label"
            ),
        }
        self.open_augment_form(preset)

    @work(thread=True, exclusive=True, group="augment", exit_on_error=False)
    def open_augment_form(self, preset: dict[str, Any]) -> None:
        """The new dataset's name (free in the catalog) and the endpoint of the last generate job."""
        from engine.analysis.provenance import free_dataset_name, last_generate_endpoint

        with self.catalog() as con:
            preset["name"] = free_dataset_name(con, f"{preset['run']}-{preset['region']}-more")
            endpoint = last_generate_endpoint(con)
        if endpoint is None:
            preset["note"] += "; give the endpoint's base url and model (dynascope llm serve prints them)"
        else:
            preset["base_url"], preset["model"] = endpoint
            preset["note"] += f"; asks {endpoint[1]} at {endpoint[0]} (the last generate job's endpoint)"
        self.app.call_from_thread(self.app.open_jobs, new=True, preset=preset)  # type: ignore[attr-defined]

    # ---- the cell cursor, colours, per-class maps, histograms, map diff -------------------------------------

    def action_toggle_cursor(self) -> None:
        """Arrow keys move a cell cursor instead of the boundaries (x again: back to the boundaries)."""
        grid = self.grid
        if grid is None or grid.total == 0:
            return
        if self.cursor is not None:
            self.cursor = None
        else:  # start on the densest cell
            self.cursor = max(
                ((r, c) for r in range(grid.height) for c in range(grid.width)),
                key=lambda rc: grid.counts[rc[0]][rc[1]],
            )
        self.paint()

    def move_cursor(self, axis: str, direction: int) -> None:
        grid, cursor = self.grid, self.cursor
        if grid is None or cursor is None:
            return
        row, col = cursor
        if axis == "x":
            col = min(grid.width - 1, max(0, col + direction))
        else:  # up (+1) is towards row 0
            row = min(grid.height - 1, max(0, row - direction))
        self.cursor = (row, col)
        self.paint()

    def cell_ranges(self) -> tuple[tuple[str, float | None, float | None], ...]:
        """The cursor cell's ranges of the map's two metrics, as the binning computes them: the outer cells
        reach beyond the axis (the binning clamps values outside it into them)."""
        grid, cursor = self.grid, self.cursor
        assert grid is not None and cursor is not None
        row, col = cursor
        by = grid.height - 1 - row
        xstep, ystep = grid.x_max / grid.width, grid.y_max / grid.height
        x_lo = None if col == 0 else col * xstep
        x_hi = None if col == grid.width - 1 else (col + 1) * xstep
        y_lo = None if by == 0 else by * ystep
        y_hi = None if by == grid.height - 1 else (by + 1) * ystep
        return ((grid.x_axis.column, x_lo, x_hi), (grid.y_axis.column, y_lo, y_hi))

    def cell_text(self) -> str:
        grid, cursor = self.grid, self.cursor
        assert grid is not None and cursor is not None
        n = grid.counts[cursor[0]][cursor[1]]
        lines = ["[b]cell[/b] (x: back to the lines)"]
        for column, lo, hi in self.cell_ranges():
            lines.append(
                f"{column[:14]} {'' if lo is None else f'{lo:.3f}'}..{'' if hi is None else f'{hi:.3f}'}"
            )
        region = grid.region_at(*cursor)
        lines.append(f"{n:,} examples{f' · {region}' if region else ''}  ⏎ list")
        if grid.cell_colours is not None and grid.cell_colours[cursor[0]][cursor[1]] is not None:
            value = grid.cell_colours[cursor[0]][cursor[1]]
            lines.append(
                f"mean correctness {value:.2f}" if grid.colour_by == "correctness" else f"mostly {value}"
            )
        return "\n".join(lines)

    def cell_filter(self) -> ExampleFilter:
        """The examples screen's filter for the cursor cell: the cell's metric ranges (and the class of a
        per-class map); lower ends inclusive, upper ends exclusive as in the binning, up to float rounding."""
        assert self.run is not None
        return ExampleFilter(
            dataset="",
            run_id=self.run["run_id"],
            kind=self.kind,
            bounds=self.bounds,
            label=self.label,
            ranges=self.cell_ranges(),
        )

    def open_cell(self) -> None:
        from tui_app.screens.examples import ExamplesScreen

        self.app.push_screen(ExamplesScreen(self.cell_filter()))

    def action_cycle_colour(self) -> None:
        self.colour_by = COLOUR_BY[(COLOUR_BY.index(self.colour_by) + 1) % len(COLOUR_BY)]
        if self.run is not None:
            self.reload()

    def action_cycle_class(self) -> None:
        """All examples -> each gold label's own map -> all."""
        if self.run is None or not self.labels:
            return
        options: list[str | None] = [None, *self.labels]
        self.label = options[(options.index(self.label) + 1) % len(options)]
        self.reload()
        if self.show_histograms:
            self.load_histograms(self.run["run_id"], self.label)

    def action_toggle_histograms(self) -> None:
        """The paper's three histograms (confidence, variability, correctness) beside the map, in place of the
        side panel (the same width: the map keeps its size)."""
        self.show_histograms = not self.show_histograms
        panel = self.query_one("#hist", Vertical)
        if self.show_histograms and not panel.children:
            panel.mount_all(HistogramPlot(metric, id=f"hist-{metric}") for metric in HIST_METRICS)
        self.set_class(self.show_histograms, "histograms")
        if self.show_histograms and self.run is not None:
            self.load_histograms(self.run["run_id"], self.label)

    @work(thread=True, exclusive=True, group="histograms", exit_on_error=False)
    def load_histograms(self, run_id: str, label: str | None) -> None:
        with self.catalog() as con:
            histograms = metric_histograms(con, run_id, label=label)
        self.post_message(HistogramsLoaded(histograms, run_id, label))

    def on_histograms_loaded(self, message: HistogramsLoaded) -> None:
        if self.run is None or message.run_id != self.run["run_id"] or message.label != self.label:
            return
        self.histograms = message.histograms
        for metric in HIST_METRICS:
            self.query_one(f"#hist-{metric}", HistogramPlot).set_histogram(message.histograms[metric])
        self.call_after_refresh(self.mark_painted)

    def action_map_diff(self) -> None:
        if self.run is not None:
            from tui_app.screens.mapdiff import MapDiffScreen

            self.app.push_screen(MapDiffScreen(self.run["run_id"], None, self.kind))
