"""Per-example metrics over real shards in a real catalog, checked against a numpy reference."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from storage.artifacts import append_event, write_config, write_shard
from storage.catalog import open_catalog
from storage.metrics import METRIC_COLUMNS, materialise_metrics, metrics_sql, shard_relation
from storage.sync import sync
from storage.workspace import Workspace


def write_epoch(run_dir: Path, epoch: int, columns: dict[str, np.ndarray], ranks: int = 1) -> None:
    """One epoch's rows, split over `ranks` shards as a multi-GPU run writes them."""
    n = len(columns["example_id"])
    parts = np.array_split(np.arange(n), ranks)
    for rank, idx in enumerate(parts):
        table = {
            "epoch": pa.array(np.full(len(idx), epoch, np.int32)),
            "rank": pa.array(np.full(len(idx), rank, np.int32)),
        }
        for name, values in columns.items():
            table[name] = pa.array(np.asarray(values)[idx])
        write_shard(run_dir, epoch, rank, pa.table(table))


def finish(run_dir: Path, epochs: int, dataset: str = "ds", done: bool = True, **config) -> None:  # noqa: ANN003
    append_event(run_dir, "state", status="running", n_epochs=epochs)
    for e in range(epochs):
        append_event(run_dir, "epoch_end", epoch=e)
    if done:
        append_event(run_dir, "state", status="done")
    write_config(run_dir, {"kind": "train", "dataset": dataset, "epochs": epochs, **config})


def random_dynamics(
    n: int, epochs: int, seed: int = 0, adversarial: bool = True, float32: bool = True
) -> dict[str, np.ndarray]:
    """(n, epochs) matrices of every recorded quantity. The values are float32 numbers (held in float64), as a
    model's float32 logits give them and as the shards store them, so the metrics must match a float64 numpy
    reference over them exactly (to 1e-9); `float32=False` gives full float64 values."""
    rng = np.random.default_rng(seed)
    base = rng.random(n)[:, None]
    gold_prob = np.clip(base + rng.normal(0, 0.25, (n, epochs)), 0, 1)
    correct = rng.random((n, epochs)) < gold_prob
    out = {
        "gold_prob": gold_prob,
        "correct": correct,
        "loss": -np.log(np.maximum(gold_prob, 1e-9)),
        "margin": rng.normal(0, 2, (n, epochs)),
        "el2n": rng.random((n, epochs)),
    }
    if adversarial:
        out["adv_loss"] = rng.exponential(1.0, (n, epochs))
        out["adv_correct"] = rng.random((n, epochs)) < 0.6
    if float32:
        out = {
            k: v.astype(np.float32).astype(np.float64) if v.dtype.kind == "f" else v for k, v in out.items()
        }
    return out


def write_run(
    run_dir: Path, ids: np.ndarray, dyn: dict[str, np.ndarray], epochs: int, ranks: int = 1, seed: int = 1
) -> None:
    """Every epoch in a shuffled order (as a sampler visits them)."""
    rng = np.random.default_rng(seed)
    for e in range(epochs):
        perm = rng.permutation(len(ids))
        cols = {"example_id": ids[perm]}
        for name, matrix in dyn.items():
            cols[name] = matrix[perm, e]
        cols["prediction"] = np.where(cols["correct"], "1", "0")
        write_epoch(run_dir, e, cols, ranks)


def reference(dyn: dict[str, np.ndarray], el2n_epoch: int) -> dict[str, np.ndarray]:
    c = dyn["correct"]
    ref = {
        "confidence": dyn["gold_prob"].mean(axis=1),
        "variability": dyn["gold_prob"].std(axis=1),
        "correctness": c.mean(axis=1),
        "forgetting": (c[:, :-1] & ~c[:, 1:]).sum(axis=1),
        "never_learned": ~c.any(axis=1),
        "aum": dyn["margin"].mean(axis=1),
        "el2n": dyn["el2n"][:, el2n_epoch],
    }
    if "adv_loss" in dyn:
        ref["sensitivity"] = dyn["adv_loss"].mean(axis=1)
        ref["adv_variability"] = dyn["adv_loss"].std(axis=1)
        ref["flip_rate"] = (~dyn["adv_correct"]).mean(axis=1)
    return ref


