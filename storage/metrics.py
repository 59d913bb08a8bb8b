"""Per-example metrics from the dynamics shards, computed in one DuckDB GROUP BY (never a Python loop over examples).

Definitions (Swayamdipta et al. 2020, Toneva et al. 2019, Pleiss et al. 2020, Paul et al. 2021, Zheng et al.):

- confidence     mean gold probability over the recorded epochs
- variability    population standard deviation of the gold probability (numpy's `np.std`, ddof=0)
- correctness    fraction of the recorded epochs predicted correctly. allenai/cartography reports the *number* of
                 correct epochs instead: their value = correctness * epochs.
- forgetting     number of forgetting events: a correct prediction followed, at the example's next recorded
                 epoch, by an incorrect one (Toneva et al.; allenai/cartography's `compute_forgetfulness`)
- never_learned  never predicted correctly (cartography stores forgetfulness = 1000 for these; we keep
                 forgetting = 0 and flag the example instead)
- aum            mean margin (gold logit minus the largest other logit)
- el2n           the row's EL2N at the chosen early epoch (NULL when the example has no record at that epoch)
- sensitivity    mean adversarial loss; adv_variability its population std; flip_rate the fraction of epochs whose
                 attacked prediction was wrong ("the rate of times the model provides incorrect predictions when the
                 input is perturbed", Zheng et al.). NULL without adversarial records.

How it is fast: one hash aggregation over the shards keyed by the integer example index of the compact shard
layout (storage.artifacts; the same aggregate grouped by the id string took 1.96 s against 1.22 s), the ids joined
once, at the end, and a perfect hash table for that key where it fits (aggregation_settings). The per-epoch values
are stored as float32 and aggregated as DOUBLE. The per-epoch correctness sequence, which
forgetting needs in epoch order, is folded into a 64-bit mask (bit e = correct at epoch e) with `bit_or`, which is
order-free; the correct -> incorrect transitions are then counted with bit operations on one row per example,
instead of a window function that sorts every (example, epoch) row (about 1.5x slower here). Masks of the recorded
epochs and of the attacked-and-wrong epochs also give the epoch count, correctness and flip rate, so the
aggregation keeps few states per row (its cost grows with their number; the masks share one 64-bit `bit_or` in
lanes of 16 or 32 bits when the epochs fit). `epochs` counts distinct recorded epochs:
each epoch holds an example once (the recorder drops distributed-sampler repeats). Epochs an example misses are bridged first
(each gap takes the value of the previous recorded epoch, by an occluded fill), so a transition across a gap
still counts, as in the sequence of the example's presentations. Runs with more than 64 epochs fall back to a
window function (same result, slower). Shards of the layout before the integer index (example_id strings, no
ids file) are still read, alone or mixed with compact ones in one run: those are grouped by the id string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from storage.artifacts import (
    SHARD_KEY,
    ids_path_of_shard,
    parquet_sql,
    shard_schema,
    shard_view_sql,
    sql_path,
)

# The logical dynamics row: what the task adapters record and what shard_relation / shard_scan_sql read back.
# The shards store it compactly (storage.artifacts: example_idx instead of example_id, float32 values).
DYNAMICS_COLUMNS = {
    "epoch": "INTEGER",
    "rank": "INTEGER",
    "example_id": "VARCHAR",
    "gold_prob": "DOUBLE",
    "correct": "BOOLEAN",
    "loss": "DOUBLE",
    "margin": "DOUBLE",
    "el2n": "DOUBLE",
    "prediction": "VARCHAR",
}
ADVERSARIAL_COLUMNS = {"adv_loss": "DOUBLE", "adv_correct": "BOOLEAN"}
METRIC_COLUMNS = (
    "example_id",
    "epochs",
    "confidence",
    "variability",
    "correctness",
    "forgetting",
    "never_learned",
    "aum",
    "el2n",
    "sensitivity",
    "adv_variability",
    "flip_rate",
)
MASK_EPOCHS = 64  # epochs 0..63 fit the UBIGINT masks
_EPOCH_RE = re.compile(r"epoch=(\d+)")


def _shifts(width: int) -> list[int]:
    """1, 2, 4, ... up to width / 2: enough to carry a bit across any run shorter than `width`."""
    return [1 << k for k in range(width.bit_length()) if 1 << k < width]


def _fill_gaps(x: str, gaps: str, width: int = 64) -> str:
    """SQL for an occluded fill: every bit of `gaps` takes the value of the nearest lower bit outside `gaps`.

    Kogge-Stone: log2(width) shift steps propagate set bits upwards through runs of gap bits of any length below
    `width` (six steps for 64 bits; the masks of runs of up to 16 epochs need four).
    """
    gen, pro = x, gaps
    shifts = _shifts(width)
    for shift in shifts:
        gen = f"({gen} | ({pro} & {_shl(gen, shift)}))"
        if shift != shifts[-1]:
            pro = f"({pro} & {_shl(pro, shift)})"
    return gen


def _shl(x: str, shift: int) -> str:
    """Left shift that drops the bits pushed past bit 63 (DuckDB raises on UBIGINT shift overflow)."""
    low = (1 << (64 - shift)) - 1
    return f"(({x} & {low}::UBIGINT) << {shift})"


def metrics_sql(
    source: str,
    *,
    ids: str | None = None,
    max_epochs: int | None = None,
    el2n_epoch: int = 0,
    adversarial: bool = False,
    max_epoch: int | None = None,
) -> str:
    """SQL yielding one row per example with the columns METRIC_COLUMNS.

    `source` is a relation: a table name or a `read_parquet(...)` call. With `ids` (a relation of
    (example_idx, example_id), the run's id list) the source is keyed by `example_idx` (compact shards): rows are
    grouped by the integer and the ids joined once, at the end; without it the source has `example_id` strings
    (the logical columns, e.g. `shard_relation(paths)`). `max_epochs` keeps only epochs below it; `max_epoch` is
    the largest epoch number present when known (decides between the bitmask and the window formulation; unknown
    means the bitmask one, which fails loudly past epoch 63 rather than being wrong).
    """
    key = SHARD_KEY if ids else "example_id"
    where = f"WHERE epoch < {int(max_epochs)}" if max_epochs is not None else ""
    # Stored values may be float32: every average and deviation is taken over their DOUBLE values.
    confidence = "avg(gold_prob::DOUBLE) AS confidence, stddev_pop(gold_prob::DOUBLE) AS variability"
    aum_el2n = (
        f"avg(margin::DOUBLE) AS aum, max(el2n) FILTER (WHERE epoch = {int(el2n_epoch)})::DOUBLE AS el2n"
    )
    sensitivity = "avg(adv_loss::DOUBLE) AS sensitivity, stddev_pop(adv_loss::DOUBLE) AS adv_variability"
    no_adv = "NULL::DOUBLE AS sensitivity, NULL::DOUBLE AS adv_variability"
    if max_epoch is not None and max_epoch >= MASK_EPOCHS:
        adv = (
            f"{sensitivity}, avg((NOT adv_correct)::DOUBLE) AS flip_rate"
            if adversarial
            else f"{no_adv}, NULL::DOUBLE AS flip_rate"
        )
        inner = f"""
            SELECT
                {key},
                count(*)::INTEGER AS epochs,
                {confidence},
                avg(correct::DOUBLE) AS correctness,
                count_if(prev_correct AND NOT correct)::INTEGER AS forgetting,
                NOT bool_or(correct) AS never_learned,
                {aum_el2n},
                {adv}
            FROM (
                SELECT *, lag(correct) OVER (PARTITION BY {key} ORDER BY epoch) AS prev_correct
                FROM {source} {where}
            )
            GROUP BY {key}
        """
        return _with_ids(inner, key, ids)
    if max_epoch is None:
        guard = f"CASE WHEN epoch >= {MASK_EPOCHS} THEN error('epoch ' || epoch || ' exceeds the bitmask') ELSE epoch END"
    else:
        guard = "epoch"
    # Fewer aggregate states per row is what makes this fast: the epoch count, correctness, flip rate and last
    # epoch all come from bit masks (bit e = epoch e) instead of aggregates of their own, and the masks share
    # one 64-bit aggregate where the epochs fit (lanes of 16 or 32 bits: one bit_or for all four masks up to
    # 16 epochs).
    masks = [("pmask", "true"), ("cmask", "correct")]
    if adversarial:
        masks += [("wmask", "NOT adv_correct"), ("amask", "adv_correct IS NOT NULL")]
    width = MASK_EPOCHS
    if max_epoch is not None:
        width = next(w for w in (16, 32, MASK_EPOCHS) if max_epoch < w)
    lanes = MASK_EPOCHS // width
    packed, unpack = [], []
    for j in range(0, len(masks), lanes):
        group = masks[j : j + lanes]
        bits = " | ".join(
            f"(coalesce({cond}, false)::UBIGINT << {k * width})" if k else f"coalesce({cond}, false)::UBIGINT"
            for k, (_, cond) in enumerate(group)
        )
        packed.append(f"bit_or(({bits}) << {guard}::UBIGINT) AS packed{j}")
        for k, (name, _) in enumerate(group):
            lane = f"(packed{j} >> {k * width})" if k else f"packed{j}"
            unpack.append(
                f"{lane} & {(1 << width) - 1}::UBIGINT AS {name}" if lanes > 1 else f"{lane} AS {name}"
            )
    if not adversarial:
        unpack += ["0::UBIGINT AS wmask", "0::UBIGINT AS amask"]
    sens = sensitivity if adversarial else no_adv
    filled = _fill_gaps("cmask", "~pmask", width)
    inner = f"""
        WITH agg AS (
            SELECT
                {key},
                {confidence},
                {aum_el2n},
                {sens},
                {", ".join(packed)}
            FROM {source} {where}
            GROUP BY {key}
        ),
        masks AS (
            SELECT {key}, confidence, variability, aum, el2n, sensitivity, adv_variability, {", ".join(unpack)}
            FROM agg
        ),
        filled AS (
            SELECT *,
                {filled} AS fmask,
                bit_count({_smear_down("pmask", width)}) - 1 AS last_epoch,
                bit_count(pmask)::INTEGER AS epochs,
                bit_count(amask) AS adv_epochs
            FROM masks
        )
        SELECT
            {key}, epochs, confidence, variability,
            bit_count(cmask) / epochs AS correctness,
            bit_count(fmask & ~(fmask >> 1) & ((1::UBIGINT << last_epoch::UBIGINT) - 1))::INTEGER AS forgetting,
            cmask = 0 AS never_learned,
            aum, el2n, sensitivity, adv_variability,
            CASE WHEN adv_epochs > 0 THEN bit_count(wmask) / adv_epochs END AS flip_rate
        FROM filled
    """
    return _with_ids(inner, key, ids)


def _with_ids(inner: str, key: str, ids: str | None) -> str:
    """The metric rows with METRIC_COLUMNS: the id strings joined once, onto one row per example."""
    metrics = ", ".join(f"m.{c}" for c in METRIC_COLUMNS[1:])
    if ids is None:
        return f"SELECT m.example_id, {metrics} FROM ({inner}) m"
    return f"SELECT i.example_id, {metrics} FROM ({inner}) m JOIN {ids} i ON i.{key} = m.{key}"


def _smear_down(x: str, width: int = 64) -> str:
    """SQL: every bit below the highest set bit of x (x < 2^width) set too (so bit_count - 1 is the highest bit's
    index)."""
    for shift in _shifts(width):
        x = f"({x} | ({x} >> {shift}))"
    return x


def shard_relation(paths: Sequence[Path]) -> str:
    """A relation over the given shards with the logical dynamics columns (DYNAMICS_COLUMNS: example_id strings),
    whichever layout they were written in. Hive partitioning is off: the `epoch=NNN` folders would otherwise
    turn the file's INTEGER epoch column into a VARCHAR read from the path."""
    return shard_view_sql(list(paths))


def has_adversarial(paths: Sequence[Path]) -> bool:
    """True when any shard carries adversarial records (others then read as NULL)."""
    return "adv_loss" in shard_schema(paths)


def metrics_source(paths: Sequence[Path]) -> tuple[str, str | None, bool]:
    """(source, ids, adversarial) for `metrics_sql` over the given shards of one run: the stored shards and the
    run's id list when every shard is compact (grouped by the integer); else the logical view (old shards, alone
    or mixed with compact ones: grouped by the id string)."""
    columns = shard_schema(paths)
    adversarial = "adv_loss" in columns
    if SHARD_KEY in columns and "example_id" not in columns:
        folders = {ids_path_of_shard(p) for p in paths}
        if len(folders) != 1:
            raise ValueError(f"shards of several runs: {sorted(str(f.parent.parent) for f in folders)}")
        return parquet_sql(list(paths)), f"read_parquet({sql_path(folders.pop())})", adversarial
    return shard_view_sql(list(paths), columns), None, adversarial


# DuckDB aggregates a small range of integer keys in a "perfect" hash table (an array indexed by the key), cheaper
# than its general hash table (the metrics of 1M x 10 here: 0.97 s against 1.20 s; the plain GROUP BY of
# bench/metrics.py: 1.14 against 1.41 cpu-seconds), but only up to 2^perfect_ht_threshold keys (default 12 bits:
# 4,096). The compact shards' keys are 0..n-1, so the threshold is raised to fit a run's n examples, while every
# thread's own array (about 200 bytes of aggregate state per key) stays within PERFECT_HT_BUDGET in all.
PERFECT_HT_KEY_BYTES = 200
PERFECT_HT_BUDGET = 1 << 30


def _n_keys(paths: Sequence[Path]) -> int | None:
    """The size of the integer key range of compact shards (the run's id list), None for other layouts."""
    columns = shard_schema(paths) if paths else {}
    if SHARD_KEY not in columns or "example_id" in columns:
        return None
    import pyarrow.parquet as pq

    ids = ids_path_of_shard(paths[0])
    return pq.ParquetFile(ids).metadata.num_rows if ids.is_file() else None


@contextmanager
def aggregation_settings(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> Iterator[None]:
    """Within the block, `con` aggregates the metrics of these shards in a perfect hash table where it fits
    (see PERFECT_HT_BUDGET); the setting (global to the database instance) is restored after."""
    n = _n_keys(paths)
    rows = con.execute(
        "SELECT current_setting('perfect_ht_threshold')::INTEGER, current_setting('threads')::INTEGER"
    ).fetchall()
    before, threads = rows[0]
    bits = (n + 1).bit_length() if n else 0  # keys 0..n-1 and a NULL slot
    if not n or bits <= before or threads * (1 << bits) * PERFECT_HT_KEY_BYTES > PERFECT_HT_BUDGET:
        yield
        return
    con.execute(f"SET perfect_ht_threshold = {bits}")
    try:
        yield
    finally:
        con.execute(f"SET perfect_ht_threshold = {before}")


def run_metrics_sql(paths: Sequence[Path], el2n_epoch: int = 0) -> str:
    """METRIC_COLUMNS rows over the given shards of one run (any layout)."""
    source, ids, adversarial = metrics_source(paths)
    return metrics_sql(
        source, ids=ids, el2n_epoch=el2n_epoch, adversarial=adversarial, max_epoch=max_epoch_of(paths)
    )


def max_epoch_of(paths: Sequence[Path]) -> int | None:
    """The largest epoch number in the shard paths (`.../epoch=NNN/...`), or None when a path does not say."""
    found = []
    for p in paths:
        match = _EPOCH_RE.search(p.as_posix())
        if not match:
            return None
        found.append(int(match.group(1)))
    return max(found) if found else None


def _has_index(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        """SELECT (SELECT count(*) FROM duckdb_constraints()
                   WHERE table_name = 'example_metrics' AND constraint_type IN ('PRIMARY KEY', 'UNIQUE'))
                + (SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'example_metrics')"""
    ).fetchone()
    return bool(row and row[0])


def _rebuild_without(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Empty the run's rows by rebuilding the table from the other runs' rows (same DDL, same indexes).

    DuckDB removes rows from an index (the primary key) one by one: deleting a million checkpointed rows took
    about 20 s here, while rebuilding the table and its index costs about 1.5 s per million rows kept. Runs
    inside the caller's transaction, so a failure leaves the table as it was.
    """
    ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = 'example_metrics'").fetchone()
    indexes = [
        r[0]
        for r in con.execute(
            "SELECT sql FROM duckdb_indexes() WHERE table_name = 'example_metrics'"
        ).fetchall()
        if r[0]
    ]
    if not ddl or not ddl[0]:
        con.execute("DELETE FROM example_metrics WHERE run_id = ?", [run_id])
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _kept_metrics AS SELECT * FROM example_metrics WHERE run_id <> ?",
        [run_id],
    )
    try:
        con.execute("DROP TABLE example_metrics")
        con.execute(ddl[0])
        for sql in indexes:
            con.execute(sql)
        con.execute("INSERT INTO example_metrics BY NAME SELECT * FROM _kept_metrics")
    finally:
        con.execute("DROP TABLE IF EXISTS _kept_metrics")


def materialise_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str, paths: list[Path], el2n_epoch: int = 0
) -> int:
    """Replace the run's rows in example_metrics with metrics over `paths`; returns the number of examples.

    Call it inside a transaction (sync does). Replacing a run's rows: a plain DELETE when example_metrics has no
    index; with the primary key of schema version 1, deleting many checkpointed rows is very slow in DuckDB
    (one index removal per row, about 20 s per million), so the table is rebuilt from the other runs' rows instead.
    """
    row = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
    before = int(row[0]) if row else 0
    indexed = _has_index(con)
    if before:
        if before >= 10_000 and indexed:
            _rebuild_without(con, run_id)
        else:
            con.execute("DELETE FROM example_metrics WHERE run_id = ?", [run_id])
    if not paths:
        return 0
    sql = run_metrics_sql(paths, el2n_epoch)
    # With an index, sorted keys: the primary-key index takes them about a third cheaper (measured here).
    order = "ORDER BY example_id" if indexed else ""
    with aggregation_settings(con, paths):
        con.execute(
            f"INSERT INTO example_metrics BY NAME SELECT ? AS run_id, * FROM ({sql}) {order}", [run_id]
        )
    row = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]) if row else 0


def compute_metrics(
    con: duckdb.DuckDBPyConnection, paths: list[Path], el2n_epoch: int = 0
) -> duckdb.DuckDBPyRelation:
    """The metrics of shards not (yet) in the catalog, e.g. a run still training; a lazy relation (run it within
    `aggregation_settings(con, paths)` for the faster aggregation of a large run)."""
    return con.sql(run_metrics_sql(paths, el2n_epoch))
