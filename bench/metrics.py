"""Benchmark: per-example metrics over 1,000,000 examples x 10 epochs of dynamics shards, and the import of
allenai/cartography's dynamics files.

Prints, in one run, each figure with its target (issue 7, item 6):

1. all metrics (storage.metrics: the SQL over the compact shards, ids joined once at the end) against a plain
   integer-keyed GROUP BY of the same shards (one aggregate per metric, no forgetting, no ids): <= 1.5 s and
   within 1.2x of it;
2. bytes per example-epoch of the shards as the trainer writes them (write_shard with the run's id list):
   <= 24 (also shown with the id list counted in);
3. `dynascope import-dynamics` + `dynascope metrics` on 100,000 x 5 cartography files, end to end (two CLI
   processes), against allenai/cartography's way (their read_training_dynamics + compute_train_dy_metrics,
   reimplemented from their code: a Python loop over examples with a torch softmax per logits vector, then pandas
   DataFrames; run as a process with its imports): >= 20x.

Also shown: materialise_metrics into a catalog (what sync does), both sides of item 3 in-process (no interpreter
start or imports), and the cartography loop with a numpy softmax in place of torch's (the previous version of this
bench reimplemented it that way; it is about a third faster than their code).

Each measurement runs in a fresh child process that does only that work and reports its wall time and its peak
RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss: DuckDB allocates outside Python, where tracemalloc sees nothing).
Measurements are repeated, ours and the baseline interleaved, and the best and median runs are shown (the machine
may be shared; cpu = user + sys seconds of the child is less sensitive to other load than wall time).

    .venv/bin/python bench/metrics.py [--examples N] [--epochs E] [--repeat R] [--items 1,2,3]

`--items 3` measures the cartography import alone (items 1 and 2 share their 1M x 10 shards and run together).
Item 3 also prints both sides' cpu seconds (user + sys of the processes), which other load inflates less.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_S = 1.5  # all metrics, 1M x 10
TARGET_RATIO = 1.2  # against the plain integer-keyed GROUP BY
TARGET_MB = 1536.0  # peak RSS
TARGET_BYTES = 24.0  # per example-epoch
TARGET_SPEEDUP = 20.0  # cartography import + metrics against their way


# ---- data -------------------------------------------------------------------------------------------------


def write_dynamics(run_dir: Path, n: int, epochs: int, seed: int = 0) -> tuple[int, int, int]:
    """Shards of a run as the trainer writes them: one per epoch, examples in a shuffled (sampler) order, the
    adversarial columns too, through write_shard with the run's id list. Vectorised; returns (rows, bytes of
    the shards, bytes of the id list)."""
    import pyarrow as pa

    from storage.artifacts import ids_path, write_shard

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
        size += write_shard(run_dir, e, 0, table, ids).stat().st_size
    return n * epochs, size, ids_path(run_dir).stat().st_size


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


def write_dataset(path: Path, n: int, classes: int = 3) -> None:
    """The training set the dynamics were logged on (ids = cartography's guids), for `dynascope import`."""
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": i, "text": f"sentence number {i}", "label": i % classes}) + "\n")


def children_cpu() -> float:
    """user + sys seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(*args: str, workspace: Path) -> tuple[float, float]:
    """Run one `dynascope` command as its own process, as a user types it (the console script's entry point);
    returns its wall time and its cpu (user + sys) seconds."""
    env = {**os.environ, "DYNASCOPE_WORKSPACE": str(workspace)}
    cpu = children_cpu()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tui_app", *args], env=env, check=True, capture_output=True, cwd=REPO
    )
    return time.perf_counter() - start, children_cpu() - cpu


# ---- the measured work, each in a child process -----------------------------------------------------------


def plain_sql(paths: list[Path]) -> str:
    """The baseline: one integer-keyed GROUP BY over the same shards, one aggregate per metric (the epoch count,
    confidence, variability, correctness, AUM, EL2N at epoch 0, sensitivity, adversarial variability, flip
    rate); no forgetting (it needs the epoch order), no id strings."""
    from storage.artifacts import SHARD_KEY, parquet_sql

    return f"""
        SELECT {SHARD_KEY}, count(*) AS epochs, avg(gold_prob) AS confidence, stddev_pop(gold_prob) AS variability,
               avg(correct::DOUBLE) AS correctness, avg(margin) AS aum,
               max(el2n) FILTER (WHERE epoch = 0) AS el2n, avg(adv_loss) AS sensitivity,
               stddev_pop(adv_loss) AS adv_variability, avg((NOT adv_correct)::DOUBLE) AS flip_rate
        FROM {parquet_sql(paths)}
        GROUP BY {SHARD_KEY}
    """


def child(mode: str, source: Path, work: Path) -> dict[str, float]:
    import duckdb

    from storage.artifacts import list_shards
    from storage.metrics import aggregation_settings, materialise_metrics, run_metrics_sql
    from storage.schema import migrate

    extra: dict[str, float] = {}
    r0 = resource.getrusage(resource.RUSAGE_SELF)  # reset below where a mode prepares untimed work
    if mode in ("sql", "plain", "plain-tuned"):
        paths = [p for _, _, p in list_shards(source)]
        con = duckdb.connect()
        start = time.perf_counter()
        sql = run_metrics_sql(paths) if mode == "sql" else plain_sql(paths)
        with aggregation_settings(con, paths) if mode != "plain" else contextlib.nullcontext():
            con.execute(f"CREATE TEMP TABLE m AS {sql}")
        elapsed = time.perf_counter() - start
        extra["rows"] = con.execute("SELECT count(*) FROM m").fetchall()[0][0]
    elif mode in ("catalog", "catalog-replace"):
        paths = [p for _, _, p in list_shards(source)]
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
    elif mode in ("cartography", "cartography-numpy"):
        elapsed = cartography_way(source, torch_softmax=mode == "cartography")
    elif mode == "import":
        elapsed = ours_in_process(source, work)
    else:
        raise SystemExit(f"unknown mode {mode}")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return {"seconds": elapsed, "peak_mb": r1.ru_maxrss / 1024, "cpu_s": cpu, **extra}


def cartography_way(folder: Path, torch_softmax: bool = True) -> float:
    """allenai/cartography's read_training_dynamics + compute_train_dy_metrics (cartography/selection/
    selection_utils.py and train_dy_filtering.py), reimplemented from their code without the progress bars and
    the logging: the per-example Python loop with a torch softmax per logits vector, the per-epoch training loss
    with torch, the pandas DataFrames, and the metrics written as JSONL (td_metrics.jsonl) as their script does.
    `torch_softmax=False`: a numpy softmax instead (the cheaper variant this bench used before). Timed from after
    the imports."""
    from collections import defaultdict

    import pandas as pd

    torch: Any = None
    if (
        torch_softmax and importlib.util.find_spec("torch") is not None
    ):  # else the numpy variant (main says so)
        import torch

    start = time.perf_counter()
    train_dynamics: dict = {}
    num_epochs = len([f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))])
    for epoch_num in range(num_epochs):
        epoch_file = os.path.join(folder, f"dynamics_epoch_{epoch_num}.jsonl")
        with open(epoch_file) as infile:
            for line in infile:
                record = json.loads(line.strip())
                guid = record["guid"]
                if guid not in train_dynamics:
                    assert epoch_num == 0
                    train_dynamics[guid] = {"gold": record["gold"], "logits": []}
                train_dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch_num}"])

    def compute_forgetfulness(correctness_trend: list[bool]) -> int:
        if not any(correctness_trend):
            return 1000
        learnt, times_forgotten = False, 0
        for is_correct in correctness_trend:
            if (not learnt and not is_correct) or (learnt and is_correct):
                continue
            elif learnt and not is_correct:
                learnt, times_forgotten = False, times_forgotten + 1
            elif not learnt and is_correct:
                learnt = True
        return times_forgotten

    def softmax(epoch_logits: list[float]) -> object:
        if torch is not None:
            return torch.nn.functional.softmax(torch.Tensor(epoch_logits), dim=-1)
        x = np.asarray(epoch_logits)
        probs = np.exp(x - x.max())
        return probs / probs.sum()

    confidence_, variability_, threshold_closeness_, correctness_, forgetfulness_ = {}, {}, {}, {}, {}
    num_tot_epochs = len(list(train_dynamics.values())[0]["logits"])
    logits: dict[int, list] = {i: [] for i in range(num_tot_epochs)}
    targets: dict[int, list] = {i: [] for i in range(num_tot_epochs)}
    training_accuracy: dict[int, float] = defaultdict(float)
    for guid in train_dynamics:
        correctness_trend, true_probs_trend = [], []
        record = train_dynamics[guid]
        for i, epoch_logits in enumerate(record["logits"]):
            probs = softmax(epoch_logits)
            true_probs_trend.append(float(probs[record["gold"]]))  # type: ignore[index]
            prediction = np.argmax(epoch_logits)
            is_correct = (prediction == record["gold"]).item()
            correctness_trend.append(is_correct)
            training_accuracy[i] += is_correct
            logits[i].append(epoch_logits)
            targets[i].append(record["gold"])
        correctness_[guid] = sum(correctness_trend)
        confidence_[guid] = np.mean(true_probs_trend)
        variability_[guid] = np.std(true_probs_trend)
        forgetfulness_[guid] = compute_forgetfulness(correctness_trend)
        threshold_closeness_[guid] = confidence_[guid] * (1 - confidence_[guid])
    columns = [
        "guid",
        "index",
        "threshold_closeness",
        "confidence",
        "variability",
        "correctness",
        "forgetfulness",
    ]
    train_dy_metrics = pd.DataFrame(
        [
            [
                g,
                i,
                threshold_closeness_[g],
                confidence_[g],
                variability_[g],
                correctness_[g],
                forgetfulness_[g],
            ]
            for i, g in enumerate(correctness_)
        ],
        columns=columns,
    )
    if torch is not None:
        loss = torch.nn.CrossEntropyLoss()
        epoch_loss = [
            loss(torch.Tensor(logits[i]), torch.LongTensor(targets[i])).item() / len(train_dynamics)
            for i in range(num_tot_epochs)
        ]
    else:
        epoch_loss = [0.0] * num_tot_epochs
    pd.DataFrame(
        [[i, epoch_loss[i], training_accuracy[i] / len(train_dynamics)] for i in range(num_tot_epochs)],
        columns=["epoch", "loss", "train_acc"],
    )
    # their script then writes the metrics (td_metrics.jsonl), as ours writes them with --parquet
    train_dy_metrics.to_json(folder.parent / f"td_metrics-{os.getpid()}.jsonl", orient="records", lines=True)
    return time.perf_counter() - start


def ours_in_process(folder: Path, work: Path) -> float:
    """What the two CLI calls do, in this process: import_cartography (read, check, write the run, sync: the
    metrics are materialised) and the run's metrics read back from the catalog. Timed from after the imports."""
    from engine.importing.cartography import import_cartography
    from storage.catalog import open_catalog
    from storage.workspace import Workspace

    ws = Workspace(work / "ws")
    run_id = f"inproc-{os.getpid()}"
    start = time.perf_counter()
    import_cartography(ws, folder, "carto", run_id)
    with open_catalog(ws) as con:
        con.sql(
            """SELECT m.*, e.label FROM example_metrics m
               LEFT JOIN examples e ON e.dataset = 'carto' AND e.example_id = m.example_id
               WHERE m.run_id = ? ORDER BY e.row_idx""",
            params=[run_id],
        ).to_arrow_table()
    return time.perf_counter() - start


def measure(mode: str, source: Path, work: Path) -> dict[str, float]:
    cpu = children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(source), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    result["process_cpu_s"] = children_cpu() - cpu
    return result


def line(label: str, results: list[dict[str, float]], key: str = "seconds") -> str:
    secs = sorted(r[key] for r in results)
    peak = max(r.get("peak_mb", 0.0) for r in results)
    cpu = min(r.get("cpu_s", float("nan")) for r in results)
    rss = f"  peak RSS {peak:5.0f} MB" if peak else ""
    cpu_text = f"  (cpu {cpu:5.2f} s)" if cpu == cpu else ""
    return f"{label:<60} best {secs[0]:6.2f} s  median {statistics.median(secs):6.2f} s{cpu_text}{rss}"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--carto-examples", type=int, default=100_000)
    parser.add_argument("--carto-epochs", type=int, default=5)
    parser.add_argument(
        "--items",
        default="1,2,3",
        help="which figures to measure, e.g. 3 for the cartography import alone (default: 1,2,3)",
    )
    parser.add_argument("--child", nargs=3, metavar=("MODE", "SOURCE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, source, work = args.child
        print(json.dumps(child(mode, Path(source), Path(work))))
        return

    print(
        f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} (other processes inflate wall "
        "times; cpu = user + sys seconds of the child)",
        flush=True,
    )
    items = {item.strip() for item in args.items.split(",")}
    with tempfile.TemporaryDirectory(prefix="dynascope-bench-") as tmp:
        work = Path(tmp)
        if items & {"1", "2"}:
            metrics_items(args, work)
        if "3" in items:
            cartography_item(args, work)
        print(f"load average at the end: {os.getloadavg()[0]:.2f}", flush=True)


def metrics_items(args: argparse.Namespace, work: Path) -> None:
    """Items 1 and 2 over the 1M x 10 shards."""
    run_dir = work / "runs" / "run"
    start = time.perf_counter()
    rows, shard_bytes, ids_bytes = write_dynamics(run_dir, args.examples, args.epochs)
    print(
        f"dynamics: {args.examples:,} examples x {args.epochs} epochs = {rows:,} rows, "
        f"{shard_bytes / 2**20:.0f} MB of shards + {ids_bytes / 2**20:.1f} MB id list "
        f"(written in {time.perf_counter() - start:.1f} s)",
        flush=True,
    )

    # 1. all metrics against the plain integer-keyed GROUP BY, interleaved
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "plain-tuned": [], "sql": []}
    for _ in range(args.repeat):
        for mode, results in runs.items():
            results.append(measure(mode, run_dir, work))
    ours = runs["sql"]
    best_ours = min(r["seconds"] for r in ours)
    peak = max(r["peak_mb"] for r in ours)
    print(
        f"1. all metrics, {args.examples:,} x {args.epochs} (compute only, in a fresh process):",
        flush=True,
    )
    labels = {
        "plain": "plain integer-keyed GROUP BY of the same shards",
        "plain-tuned": "  the same with the perfect hash table setting ours uses",
        "sql": "all metrics (storage.metrics, ids joined at the end)",
    }
    for mode, results in runs.items():
        print("  " + line(labels[mode], results), flush=True)
    ratios = {}
    for base in ("plain", "plain-tuned"):
        best_base = min(r["seconds"] for r in runs[base])
        paired = statistics.median(o["seconds"] / p["seconds"] for o, p in zip(ours, runs[base]))
        cpu = min(r["cpu_s"] for r in ours) / min(r["cpu_s"] for r in runs[base])
        ratios[base] = best_ours / best_base
        print(
            f"  ratio to the {'plain' if base == 'plain' else 'tuned plain'} GROUP BY: "
            f"{best_ours / best_base:.2f}x (best / best; median of paired runs {paired:.2f}x, cpu {cpu:.2f}x)",
            flush=True,
        )
    ok = best_ours <= TARGET_S and max(ratios.values()) <= TARGET_RATIO and peak <= TARGET_MB
    print(
        f"  target <= {TARGET_S:g} s and <= {TARGET_RATIO:g}x of both, <= {TARGET_MB / 1024:g} GB: {verdict(ok)}",
        flush=True,
    )
    catalog = [measure("catalog", run_dir, work) for _ in range(max(1, args.repeat - 1))]
    print("  " + line("materialise_metrics into a catalog (what sync does)", catalog), flush=True)
    replace = [measure("catalog-replace", run_dir, work) for _ in range(max(1, args.repeat - 1))]
    print("  " + line("  again after the run gained an epoch (rows replaced)", replace), flush=True)

    # 2. bytes per example-epoch
    per_row = shard_bytes / rows
    print(
        f"2. shards: {per_row:.1f} bytes per example-epoch ({(shard_bytes + ids_bytes) / rows:.1f} with the id "
        f"list)  target <= {TARGET_BYTES:g}: {verdict(per_row <= TARGET_BYTES)}",
        flush=True,
    )


def cartography_item(args: argparse.Namespace, work: Path) -> None:
    """Item 3: the cartography files, ours end to end against their way."""
    # 3. cartography files: import-dynamics + metrics, end to end, against their way
    n_small, e_small = args.carto_examples, args.carto_epochs
    folder = work / "cartography" / "training_dynamics"
    write_cartography_jsonl(folder, n_small, e_small)
    ws = work / "ws"
    write_dataset(work / "carto.jsonl", n_small)
    cli("import", str(work / "carto.jsonl"), "--name", "carto", workspace=ws)
    if importlib.util.find_spec("torch") is None:
        print(
            "  (torch is not installed: their loop runs with a numpy softmax, faster than theirs)",
            flush=True,
        )
    ours_e2e = []
    theirs = []
    for k in range(args.repeat):  # each a new run from the files; their way once, between ours
        t_import, cpu_import = cli(
            "import-dynamics", str(folder), "--dataset", "carto", "--name", f"imp{k}", workspace=ws
        )
        t_metrics, cpu_metrics = cli(
            "metrics", f"imp{k}", "--parquet", str(work / f"m{k}.parquet"), workspace=ws
        )
        ours_e2e.append(
            {
                "seconds": t_import + t_metrics,
                "import": t_import,
                "metrics": t_metrics,
                "cpu_s": cpu_import + cpu_metrics,
            }
        )
        if k == 0:
            theirs.append(measure("cartography", folder, work))
    inproc = [measure("import", folder, work) for _ in range(max(1, args.repeat - 1))]
    numpy_way = [measure("cartography-numpy", folder, work)]
    best = min(ours_e2e, key=lambda r: r["seconds"])
    speedup = theirs[0]["process_s"] / best["seconds"]
    print(f"3. {n_small:,} examples x {e_small} epochs of allenai/cartography's JSONL files:", flush=True)
    print(
        "  "
        + line("allenai/cartography's way, as a process (imports included)", theirs, key="process_s")
        + f"  (cpu {theirs[0]['process_cpu_s']:.2f} s; after its imports: {theirs[0]['seconds']:.2f} s)",
        flush=True,
    )
    print(
        "  "
        + line("ours: dynascope import-dynamics + dynascope metrics (CLI)", ours_e2e)
        + f"  ({best['import']:.2f} s + {best['metrics']:.2f} s)",
        flush=True,
    )
    cpu_ratio = theirs[0]["process_cpu_s"] / min(r["cpu_s"] for r in ours_e2e)
    print(
        f"  ratio end to end: ours is {speedup:.1f}x faster (cpu: {cpu_ratio:.1f}x)  "
        f"target >= {TARGET_SPEEDUP:g}x: {verdict(speedup >= TARGET_SPEEDUP)}",
        flush=True,
    )
    best_in = min(r["seconds"] for r in inproc)
    print("  " + line("ours in-process (after imports): import_cartography + metrics", inproc), flush=True)
    print(
        f"  in-process: their loop {theirs[0]['seconds']:.2f} s / ours {best_in:.2f} s = "
        f"{theirs[0]['seconds'] / best_in:.1f}x; with a numpy softmax in their loop "
        f"{numpy_way[0]['seconds']:.2f} s = {numpy_way[0]['seconds'] / best_in:.1f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