def catalog_metrics(ws: Workspace, run_id: str) -> dict[str, np.ndarray]:
    with open_catalog(ws) as con:
        sync(ws, con)
        cur = con.execute("SELECT * FROM example_metrics WHERE run_id = ? ORDER BY example_id", [run_id])
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
    return {name: np.array([r[i] for r in rows]) for i, name in enumerate(cols)}


def test_metrics_match_numpy_reference_over_shuffled_multi_rank_shards(ws: Workspace) -> None:
    n, epochs = 400, 7
    ids = np.array([f"ex{i:04d}" for i in range(n)])
    dyn = random_dynamics(n, epochs)
    run_dir = ws.run_dir("r1")
    write_run(run_dir, ids, dyn, epochs, ranks=2)
    finish(run_dir, epochs, el2n_epoch=2)

    got = catalog_metrics(ws, "r1")
    ref = reference(dyn, el2n_epoch=2)
    assert list(got["example_id"]) == list(ids)
    assert (got["epochs"] == epochs).all()
    for name, expected in ref.items():
        if expected.dtype == bool:
            assert (got[name].astype(bool) == expected).all(), name
        else:
            np.testing.assert_allclose(got[name].astype(float), expected, rtol=0, atol=1e-9, err_msg=name)
    # the data is varied enough for the comparison to mean something
    assert ref["forgetting"].max() >= 2 and ref["never_learned"].sum() >= 1 and ref["forgetting"].min() == 0


def test_forgetting_edge_cases_and_gaps(ws: Workspace) -> None:
    # sequences over epochs 0..4; None = the example has no record in that epoch
    sequences = {
        "always": [1, 1, 1, 1, 1],
        "never": [0, 0, 0, 0, 0],
        "learned_late": [0, 0, 0, 0, 1],
        "flip_flop": [1, 0, 1, 0, 1],
        "forgot_at_end": [0, 1, 1, 1, 0],
        "gap_then_forgot": [1, None, 0, 1, 1],  # 1 -> (gap) -> 0 is one forgetting event
        "gap_kept": [1, None, None, 1, 0],  # the gap bridges 1 -> 1; then 1 -> 0
        "late_start": [None, None, 1, 0, None],
        "single": [None, None, None, 1, None],
    }
    expected = {
        "always": (0, False),
        "never": (0, True),
        "learned_late": (0, False),
        "flip_flop": (2, False),
        "forgot_at_end": (1, False),
        "gap_then_forgot": (1, False),
        "gap_kept": (1, False),
        "late_start": (1, False),
        "single": (0, False),
    }
    run_dir = ws.run_dir("edge")
    for e in range(5):
        ids = [k for k, seq in sequences.items() if seq[e] is not None]
        correct = np.array([bool(sequences[k][e]) for k in ids])
        write_epoch(
            run_dir,
            e,
            {
                "example_id": np.array(ids),
                "gold_prob": np.where(correct, 0.9, 0.1),
                "correct": correct,
                "loss": np.ones(len(ids)),
                "margin": np.zeros(len(ids)),
                "el2n": np.full(len(ids), float(e)),
                "prediction": np.array(["x"] * len(ids)),
            },
        )
    finish(run_dir, 5)
    got = catalog_metrics(ws, "edge")
    by_id = {
        eid: (int(f), bool(nl), int(ep))
        for eid, f, nl, ep in zip(got["example_id"], got["forgetting"], got["never_learned"], got["epochs"])
    }
    for key, (forgetting, never) in expected.items():
        assert by_id[key][:2] == (forgetting, never), key
        assert by_id[key][2] == sum(v is not None for v in sequences[key]), key
    # el2n at epoch 0 is NULL for examples first seen later; no adversarial columns -> NULL robustness metrics
    el2n = dict(zip(got["example_id"], got["el2n"]))
    assert el2n["always"] == 0.0 and el2n["late_start"] is None
    assert all(v is None for v in got["sensitivity"]) and all(v is None for v in got["flip_rate"])


