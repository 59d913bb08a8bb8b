"""The run view on a long run: the step log of 1,000,000 examples x 10 epochs at batch 32 (312,500 steps).

Builds a run folder (config.json, events.jsonl with ten epoch summaries, steps.jsonl written as the trainer writes
it), then measures:

- open: the run view pushed -> the whole step log read, binned to the plots' width and painted (Pilot, 120x36);
  the screen's paint mark, as bench/tui.py times its screens
- live refresh: one more second of training (100 steps appended) -> read, curves rebuilt, plots redrawn; the work
  a poll does (the poll itself comes once a second)
- plot build: plotext's build of the loss plot as drawn (binned to 2 points a cell), against the same plot given
  every step (what binning saves; FIELD-NOTES: 220 ms at 50k points)

Run: make bench  (or .venv/bin/python bench/runview.py [--steps N] [--repeat R])
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from storage.artifacts import append_event, write_config  # noqa: E402
from storage.steplog import append_steps  # noqa: E402
from storage.workspace import Workspace  # noqa: E402
from tests.tui_helpers import make_app  # noqa: E402
from tui_app.screens.runview import CurvePlot, RunViewScreen  # noqa: E402

RUN = "big-run"
EPOCHS = 10


def build(ws: Workspace, n_steps: int) -> int:
    """A running run with `n_steps` logged steps over ten epochs; returns the steps per epoch."""
    run_dir = ws.run_dir(RUN)
    per_epoch = math.ceil(n_steps / EPOCHS)
    append_event(run_dir, "state", status="running", pid=None, n_epochs=EPOCHS + 1)
    rng = np.random.default_rng(0)
    chunk: list[dict[str, float | int | None]] = []
    for epoch in range(EPOCHS):
        t = np.arange(1, per_epoch + 1) / per_epoch
        loss = 0.7 * np.exp(-(epoch + t) / 4) + rng.normal(0, 0.05, per_epoch)
        acc = np.clip(1 - loss, 0, 1)
        for step in range(per_epoch):
            chunk.append(
                {
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": per_epoch,
                    "loss": float(loss[step]),
                    "accuracy": float(acc[step]),
                    "lr": 5e-5,
                }
            )
            if len(chunk) >= 10_000:
                append_steps(run_dir, chunk)
                chunk = []
        metrics = {
            "train_loss": float(loss.mean()),
            "train_accuracy": float(acc.mean()),
            "eval/dev/accuracy": 0.8,
        }
        append_event(run_dir, "epoch_end", epoch=epoch, metrics=metrics)
    append_steps(run_dir, chunk)
    write_config(
        run_dir, {"kind": "train", "dataset": "big", "name": "big", "epochs": EPOCHS + 1, "lr": 5e-5}
    )
    return per_epoch


async def measure(ws: Workspace, per_epoch: int, repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"open": [], "live refresh": [], "plot build (binned)": []}
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        for _ in range(repeat):
            started = time.perf_counter()
            app.open_run_view(RUN)
            view = app.screen
            assert isinstance(view, RunViewScreen)
            while view.polls < 1:
                await pilot.pause(0.005)
            await pilot.pause()
            times["open"].append(view.painted_at - started)
            await pilot.press("escape")
            await pilot.pause()
        app.open_run_view(RUN)
        view = app.screen
        assert isinstance(view, RunViewScreen)
        while view.polls < 1:
            await pilot.pause(0.01)
        step = 0
        for _ in range(repeat):
            rows = []
            for _ in range(100):
                step += 1
                rows.append({"epoch": EPOCHS, "step": step, "steps": per_epoch, "loss": 0.1, "accuracy": 0.9})
            append_steps(ws.run_dir(RUN), rows)
            polls = view.polls
            started = time.perf_counter()
            view.poll()  # what the timer calls
            while view.polls == polls:
                await pilot.pause(0.005)
            await pilot.pause()
            times["live refresh"].append(view.painted_at - started)
        plot = view.query_one("#loss-plot", CurvePlot)
        for _ in range(repeat):
            started = time.perf_counter()
            plot.replot()
            plot.plt.build()
            times["plot build (binned)"].append(time.perf_counter() - started)
        everything = view.curves[0].step_curve("loss")  # every step, unbinned
        n_points = len(everything)
        started = time.perf_counter()
        plot.plt.clear_data()
        plot.plt.clear_figure()
        plot.plt.plotsize(plot.size.width, plot.size.height)
        plot.plt.plot(everything.x, everything.y, marker="braille")
        plot.plt.build()
        times[f"plot build (all {n_points} points, for comparison)"] = [time.perf_counter() - started]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=312_500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws").create()
        t0 = time.perf_counter()
        per_epoch = build(ws, args.steps)
        size = (ws.run_dir(RUN) / "steps.jsonl").stat().st_size / 1e6
        print(
            f"step log: {per_epoch * EPOCHS} steps ({size:.0f} MB), built in {time.perf_counter() - t0:.1f} s"
        )
        times = asyncio.run(measure(ws, per_epoch, args.repeat))
    for name, values in times.items():
        print(f"  {name:<52} median {1000 * statistics.median(values):7.1f} ms  (n={len(values)})")


if __name__ == "__main__":
    main()
