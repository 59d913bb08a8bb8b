"""The per-step training log of a run: `runs/<id>/steps.jsonl`, one line per optimizer micro-step of rank 0.

Each line: epoch (0-based), step (1-based within the epoch), steps (the epoch's step count), loss (the batch's mean
training loss), accuracy (the share of the batch predicted correctly, when the step's records were computed:
inline dynamics; else null) and lr. The trainer buffers lines and writes them in one O_APPEND write at most about
once a second (like `events.jsonl`, so a reader never sees half a line of a batch) and at each epoch's end.

Resumable: a resumed run redoes the epoch it was in, so the log may hold a step twice; readers keep the last line
of each (epoch, step), which is the redone one. The job writes this file; nothing else does (the catalog never
holds it: live views read it directly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storage.jsontext import dumps_json

STEP_FIELDS = ("epoch", "step", "steps", "loss", "accuracy", "lr")


def steps_path(run_dir: Path) -> Path:
    return run_dir / "steps.jsonl"


def append_steps(run_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append step rows in one write (O_APPEND: concurrent appends never interleave within it)."""
    if not rows:
        return
    data = "".join(dumps_json({k: row.get(k) for k in STEP_FIELDS}) + "\n" for row in rows).encode()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(steps_path(run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _valid(row: Any) -> bool:
    if not isinstance(row, dict):
        return False
    epoch, step = row.get("epoch"), row.get("step")
    if not (isinstance(epoch, int) and isinstance(step, int) and epoch >= 0 and step >= 1):
        return False
    return all(
        row.get(k) is None or (isinstance(row[k], (int, float)) and not isinstance(row[k], bool))
        for k in ("steps", "loss", "accuracy", "lr")
    )


class StepTail:
    """Follows a run's step log: `read_new()` returns the complete, valid lines added since the last call (a
    partial last line, a writer mid-write, waits for the next call; a torn or foreign line is skipped)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = steps_path(run_dir)
        self.offset = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        for raw in chunk[: end + 1].splitlines():
            try:
                row = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if _valid(row):
                rows.append(row)
        return rows


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The run's steps in training order, the last line of each (epoch, step) kept (see the module's note)."""
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for row in StepTail(run_dir).read_new():
        latest[(row["epoch"], row["step"])] = row
    return [latest[k] for k in sorted(latest)]
