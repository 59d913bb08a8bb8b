"""Run-folder artifacts: atomic Parquet shards, the append-only events log, and the immutable job spec.

A file becomes visible only under its final name, after it was written whole (temp name + rename), so a crash
mid-write never leaves a half file where a reader would find it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SHARD_RE = re.compile(r"epoch=(\d+)/rank=(\d+)\.parquet$")
TERMINAL_STATES = ("done", "failed", "cancelled")


def _temp_name(path: Path) -> Path:
    # A leading dot and a non-.parquet suffix: globs for *.parquet never see it.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def dynamics_dir(run_dir: Path) -> Path:
    return run_dir / "dynamics"


def shard_path(run_dir: Path, epoch: int, rank: int) -> Path:
    return dynamics_dir(run_dir) / f"epoch={epoch:03d}" / f"rank={rank}.parquet"


def write_shard(run_dir: Path, epoch: int, rank: int, table: pa.Table) -> Path:
    path = shard_path(run_dir, epoch, rank)
    write_parquet_atomic(table, path)
    return path


def list_shards(run_dir: Path) -> list[tuple[int, int, Path]]:
    """(epoch, rank, path) of every complete shard, in order; temp files are not shards."""
    found = []
    for path in dynamics_dir(run_dir).glob("epoch=*/rank=*.parquet"):
        match = SHARD_RE.search(path.as_posix())
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    return sorted(found)


def shard_glob(run_dir: Path) -> str:
    """A `read_parquet` glob over the complete shards of a run (live views read these directly)."""
    return (dynamics_dir(run_dir) / "epoch=*" / "rank=*.parquet").as_posix()


def shard_scan_sql(run_dir: Path) -> str:
    """`read_parquet` over a run's complete shards. Hive partitioning is off: the folder name `epoch=NNN`
    would otherwise shadow the integer `epoch` column with a string."""
    glob = shard_glob(run_dir).replace("'", "''")
    return f"read_parquet('{glob}', hive_partitioning = false, union_by_name = true)"


# ---- config.json ---------------------------------------------------------------------------------------


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run_dir / "config.json", config)


def read_config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


# ---- events.jsonl --------------------------------------------------------------------------------------


def events_path(run_dir: Path) -> Path:
    return run_dir / "events.jsonl"


def append_event(run_dir: Path, type: str, **fields: Any) -> dict[str, Any]:
    """Append one event as one line, written with a single O_APPEND write so concurrent writers never
    interleave within a line. State changes are fsynced: they decide what a resumed run does."""
    event = {"ts": time.time(), "type": type, **fields}
    line = (json.dumps(event, default=str) + "\n").encode()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(events_path(run_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        if type in ("state", "epoch_end"):
            os.fsync(fd)
    finally:
        os.close(fd)
    return event


class EventTail:
    """Follows an events file: each `read_new()` returns the complete lines added since the last call.

    A partial last line (a writer mid-write) is left for the next call.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = events_path(run_dir)
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
        events = []
        for raw in chunk[: end + 1].splitlines():
            if raw.strip():
                try:
                    events.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue  # a torn line from a killed writer; the next line is whole again
        return events


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return EventTail(run_dir).read_new()


@dataclass
class RunState:
    """What the events of a run say about it, folded in order."""

    status: str = "created"
    epochs_done: int = 0
    n_epochs: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    pid: int | None = None
    last_ts: float | None = None
    finished_at: float | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATES

    def apply(self, event: dict[str, Any]) -> None:
        self.last_ts = event.get("ts", self.last_ts)
        kind = event.get("type")
        if kind == "state":
            self.status = event.get("status", self.status)
            self.message = event.get("message", self.message)
            self.pid = event.get("pid", self.pid)
            if "n_epochs" in event:
                self.n_epochs = event["n_epochs"]
            if self.status in TERMINAL_STATES:
                self.finished_at = event.get("ts")
        elif kind == "epoch_end":
            self.epochs_done = max(self.epochs_done, int(event.get("epoch", 0)) + 1)
            self.metrics.update(event.get("metrics", {}))
        elif kind == "progress":
            self.progress = {k: v for k, v in event.items() if k not in ("ts", "type")}
        elif kind == "metrics":
            self.metrics.update(event.get("metrics", {}))
        elif kind == "log":
            self.logs = (self.logs + [str(event.get("message", ""))])[-50:]


def pid_alive(pid: int | None, run_id: str | None = None) -> bool:
    """The process exists, is not a zombie, and (where /proc tells) is this run's job, not a reused pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            if run_id and run_id.encode() not in (proc / "cmdline").read_bytes():
                return False
        except (OSError, IndexError):
            return False
    return True


def fold_events(events: list[dict[str, Any]]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state


def run_state(run_dir: Path) -> RunState:
    return fold_events(read_events(run_dir))


def eval_dir(run_dir: Path) -> Path:
    return run_dir / "eval"


def list_eval_files(run_dir: Path) -> Iterator[tuple[str, Path]]:
    """(eval set, predictions parquet) for each evaluation whose summary was written (the summary comes last)."""
    folder = eval_dir(run_dir)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.parquet")):
        if path.with_suffix(".json").is_file():
            yield path.stem, path
