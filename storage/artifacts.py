"""Run-folder artifacts: atomic Parquet shards, the append-only events log, and the immutable job spec.

A file becomes visible only under its final name, after it was written whole (temp name + rename), so a crash
mid-write never leaves a half file where a reader would find it.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from storage.jsontext import dumps_json

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow (and numpy with it) is imported by the functions that use it: a command that only reads the catalog
# (`dynascope metrics`) then starts without it, a tenth of a second sooner.

SHARD_RE = re.compile(r"epoch=(\d+)/rank=(\d+)\.parquet$")
TERMINAL_STATES = ("done", "failed", "cancelled")
# What a job may leave in its run folder for sync to fold into the catalog (a job kind names its own, and its
# config.json lists them): per-epoch dynamics shards, evaluation files (eval/<set>.parquet + .json), and an attack's
# per-example results (attack/results.parquet + attack/summary.json), a generate job's new dataset
# (generated/examples.parquet + generated/records.parquet + generated/summary.json).
ARTIFACT_KINDS = ("dynamics", "eval", "attack", "generated")


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


def write_new_file(path: Path, data: bytes) -> Path:
    """Write `data` whole under `path`, or, when that name is taken, under `<stem>-2<suffix>`, `-3`, ...: an
    existing file is never overwritten (a hard link of the finished temp file claims the name atomically, so two
    writers at the same moment get two names). Returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        for n in range(1, 10_000):
            candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
            try:
                os.link(tmp, candidate)
                return candidate
            except FileExistsError:
                continue
        raise FileExistsError(f"{path}: no free name left beside it")
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write a JSON document (NaN and infinities as null: other programs read these files)."""
    write_atomic_bytes(path, (dumps_json(obj, indent=2, sort_keys=True) + "\n").encode())


def write_parquet_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    pq.write_table(table, tmp, compression=options.pop("compression", "zstd"), **options)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---- dynamics shards -----------------------------------------------------------------------------------
#
# The logical dynamics row (storage.metrics.DYNAMICS_COLUMNS: epoch, rank, example_id string, DOUBLE values, ...)
# is stored compactly. A shard holds `example_idx` (INTEGER), the example's position in the run's id list
# `dynamics/ids.parquet` (example_idx, example_id), instead of the id string; its rows are sorted by that index
# (delta-encoded, it then costs almost nothing, and a lookup of one example reads one row group); every
# floating-point column is stored as float32, the precision the model's logits carry (byte-stream-split encoded,
# which zstd compresses better). Metrics group by the integer and join the ids once, at the end.
#
# Shards written before this layout hold `example_id` strings and float64 values and no ids file; the readers
# (shard_view_sql, storage.metrics) take both layouts, also mixed in one run (a run resumed across the upgrade).

IDS_FILE = "ids.parquet"
SHARD_KEY = "example_idx"


def dynamics_dir(run_dir: Path) -> Path:
    return run_dir / "dynamics"


def shard_path(run_dir: Path, epoch: int, rank: int) -> Path:
    return dynamics_dir(run_dir) / f"epoch={epoch:03d}" / f"rank={rank}.parquet"


def ids_path(run_dir: Path) -> Path:
    """The run's id list: row i holds example_idx i and its example_id."""
    return dynamics_dir(run_dir) / IDS_FILE


def ids_path_of_shard(path: Path) -> Path:
    """The id list that the shard `.../dynamics/epoch=NNN/rank=R.parquet` indexes into."""
    return path.parent.parent / IDS_FILE


def read_example_ids(run_dir: Path) -> pa.Array | None:
    """The run's example ids in index order (a string array), or None when the run has no id list."""
    import pyarrow.parquet as pq

    path = ids_path(run_dir)
    if not path.is_file():
        return None
    # ParquetFile.read: pq.read_table would import pandas (a third of a second) to look for its metadata
    return pq.ParquetFile(path).read(columns=["example_id"]).column("example_id").combine_chunks()


def _string_array(ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not isinstance(ids, pa.Array):
        ids = pa.array(ids, pa.string())
    return pc.cast(ids, pa.string()) if ids.type != pa.string() else ids


def _range(n: int) -> pa.Array:
    """int32 0..n-1. From the buffer: `pa.array` would import pandas (a third of a second) to check its input."""
    import numpy as np
    import pyarrow as pa

    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(np.arange(n, dtype=np.int32))])


