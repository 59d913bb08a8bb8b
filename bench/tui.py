"""The app on a large run: 1,000,000 examples x 10 epochs, measured through Pilot (headless, 120x36).

Builds a synthetic run (numpy + pyarrow) in a temp workspace: a 1M-example dataset in the catalog, ten 1M-row
dynamics shards, events and config, then `sync` (metrics materialised in DuckDB). Then, through the real app:

- time to paint the data map (open the screen -> binned counts from SQL -> painted), target <= 300 ms
- time to page the examples table (next page: one LIMIT/OFFSET query -> rows painted), target <= 100 ms
- time to apply a region filter (count + first page of the region -> painted), target <= 300 ms

Run: make bench  (or .venv/bin/python bench/tui.py [--examples N] [--epochs E] [--repeat R])
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from storage.catalog import open_catalog  # noqa: E402
from storage.datasets import DatasetSpec, write_dataset  # noqa: E402
from storage.workspace import Workspace  # noqa: E402
from tests.tui_helpers import make_app, sync_ws, write_run  # noqa: E402
from tui_app.screens.datamap import DataMapScreen  # noqa: E402
from tui_app.screens.examples import ExamplesScreen  # noqa: E402

TARGETS_MS = {"paint data map": 300, "page examples": 100, "apply region filter": 300}
WORDS = np.array("the a movie film plot actor scene great dull charming slow witty bleak sharp tender".split())


def build(ws: Workspace, n: int, epochs: int) -> dict[str, float]:
    timings = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    ids = np.char.add("ex", np.arange(n).astype(str))
    words = WORDS[rng.integers(0, len(WORDS), (n, 6))]
    text = np.char.add(np.char.add(np.char.add(words[:, 0], " "), np.char.add(words[:, 1], " ")),
                       np.char.add(np.char.add(words[:, 2], " "), np.char.add(words[:, 3], " example")))
    labels = rng.integers(0, 2, n).astype(np.int32)
    table = pa.table({
        "example_id": pa.array(ids), "row_idx": pa.array(np.arange(n, dtype=np.int64)), "text": pa.array(text),
        "text_pair": pa.nulls(n, pa.string()), "label": pa.array(labels),
        "label_name": pa.array(np.where(labels == 1, "positive", "negative")), "answers": pa.nulls(n, pa.string()),
        "is_impossible": pa.nulls(n, pa.bool_()), "title": pa.nulls(n, pa.string()), "orig_id": pa.nulls(n, pa.string()),
    })
    spec = DatasetSpec(name="synthetic", task="classification", source="bench/tui.py", format="synthetic",
                       examples=table, label_names=["negative", "positive"])
    with open_catalog(ws) as con:
        write_dataset(con, spec)
    timings["dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_run(ws, "big-run", "synthetic", ids, epochs=epochs, seed=1, labels=labels)
    timings["shards"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sync_ws(ws)
    timings["sync"] = time.perf_counter() - t0
    return timings


async def settle(app, pilot) -> None:  # noqa: ANN001
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def measure(ws: Workspace, repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        for _ in range(repeat):
            t0 = time.perf_counter()
            app.open_map("big-run")
            await settle(app, pilot)
            elapsed = time.perf_counter() - t0
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.grid is not None and screen.grid.total > 0
            results["paint data map"].append(elapsed * 1000)
            app.pop_screen()
            await pilot.pause()

        app.open_examples(run_id="big-run")
        await settle(app, pilot)
        examples = app.screen
        assert isinstance(examples, ExamplesScreen) and examples.total and examples.total > 0
        for i in range(repeat * 2):
            loaded = examples.pages_loaded
            t0 = time.perf_counter()
            await pilot.press("n" if i % 4 != 3 else "p")
            await settle(app, pilot)
            assert examples.pages_loaded == loaded + 1
            results["page examples"].append((time.perf_counter() - t0) * 1000)
        for _ in range(repeat):
            loaded = examples.pages_loaded
            t0 = time.perf_counter()
            await pilot.press("g")  # next region: easy -> ambiguous -> hard -> none -> easy ...
            await settle(app, pilot)
            assert examples.pages_loaded == loaded + 1
            results["apply region filter"].append((time.perf_counter() - t0) * 1000)
        app.pop_screen()
        await pilot.pause()

        # The way a user gets there: map -> region -> examples (count + first page of the region).
        app.open_map("big-run")
        await settle(app, pilot)
        for region_key in ("2", "3", "1"):
            await pilot.press(region_key)
            t0 = time.perf_counter()
            await pilot.press("enter")
            await settle(app, pilot)
            assert isinstance(app.screen, ExamplesScreen) and app.screen.filter.region is not None
            results["apply region filter"].append((time.perf_counter() - t0) * 1000)
            app.pop_screen()
            await pilot.pause()
        assert not app.errors, app.errors
    return results


PROPOSED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS examples_example_id ON examples (example_id)",
    "CREATE INDEX IF NOT EXISTS example_metrics_example_id ON example_metrics (example_id)",
)


def report(title: str, results: dict[str, list[float]]) -> list[str]:
    print(f"\n{title}")
    print(f"{'measure':<22}{'median ms':>10}{'min':>8}{'max':>8}{'target':>8}{'ratio':>8}")
    over = []
    for name, values in results.items():
        med = statistics.median(values)
        target = TARGETS_MS[name]
        print(f"{name:<22}{med:>10.0f}{min(values):>8.0f}{max(values):>8.0f}{target:>8}{med / target:>8.2f}")
        if med > target:
            over.append(name)
    print("all within target" if not over else f"over target: {', '.join(over)}")
    return over


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynascope-bench-tui-") as tmp:
        ws = Workspace(Path(tmp) / "ws").create()
        print(f"building a synthetic run: {args.examples:,} examples x {args.epochs} epochs ...", flush=True)
        built = build(ws, args.examples, args.epochs)
        print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in built.items()), flush=True)
        plain = asyncio.run(measure(ws, args.repeat))
        # The catalog schema (storage/schema.py) has composite primary keys only; a page's example rows are
        # fetched by id, which a single-column index on example_id turns into point lookups. Measured here
        # with the index added to this temporary catalog (a proposed storage migration).
        t0 = time.perf_counter()
        with open_catalog(ws) as con:
            for sql in PROPOSED_INDEXES:
                con.execute(sql)
        print(f"  indexes on example_id created in {time.perf_counter() - t0:.1f} s", flush=True)
        indexed = asyncio.run(measure(ws, args.repeat))
    where = f"{args.examples:,} examples x {args.epochs} epochs (Pilot, 120x36; median of runs)"
    report(f"the app on {where}, catalog schema as it is", plain)
    report(f"the app on {where}, with an index on example_id (proposed migration)", indexed)


if __name__ == "__main__":
    main()
