"""Benchmark: per-example metrics for 1,000,000 examples x 10 epochs of dynamics shards.

Targets (DESIGN / issue 3): all metrics in <= 3 s and <= 1.5 GB peak on a 2-core machine. Each measurement runs
in a fresh child process that does only that work and reports its wall time and its peak RSS
(resource.getrusage(RUSAGE_SELF).ru_maxrss: DuckDB allocates outside Python, where tracemalloc sees nothing).
Every measurement is repeated and the best and median runs are shown (the machine may be shared).

Also: allenai/cartography's way (a Python loop over examples, one softmax per epoch, then a pandas DataFrame),
reimplemented inline, against ours on the same 100,000 x 5 dynamics.

    .venv/bin/python bench/metrics.py [--examples N] [--epochs E] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 3.0
TARGET_MB = 1536.0


# ---- data -------------------------------------------------------------------------------------------------


def write_dynamics(run_dir: Path, n: int, epochs: int, seed: int = 0, classes: int = 0) -> tuple[int, float]:
    """Shards of a run as the trainer writes them: one per epoch, examples in a shuffled (sampler) order,
    with the adversarial columns. Vectorised; returns (rows, MB on disk)."""
    from storage.artifacts import write_shard

    rng = np.random.default_rng(seed)
    ids = pa.array(np.char.add("ex", np.arange(n).astype(str)))
    ease = rng.beta(2, 2, n)
    size = 0
    for e in range(epochs):
        perm = rng.permutation(n)
        p = np.clip(ease + rng.normal(0, 0.15, n) + 0.03 * e, 1e-6, 1 - 1e-6)[perm]
        correct = rng.random(n) < p
        table = pa.table(
            {
                "epoch": pa.array(np.full(n, e, np.int32)),
                "rank": pa.array(np.zeros(n, np.int32)),
                "example_id": ids.take(pa.array(perm)),
                "gold_prob": p,
                "correct": correct,
                "loss": -np.log(p),
                "margin": rng.normal(0, 2, n),
                "el2n": rng.random(n),
                "prediction": pa.array(np.where(correct, "1", "0")),
                "adv_loss": rng.exponential(1.0, n),
                "adv_correct": rng.random(n) > 0.3,
            }
        )
        size += write_shard(run_dir, e, 0, table).stat().st_size
    return n * epochs, size / 2**20


def write_cartography_jsonl(folder: Path, n: int, epochs: int, classes: int = 3, seed: int = 1) -> None:
    """allenai/cartography's training_dynamics/dynamics_epoch_N.jsonl files (written with pandas, as theirs)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gold = rng.integers(0, classes, n)
    bias = rng.normal(0, 1.5, n)
    for e in range(epochs):
        logits = rng.normal(0, 1, (n, classes))
        logits[np.arange(n), gold] += bias + 0.3 * e
        pd.DataFrame(
            {"guid": np.arange(n), f"logits_epoch_{e}": list(logits.round(6)), "gold": gold}
        ).to_json(folder / f"dynamics_epoch_{e}.jsonl", lines=True, orient="records")


# ---- the measured work, each in a child process -----------------------------------------------------------


def child(mode: str, run_dir: Path, work: Path) -> dict[str, float]:
    import duckdb

    from storage.artifacts import list_shards
    from storage.metrics import (
        has_adversarial,
        materialise_metrics,
        max_epoch_of,
        metrics_sql,
        shard_relation,
    )
    from storage.schema import migrate

    paths = [p for _, _, p in list_shards(run_dir)]
    extra: dict[str, float] = {}
    r0 = resource.getrusage(resource.RUSAGE_SELF)  # reset below where a mode prepares untimed work
    if mode == "sql":
        con = duckdb.connect()
        start = time.perf_counter()
        sql = metrics_sql(
            shard_relation(paths), adversarial=has_adversarial(paths), max_epoch=max_epoch_of(paths)
        )
        con.execute(f"CREATE TEMP TABLE m AS {sql}")
        elapsed = time.perf_counter() - start
        extra["rows"] = con.execute("SELECT count(*) FROM m").fetchone()[0]
    elif mode in ("catalog", "catalog-replace"):
        db = work / f"{mode}.duckdb"
        if db.exists():
            db.unlink()
        con = duckdb.connect(str(db))
        migrate(con)
        if mode != "catalog":  # the run had 9 epochs in the catalog (checkpointed) and now gained the 10th
            con.execute("BEGIN")
            materialise_metrics(con, "run", paths[:-1])
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        con.execute("BEGIN")
        extra["rows"] = materialise_metrics(con, "run", paths)
        con.execute("COMMIT")
        elapsed = time.perf_counter() - start
        con.close()
    elif mode == "cartography":
        elapsed = cartography_way(run_dir)
    elif mode == "import":
        elapsed = ours_from_cartography_files(run_dir, work)
    else:
        raise SystemExit(f"unknown mode {mode}")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return {"seconds": elapsed, "peak_mb": r1.ru_maxrss / 1024, "cpu_s": cpu, **extra}