def register_example_ids(run_dir: Path, ids: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Make sure the run's id list holds every id of `ids`; returns the whole list, in index order.

    Ids already listed keep their index and new ones are appended in their order, so an index never changes
    once a shard uses it. Ranks of one run may call this at the same time as long as each passes the run's
    whole example list, in the same order (the trainer does): they then write identical files (temp + rename).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    given = _string_array(ids)
    existing = read_example_ids(run_dir)
    if existing is not None and existing.equals(given):  # the usual case: the same whole list again
        return existing
    wanted = pc.unique(given)  # in order of first occurrence
    if existing is not None:
        new = pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=existing)))
        if not len(new):
            return existing
        wanted = pa.concat_arrays([existing, new])
    n = len(wanted)
    if n >= 2**31:
        raise ValueError(f"{n} examples: the shard index is a 32-bit integer")
    table = pa.table({SHARD_KEY: _range(n), "example_id": wanted})
    write_parquet_atomic(
        table, ids_path(run_dir), use_dictionary=False, column_encoding={SHARD_KEY: "DELTA_BINARY_PACKED"}
    )
    return wanted


def compact_shard(
    run_dir: Path, table: pa.Table, example_ids: Sequence[str] | pa.Array | None = None
) -> pa.Table:
    """The stored form of a shard table: `example_id` strings become `example_idx` (registering them in the
    run's id list, seeded with `example_ids`, the run's whole example list, when given), floats become float32,
    and rows are sorted by the index. A table that has `example_idx` already is only cast and sorted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if SHARD_KEY not in table.column_names:
        ids = _string_array(table.column("example_id"))
        known = register_example_ids(run_dir, example_ids if example_ids is not None else ids)
        index = pc.index_in(ids, value_set=known)
        if index.null_count:  # ids outside the given list: append them
            known = register_example_ids(run_dir, ids)
            index = pc.index_in(ids, value_set=known)
        pos = table.column_names.index("example_id")
        table = table.remove_column(pos).add_column(pos, SHARD_KEY, index.cast(pa.int32()))
    fields = []
    for f in table.schema:
        if pa.types.is_floating(f.type):
            fields.append(pa.field(f.name, pa.float32()))
        elif f.name in ("epoch", "rank", SHARD_KEY):
            fields.append(pa.field(f.name, pa.int32()))
        else:
            fields.append(f)
    table = table.cast(pa.schema(fields))
    return table.take(pc.sort_indices(table.column(SHARD_KEY)))


def _shard_options(table: pa.Table) -> dict[str, Any]:
    import pyarrow as pa

    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    encoding = {name: "BYTE_STREAM_SPLIT" for name in floats}
    if SHARD_KEY in table.column_names:
        encoding[SHARD_KEY] = "DELTA_BINARY_PACKED"
    plain = set(encoding)
    return {
        "use_dictionary": [f.name for f in table.schema if f.name not in plain],
        "column_encoding": encoding,
    }


def write_shard(
    run_dir: Path,
    epoch: int,
    rank: int,
    table: pa.Table,
    example_ids: Sequence[str] | pa.Array | None = None,
) -> Path:
    """Write one rank's shard of one epoch (temp name + rename) in the compact layout (see compact_shard)."""
    table = compact_shard(run_dir, table, example_ids)
    path = shard_path(run_dir, epoch, rank)
    write_parquet_atomic(table, path, **_shard_options(table))
    return path


# The same layout written by DuckDB from a query (an import computes its shards in SQL): COPY to a temp name, then
# rename. Parquet format version 2 gives the encodings chosen above (delta for the index, byte-stream-split for the
# floats; dictionaries for the other columns).
_COPY_OPTIONS = "FORMAT parquet, COMPRESSION zstd, PARQUET_VERSION V2"


