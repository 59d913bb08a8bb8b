"""The torch-free read layer (engine.analysis): one region rule read as SQL and as Python, one map grid for the
CLI's text map and the app's widget, one reading of a job's progress, one value formatter."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import duckdb
import pytest

from engine.analysis.datamap import MapGrid, bin_counts, boundary_cells, render_map
from engine.analysis.format import fmt_duration, fmt_value
from engine.analysis.progress import JobFollower, progress_of
from engine.analysis.regions import (
    AXES,
    REGIONS,
    Bounds,
    CartographyBounds,
    RobustnessBounds,
    region_of,
    region_sql,
)
from storage.artifacts import RunState, append_event

REPO = Path(__file__).resolve().parent.parent

BOUNDS = {
    "cartography": [
        CartographyBounds(),
        CartographyBounds(0.15, 0.6),
        CartographyBounds(0.1, 0.3),
        CartographyBounds(0, 1),
    ],
    "robustness": [RobustnessBounds(), RobustnessBounds(0.3, 0.7), RobustnessBounds(0.25, 2.5)],
}


def grid_points(bounds: CartographyBounds | RobustnessBounds) -> list[tuple[float | None, float | None]]:
    """A grid over both axes, every bound itself (the edge case), the floats just either side of each bound,
    values that print long (0.1 * 3), and missing values."""
    values: list[float | None] = [i / 40 * 3 for i in range(41)] + [0.1 * 3, 0.7 * 3, None]
    for bound in vars(bounds).values():
        values += [float(bound), math.nextafter(bound, -math.inf), math.nextafter(bound, math.inf)]
    return list(itertools.product(values, values))


@pytest.mark.parametrize("kind", ["cartography", "robustness"])
def test_sql_and_python_region_rules_agree_on_a_grid(kind: str) -> None:
    xcol, ycol = (axis.column for axis in AXES[kind])
    con = duckdb.connect()
    for bounds in BOUNDS[kind]:
        points = grid_points(bounds)
        con.execute(f"CREATE OR REPLACE TABLE example_metrics ({xcol} DOUBLE, {ycol} DOUBLE, i INTEGER)")
        con.executemany(
            "INSERT INTO example_metrics VALUES (?, ?, ?)", [(x, y, i) for i, (x, y) in enumerate(points)]
        )
        found = con.execute(
            f"SELECT i, {region_sql(kind, bounds)} FROM example_metrics ORDER BY i"
        ).fetchall()
        assert len(found) == len(points)
        for (_, sql_region), (x, y) in zip(found, points):
            assert region_of(kind, bounds, x, y) == sql_region, (kind, bounds, x, y)
        assert {r for _, r in found} - {None} <= set(REGIONS[kind])
    con.close()


def test_region_rule_keeps_its_documented_shape() -> None:
    # the CASE the catalog queries run (selection.py, the metrics CLI, the app's pages) did not change
    assert region_sql("cartography", CartographyBounds()) == (
        "CASE WHEN variability >= 0.2 THEN 'ambiguous' WHEN confidence >= 0.5 THEN 'easy' ELSE 'hard' END"
    )
    assert region_sql("robustness", RobustnessBounds()) == (
        "CASE WHEN sensitivity IS NULL OR adv_variability IS NULL THEN NULL "
        "WHEN adv_variability >= 0.5 THEN 'swing' WHEN sensitivity < 1.0 THEN 'robust' ELSE 'non-robust' END"
    )
    b = Bounds()
    assert (
        b.region_of("cartography", 0.2, 0.0) == "ambiguous"
        and b.region_of("cartography", 0.19, 0.5) == "easy"
    )
    assert (
        b.region_of("robustness", 1.0, 0.49) == "non-robust" and region_of("robustness", b, None, 0.1) is None
    )


def test_bounds_move_within_the_fixed_axes() -> None:
    b = Bounds().moved("cartography", "x", 1.0).moved("cartography", "y", -5.0)
    assert b.cartography == CartographyBounds(0.5, 0.0)  # variability <= 0.5, confidence >= 0
    r = Bounds().moved("robustness", "x", 7.25).moved("robustness", "y", 0.1)
    assert r.robustness == RobustnessBounds(swing_variability=0.6, robust_sensitivity=8.25)  # no fixed top
    assert r.lines("robustness") == (8.25, 0.6) and b.lines("cartography") == (0.5, 0.0)


def make_metrics(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE example_metrics AS
           SELECT 'run' AS run_id, 'e' || i AS example_id,
                  (i % 50) / 100.0 AS variability, (i % 97) / 97.0 AS confidence,
                  (i % 31) / 10.0 AS sensitivity, (i % 13) / 12.0 AS adv_variability
           FROM range(2000) t(i)"""
    )


