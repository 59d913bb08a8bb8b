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

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from storage.jsontext import dumps_json

STEP_FIELDS = ("epoch", "step", "steps", "loss", "accuracy", "lr")
# The columns as readers get them (StepTail.read_new_columns): integers for the key, float64 with NaN for null.
STEP_SCHEMA = pa.schema(
    [
        ("epoch", pa.int64()),
        ("step", pa.int64()),
        ("steps", pa.float64()),
        ("loss", pa.float64()),
        ("accuracy", pa.float64()),
        ("lr", pa.float64()),
    ]
)
StepColumns = dict[str, np.ndarray]


def empty_columns() -> StepColumns:
    return {f.name: np.empty(0, np.int64 if f.name in ("epoch", "step") else np.float64) for f in STEP_SCHEMA}


def rows_to_columns(rows: list[dict[str, Any]]) -> StepColumns:
    out = empty_columns()
    for name, empty in out.items():
        values = [row.get(name) for row in rows]
        if empty.dtype == np.int64:
            out[name] = np.array(values, dtype=np.int64)
        else:
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return out


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

    def _read_chunk(self) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return b""
        end = chunk.rfind(b"\n")
        if end < 0:
            return b""
        self.offset += end + 1
        return chunk[: end + 1]

    def read_new(self) -> list[dict[str, Any]]:
        return _parse_rows(self._read_chunk())

    def read_new_columns(self) -> StepColumns:
        """The new lines as columns (STEP_SCHEMA). A long log is parsed by Arrow's JSON reader in C++ (a 300k-step
        log in well under a second); a chunk with a torn or foreign line falls back to the line-by-line reader."""
        chunk = self._read_chunk()
        if not chunk:
            return empty_columns()
        try:
            table = pa_json.read_json(
                io.BytesIO(chunk),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=STEP_SCHEMA, unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return rows_to_columns(_parse_rows(chunk))
        cols = {
            f.name: table.column(f.name)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64 if f.name in ("epoch", "step") else np.float64)
            for f in STEP_SCHEMA
            if f.name not in ("epoch", "step")
        }
        epoch, step = table.column("epoch"), table.column("step")
        if epoch.null_count or step.null_count:  # a line without its key: not a step
            return rows_to_columns(_parse_rows(chunk))
        cols["epoch"], cols["step"] = epoch.to_numpy(), step.to_numpy()
        keep = (cols["epoch"] >= 0) & (cols["step"] >= 1)
        return {name: values[keep] for name, values in cols.items()}


def _parse_rows(chunk: bytes) -> list[dict[str, Any]]:
    rows = []
    for raw in chunk.splitlines():
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