def _copy_atomic(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    con.execute(f"COPY ({sql}) TO {sql_path(tmp)} ({_COPY_OPTIONS})")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def copy_example_ids(con: duckdb.DuckDBPyConnection, sql: str, run_dir: Path) -> None:
    """Write a new run's id list from a query of (example_idx, example_id) rows, indexes 0..n-1 (the run has no
    list yet: register_example_ids extends one)."""
    if ids_path(run_dir).exists():
        raise FileExistsError(f"{ids_path(run_dir)}: the run has an id list already")
    _copy_atomic(
        con,
        f"SELECT {SHARD_KEY}::INTEGER AS {SHARD_KEY}, example_id::VARCHAR AS example_id FROM ({sql}) "
        f"ORDER BY {SHARD_KEY}",
        ids_path(run_dir),
    )


def copy_shard(con: duckdb.DuckDBPyConnection, sql: str, run_dir: Path, epoch: int, rank: int) -> Path:
    """Write one rank's shard of one epoch from a query whose rows carry `example_idx` (indexes into the run's id
    list) and the other dynamics columns, in the compact layout of compact_shard: epoch, rank and the index as
    INTEGER, floating point as FLOAT, rows sorted by the index."""
    select = []
    for name, dtype, *_ in con.execute(f"DESCRIBE ({sql})").fetchall():
        quoted = '"' + name.replace('"', '""') + '"'
        if name in ("epoch", "rank", SHARD_KEY):
            select.append(f"{quoted}::INTEGER AS {quoted}")
        elif dtype in ("DOUBLE", "FLOAT"):
            select.append(f"{quoted}::FLOAT AS {quoted}")
        else:
            select.append(quoted)
    path = shard_path(run_dir, epoch, rank)
    _copy_atomic(con, f"SELECT {', '.join(select)} FROM ({sql}) ORDER BY {SHARD_KEY}", path)
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
    """A `read_parquet` glob over the complete shards of a run (their stored layout, see above)."""
    return (dynamics_dir(run_dir) / "epoch=*" / "rank=*.parquet").as_posix()


def sql_path(path: Path | str) -> str:
    """A path as a quoted SQL string literal."""
    text = path.as_posix() if isinstance(path, Path) else path
    return "'" + text.replace("'", "''") + "'"


def parquet_sql(paths: Sequence[Path]) -> str:
    """`read_parquet` over the given shards in their stored layout. Hive partitioning is off: the folder name
    `epoch=NNN` would otherwise shadow the integer `epoch` column with a string."""
    quoted = ", ".join(sql_path(p) for p in paths)
    return f"read_parquet([{quoted}], union_by_name = true, hive_partitioning = false)"


def shard_schema(paths: Sequence[Path]) -> dict[str, pa.DataType]:
    """The union of the shards' columns (name -> stored type; the first shard's type where they differ)."""
    import pyarrow.parquet as pq

    columns: dict[str, pa.DataType] = {}
    for path in paths:
        for f in pq.read_schema(path):
            columns.setdefault(f.name, f.type)
    return columns


def shard_view_sql(paths: Sequence[Path], columns: dict[str, pa.DataType] | None = None) -> str:
    """A relation over the given shards with the logical dynamics columns (example_id string, DOUBLE values),
    whichever layout they were written in. `columns` is `shard_schema(paths)` when the caller has it."""
    import pyarrow as pa

    columns = shard_schema(paths) if columns is None else columns
    compact, legacy = SHARD_KEY in columns, "example_id" in columns
    src = parquet_sql(paths)
    if not compact:
        return src
    ids = f"read_parquet({sql_path(ids_path_of_shard(paths[0]))})"
    if legacy:  # a run resumed across the upgrade: both layouts
        key, join = "coalesce(s.example_id, i.example_id)", "LEFT JOIN"
    else:  # a lookup's filter on the id reaches the ids scan: the join's build side is one row
        key, join = "i.example_id", "JOIN"
    select = ["s.epoch", "s.rank", f"{key} AS example_id"]
    for name, dtype in columns.items():
        if name in ("epoch", "rank", "example_id", SHARD_KEY):
            continue
        quoted = '"' + name.replace('"', '""') + '"'
        select.append(f"s.{quoted}::DOUBLE AS {quoted}" if pa.types.is_floating(dtype) else f"s.{quoted}")
    return f"(SELECT {', '.join(select)} FROM {src} s {join} {ids} i ON i.{SHARD_KEY} = s.{SHARD_KEY})"


def shard_scan_sql(run_dir: Path) -> str:
    """A relation over a run's complete shards, as of now, with the logical dynamics columns (example_id string,
    DOUBLE values) whichever layout they were written in (live views read these)."""
    paths = [p for _, _, p in list_shards(run_dir)]
    if not paths:
        return (
            f"read_parquet({sql_path(shard_glob(run_dir))}, hive_partitioning = false, union_by_name = true)"
        )
    return shard_view_sql(paths)


# ---- config.json ---------------------------------------------------------------------------------------


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json_atomic(run_dir / "config.json", config)


BROKEN = "broken"  # the status listings give a run folder that sync cannot read (see BrokenRunError)


class BrokenRunError(ValueError):
    """A run folder that cannot be used as it is: its config.json is unreadable, not JSON, not a JSON object, or
    has a field of the wrong type (or its events log cannot be read). Sync skips such a run and the listings show
    it with status `broken` and `reason`; the user fixes or removes the folder."""

    def __init__(self, run_dir: Path, reason: str) -> None:
        super().__init__(f"run '{run_dir.name}' is broken: {reason} (fix or remove {run_dir})")
        self.run_id = run_dir.name
        self.reason = reason


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _is_timestamp(value: Any) -> bool:  # seconds since the epoch, within what a datetime can hold
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 2.5e11


def _is_selection(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("run_id"), str)
        and isinstance(value.get("region"), str)
        and all(
            value.get(k) is None or (isinstance(value[k], (int, float)) and not isinstance(value[k], bool))
            for k in ("fraction", "seed")
        )
    )


