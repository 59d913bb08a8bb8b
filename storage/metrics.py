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

How it is fast: one hash aggregation over the shards keyed by example_id. The per-epoch correctness sequence, which
forgetting needs in epoch order, is folded into a 64-bit mask (bit e = correct at epoch e) with `bit_or`, which is
order-free; the correct -> incorrect transitions are then counted with bit operations on one row per example,
instead of a window function that sorts every (example, epoch) row (about 1.5x slower here). Masks of the recorded
epochs and of the attacked-and-wrong epochs also give the epoch count, correctness and flip rate, so the
aggregation keeps few states per row (its cost grows with their number). `epochs` counts distinct recorded epochs:
each epoch holds an example once (the recorder drops distributed-sampler repeats). Epochs an example misses are bridged first
(each gap takes the value of the previous recorded epoch, by an occluded fill), so a transition across a gap
still counts, as in the sequence of the example's presentations. Runs with more than 64 epochs fall back to a
window function (same result, slower).
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

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


def _bit(epoch: str = "epoch") -> str:
    return f"(1::UBIGINT << {epoch}::UBIGINT)"


def _fill_gaps(x: str, gaps: str) -> str:
    """SQL for an occluded fill: every bit of `gaps` takes the value of the nearest lower bit outside `gaps`.

    Kogge-Stone: six shift steps propagate set bits upwards through runs of gap bits of any length < 64.
    """
    gen, pro = x, gaps
    for shift in (1, 2, 4, 8, 16, 32):
        gen = f"({gen} | ({pro} & {_shl(gen, shift)}))"
        if shift != 32:
            pro = f"({pro} & {_shl(pro, shift)})"
    return gen


def _shl(x: str, shift: int) -> str:
    """Left shift that drops the bits pushed past bit 63 (DuckDB raises on UBIGINT shift overflow)."""
    low = (1 << (64 - shift)) - 1
    return f"(({x} & {low}::UBIGINT) << {shift})"


