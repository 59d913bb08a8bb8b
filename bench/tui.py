"""The app on a large run: 1,000,000 examples x 10 epochs, measured through Pilot (headless, 120x36).

Builds a synthetic run (numpy + pyarrow) in a temp workspace: a 1M-example dataset in the catalog, ten 1M-row
dynamics shards, events and config, then `sync` (metrics materialised in DuckDB). Then, through the real app:

- time to paint the data map (open the screen -> binned counts from SQL -> painted), target <= 300 ms
- time to page the examples table (next/previous page -> rows painted; read ahead by the screen), target <= 100 ms
- time to apply a region filter (count + first page of the region -> painted), target <= 300 ms

Each is timed from the key (or the call that opens the screen) to the screen's paint mark, which the screen sets in
a call_after_refresh once the compositor has drawn the new data. The time until Pilot has settled is printed
beside it: Pilot detects idleness by sleeping in 20 ms steps, which no user sees, so it is not the target figure.

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
WORDS = np.array(
    "the a movie film plot actor scene great dull charming slow witty bleak sharp tender".split()
)


def build(ws: Workspace, n: int, epochs: int) -> dict[str, float]:
    timings = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    ids = np.char.add("ex", np.arange(n).astype(str))
    words = WORDS[rng.integers(0, len(WORDS), (n, 6))]
    text = np.char.add(
        np.char.add(np.char.add(words[:, 0], " "), np.char.add(words[:, 1], " ")),
        np.char.add(np.char.add(words[:, 2], " "), np.char.add(words[:, 3], " example")),
    )
    labels = rng.integers(0, 2, n).astype(np.int32)
    table = pa.table(
        {
            "example_id": pa.array(ids),
            "row_idx": pa.array(np.arange(n, dtype=np.int64)),
            "text": pa.array(text),
            "text_pair": pa.nulls(n, pa.string()),
            "label": pa.array(labels),
            "label_name": pa.array(np.where(labels == 1, "positive", "negative")),
            "answers": pa.nulls(n, pa.string()),
            "is_impossible": pa.nulls(n, pa.bool_()),
            "title": pa.nulls(n, pa.string()),
            "orig_id": pa.nulls(n, pa.string()),
        }
    )
    spec = DatasetSpec(
        name="synthetic",
        task="classification",
        source="bench/tui.py",
        format="synthetic",
        examples=table,
        label_names=["negative", "positive"],
    )
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


class Timings:
    """Per measure: press -> painted (the screen's own mark, set after the compositor drew the new data) and
    press -> Pilot settled (adds Pilot's idle detection: each pause sleeps >= 20 ms, and read-ahead queries that
    run after the paint)."""

    def __init__(self) -> None:
        self.painted: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
        self.settled: dict[str, list[float]] = {name: [] for name in TARGETS_MS}
        self.noop: list[float] = []
        self.cold_page: list[float] = []  # paging before the read-ahead arrived (a query, then the paint)

    def add(self, name: str, t0: float, screen: object) -> None:
        painted_at = getattr(screen, "painted_at", 0.0)
        assert painted_at > t0, f"{name}: the screen did not mark a paint after the key"
        self.painted[name].append((painted_at - t0) * 1000)
        self.settled[name].append((time.perf_counter() - t0) * 1000)


async def measure(ws: Workspace, repeat: int) -> Timings:
    timings = Timings()
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        for _ in range(repeat):
            t0 = time.perf_counter()
            app.open_map("big-run")
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.grid is not None and screen.grid.total > 0
            timings.add("paint data map", t0, screen)
            app.pop_screen()
            await pilot.pause()

        app.open_examples(run_id="big-run")
        await settle(app, pilot)
        examples = app.screen
        assert isinstance(examples, ExamplesScreen) and examples.total and examples.total > 0
        for _ in range(repeat):  # Pilot's own cost: a key bound to nothing, then settle
            t0 = time.perf_counter()
            await pilot.press("z")
            await settle(app, pilot)
            timings.noop.append((time.perf_counter() - t0) * 1000)
        for i in range(repeat * 2):
            loaded = examples.pages_loaded
            t0 = time.perf_counter()
            await pilot.press("n" if i % 4 != 3 else "p")
            await settle(app, pilot)
            assert examples.pages_loaded == loaded + 1
            timings.add("page examples", t0, examples)
        for _ in range(repeat):
            examples.prefetched.clear()  # as if the key came before the read-ahead
            t0 = time.perf_counter()
            await pilot.press("n")
            await settle(app, pilot)
            assert examples.painted_at > t0
            timings.cold_page.append((examples.painted_at - t0) * 1000)
        for _ in range(repeat):
            loaded = examples.pages_loaded
            t0 = time.perf_counter()
            await pilot.press("g")  # next region: easy -> ambiguous -> hard -> none -> easy ...
            await settle(app, pilot)
            assert examples.pages_loaded == loaded + 1
            timings.add("apply region filter", t0, examples)
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
            timings.add("apply region filter", t0, app.screen)
            app.pop_screen()
            await pilot.pause()
        assert not app.errors, app.errors
    return timings


def report(title: str, timings: Timings) -> list[str]:
    print(f"\n{title}")
    print(
        f"{'measure':<22}{'press->painted ms':>18}{'min':>6}{'max':>6}{'target':>8}{'ratio':>7}{'Pilot settled ms':>18}"
    )
    over = []
    for name, painted in timings.painted.items():
        med = statistics.median(painted)
        target = TARGETS_MS[name]
        settled = statistics.median(timings.settled[name])
        print(
            f"{name:<22}{med:>18.0f}{min(painted):>6.0f}{max(painted):>6.0f}{target:>8}{med / target:>7.2f}{settled:>18.0f}"
        )
        if med > target:
            over.append(name)
    print(
        f"(page examples before the read-ahead arrived: {statistics.median(timings.cold_page):.0f} ms median)"
    )
    print(
        f"(Pilot alone: a key bound to nothing, then settle: {statistics.median(timings.noop):.0f} ms median)"
    )
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
        timings = asyncio.run(measure(ws, args.repeat))
    where = f"{args.examples:,} examples x {args.epochs} epochs (Pilot, 120x36; median of runs)"
    report(f"the app on {where}", timings)


if __name__ == "__main__":
    main()