# The fields of config.json that sync and the listings read (each kind's own fields are its spec's business):
# name -> (what it must be, the check). A field may be absent or null, except `kind`.
CONFIG_FIELDS: dict[str, tuple[str, Any]] = {
    "kind": ("a non-empty string", lambda v: isinstance(v, str) and v != ""),
    "dataset": ("a string", lambda v: isinstance(v, str)),
    "model": ("a string", lambda v: isinstance(v, str)),
    "subset": ("a string", lambda v: isinstance(v, str)),
    "source_run": ("a string", lambda v: isinstance(v, str)),
    "epochs": ("a whole number of epochs", _is_count),
    "el2n_epoch": ("a whole number (an epoch)", _is_count),
    "created_at": ("a time stamp in seconds", _is_timestamp),
    "artifacts": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "selection": ("an object with run_id and region", _is_selection),
}


def config_problem(config: Any) -> str | None:
    """What is wrong with a parsed config.json for sync and the listings, or None when it can be used."""
    if not isinstance(config, dict):
        return f"config.json holds a JSON {type(config).__name__.replace('NoneType', 'null')}, not an object"
    for name, (what, check) in CONFIG_FIELDS.items():
        if name not in config or (config[name] is None and name != "kind"):
            continue
        if not check(config[name]):
            return f"config.json: '{name}' must be {what}, got {json.dumps(config[name], default=str)[:80]}"
    return None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's job spec; None while it is missing (the launcher writes it last: a folder still being created).

    Raises BrokenRunError, with the reason, for a config.json that is there but cannot be used."""
    path = run_dir / "config.json"
    if not path.is_file():
        if os.path.lexists(path):
            raise BrokenRunError(run_dir, "config.json is not a regular file")
        return None
    try:
        config = json.loads(path.read_bytes())
    except OSError as exc:
        raise BrokenRunError(run_dir, f"cannot read config.json: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise BrokenRunError(
            run_dir, f"config.json is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8; nested too deeply to parse
        raise BrokenRunError(run_dir, f"config.json is not valid JSON ({type(exc).__name__}: {exc})") from exc
    problem = config_problem(config)
    if problem:
        raise BrokenRunError(run_dir, problem)
    return config  # type: ignore[no-any-return]


# ---- events.jsonl --------------------------------------------------------------------------------------


def events_path(run_dir: Path) -> Path:
    return run_dir / "events.jsonl"


def append_event(run_dir: Path, type: str, **fields: Any) -> dict[str, Any]:
    """Append one event as one line, written with a single O_APPEND write so concurrent writers never
    interleave within a line. State changes are fsynced: they decide what a resumed run does."""
    event = {"ts": time.time(), "type": type, **fields}
    line = (dumps_json(event, default=str) + "\n").encode()
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
                    event = json.loads(raw)
                except (ValueError, RecursionError):  # JSONDecodeError, or bytes that are not UTF-8
                    continue  # a torn line from a killed writer; the next line is whole again
                if isinstance(event, dict):  # any other JSON value is not an event: skipped like a torn line
                    events.append(event)
        return events


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    return EventTail(run_dir).read_new()


# Progress fields that readers do arithmetic with (engine.analysis.progress): numbers or null, nothing else.
PROGRESS_NUMBERS = ("epoch", "step", "total", "eta_s", "examples_per_s", "loss")


def _is_number(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    )


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
    # the last state event is the launcher's (`launched_by`): the job process has not announced itself yet
    launching: bool = False

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATES

    def apply(self, event: dict[str, Any]) -> None:
        # A value of the wrong type (a hand-edited or foreign line) is ignored, field by field, like a torn line:
        # the log is the job's own record and one odd line must not stop a listing.
        ts = event.get("ts")
        if _is_timestamp(ts):
            self.last_ts = ts
        kind = event.get("type")
        if kind == "state":
            if isinstance(event.get("status"), str):
                self.status = event["status"]
            self.launching = "launched_by" in event
            if "message" in event:
                message = event["message"]
                self.message = None if message is None else str(message)
            if "pid" in event and (event["pid"] is None or _is_count(event["pid"])):
                self.pid = event["pid"]
            if "n_epochs" in event and (event["n_epochs"] is None or _is_count(event["n_epochs"])):
                self.n_epochs = event["n_epochs"]
            if self.status in TERMINAL_STATES:
                self.finished_at = ts if _is_timestamp(ts) else None
        elif kind == "epoch_end":
            if _is_count(event.get("epoch", 0)):
                self.epochs_done = max(self.epochs_done, int(event.get("epoch", 0)) + 1)
            if isinstance(event.get("metrics"), dict):
                self.metrics.update(event["metrics"])
        elif kind == "progress":
            self.progress = {
                k: v
                for k, v in event.items()
                if k not in ("ts", "type")
                and (v is None or isinstance(v, (int, float, str)))
                and not (k in PROGRESS_NUMBERS and not _is_number(v))
            }
        elif kind == "metrics":
            if isinstance(event.get("metrics"), dict):
                self.metrics.update(event["metrics"])
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
    """The run's state from its events (none yet: `created`). BrokenRunError when the log cannot be read."""
    try:
        return fold_events(read_events(run_dir))
    except OSError as exc:  # unreadable, or not a file
        raise BrokenRunError(run_dir, f"cannot read events.jsonl: {exc.strerror or exc}") from exc