def metrics_sql(
    source: str,
    *,
    max_epochs: int | None = None,
    el2n_epoch: int = 0,
    adversarial: bool = False,
    max_epoch: int | None = None,
) -> str:
    """SQL yielding one row per example with the columns METRIC_COLUMNS.

    `source` is a relation: a table name or a `read_parquet(...)` call. `max_epochs` keeps only epochs below it;
    `max_epoch` is the largest epoch number present when known (decides between the bitmask and the window
    formulation; unknown means the bitmask one, which fails loudly past epoch 63 rather than being wrong).
    """
    where = f"WHERE epoch < {int(max_epochs)}" if max_epochs is not None else ""
    adv = (
        "avg(adv_loss) AS sensitivity, stddev_pop(adv_loss) AS adv_variability, "
        "avg((NOT adv_correct)::DOUBLE) AS flip_rate"
        if adversarial
        else "NULL::DOUBLE AS sensitivity, NULL::DOUBLE AS adv_variability, NULL::DOUBLE AS flip_rate"
    )
    common = f"""
            count(*)::INTEGER AS epochs,
            avg(gold_prob) AS confidence,
            stddev_pop(gold_prob) AS variability,
            avg(correct::DOUBLE) AS correctness,
            avg(margin) AS aum,
            max(el2n) FILTER (WHERE epoch = {int(el2n_epoch)}) AS el2n,
            {adv}"""
    if max_epoch is not None and max_epoch >= MASK_EPOCHS:
        return f"""
        WITH seq AS (
            SELECT *, lag(correct) OVER (PARTITION BY example_id ORDER BY epoch) AS prev_correct
            FROM {source} {where}
        )
        SELECT {", ".join(METRIC_COLUMNS)} FROM (
            SELECT
                example_id, {common},
                count_if(prev_correct AND NOT correct)::INTEGER AS forgetting,
                NOT bool_or(correct) AS never_learned
            FROM seq
            GROUP BY example_id
        )
        """
    if max_epoch is None:
        guard = f"CASE WHEN epoch >= {MASK_EPOCHS} THEN error('epoch ' || epoch || ' exceeds the bitmask') ELSE epoch END"
    else:
        guard = "epoch"
    bit = _bit(guard)
    # Fewer aggregate states per row is what makes this fast: the epoch count, correctness, flip rate and last
    # epoch all come from bit masks (one bit per epoch) instead of aggregates of their own.
    adv_aggs = (
        f"avg(adv_loss) AS sensitivity, stddev_pop(adv_loss) AS adv_variability, count(adv_correct) AS adv_epochs, "
        f"bit_or(CASE WHEN NOT adv_correct THEN {bit} ELSE 0::UBIGINT END) AS wmask"
        if adversarial
        else "NULL::DOUBLE AS sensitivity, NULL::DOUBLE AS adv_variability, 0 AS adv_epochs, 0::UBIGINT AS wmask"
    )
    filled = _fill_gaps("cmask", "~pmask")
    return f"""
        WITH agg AS (
            SELECT
                example_id,
                avg(gold_prob) AS confidence,
                stddev_pop(gold_prob) AS variability,
                avg(margin) AS aum,
                max(el2n) FILTER (WHERE epoch = {int(el2n_epoch)}) AS el2n,
                {adv_aggs},
                bit_or(CASE WHEN correct THEN {bit} ELSE 0::UBIGINT END) AS cmask,
                bit_or({bit}) AS pmask
            FROM {source} {where}
            GROUP BY example_id
        ),
        filled AS (
            SELECT *,
                {filled} AS fmask,
                bit_count({_smear_down("pmask")}) - 1 AS last_epoch,
                bit_count(pmask)::INTEGER AS epochs
            FROM agg
        )
        SELECT
            example_id, epochs, confidence, variability,
            bit_count(cmask) / epochs AS correctness,
            bit_count(fmask & ~(fmask >> 1) & ((1::UBIGINT << last_epoch::UBIGINT) - 1))::INTEGER AS forgetting,
            cmask = 0 AS never_learned,
            aum, el2n, sensitivity, adv_variability,
            CASE WHEN adv_epochs > 0 THEN bit_count(wmask) / adv_epochs END AS flip_rate
        FROM filled
        """


def _smear_down(x: str) -> str:
    """SQL: every bit below the highest set bit of x set too (so bit_count - 1 is the highest bit's index)."""
    for shift in (1, 2, 4, 8, 16, 32):
        x = f"({x} | ({x} >> {shift}))"
    return x


def shard_relation(paths: list[Path]) -> str:
    """A relation over the given shards. Hive partitioning is off: the `epoch=NNN` folders would otherwise
    turn the file's INTEGER epoch column into a VARCHAR read from the path."""
    quoted = ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{quoted}], union_by_name = true, hive_partitioning = false)"


def has_adversarial(paths: list[Path]) -> bool:
    """True when any shard carries adversarial records (others then read as NULL)."""
    return any("adv_loss" in pq.read_schema(p).names for p in paths)


def max_epoch_of(paths: list[Path]) -> int | None:
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
    sql = metrics_sql(
        shard_relation(paths),
        el2n_epoch=el2n_epoch,
        adversarial=has_adversarial(paths),
        max_epoch=max_epoch_of(paths),
    )
    # With an index, sorted keys: the primary-key index takes them about a third cheaper (measured here).
    order = "ORDER BY example_id" if indexed else ""
    con.execute(f"INSERT INTO example_metrics BY NAME SELECT ? AS run_id, * FROM ({sql}) {order}", [run_id])
    row = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]) if row else 0


def compute_metrics(
    con: duckdb.DuckDBPyConnection, paths: list[Path], el2n_epoch: int = 0
) -> duckdb.DuckDBPyRelation:
    """The metrics of shards not (yet) in the catalog, e.g. a run still training; a lazy relation."""
    sql = metrics_sql(
        shard_relation(paths),
        el2n_epoch=el2n_epoch,
        adversarial=has_adversarial(paths),
        max_epoch=max_epoch_of(paths),
    )
    return con.sql(sql)
