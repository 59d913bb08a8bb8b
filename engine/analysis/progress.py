"""A job's progress as its events say it: one follower and one reading of the numbers for every view.

A job writes `events.jsonl` (storage.artifacts); `JobFollower` tails it and folds each new event into a
`RunState`; `progress_of` turns a state (or a job listed by `engine.jobs.list_jobs`, which carries the same
fields) into the figures every view shows: overall fraction, step within the epoch, ETA, speed, loss. The CLI's
progress bar (`dynascope train`), the app's jobs screen and the home screen's job list draw these; how each draws
them is its own business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.artifacts import EventTail, RunState
from storage.workspace import Workspace


class JobFollower:
    """Follows one run's events: each `poll()` returns the events appended since the last call (complete lines
    only) and folds them into `state`, so a view never re-reads the whole file."""

    def __init__(self, run_dir: Path) -> None:
        self.tail = EventTail(run_dir)
        self.state = RunState()

    def poll(self) -> list[dict[str, Any]]:
        events = self.tail.read_new()
        for event in events:
            self.state.apply(event)
        return events

    def progress(self) -> JobProgress:
        return progress_of(self.state)


@dataclass(frozen=True)
class JobProgress:
    """What a job's events say about how far it is. `epoch` is the epoch in progress (0-based), `step` of
    `total` steps within it; `n_epochs` the epochs (or evaluation sets) the job has in all."""

    status: str
    epochs_done: int
    n_epochs: int | None
    epoch: int
    step: int
    total: int | None
    eta_s: float | None = None
    examples_per_s: float | None = None
    loss: float | None = None
    unit: str = "epoch"  # what the job counts through: epochs, or (evaluate) evaluation sets

    @property
    def epoch_fraction(self) -> float | None:
        """The share of the current epoch done, or None before the first progress event."""
        return float(self.step) / float(self.total) if self.total else None

    @property
    def fraction(self) -> float:
        """Overall progress in [0, 1]: finished epochs plus, while it runs, the current epoch's share (1 when
        done). A job that stopped keeps only its complete epochs (a resume starts from the last one)."""
        if self.status == "done":
            return 1.0
        if not self.n_epochs:
            return 0.0
        within = 0.0
        if self.status == "running" and self.total and self.epoch >= self.complete:
            within = min(1.0, float(self.step) / float(self.total))
        return min(1.0, (self.complete + within) / self.n_epochs)

    @property
    def complete(self) -> int:
        """The epochs (or sets) complete: those with an `epoch_end`, and while it runs every one before the epoch
        in progress (a job that writes no `epoch_end`, evaluate, counts by its progress alone)."""
        if self.status in ("starting", "running"):
            return max(self.epochs_done, self.epoch)
        return self.epochs_done

    @property
    def epoch_number(self) -> int:
        """The epoch this progress is about, 1-based: the one in progress while the job starts or runs, else the
        last complete one (0 before any)."""
        if self.status == "done" and self.n_epochs:
            return self.n_epochs
        current = self.complete + 1 if self.status in ("starting", "running") else self.complete
        return min(current, self.n_epochs) if self.n_epochs else current

    @property
    def label(self) -> str:
        """The one way every view writes a job's progress: `epoch i/n  p%` (i 1-based, as `epoch_number`; p the
        overall share, rounded down so 100% means done)."""
        return f"{self.unit} {self.epoch_number}/{self.n_epochs or '?'}  {int(100.0 * self.fraction)}%"

    def steps(self, n_epochs: int | None = None) -> tuple[int, int]:
        """(steps done, steps in all) over every epoch, for a bar that counts steps."""
        per_epoch = self.total or 1
        n = n_epochs or self.n_epochs or 1
        return self.epoch * per_epoch + self.step, per_epoch * n


def progress_of(job: RunState | dict[str, Any]) -> JobProgress:
    """The progress figures of a folded `RunState`, or of a job as `engine.jobs.list_jobs` lists it."""
    if isinstance(job, RunState):
        status, done, n_epochs, prog = job.status, job.epochs_done, job.n_epochs, job.progress
    else:
        status = job.get("status") or "created"
        done, n_epochs, prog = job.get("epochs_done") or 0, job.get("n_epochs"), job.get("progress") or {}
    n_epochs = n_epochs or prog.get(
        "n_epochs"
    )  # a job without epochs (evaluate) says how many in its progress
    return JobProgress(
        status=str(status),
        epochs_done=int(done or 0),
        n_epochs=int(n_epochs) if n_epochs else None,
        epoch=int(prog.get("epoch", done) or 0),
        step=int(prog.get("step", 0) or 0),
        total=int(prog["total"]) if prog.get("total") else None,
        eta_s=prog.get("eta_s"),
        examples_per_s=prog.get("examples_per_s"),
        loss=prog.get("loss"),
        unit=str(prog.get("unit") or "epoch"),
    )


def progress_label(job: RunState | dict[str, Any]) -> str:
    """`epoch i/n  p%` of a job (a `RunState`, or a job as `engine.jobs.list_jobs` lists it): home, the jobs
    screen and the `jobs` / `runs` commands all show this."""
    return progress_of(job).label


def workspace_fingerprint(ws: Workspace) -> tuple[tuple[str, int, int], ...]:
    """Size and mtime of every events.jsonl and config.json and the catalog: cheap to poll, changes when a job or
    CLI writes (or a run folder breaks or is mended)."""
    found = []
    runs = [ws.run_dir(r) for r in ws.run_ids()]
    paths = [d / "events.jsonl" for d in runs] + [d / "config.json" for d in runs] + [ws.catalog_path]
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        found.append((path.as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(found)