def read_eval_summary(run_dir: Path, path: Path) -> dict[str, Any]:
    """An evaluation's summary (eval/<set>.json: n_examples, metrics); BrokenRunError when it cannot be used."""
    rel = path.relative_to(run_dir).as_posix()
    try:
        summary = json.loads(path.read_bytes())
    except OSError as exc:
        raise BrokenRunError(run_dir, f"cannot read {rel}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise BrokenRunError(run_dir, f"{rel} is not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise BrokenRunError(run_dir, f"{rel} holds a JSON {type(summary).__name__}, not an object")
    if summary.get("n_examples") is not None and not _is_count(summary["n_examples"]):
        raise BrokenRunError(run_dir, f"{rel}: 'n_examples' must be a whole number")
    if summary.get("metrics") is not None and not isinstance(summary["metrics"], dict):
        raise BrokenRunError(run_dir, f"{rel}: 'metrics' must be an object")
    return summary


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


# ---- attack results ------------------------------------------------------------------------------------
#
# An attack job (engine.jobs.attack) writes its per-example rows in parts while it runs (attack/parts/*.parquet,
# each atomic: a resumed job skips the examples they hold), then the whole table as attack/results.parquet and
# the summary attack/summary.json last: sync registers an attack only once its summary exists.


def attack_dir(run_dir: Path) -> Path:
    return run_dir / "attack"


def attack_results_path(run_dir: Path) -> Path:
    return attack_dir(run_dir) / "results.parquet"


def attack_summary_path(run_dir: Path) -> Path:
    return attack_dir(run_dir) / "summary.json"


def read_attack_summary(run_dir: Path) -> dict[str, Any] | None:
    """The attack's summary (None while it is missing); BrokenRunError when it is there but cannot be used."""
    path = attack_summary_path(run_dir)
    if not path.is_file():
        return None
    summary = read_eval_summary(run_dir, path)
    for key in ("clean_accuracy", "aua", "success_rate", "avg_queries"):
        value = (summary.get("metrics") or {}).get(key)
        if value is not None and not _is_number(value):
            raise BrokenRunError(run_dir, f"attack/summary.json: '{key}' must be a number")
    return summary
