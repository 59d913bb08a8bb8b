"""Training benchmarks on real SST-2 with the default (offline MiniLM-L6) model. Prints measured figures:

(a) inline recording cost: train step time with recording / without, on the same batches (alternating which
    goes first, so drift and warm-up cancel out), plus the recorder's own time as a share of a step;
(c) training throughput (examples/s, one process, inline recording on) and bytes on disk per example-epoch
    of the dynamics shards.

Run: .venv/bin/python bench/train.py [--examples 256] [--max-length 64] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.importing.sources import ImportOptions, load_source  # noqa: E402
from engine.jobs import create_run  # noqa: E402
from engine.training.loop import (  # noqa: E402
    StopFlag,
    epoch_order,
    get_batches,
    optimizer_step,
    setup,
    train_one_epoch,
    train_step,
)
from engine.training.recorder import EpochRecorder  # noqa: E402
from storage.catalog import open_catalog  # noqa: E402
from storage.datasets import write_dataset  # noqa: E402
from storage.workspace import Workspace  # noqa: E402

DATA = Path(
    os.environ.get("DYNASCOPE_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=8, help="batches timed with and without recording")
    args = parser.parse_args()

    ws = Workspace(Path(tempfile.mkdtemp(prefix="dynascope-bench-")) / "ws").create()
    spec = load_source(str(DATA / "sst2" / "train.tsv.gz"), "sst2", ImportOptions())
    with open_catalog(ws) as con:
        write_dataset(con, spec)
    run_id = create_run(
        ws,
        {
            "dataset": "sst2",
            "limit": args.examples,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "epochs": 2,
            "seed": 1,
        },
    )
    ctx = setup(ws.run_dir(run_id), StopFlag())
    print(
        f"SST-2, {args.examples} examples, max length {args.max_length}, batch {args.batch_size}, "
        f"{ctx.accelerator.device}, torch threads {__import__('torch').get_num_threads()}"
    )

    # (a) the same batch trained with and without inline recording, alternating the order
    batches = get_batches(epoch_order(len(ctx.items), 1, 0), args.batch_size)[: args.pairs]
    recorder = EpochRecorder(0)
    with_rec, without, rec_only = [], [], []
    cpu_with, cpu_without = [], []  # process CPU time: less sensitive than wall time to other load
    for i, chunk in enumerate(batches):
        batch = ctx.adapter.collate([ctx.items[j] for j, _ in chunk])
        for record in (False, True) if i % 2 == 0 else (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            out = train_step(ctx, batch, sync=True, scale=1.0)
            if record:
                t1 = time.perf_counter()
                recorder.add(ctx.adapter.record(batch, out))
                rec_only.append(time.perf_counter() - t1)
            optimizer_step(ctx)
            (with_rec if record else without).append(time.perf_counter() - t0)
            (cpu_with if record else cpu_without).append(time.process_time() - c0)
        recorder.reset(0)  # the same ids come back next round; the recorder would skip them as repeats
    # per-batch paired ratios, median: robust to bursts of load from other processes on a shared machine
    ratio = statistics.median(w / o for w, o in zip(with_rec, without))
    share = sum(rec_only) / sum(without)
    cpu_ratio = sum(cpu_with) / sum(cpu_without)
    print(
        f"(a) inline recording: step {statistics.median(without) * 1000:.1f} ms without, "
        f"{statistics.median(with_rec) * 1000:.1f} ms with (median of {len(batches)}); "
        f"median paired wall ratio {ratio:.4f}, CPU-time ratio {cpu_ratio:.4f}; recorder alone {sum(rec_only) / len(rec_only) * 1000:.2f} ms per step "
        f"= {share * 100:.2f}% of a step (target ratio <= 1.03)"
    )

    # (c) a whole epoch with inline recording: throughput and shard size
    recorder = EpochRecorder(0)
    recorder.reset(0)
    t0 = time.perf_counter()
    train_one_epoch(ctx, 0, recorder)
    seconds = time.perf_counter() - t0
    path = recorder.write(ctx.run_dir)
    size = path.stat().st_size
    print(
        f"(c) throughput: {len(ctx.items) / seconds:.1f} examples/s training with inline recording "
        f"({seconds:.1f} s for {len(ctx.items)} examples); dynamics shard {size} bytes for {len(recorder)} rows "
        f"= {size / len(recorder):.1f} bytes per example-epoch (zstd Parquet)"
    )


if __name__ == "__main__":
    main()
