"""Per-example metrics from the dynamics shards, computed in DuckDB SQL (never a Python loop over examples).

Definitions (Swayamdipta et al. 2020, Toneva et al. 2019, Pleiss et al. 2020, Paul et al. 2021):
confidence = mean gold probability over epochs; variability = its population std; correctness = fraction of
epochs predicted correctly; forgetting = number of correct -> incorrect transitions between consecutive epochs;
never_learned = never correct; AUM = mean margin; EL2N = the row's el2n at the chosen early epoch; with
adversarial records: sensitivity = mean adversarial loss, adv_variability = its std, flip_rate = fraction of
epochs where the clean prediction was correct and the attacked one was not.
"""

from __future__ import annotations

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


def metrics_sql(source: str, *, max_epochs: int | None = None, el2n_epoch: int = 0, adversarial: bool = False) -> str:
    """SQL yielding one row per example. `source` is a relation: a table name or a `read_parquet(...)` call."""
    where = f"WHERE epoch < {int(max_epochs)}" if max_epochs is not None else ""
    adv = (
        "avg(adv_loss) AS sensitivity, stddev_pop(adv_loss) AS adv_variability, "
        "avg(CASE WHEN correct AND NOT adv_correct THEN 1.0 ELSE 0.0 END) AS flip_rate"
        if adversarial
        else "NULL::DOUBLE AS sensitivity, NULL::DOUBLE AS adv_variability, NULL::DOUBLE AS flip_rate"
    )
    return f"""
        WITH d AS (SELECT * FROM {source} {where}),
        seq AS (
            SELECT *, lag(correct) OVER (PARTITION BY example_id ORDER BY epoch) AS prev_correct FROM d
        )
        SELECT
            example_id,
            count(*)::INTEGER AS epochs,
            avg(gold_prob) AS confidence,
            stddev_pop(gold_prob) AS variability,
            avg(correct::INTEGER)::DOUBLE AS correctness,
            sum(CASE WHEN prev_correct AND NOT correct THEN 1 ELSE 0 END)::INTEGER AS forgetting,
            NOT bool_or(correct) AS never_learned,
            avg(margin) AS aum,
            arg_min(el2n, abs(epoch - {int(el2n_epoch)})) AS el2n,
            {adv}
        FROM seq
        GROUP BY example_id
    """


def shard_relation(paths: list[Path]) -> str:
    quoted = ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{quoted}], union_by_name = true)"


def has_adversarial(paths: list[Path]) -> bool:
    return bool(paths) and "adv_loss" in pq.read_schema(paths[0]).names


def materialise_metrics(con: duckdb.DuckDBPyConnection, run_id: str, paths: list[Path], el2n_epoch: int = 0) -> int:
    """Replace the run's rows in example_metrics with metrics over `paths`; returns the number of examples."""
    if not paths:
        return 0
    sql = metrics_sql(shard_relation(paths), el2n_epoch=el2n_epoch, adversarial=has_adversarial(paths))
    con.execute("DELETE FROM example_metrics WHERE run_id = ?", [run_id])
    con.execute(
        f"""INSERT INTO example_metrics BY NAME
            SELECT ? AS run_id, * FROM ({sql})""",
        [run_id],
    )
    row = con.execute("SELECT count(*) FROM example_metrics WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]) if row else 0