def test_one_map_grid_row_zero_at_the_top() -> None:
    con = duckdb.connect()
    make_metrics(con)
    grid = bin_counts(con, "run", "cartography", 20, 10, Bounds())
    assert isinstance(grid, MapGrid) and grid.bounds == CartographyBounds()
    assert grid.total == 2000 == sum(map(sum, grid.counts))
    assert grid.region_counts == dict(
        con.execute(
            f"SELECT {region_sql('cartography')} AS r, count(*) FROM example_metrics GROUP BY r"
        ).fetchall()
    )
    # highest confidences are binned into row 0 (the top), lowest variabilities into column 0
    top = con.execute(
        "SELECT count(*) FROM example_metrics WHERE confidence >= 0.9 AND variability < 0.025"
    ).fetchone()[0]
    assert grid.counts[0][0] == top
    for row in range(grid.height):
        for col in range(grid.width):
            x, y = grid.cell_center(row, col)
            assert (grid.row_of(y), grid.col_of(x)) == (row, col)
            assert grid.region_at(row, col) == region_of("cartography", grid.bounds, x, y)
    rob = bin_counts(con, "run", "robustness", 12, 6)
    assert rob.x_range == (0.0, 3.0) and rob.y_range == (0.0, 1.0) and rob.x_label == "sensitivity"
    con.close()


def test_the_app_widget_draws_the_cli_grid() -> None:
    """The app's DataMapView and `dynascope map` draw the same MapGrid: same class, boundaries in the same cells."""
    import tui_app.widgets as widgets
    from engine.analysis import datamap

    assert widgets.MapGrid is datamap.MapGrid
    con = duckdb.connect()
    make_metrics(con)
    for kind in ("cartography", "robustness"):
        bounds = Bounds().moved(kind, "y", -0.1)
        grid = bin_counts(con, "run", kind, 24, 8, bounds)
        view = widgets.DataMapView()
        view.show(grid, bounds, None)
        lines = view.render().plain.splitlines()[1 : 1 + grid.height]  # below the y label, above the x axis
        cells = [line[6:] for line in lines]  # after "0.50 ┤"
        text_map = [line[8:] for line in render_map(grid)[1 : 1 + grid.height]]
        for (row, col), ch in boundary_cells(grid).items():
            if grid.counts[row][col] == 0:
                assert cells[row][col] in "│─" and text_map[row][col] == ch
        assert all(len(c) == grid.width for c in cells)
    con.close()


def test_job_progress_from_events(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    follower = JobFollower(run_dir)
    assert follower.poll() == [] and follower.progress().fraction == 0.0
    append_event(run_dir, "state", status="running", pid=1, n_epochs=4)
    append_event(run_dir, "progress", epoch=0, n_epochs=4, step=25, total=100, eta_s=3700.4, loss=0.7)
    assert [e["type"] for e in follower.poll()] == ["state", "progress"]
    p = follower.progress()
    assert (p.epoch, p.step, p.total, p.n_epochs) == (0, 25, 100, 4)
    assert p.fraction == pytest.approx(0.0625) and p.epoch_fraction == 0.25 and p.steps() == (25, 400)
    append_event(run_dir, "epoch_end", epoch=0, metrics={"train_loss": 0.5})
    append_event(run_dir, "progress", epoch=1, n_epochs=4, step=50, total=100)
    assert len(follower.poll()) == 2 and follower.poll() == []  # only what is new
    assert follower.progress().fraction == pytest.approx(1.5 / 4) and follower.progress().steps() == (
        150,
        400,
    )
    # a job as engine.jobs lists it reads the same
    job = {"status": "running", "epochs_done": 1, "n_epochs": 4, "progress": follower.state.progress}
    assert progress_of(job) == follower.progress()
    append_event(run_dir, "state", status="done")
    follower.poll()
    assert follower.progress().fraction == 1.0
    assert progress_of(RunState()).fraction == 0.0


def test_one_formatter() -> None:
    assert fmt_value(None) == "-" and fmt_value(0.123456) == "0.1235" and fmt_value(0.123456, 3) == "0.123"
    assert fmt_value(7) == "7" and fmt_value("x") == "x" and fmt_value(True) == "True"
    assert fmt_duration(None) == "?" and fmt_duration(75.9) == "1:15" and fmt_duration(3725) == "1:02:05"


def test_the_app_holds_no_sql() -> None:
    for path in (REPO / "tui_app").rglob("*.py"):
        source = path.read_text()
        if path.name != "sql.py":  # the SQL console: the user's SQL, and an example of it
            assert not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE) .*\b(FROM|INTO|SET)\b", source), path
        # only the SQL console sends SQL, and it sends the user's
        assert "con.execute(" not in source and "cur.execute(" not in source, path