def test_window_formulation_agrees_and_runs_past_64_epochs(ws: Workspace) -> None:
    n, epochs = 60, 70
    ids = np.array([f"e{i:03d}" for i in range(n)])
    dyn = random_dynamics(n, epochs, seed=5, adversarial=False)
    run_dir = ws.run_dir("long")
    write_run(run_dir, ids, dyn, epochs)
    finish(run_dir, epochs)
    got = catalog_metrics(ws, "long")  # > 64 epochs: the window formulation
    ref = reference(dyn, 0)
    np.testing.assert_array_equal(got["forgetting"], ref["forgetting"])
    np.testing.assert_allclose(got["variability"], ref["variability"], atol=1e-9)

    # on the first 60 epochs both formulations give identical rows
    paths = sorted(run_dir.glob("dynamics/epoch=*/rank=*.parquet"))[:60]
    con = duckdb.connect()
    src = shard_relation(paths)
    mask = con.sql(metrics_sql(src, max_epoch=59) + " ORDER BY example_id")
    window = con.sql(metrics_sql(src, max_epoch=200) + " ORDER BY example_id")
    assert mask.columns == window.columns == list(METRIC_COLUMNS)
    for a, b in zip(mask.fetchall(), window.fetchall()):
        assert a[:2] == b[:2] and a[5:7] == b[5:7]  # id, epochs, forgetting, never_learned exactly
        assert a[2:5] + a[7:9] == pytest.approx(b[2:5] + b[7:9], abs=1e-12)
    # with the epoch count unknown, the bitmask query refuses epochs past 63 instead of miscounting
    all_paths = sorted(run_dir.glob("dynamics/epoch=*/rank=*.parquet"))
    with pytest.raises(duckdb.Error, match="exceeds"):
        con.sql(metrics_sql(shard_relation(all_paths))).fetchall()


def test_epoch_column_is_read_from_the_file_not_the_folder_name(ws: Workspace) -> None:
    run_dir = ws.run_dir("types")
    write_run(run_dir, np.array(["a", "b"]), random_dynamics(2, 3, adversarial=False), 3)
    paths = sorted(run_dir.glob("dynamics/*/*.parquet"))
    assert "epoch=000" in paths[0].as_posix()
    row = duckdb.sql(f"SELECT typeof(epoch), typeof(rank) FROM {shard_relation(paths)} LIMIT 1").fetchall()[0]
    assert row == ("INTEGER", "INTEGER")


def test_metrics_follow_new_epochs_and_replace_rows_of_a_large_run(ws: Workspace) -> None:
    """A live run gains an epoch: its metrics are recomputed; another run's rows are untouched. 12k examples
    take the rebuild path that avoids DuckDB's slow per-row primary-key deletes."""
    n = 12_000
    ids = np.array([f"x{i:05d}" for i in range(n)])
    dyn = random_dynamics(n, 3, seed=3)
    big = ws.run_dir("big")
    write_run(big, ids, {k: v[:, :2] for k, v in dyn.items()}, 2)
    append_event(big, "state", status="running", n_epochs=3)
    append_event(big, "epoch_end", epoch=0)
    append_event(big, "epoch_end", epoch=1)
    write_config(big, {"kind": "train", "dataset": "ds", "epochs": 3})
    small = ws.run_dir("small")
    small_dyn = random_dynamics(20, 2, seed=4)
    write_run(small, np.array([f"s{i:02d}" for i in range(20)]), small_dyn, 2)
    finish(small, 2)

    got = catalog_metrics(ws, "big")
    assert (got["epochs"] == 2).all()
    np.testing.assert_allclose(got["confidence"], dyn["gold_prob"][:, :2].mean(axis=1), atol=1e-9)

    # epoch 2 lands and is declared complete
    rng = np.random.default_rng(9)
    perm = rng.permutation(n)
    cols = {"example_id": ids[perm], **{k: v[perm, 2] for k, v in dyn.items()}}
    cols["prediction"] = np.where(cols["correct"], "1", "0")
    write_epoch(big, 2, cols)
    append_event(big, "epoch_end", epoch=2)
    append_event(big, "state", status="done")
    started = time.monotonic()
    got = catalog_metrics(ws, "big")
    assert time.monotonic() - started < 20
    ref = reference(dyn, 0)
    assert len(got["example_id"]) == n and (got["epochs"] == 3).all()
    np.testing.assert_allclose(got["variability"], ref["variability"], atol=1e-9)
    np.testing.assert_array_equal(got["forgetting"], ref["forgetting"])
    small_got = catalog_metrics(ws, "small")
    np.testing.assert_allclose(small_got["confidence"], reference(small_dyn, 0)["confidence"], atol=1e-9)
    with open_catalog(ws) as con:
        kinds = {
            r[0]
            for r in con.execute(
                "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'example_metrics'"
            ).fetchall()
        }
        assert "NOT NULL" in kinds  # the rebuilt table keeps the schema's constraints
        # no key since schema v2, so uniqueness is the materialiser's job: one row per run and example
        total, distinct = con.execute(
            "SELECT count(*), count(DISTINCT (run_id, example_id)) FROM example_metrics"
        ).fetchone()
        assert total == distinct == n + 20
        assert con.execute("SELECT metrics_epochs FROM runs WHERE run_id = 'big'").fetchone()[0] == 3
        # and a second sync changes nothing
        assert not sync(ws, con).changed