def cartography_way(folder: Path) -> float:
    """allenai/cartography's read_training_dynamics + compute_train_dy_metrics, reimplemented (numpy softmax in
    place of a torch softmax per vector, same per-example Python loop, same pandas DataFrame at the end)."""
    import pandas as pd

    start = time.perf_counter()
    files = sorted(folder.glob("dynamics_epoch_*.jsonl"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    training_dynamics: dict = {}
    for epoch_num, path in enumerate(files):
        with open(path) as infile:
            for line in infile:
                record = json.loads(line.strip())
                guid = record["guid"]
                if guid not in training_dynamics:
                    training_dynamics[guid] = {"gold": record["gold"], "logits": []}
                training_dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch_num}"])

    def compute_forgetfulness(trend: list[bool]) -> int:
        if not any(trend):
            return 1000
        learnt, times = False, 0
        for is_correct in trend:
            if learnt and not is_correct:
                learnt, times = False, times + 1
            elif not learnt and is_correct:
                learnt = True
        return times

    confidence_, variability_, correctness_, forgetfulness_ = {}, {}, {}, {}
    for guid, record in training_dynamics.items():
        correctness_trend, true_probs_trend = [], []
        for epoch_logits in record["logits"]:
            x = np.asarray(epoch_logits)
            probs = np.exp(x - x.max())
            probs /= probs.sum()
            true_probs_trend.append(float(probs[record["gold"]]))
            correctness_trend.append(bool(np.argmax(epoch_logits) == record["gold"]))
        correctness_[guid] = sum(correctness_trend)
        confidence_[guid] = np.mean(true_probs_trend)
        variability_[guid] = np.std(true_probs_trend)
        forgetfulness_[guid] = compute_forgetfulness(correctness_trend)
    pd.DataFrame(
        [[g, confidence_[g], variability_[g], correctness_[g], forgetfulness_[g]] for g in correctness_],
        columns=["guid", "confidence", "variability", "correctness", "forgetfulness"],
    )
    return time.perf_counter() - start


def ours_from_cartography_files(folder: Path, work: Path) -> float:
    """Ours on the same files: read + convert them to shards (the import), then the metrics SQL."""
    import duckdb

    from engine.importing.cartography import dynamics_table, find_epoch_files, read_epoch
    from storage.artifacts import write_shard
    from storage.metrics import materialise_metrics
    from storage.schema import migrate

    start = time.perf_counter()
    run_dir = work / "imported"
    paths, n_classes = [], None
    for epoch, path in find_epoch_files(folder):
        rec = read_epoch(path, epoch, n_classes)
        n_classes = rec.logits.shape[1]
        paths.append(write_shard(run_dir, epoch, 0, dynamics_table(rec)))
    con = duckdb.connect()
    migrate(con)
    con.execute("BEGIN")
    materialise_metrics(con, "imported", paths)
    con.execute("COMMIT")
    return time.perf_counter() - start


def measure(mode: str, run_dir: Path, work: Path, repeat: int) -> list[dict[str, float]]:
    results = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(run_dir), str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def report(label: str, results: list[dict[str, float]], target: bool = True) -> None:
    secs = sorted(r["seconds"] for r in results)
    peak = max(r["peak_mb"] for r in results)
    cpu = min(r["cpu_s"] for r in results)
    verdict = ""
    if target:
        ok = secs[0] <= TARGET_S and peak <= TARGET_MB
        verdict = f"  target <= {TARGET_S:g} s, <= {TARGET_MB / 1024:g} GB: {'OK' if ok else 'MISSED'}"
    print(
        f"{label:<56} best {secs[0]:6.2f} s  median {statistics.median(secs):6.2f} s  (cpu {cpu:5.1f} s)  "
        f"peak RSS {peak:5.0f} MB{verdict}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "RUN_DIR", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, run_dir, work = args.child
        print(json.dumps(child(mode, Path(run_dir), Path(work))))
        return

    print(
        f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} (other processes inflate wall times; "
        "cpu = user + sys seconds of the child)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dynascope-bench-") as tmp:
        work = Path(tmp)
        run_dir = work / "runs" / "run"
        start = time.perf_counter()
        rows, mb = write_dynamics(run_dir, args.examples, args.epochs)
        print(
            f"dynamics: {args.examples:,} examples x {args.epochs} epochs = {rows:,} rows, {mb:.0f} MB of Parquet "
            f"(written in {time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        report("all metrics, SQL over the shards (compute only)", measure("sql", run_dir, work, args.repeat))
        report(
            "materialise_metrics into a catalog (what sync does)",
            measure("catalog", run_dir, work, args.repeat),
        )
        report(
            "  again after the run gained an epoch (rows replaced)",
            measure("catalog-replace", run_dir, work, args.repeat),
            target=False,
        )

        n_small, e_small = 100_000, 5
        folder = work / "cartography" / "training_dynamics"
        write_cartography_jsonl(folder, n_small, e_small)
        carto = measure("cartography", folder, work, 1)
        ours = measure("import", folder, work, 1)
        c, o = carto[0]["seconds"], ours[0]["seconds"]
        print(f"{n_small:,} examples x {e_small} epochs from cartography's JSONL files:", flush=True)
        report("  allenai/cartography's per-example loop + pandas", carto, target=False)
        report("  ours: read + convert to shards + metrics SQL", ours, target=False)
        print(f"  ratio: ours is {c / o:.1f}x faster", flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
