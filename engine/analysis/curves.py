"""A run's training curves, read from its run folder (never the catalog, so a run still training is drawn live):
per-step loss, batch accuracy and learning rate from `steps.jsonl` (storage.steplog), per-epoch training,
adversarial and evaluation metrics from the `epoch_end` events, the final evaluation from the `metrics` events
(events.jsonl). `RunCurves` follows both files incrementally: each `poll()` reads only what was appended.

Every curve's x axis is in epochs (step s of an epoch of S steps at e + s/S, an epoch's summary at its end, e + 1),
so runs with other batch sizes or subset sizes overlay on one axis. `downsample` bins a curve to what a plot of a
given width can show (plotext's build time grows with the points it is given).

`differing_settings` is the table of the settings in which compared runs differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.analysis.progress import JobFollower, JobProgress
from engine.analysis.runs import origin, run_label, run_summary, trained_on
from storage.artifacts import BrokenRunError, RunState, read_config
from storage.steplog import StepColumns, StepTail, empty_columns
from storage.workspace import Workspace

STEP_METRICS = ("loss", "accuracy", "lr")
EVAL_PREFIX = "eval/"
# Per-epoch keys that are bookkeeping, not curves.
NOT_CURVES = ("seconds", "examples", "adv_seconds")


def latest_active_run(ws: Workspace) -> str | None:
    """The run whose events changed last (the one training now, else the one that finished last)."""
    best: tuple[int, str] | None = None
    for run_id in ws.run_ids():
        try:
            mtime = (ws.run_dir(run_id) / "events.jsonl").stat().st_mtime_ns
        except OSError:
            continue
        if best is None or (mtime, run_id) > best:
            best = (mtime, run_id)
    return best[1] if best else None


@dataclass
class Curve:
    """One line of a plot: its label and points (x in epochs)."""

    label: str
    x: list[float]
    y: list[float]

    def __len__(self) -> int:
        return len(self.x)


def merge_steps(old: StepColumns, new: StepColumns) -> StepColumns:
    """`old` (sorted by (epoch, step), each once) with the new lines of the log: appended when they continue it
    in order (the usual case), else merged, the last line of each step kept, and sorted again."""
    key_old = old["epoch"] * 2**32 + old["step"]
    key_new = new["epoch"] * 2**32 + new["step"]
    joined = {name: np.concatenate([old[name], new[name]]) for name in old}
    in_order = bool(np.all(np.diff(key_new) > 0)) and (not len(key_old) or key_new[0] > key_old[-1])
    if in_order:
        return joined
    keys = np.concatenate([key_old, key_new])
    # np.unique on the reversed keys finds each key's last line; its indices come back in key order
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    keep = len(keys) - 1 - first_in_reversed
    return {name: values[keep] for name, values in joined.items()}


def downsample(x: Any, y: Any, max_points: int) -> tuple[list[float], list[float]]:
    """At most `max_points` points: consecutive points averaged in equal bins (a noisy per-step loss reads as its
    running mean at the plot's resolution); fewer points are returned as they are."""
    n = len(x)
    if n <= max_points or max_points < 1:
        return np.asarray(x, dtype=np.float64).tolist(), np.asarray(y, dtype=np.float64).tolist()
    edges = np.linspace(0, n, max_points + 1).astype(np.int64)
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    counts = np.diff(edges)
    keep = counts > 0
    sx = np.add.reduceat(xs, edges[:-1][keep]) / counts[keep]
    sy = np.add.reduceat(ys, edges[:-1][keep]) / counts[keep]
    return sx.tolist(), sy.tolist()


@dataclass
class RunCurves:
    """The curves of one run, followed from its folder."""

    ws: Workspace
    run_id: str
    config: dict[str, Any] = field(default_factory=dict)
    epochs: dict[int, dict[str, float]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)  # eval/<set>/<metric> of the final evaluation
    problem: str | None = None  # the run folder cannot be read (broken): why

    def __post_init__(self) -> None:
        run_dir = self.ws.run_dir(self.run_id)
        self.follower = JobFollower(run_dir)
        self.step_tail = StepTail(run_dir)
        # the step log as columns (storage.steplog), in (epoch, step) order, each step once: appended to as steps
        # arrive in order (a poll then costs what it reads), sorted and deduplicated again (the last line of a
        # step wins) when a resumed epoch's redone steps come in
        self.columns: StepColumns = empty_columns()

    @property
    def state(self) -> RunState:
        return self.follower.state

    @property
    def progress(self) -> JobProgress:
        return self.follower.progress()

    @property
    def label(self) -> str:
        return run_label({"run_id": self.run_id, "name": self.config.get("name")})

    @property
    def summary(self) -> str:
        return run_summary(
            {
                "run_id": self.run_id,
                "name": self.config.get("name"),
                "trained_on": trained_on(self.config),
                "origin": origin(self.config) if self.config.get("selection") else None,
            }
        )

    @property
    def running(self) -> bool:
        return not self.state.finished and self.problem is None

    def poll(self) -> bool:
        """Read what the run appended since the last poll; True when anything changed."""
        run_dir = self.ws.run_dir(self.run_id)
        if not self.config:
            try:
                self.config = read_config(run_dir) or {}
            except BrokenRunError as exc:
                self.problem = exc.reason
                return True
        try:
            events = self.follower.poll()
        except OSError as exc:
            self.problem = f"cannot read events.jsonl: {exc.strerror or exc}"
            return True
        new = self.step_tail.read_new_columns()
        if len(new["step"]):
            self.columns = merge_steps(self.columns, new)
        for event in events:
            metrics = event.get("metrics")
            if not isinstance(metrics, dict):
                continue
            numbers = {
                k: float(v)
                for k, v in metrics.items()
                if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if event.get("type") == "epoch_end" and isinstance(event.get("epoch"), int):
                self.epochs[event["epoch"]] = numbers
            elif event.get("type") == "metrics":
                # an evaluation's example count is not a curve
                self.final.update(
                    {
                        k: v
                        for k, v in numbers.items()
                        if k.startswith(EVAL_PREFIX) and not k.endswith("/total")
                    }
                )
        return bool(events or len(new["step"]))

    # ---- the curves ----------------------------------------------------------------------------------

    @property
    def n_steps(self) -> int:
        return len(self.columns["step"])

    def step_curve(self, metric: str, max_points: int | None = None) -> Curve:
        """A per-step metric (loss, accuracy, lr) against epochs, binned to `max_points` (downsample); steps
        without the value are left out."""
        cols = self.columns
        y = cols[metric]
        x = cols["epoch"] + cols["step"] / np.where(np.isnan(cols["steps"]), cols["step"], cols["steps"])
        known = ~np.isnan(y)
        xs, ys = downsample(x[known], y[known], max_points if max_points is not None else len(x))
        return Curve(f"{self.label} {metric}/step", xs, ys)

    def epoch_metric_names(self) -> list[str]:
        """Per-epoch metrics in first-seen order, training before evaluation; with the final evaluation's."""
        names: list[str] = []
        for epoch in sorted(self.epochs):
            for name in self.epochs[epoch]:
                if name not in names and name not in NOT_CURVES:
                    names.append(name)
        names += [k for k in self.final if k not in names]
        return [n for n in names if not n.startswith(EVAL_PREFIX)] + [
            n for n in names if n.startswith(EVAL_PREFIX)
        ]

    def epoch_curve(self, metric: str) -> Curve:
        """A per-epoch metric at each epoch's end; an evaluation metric scored only after training is one point
        at the last epoch."""
        x = [float(e + 1) for e in sorted(self.epochs) if metric in self.epochs[e]]
        y = [self.epochs[e][metric] for e in sorted(self.epochs) if metric in self.epochs[e]]
        if not x and metric in self.final:
            last = max(self.epochs) + 1 if self.epochs else self.state.epochs_done
            x, y = [float(last)], [self.final[metric]]
        return Curve(f"{self.label} {metric}", x, y)

    def epoch_table(self) -> tuple[list[str], list[list[str]]]:
        """Per-epoch metrics as a table: columns (epoch, then each metric), one row per finished epoch (1-based),
        and the final evaluation's row when it was scored only after training."""
        names = self.epoch_metric_names()
        rows = []
        for epoch in sorted(self.epochs):
            values = self.epochs[epoch]
            rows.append([str(epoch + 1), *[_cell(values.get(n)) for n in names]])
        if any(n in self.final and not any(n in v for v in self.epochs.values()) for n in names):
            rows.append(["final", *[_cell(self.final.get(n)) for n in names]])
        return ["epoch", *[n.removeprefix(EVAL_PREFIX) for n in names]], rows


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


# ---- settings in which runs differ -----------------------------------------------------------------------

# config.json fields that are bookkeeping, or repeat another field (shown through it), not settings.
NOT_SETTINGS = ("run_id", "created_at", "artifacts", "label_names", "version", "is_pair", "n_train_examples")


def comparable_settings(config: dict[str, Any]) -> dict[str, str]:
    """A run's settings as text, for the table of differences: the evaluation sets by name, a selection as its
    origin ('ambiguous 33% of <run>'), a mitigation's summary as JSON."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if key in NOT_SETTINGS or value is None:
            continue
        if key == "eval_sets":
            key, value = "eval", [m.get("name") for m in value if isinstance(m, dict)]
        elif key == "selection":
            value = origin(config)
        if isinstance(value, (list, dict)):
            text = json.dumps(value, sort_keys=True, default=str) if value else ""
        else:
            text = str(value)
        if text:
            out[key] = text
    return out


def differing_settings(configs: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(setting, each run's value in the order of `configs`) for every setting on which the runs differ ('-' where
    a run does not have it); the name comes first when the runs have names."""
    settings = {run: comparable_settings(config) for run, config in configs.items()}
    keys: list[str] = []
    for found in settings.values():
        keys += [k for k in found if k not in keys]
    out = []
    for key in keys:
        values = [settings[run].get(key, "-") for run in configs]
        if len(set(values)) > 1:
            out.append((key, values))
    out.sort(key=lambda item: item[0] != "name")
    return out
