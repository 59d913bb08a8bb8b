"""A job's progress as its events say it: one follower and one reading of the numbers for every view.

A job writes `events.jsonl` (storage.artifacts); `JobFollower` tails it and folds each new event into a
`RunState`; `progress_of` turns a state (or a job listed by `engine.jobs.list_jobs`, which carries the same
fields) into the figures every view shows: overall fraction, step within the epoch, ETA, speed, loss; and, for a
generate job, `JobFollower.generation()` its `GenerationFigures` (items, accepted, rejected and failed by reason,
requests, cache hits, tokens). The CLI's progress bar (`dynascope train`), the app's jobs screen and the home
screen's job list draw these; how each draws them is its own business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage.artifacts import BrokenRunError, EventTail, RunState
from storage.generated import read_generated_summary
from storage.workspace import Workspace

# A generated dataset's summary counts a request that failed for good as a rejected record `request:<reason>`.
REQUEST_FAILED = "request:"


class JobFollower:
    """Follows one run's events: each `poll()` returns the events appended since the last call (complete lines
    only) and folds them into `state`, so a view never re-reads the whole file."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.tail = EventTail(run_dir)
        self.state = RunState()
        # a generate job's counts: the `generation` of its last progress event (RunState keeps flat values only)
        self.generation_counts: dict[str, Any] | None = None
        self.generated_summary: dict[str, Any] | None = None

    def poll(self) -> list[dict[str, Any]]:
        events = self.tail.read_new()
        for event in events:
            self.state.apply(event)
            if event.get("type") == "progress" and isinstance(event.get("generation"), dict):
                self.generation_counts = event["generation"]
        return events

    def progress(self) -> JobProgress:
        return progress_of(self.state)

    def generation(self) -> GenerationFigures | None:
        """A generate job's figures (None for any other job, or one with nothing to show yet). Once the job is
        done, the summary of the dataset it wrote is read (once) and its counts are the final ones."""
        if self.generated_summary is None and self.state.status == "done":
            try:
                self.generated_summary = read_generated_summary(self.run_dir)
            except BrokenRunError:  # the jobs listing says the run is broken, and why
                self.generated_summary = None
        return generation_of(self.state, self.generation_counts, self.generated_summary)


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
    unit: str = (
        "epoch"  # what the job counts through: epochs, (evaluate) evaluation sets, or (generate) items
    )

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
        overall share, rounded down so 100% means done); a job that counts items in one pass (generate) writes
        `items d/t  p%`."""
        if self.unit == "item":
            done = self.total if self.status == "done" else self.step
            return f"items {done}/{self.total or '?'}  {int(100.0 * self.fraction)}%"
        return f"{self.unit} {self.epoch_number}/{self.n_epochs or '?'}  {int(100.0 * self.fraction)}%"

    def steps(self, n_epochs: int | None = None) -> tuple[int, int]:
        """(steps done, steps in all) over every epoch, for a bar that counts steps."""
        per_epoch = self.total or 1
        n = n_epochs or self.n_epochs or 1
        return self.epoch * per_epoch + self.step, per_epoch * n


def _counts(value: Any) -> dict[str, int]:
    """A {reason: count} mapping from an event or a summary, ignoring what is not one (a hand-edited line)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class GenerationFigures:
    """What a generate job has done: source items handled of all (`done` / `total`: answered, or failed for good
    after the client's retries), examples accepted, rejected by reason, requests that failed for good by reason,
    and the client's usage (network requests, cache hits, tokens; None for a pipeline that asks no LLM: blend,
    round-trip). `final`: the counts are the written dataset's (generated/summary.json), which also count a check
    after generation (augment-region's label check)."""

    done: int
    total: int | None
    accepted: int
    rejected: dict[str, int]
    failed: dict[str, int]
    requests: int | None = None
    cache_hits: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    final: bool = False

    @property
    def tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


def generation_of(
    state: RunState, counts: dict[str, Any] | None, summary: dict[str, Any] | None
) -> GenerationFigures | None:
    """The figures of a generate job from its last progress event's `generation` counts (engine.jobs.generate's
    Progress: done, accepted, rejected, failed, and the client's usage) and, once written, its dataset's
    summary, whose accepted and rejected counts are final (a failed request is a rejected `request:<reason>`
    record there)."""
    if counts is None and summary is None:
        return None
    counts = counts or {}
    prog = state.progress
    total = _count(prog.get("total"))
    accepted = _count(counts.get("accepted")) or 0
    rejected, failed = _counts(counts.get("rejected")), _counts(counts.get("failed"))
    answered = _count(counts.get("done"))  # items whose request succeeded; a failed one is handled too
    done = None if answered is None else answered + sum(failed.values())
    if summary is not None:
        accepted = _count(summary.get("accepted")) or 0
        every = _counts(summary.get("rejected"))
        rejected = {k: v for k, v in every.items() if not k.startswith(REQUEST_FAILED)}
        failed = {k.removeprefix(REQUEST_FAILED): v for k, v in every.items() if k.startswith(REQUEST_FAILED)}
        total = _count(summary.get("sources")) or total
        if done is None:  # an offline pipeline (blend, round-trip): every source was handled
            done = total
    return GenerationFigures(
        done=done if done is not None else _count(prog.get("step")) or 0,
        total=total,
        accepted=accepted,
        rejected=rejected,
        failed=failed,
        requests=_count(counts.get("requests")),
        cache_hits=_count(counts.get("cache_hits")),
        prompt_tokens=_count(counts.get("prompt_tokens")),
        completion_tokens=_count(counts.get("completion_tokens")),
        final=summary is not None,
    )


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