def test_materialise_with_mixed_adversarial_shards_and_empty_paths(ws: Workspace) -> None:
    run_dir = ws.run_dir("mixed")
    ids = np.array(["a", "b", "c"])
    plain = random_dynamics(3, 1, seed=1, adversarial=False)
    adv = random_dynamics(3, 1, seed=2, adversarial=True)
    write_run(run_dir, ids, plain, 1, seed=0)
    cols = {"example_id": ids, **{k: v[:, 0] for k, v in adv.items()}, "prediction": np.array(["p"] * 3)}
    write_epoch(run_dir, 1, cols)
    paths = sorted(run_dir.glob("dynamics/*/*.parquet"))
    with open_catalog(ws) as con:
        assert materialise_metrics(con, "mixed", paths) == 3
        rows = con.execute(
            "SELECT example_id, sensitivity, adv_variability, flip_rate FROM example_metrics WHERE run_id='mixed' ORDER BY 1"
        ).fetchall()
        for (_eid, sens, advvar, flip), loss, ok in zip(
            rows, adv["adv_loss"][:, 0], adv["adv_correct"][:, 0]
        ):
            assert sens == pytest.approx(loss) and advvar == pytest.approx(0.0)
            assert flip == (0.0 if ok else 1.0)
        assert materialise_metrics(con, "mixed", []) == 0
        assert con.execute("SELECT count(*) FROM example_metrics WHERE run_id='mixed'").fetchone()[0] == 0


def test_forgetting_with_random_gaps_matches_the_sequence_of_presentations(ws: Workspace) -> None:
    """Examples missing from random epochs (long gaps included): forgetting counts correct -> incorrect between
    consecutive *recorded* epochs, as a loop over each example's sequence does."""
    n, epochs = 300, 40
    rng = np.random.default_rng(17)
    present = rng.random((n, epochs)) < rng.uniform(0.15, 1.0, (n, 1))
    present[np.arange(n), rng.integers(0, epochs, n)] = True  # at least one record each
    correct = rng.random((n, epochs)) < rng.uniform(0.1, 0.9, (n, 1))
    ids = np.array([f"g{i:03d}" for i in range(n)])
    run_dir = ws.run_dir("gaps")
    for e in range(epochs):
        keep = present[:, e]
        write_epoch(
            run_dir,
            e,
            {
                "example_id": ids[keep],
                "gold_prob": rng.random(keep.sum()),
                "correct": correct[keep, e],
                "loss": np.ones(keep.sum()),
                "margin": np.zeros(keep.sum()),
                "el2n": np.zeros(keep.sum()),
                "prediction": np.array(["p"] * keep.sum()),
            },
        )
    finish(run_dir, epochs)
    got = catalog_metrics(ws, "gaps")
    for i in range(n):
        seq = correct[i, present[i]]
        expected = sum(1 for a, b in zip(seq[:-1], seq[1:]) if a and not b)
        assert got["forgetting"][i] == expected, (ids[i], seq)
        assert got["epochs"][i] == len(seq) and bool(got["never_learned"][i]) == (not seq.any())
    assert (np.diff(present.astype(int), axis=1) == 1).sum() > n  # many gaps, long ones included
