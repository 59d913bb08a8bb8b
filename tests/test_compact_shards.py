"""The compact shard layout: integer example index into the run's id list, float32 values, rows sorted by index.

What is stored, what readers get back (the logical columns, whichever layout), that a workspace written before
the layout keeps working (old shards alone, and mixed with new ones in a resumed run), and that every
formulation of the metric SQL gives the same rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.training.recorder import EpochRecorder
from storage.artifacts import (
    SHARD_KEY,
    ids_path,
    list_shards,
    read_example_ids,
    register_example_ids,
    shard_path,
    shard_scan_sql,
    write_shard,
)
from storage.catalog import open_catalog
from storage.metrics import (
    DYNAMICS_COLUMNS,
    METRIC_COLUMNS,
    aggregation_settings,
    materialise_metrics,
    metrics_source,
    metrics_sql,
    run_metrics_sql,
    shard_relation,
)
from storage.sync import sync
from storage.workspace import Workspace
from tests.test_metrics import catalog_metrics, finish, random_dynamics, reference, write_run


def legacy_shard(run_dir: Path, epoch: int, ids: np.ndarray, dyn: dict[str, np.ndarray]) -> None:
    """A shard exactly as the previous version wrote it: example_id strings, float64 values, sampler order, no
    id list; written with pyarrow directly, not through write_shard."""
    n = len(ids)
    cols = {
        "epoch": pa.array(np.full(n, epoch, np.int32)),
        "rank": pa.array(np.zeros(n, np.int32)),
        "example_id": pa.array(ids, pa.string()),
    }
    for name, matrix in dyn.items():
        cols[name] = pa.array(matrix[:, epoch])
    cols["prediction"] = pa.array(np.where(dyn["correct"][:, epoch], "1", "0"))
    path = shard_path(run_dir, epoch, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path, compression="zstd")


def assert_metrics_match(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], atol: float) -> None:
    for name, expected in ref.items():
        if expected.dtype == bool:
            assert (got[name].astype(bool) == expected).all(), name
        else:
            np.testing.assert_allclose(got[name].astype(float), expected, rtol=0, atol=atol, err_msg=name)


def test_write_shard_stores_the_compact_layout(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    everyone = [f"id-{i}" for i in range(6)]
    table = pa.table(
        {
            "epoch": pa.array([0] * 4, pa.int32()),
            "rank": pa.array([1] * 4, pa.int32()),
            "example_id": ["id-4", "id-1", "id-5", "id-2"],  # a sampler's order
            "gold_prob": [0.4, 0.1, 0.5, 0.2],
            "correct": [True, False, True, False],
            "margin": [None, 1.0, 2.0, 3.0],
            "prediction": ["a", "b", "a", "b"],
            "n_windows": pa.array([1, 2, 3, 4], pa.int32()),
        }
    )
    path = write_shard(run_dir, 0, 1, table, everyone)
    stored = pq.read_table(path)
    types = {f.name: str(f.type) for f in stored.schema}
    assert types == {
        "epoch": "int32",
        "rank": "int32",
        SHARD_KEY: "int32",
        "gold_prob": "float",
        "correct": "bool",
        "margin": "float",
        "prediction": "string",
        "n_windows": "int32",
    }
    # sorted by the index, which is the position in the whole list the recorder was given
    assert stored.column(SHARD_KEY).to_pylist() == [1, 2, 4, 5]
    assert stored.column("gold_prob").to_pylist() == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert stored.column("margin").to_pylist() == [1.0, 3.0, None, 2.0]
    assert read_example_ids(run_dir).to_pylist() == everyone
    ids = pq.read_table(ids_path(run_dir))
    assert ids.column(SHARD_KEY).to_pylist() == list(range(6))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in encodings[SHARD_KEY] and "BYTE_STREAM_SPLIT" in encodings["gold_prob"]


def test_the_id_list_only_grows_and_indices_never_move(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert read_example_ids(run_dir) is None
    first = register_example_ids(run_dir, ["b", "a", "b", "c"])  # repeats keep their first position
    assert first.to_pylist() == ["b", "a", "c"]
    mtime = ids_path(run_dir).stat().st_mtime_ns
    assert register_example_ids(run_dir, ["c", "a"]).to_pylist() == ["b", "a", "c"]  # nothing new: untouched
    assert ids_path(run_dir).stat().st_mtime_ns == mtime
    assert register_example_ids(run_dir, ["d", "a", "e"]).to_pylist() == ["b", "a", "c", "d", "e"]
    # a shard of ids outside the given list still gets indices (appended)
    path = write_shard(
        run_dir,
        0,
        0,
        pa.table({"epoch": [0, 0], "rank": [0, 0], "example_id": ["z", "a"], "gold_prob": [0.5, 0.25]}),
        ["a", "b"],
    )
    assert read_example_ids(run_dir).to_pylist() == ["b", "a", "c", "d", "e", "z"]
    assert pq.read_table(path).column(SHARD_KEY).to_pylist() == [1, 5]


def test_recorder_ranks_share_one_id_list_and_readers_get_logical_rows(tmp_path: Path) -> None:
    """Two ranks (each its own recorder with the run's whole list) write one epoch; a resumed recorder writes the
    next: every example keeps its index, and the logical view reads example_id strings and DOUBLE values."""
    run_dir = tmp_path / "run"
    everyone = [f"q{i:02d}" for i in (5, 3, 9, 1, 7)]  # the items' order, not sorted
    for epoch in (0, 1):
        for rank in (0, 1):
            rec = EpochRecorder(rank, {"n_windows": pa.int32()}, everyone)
            rec.reset(epoch)
            mine = everyone[rank::2]
            rows = {
                "example_id": mine + mine[:1],  # the sampler's padding repeat, flagged
                "gold_prob": [0.1 * (i + 1) for i in range(len(mine) + 1)],
                "correct": [True] * (len(mine) + 1),
                "loss": [0.5] * (len(mine) + 1),
                "margin": [1.5] * (len(mine) + 1),
                "el2n": [0.25] * (len(mine) + 1),
                "prediction": ["x"] * (len(mine) + 1),
                "n_windows": [2] * (len(mine) + 1),
            }
            rec.add(rows, keep=[True] * len(mine) + [False])
            rec.write(run_dir)
    assert read_example_ids(run_dir).to_pylist() == everyone
    assert [(e, r) for e, r, _ in list_shards(run_dir)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(run_dir)} ORDER BY epoch, example_id")
    assert set(rel.columns) == set(DYNAMICS_COLUMNS) | {"n_windows"}
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))
    assert types["example_id"] == "VARCHAR" and types["gold_prob"] == "DOUBLE" and types["epoch"] == "INTEGER"
    rows = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    assert [r["example_id"] for r in rows if r["epoch"] == 0] == sorted(everyone)
    q05 = next(r for r in rows if r["example_id"] == "q05" and r["epoch"] == 1)
    assert q05["rank"] == 0 and q05["gold_prob"] == pytest.approx(0.1) and q05["n_windows"] == 2
    # the lookup the app makes (one example's epochs) works on the view
    got = duckdb.execute(
        f"SELECT epoch, rank FROM {shard_scan_sql(run_dir)} WHERE example_id = ? ORDER BY epoch", ["q01"]
    ).fetchall()
    assert got == [(0, 1), (1, 1)]


def test_a_workspace_of_the_previous_layout_keeps_working(ws: Workspace) -> None:
    """Old shards (example_id strings, float64, no id list) sync and read as before; a run resumed across the
    upgrade holds old epochs and new ones, and its metrics cover both."""
    n, epochs = 120, 4
    ids = np.array([f"old{i:03d}" for i in range(n)])
    dyn = random_dynamics(n, epochs, seed=11, float32=False)  # the old shards kept float64
    old = ws.run_dir("old")
    for e in range(epochs):
        legacy_shard(old, e, ids, dyn)
    finish(old, epochs)
    got = catalog_metrics(ws, "old")
    assert list(got["example_id"]) == sorted(ids)
    assert_metrics_match(got, reference(dyn, 0), atol=1e-9)  # full float64 precision of the old shards
    assert metrics_source(sorted(old.glob("dynamics/*/*.parquet")))[1] is None  # grouped by the string
    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(old)}")
    assert set(rel.columns) == set(DYNAMICS_COLUMNS) | {"adv_loss", "adv_correct"}

    mixed = ws.run_dir("mixed")
    dyn32 = random_dynamics(n, epochs, seed=12)
    for e in range(2):
        legacy_shard(mixed, e, ids, dyn32)
    perm = np.random.default_rng(3).permutation(n)
    for e in range(2, epochs):  # resumed with the new version: compact shards and an id list appear
        cols = {
            "epoch": pa.array(np.full(n, e, np.int32)),
            "rank": pa.array(np.zeros(n, np.int32)),
            "example_id": pa.array(ids[perm]),
        }
        cols.update({k: pa.array(v[perm, e]) for k, v in dyn32.items()})
        cols["prediction"] = pa.array(np.where(dyn32["correct"][perm, e], "1", "0"))
        write_shard(mixed, e, 0, pa.table(cols), list(ids))
    finish(mixed, epochs)
    got = catalog_metrics(ws, "mixed")
    assert list(got["example_id"]) == sorted(ids) and (got["epochs"] == epochs).all()
    assert_metrics_match(got, reference(dyn32, 0), atol=1e-9)
    per_epoch = duckdb.sql(
        f"SELECT epoch, count(DISTINCT example_id), count(*) FILTER (WHERE example_id IS NULL) "
        f"FROM {shard_scan_sql(mixed)} GROUP BY epoch ORDER BY epoch"
    ).fetchall()
    assert per_epoch == [(e, n, 0) for e in range(epochs)]
    with open_catalog(ws) as con:
        assert not sync(ws, con).changed


def test_float64_values_are_stored_as_float32_within_a_millionth(ws: Workspace) -> None:
    """The shards keep the precision the model's float32 logits carry: metrics over float64 inputs stay within
    1e-6 of the float64 reference (and equal it exactly over float32 inputs, see test_metrics)."""
    n, epochs = 300, 6
    ids = np.array([f"f{i:03d}" for i in range(n)])
    dyn = random_dynamics(n, epochs, seed=21, float32=False)
    dyn["margin"] = dyn["margin"] * 5  # logit gaps up to ~30
    run_dir = ws.run_dir("f64")
    write_run(run_dir, ids, dyn, epochs)
    finish(run_dir, epochs)
    got = catalog_metrics(ws, "f64")
    assert_metrics_match(got, reference(dyn, 0), atol=1e-6)


def write_gappy_run(run_dir: Path, n: int, epochs: int, seed: int) -> None:
    """Examples missing from random epochs; adversarial records only in some epochs (NULL elsewhere)."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, epochs)) < 0.7
    present[np.arange(n), rng.integers(0, epochs, n)] = True
    ids = np.array([f"w{i:03d}" for i in range(n)])
    for e in range(epochs):
        keep = present[:, e]
        k = int(keep.sum())
        cols = {
            "epoch": pa.array(np.full(k, e, np.int32)),
            "rank": pa.array(np.zeros(k, np.int32)),
            "example_id": pa.array(ids[keep]),
            "gold_prob": pa.array(rng.random(k)),
            "correct": pa.array(rng.random(k) < 0.5),
            "loss": pa.array(rng.random(k)),
            "margin": pa.array(rng.normal(0, 1, k)),
            "el2n": pa.array(rng.random(k)),
            "prediction": pa.array(["p"] * k),
        }
        if e % 3 != 1:  # some epochs without the adversarial columns
            cols["adv_loss"] = pa.array(rng.exponential(1.0, k))
            cols["adv_correct"] = pa.array(rng.random(k) < 0.6)
        write_shard(run_dir, e, 0, pa.table(cols), list(ids))


@pytest.mark.parametrize("epochs", [5, 14, 20, 40])
def test_every_formulation_gives_the_same_rows(tmp_path: Path, epochs: int) -> None:
    """The packed bit masks (16-, 32- and 64-bit lanes), the guarded one (epoch count unknown), the window
    function, and the string-keyed view: identical rows."""
    run_dir = tmp_path / "run"
    write_gappy_run(run_dir, 150, epochs, seed=epochs)
    paths = [p for _, _, p in list_shards(run_dir)]
    source, ids, adversarial = metrics_source(paths)
    assert ids is not None and adversarial
    con = duckdb.connect()
    variants = {
        "known": metrics_sql(source, ids=ids, adversarial=True, max_epoch=epochs - 1),
        "32": metrics_sql(source, ids=ids, adversarial=True, max_epoch=max(epochs - 1, 16)),
        "64": metrics_sql(source, ids=ids, adversarial=True, max_epoch=max(epochs - 1, 32)),
        "guarded": metrics_sql(source, ids=ids, adversarial=True),
        "window": metrics_sql(source, ids=ids, adversarial=True, max_epoch=100),
        "strings": metrics_sql(shard_relation(paths), adversarial=True, max_epoch=epochs - 1),
        "run": run_metrics_sql(paths),
    }
    results = {}
    for name, sql in variants.items():
        rel = con.sql(sql + " ORDER BY example_id")
        assert rel.columns == list(METRIC_COLUMNS), name
        results[name] = rel.fetchall()
    base = results.pop("window")
    assert len(base) == 150
    for name, rows in results.items():
        for a, b in zip(rows, base):
            assert a[:2] == b[:2] and a[5:7] == b[5:7], (name, a, b)  # id, epochs, forgetting, never_learned
            assert a[2:5] + a[7:] == pytest.approx(b[2:5] + b[7:], abs=1e-12, nan_ok=True), (name, a, b)
    # flip rates over partial adversarial epochs
    assert any(r[11] is not None and 0 < r[11] < 1 for r in base)
    assert sum(r[5] for r in base) > 50  # forgetting events across gaps


def test_the_perfect_hash_setting_is_scoped_and_changes_nothing(tmp_path: Path, ws: Workspace) -> None:
    run_dir = tmp_path / "run"
    write_gappy_run(run_dir, 5000, 6, seed=3)
    paths = [p for _, _, p in list_shards(run_dir)]
    con = duckdb.connect()
    plain = con.sql(run_metrics_sql(paths) + " ORDER BY example_id").fetchall()
    with aggregation_settings(con, paths):
        assert con.execute("SELECT current_setting('perfect_ht_threshold')").fetchall()[0][0] == 13
        tuned = con.sql(run_metrics_sql(paths) + " ORDER BY example_id").fetchall()
    assert con.execute("SELECT current_setting('perfect_ht_threshold')").fetchall()[0][0] == 12
    for a, b in zip(tuned, plain, strict=True):  # the same rows, up to the order of floating-point sums
        assert (
            a[:2] == b[:2] and a[4:7] == b[4:7] and a[2:4] + a[7:] == pytest.approx(b[2:4] + b[7:], abs=1e-12)
        )
    with open_catalog(ws) as cat:  # and materialise_metrics restores it too
        cat.execute("BEGIN")
        assert materialise_metrics(cat, "r", paths) == 5000
        cat.execute("COMMIT")
        assert cat.execute("SELECT current_setting('perfect_ht_threshold')").fetchall()[0][0] == 12
