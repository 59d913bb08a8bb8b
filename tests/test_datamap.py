"""The data map: SQL binning against a numpy reference, the text rendering, `dynascope map` and `metrics`."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

from engine.analysis.datamap import bin_counts, render_map
from engine.analysis.regions import CartographyBounds, RobustnessBounds
from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace
from tests.test_metrics import finish, random_dynamics, write_run


def reference_grid(
    x: np.ndarray, y: np.ndarray, xr: tuple[float, float], yr: tuple[float, float], w: int, h: int
) -> np.ndarray:
    bx = np.clip(np.floor((x - xr[0]) / (xr[1] - xr[0]) * w), 0, w - 1).astype(int)
    by = np.clip(np.floor((y - yr[0]) / (yr[1] - yr[0]) * h), 0, h - 1).astype(int)
    grid = np.zeros((h, w), int)
    np.add.at(grid, (h - 1 - by, bx), 1)
    return grid


def make_run(ws: Workspace, n: int = 500, adversarial: bool = True) -> dict[str, np.ndarray]:
    ids = np.array([f"m{i:05d}" for i in range(n)])
    dyn = random_dynamics(n, 5, seed=21, adversarial=adversarial)
    write_run(ws.run_dir("run"), ids, dyn, 5)
    finish(ws.run_dir("run"), 5)
    out = {"confidence": dyn["gold_prob"].mean(axis=1), "variability": dyn["gold_prob"].std(axis=1)}
    if adversarial:
        out["sensitivity"] = dyn["adv_loss"].mean(axis=1)
        out["adv_variability"] = dyn["adv_loss"].std(axis=1)
    return out


def test_bin_counts_match_numpy_and_regions(ws: Workspace) -> None:
    computed = make_run(ws)
    with open_catalog(ws) as con:
        sync(ws, con)
        bounds = CartographyBounds(ambiguous_variability=0.15, easy_confidence=0.6)
        grid = bin_counts(con, "run", "cartography", 30, 12, bounds)
        rob = bin_counts(con, "run", "robustness", 25, 10, RobustnessBounds(0.6, 0.9))
        # bin the catalog's own values (DuckDB's parallel sums may differ from numpy's in the last bit)
        ref = {
            k: np.array(v)
            for k, v in con.execute(
                """SELECT confidence, variability, sensitivity, adv_variability FROM example_metrics
                   WHERE run_id = 'run' ORDER BY example_id"""
            )
            .fetchnumpy()
            .items()
        }
    for key, values in ref.items():
        np.testing.assert_allclose(values, computed[key], atol=1e-12)
    assert grid.x_range == (0.0, 0.5) and grid.y_range == (0.0, 1.0) and grid.total == 500
    expected = reference_grid(ref["variability"], ref["confidence"], (0.0, 0.5), (0.0, 1.0), 30, 12)
    np.testing.assert_array_equal(np.array(grid.counts), expected)
    amb = ref["variability"] >= 0.15
    assert grid.region_counts == {
        "easy": int((~amb & (ref["confidence"] >= 0.6)).sum()),
        "ambiguous": int(amb.sum()),
        "hard": int((~amb & (ref["confidence"] < 0.6)).sum()),
    }
    assert min(grid.region_counts.values()) > 0

    xr = (0.0, float(ref["sensitivity"].max()))
    yr = (0.0, float(ref["adv_variability"].max()))
    assert rob.x_range == xr and rob.y_range == yr
    np.testing.assert_array_equal(
        np.array(rob.counts), reference_grid(ref["sensitivity"], ref["adv_variability"], xr, yr, 25, 10)
    )
    swing = ref["adv_variability"] >= 0.6
    assert rob.region_counts == {
        "robust": int((~swing & (ref["sensitivity"] < 0.9)).sum()),
        "swing": int(swing.sum()),
        "non-robust": int((~swing & (ref["sensitivity"] >= 0.9)).sum()),
    }


def test_render_shows_density_boundaries_and_counts(ws: Workspace) -> None:
    make_run(ws)
    with open_catalog(ws) as con:
        sync(ws, con)
        grid = bin_counts(con, "run", "cartography", 40, 10)
    lines = render_map(grid)
    body = lines[1:11]
    assert all(len(line) == len(body[0]) for line in body)  # a rectangle
    plot = [line[8:] for line in body]  # after the 7-character y labels and the left border
    # the ambiguous boundary (variability 0.2) is column 16 of 40, drawn over the points on every row; the
    # easy / hard boundary (confidence 0.5) is a row of '-' left of it, meeting it at a '+'
    assert all(row[16] in "|+" for row in plot) and sum(row[16] == "+" for row in plot) == 1
    assert sum(row[:16] == "-" * 16 for row in plot) == 1
    assert lines[11][8:][16] == "^" and [line[7] for line in body].count(">") == 1  # marked on both axes
    assert any(ch in "".join(plot) for ch in "@%#")  # the densest cell gets the darkest shade
    text = "\n".join(lines)
    for region, n in grid.region_counts.items():
        assert f"{region}" in text and str(n) in text
    # few points: region letters instead of shades
    sparse = render_map(grid, sparse_limit=10_000)
    assert set("".join(sparse[1:11])) & set("eah")


def test_map_and_metrics_commands(ws: Workspace, cli, tmp_path: Path) -> None:  # noqa: ANN001
    ref = make_run(ws, n=300, adversarial=False)
    result = cli("map", "run", "--width", "40", "--height", "10")
    assert result.code == 0, result.stderr
    assert "variability" in result.stdout and "ambiguous" in result.stdout and "hard" in result.stdout
    data = cli("map", "run", "--width", "40", "--height", "10", "--json").json()
    assert sum(map(sum, data["counts"])) == 300 and len(data["counts"]) == 10 and len(data["counts"][0]) == 40
    assert sum(data["regions"].values()) == 300
    moved = cli("map", "run", "--bounds", "0.1,0.9", "--json").json()
    assert moved["regions"]["ambiguous"] == int((ref["variability"] >= 0.1).sum())

    bad = cli("map", "run", "--kind", "robustness")
    assert bad.code == 2 and "adversarial" in bad.stderr
    bad = cli("map", "run", "--bounds", "x,1")
    assert bad.code == 2 and "--bounds" in bad.stderr
    assert cli("map", "ghost").code == 2

    rows = cli("metrics", "run", "--json").json()
    assert len(rows) == 300 and {"region", "label", "confidence", "forgetting", "correct_epochs"} <= set(
        rows[0]
    )
    by_id = {r["example_id"]: r for r in rows}
    assert abs(by_id["m00007"]["confidence"] - ref["confidence"][7]) < 1e-12
    hard = cli("metrics", "run", "--region", "hard", "--json").json()
    assert 0 < len(hard) < 300 and all(r["region"] == "hard" for r in hard)
    out = tmp_path / "metrics.parquet"
    result = cli("metrics", "run", "--parquet", str(out))
    assert result.code == 0 and out.is_file()
    table = pq.read_table(out)
    assert table.num_rows == 300 and "region" in table.column_names
    assert sorted(table.column("example_id").to_pylist()) == sorted(by_id)
    text = cli("metrics", "run")
    assert text.code == 0 and "cartography" in text.stdout and "m00000" in text.stdout


def test_binning_a_million_examples_is_fast(ws: Workspace) -> None:
    with open_catalog(ws) as con:
        con.execute(
            """INSERT INTO example_metrics (run_id, example_id, epochs, confidence, variability, correctness)
               SELECT 'big', 'e' || i, 10, random(), random() * 0.5, random() FROM range(1000000) t(i)"""
        )
        started = time.monotonic()
        grid = bin_counts(con, "big", "cartography", 120, 40)
        elapsed = time.monotonic() - started
    assert grid.total == 1_000_000 and sum(grid.region_counts.values()) == 1_000_000
    assert elapsed < 3.0, f"binning 1M examples took {elapsed:.2f} s"
    # the same counts by a plain numpy histogram over the same rows
    con = duckdb.connect(str(ws.catalog_path), read_only=True)
    try:
        x, y = (
            con.execute("SELECT variability, confidence FROM example_metrics WHERE run_id = 'big'")
            .fetchnumpy()
            .values()
        )
    finally:
        con.close()
    np.testing.assert_array_equal(
        np.array(grid.counts), reference_grid(x, y, (0.0, 0.5), (0.0, 1.0), 120, 40)
    )
