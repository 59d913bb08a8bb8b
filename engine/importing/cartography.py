"""Import training dynamics logged by allenai/cartography into a run of this workspace.

Their trainer writes one JSONL file per epoch, `training_dynamics/dynamics_epoch_N.jsonl` (their reader also
looks for `.json`), one line per training example: `{"guid": ..., "logits_epoch_N": [logits], "gold": class}`.
Each file becomes the dynamics shard of epoch N of a new run (kind `import`), with the columns our trainer writes:
gold_prob = softmax(logits)[gold], correct = argmax(logits) == gold (first maximum, as np.argmax), loss =
-log gold_prob, margin = gold logit - largest other logit, el2n = ||softmax - onehot(gold)||_2, prediction = the
argmax class index. The run folder gets its events (one epoch_end per epoch, state done), its id list (epoch 0's
guids, in file order: the shards' integer example index) and config.json last, so `sync` registers it like any
finished run, and the metrics follow their definitions (see storage.metrics).

The files are read by DuckDB's own JSON reader into an in-memory database, where the checks and the per-row
quantities are computed in SQL; a file the fast path refuses is read again line by line, only to name the line
in the message (or, if that exact reader accepts it after all, to use its records).

Everything is read and checked before anything is written: a bad file leaves no run behind. The files pass the
same guards as a dataset import (`engine.importing.files`): regular files only (links followed; a pipe or a device
named dynamics_epoch_0.jsonl is refused, never read), at most the import size limit each, JSON nested too deeply
named with its line.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import BadInputError
from engine.importing.files import check_directory, check_regular_file, describe, json_too_deep, read_text
from storage.artifacts import SHARD_KEY, append_event, copy_example_ids, copy_shard, sql_path, write_config
from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace

FILE_RE = re.compile(r"^dynamics_epoch_(\d+)\.jsonl?$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class ImportResult:
    run_id: str
    dataset: str
    epochs: int
    n_examples: int
    n_classes: int
    source: str
    notes: list[str] = field(default_factory=list)


def find_epoch_files(directory: Path) -> list[tuple[int, Path]]:
    """dynamics_epoch_N.jsonl files of DIR, or of DIR/training_dynamics, numbered 0..N-1 without gaps; each a
    regular file (links followed) within the import size limit."""
    try:
        check_directory(directory)
    except BadInputError as exc:
        raise BadInputError(f"{exc}; give the folder holding dynamics_epoch_N.jsonl files") from None
    for folder in (directory, directory / "training_dynamics"):
        if not folder.is_dir():
            continue
        found: dict[int, Path] = {}
        for path in sorted(folder.iterdir()):
            match = FILE_RE.match(path.name)
            if match:
                check_regular_file(path)  # a pipe, a device, a loop or a file over the size limit is refused
                epoch = int(match.group(1))
                if epoch in found:
                    raise BadInputError(
                        f"{folder}: epoch {epoch} appears twice ({found[epoch].name} and {path.name})"
                    )
                found[epoch] = path
        if found:
            missing = [e for e in range(max(found) + 1) if e not in found]
            if missing:
                raise BadInputError(
                    f"{folder}: dynamics_epoch_{missing[0]}.jsonl is missing (found epochs {sorted(found)}); "
                    "epochs must be numbered 0, 1, 2, ... without gaps"
                )
            return [(e, found[e]) for e in sorted(found)]
    raise BadInputError(
        f"{directory}: no dynamics_epoch_N.jsonl files (in it or in its training_dynamics/ folder); "
        "this is what allenai/cartography's trainer writes"
    )


def _show(value: Any) -> str:
    """A value for a message: its JSON spelling when short and flat, else a description."""
    if value is None or isinstance(value, (bool, float)) or isinstance(value, str) and len(value) <= 40:
        return json.dumps(value)
    return describe(value)


def _finite_number(value: Any) -> bool:
    """A number a logit can be: not a boolean, not NaN or infinite, within float range."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**1023
    return isinstance(value, float) and math.isfinite(value)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a file read through the import guards (a regular file within the size limit,
    UTF-8), lines split as text mode splits them (at LF, CRLF or CR)."""
    return enumerate(io.StringIO(read_text(path, compressed=False), newline=None), start=1)


def _parse_line(raw: str, where: str, path: Path, lineno: int) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except RecursionError as exc:
        raise json_too_deep(str(path), raw, lineno) from exc
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise BadInputError(f"{where}: not valid JSON ({exc})") from exc


def _scan_lines(
    path: Path, epoch: int, n_classes: int | None
) -> tuple[list[str], list[list[float]], list[int]]:
    """The slow, exact reader: parses line by line and raises at the first bad line (only used when the fast
    reader failed or found something wrong, so that the message can name the line)."""
    field_name = f"logits_epoch_{epoch}"
    guids: list[str] = []
    logits: list[list[float]] = []
    golds: list[int] = []
    seen: dict[str, int] = {}
    for lineno, raw in _lines(path):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        record = _parse_line(raw, where, path, lineno)
        if not isinstance(record, dict):
            raise BadInputError(f"{where}: expected a JSON object with guid, {field_name} and gold")
        for name in ("guid", field_name, "gold"):
            if name not in record or record[name] is None:
                other = [k for k in record if k.startswith("logits_epoch_")]
                hint = (
                    f" (it has {other[0]}: is the file named for the right epoch?)"
                    if other and name == field_name
                    else ""
                )
                raise BadInputError(f"{where}: missing field '{name}'{hint}")
        guid = record["guid"]
        if isinstance(guid, bool) or not isinstance(guid, (str, int)):
            raise BadInputError(f"{where}: guid must be a string or an integer, got {_show(guid)}")
        vec = record[field_name]
        if not isinstance(vec, list) or not vec or not all(_finite_number(v) for v in vec):
            raise BadInputError(
                f"{where}: {field_name} must be a non-empty list of numbers (finite: no NaN or infinity)"
            )
        if n_classes is None:
            n_classes = len(vec)
        elif len(vec) != n_classes:
            raise BadInputError(
                f"{where}: {field_name} has {len(vec)} logits, but earlier records have {n_classes}; "
                "every record needs one logit per class"
            )
        gold = record["gold"]
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < n_classes:
            raise BadInputError(
                f"{where}: gold must be a class index in 0..{n_classes - 1}, got {_show(gold)}"
            )
        key = str(guid)
        if key in seen:
            raise BadInputError(f"{where}: guid {key} appears twice in this file (first on line {seen[key]})")
        seen[key] = lineno
        guids.append(key)
        logits.append([float(v) for v in vec])
        golds.append(gold)
    if not guids:
        raise BadInputError(f"{path}: the file holds no records")
    return guids, logits, golds


# What each field may be, as DuckDB's json_type names a value: a guid is a string or an integer, gold an integer.
_GUID_TYPES = ("UBIGINT", "BIGINT", "VARCHAR")
_GOLD_TYPES = ("UBIGINT", "BIGINT")
# An array holding anything but number characters (a string, true, false, null, NaN, a nested array or object):
# given the column type DOUBLE[], DuckDB's reader would cast such a logit quietly ("3" and true to numbers), so a
# file where this matches goes to the line reader. It over-approximates (an array in another field matches too),
# which costs only speed.
_NON_NUMBER_ARRAY = r"\[[-+0-9.eE,\s]*[^-+0-9.eE,\s\]]"
# The shard columns computed per record (besides epoch, rank and the example index).
SHARD_COLUMNS = ("gold_prob", "correct", "loss", "margin", "el2n", "prediction")


def _epoch_table(epoch: int) -> str:
    return f"epoch_{int(epoch)}"


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def records_sql(source: str) -> str:
    """Per record of `source` (guid, logits, gold, typed), in its order: guid, gold, what the checks need (width =
    number of logits, n_values = how many are not null, finite, typed) and the shard columns, computed from the
    logits: gold_prob = softmax[gold], correct = first argmax = gold, loss = -log gold_prob, margin = gold logit -
    largest other, el2n = ||softmax - onehot(gold)||_2, prediction = the argmax class index. Out-of-range gold or
    bad logits give NULLs or NaNs here, never an error: the checks reject such records."""
    return f"""
        WITH r AS (SELECT guid, gold, typed, logits AS l, gold + 1 AS g, list_max(logits) AS m FROM ({source})),
        s AS (SELECT *, list_sum(list_transform(l, lambda x: exp(x - m))) AS z, list_position(l, m) AS p FROM r)
        SELECT
            guid,
            gold,
            len(l) AS width,
            list_count(l) AS n_values,
            isfinite(list_sum(l)) AS finite,
            typed,
            exp(l[g] - m) / z AS gold_prob,
            p = g AS correct,
            ln(z) - (l[g] - m) AS loss,
            CASE WHEN len(l) > 1 THEN l[g] - list_max(list_filter(l, lambda x, i: i <> g)) ELSE 0 END AS margin,
            sqrt(list_sum(list_transform(l, lambda x, i: pow(exp(x - m) / z - (i = g)::DOUBLE, 2)))) AS el2n,
            (p - 1)::VARCHAR AS prediction
        FROM s
    """


def _fast_load(con: duckdb.DuckDBPyConnection, path: Path, epoch: int, n_classes: int | None) -> int | None:
    """DuckDB's own JSON reader into table epoch_N (see load_epoch), checked column-wise; returns the number of
    classes, or None when anything is off (the caller rescans for the line).

    The reader is given the column types (no type detection pass): guid and gold as JSON, so that their JSON type
    is checked on every record (a float or string gold, a boolean guid would otherwise be cast quietly), and the
    logits as DOUBLE[], after a scan of the raw text for arrays holding anything but numbers (see
    _NON_NUMBER_ARRAY). A guid reads as its string or its integer's digits, as str() of the line reader's value.
    The shard columns are computed in the same pass: the logits themselves are never stored."""
    field_name = f"logits_epoch_{epoch}"
    table = _epoch_table(epoch)
    columns = f"{{'guid': 'JSON', {_sql_string(field_name)}: 'DOUBLE[]', 'gold': 'JSON'}}"
    source = f"""
        SELECT guid ->> '$' AS guid, "{field_name}" AS logits, TRY_CAST(gold AS BIGINT) AS gold,
               json_type(guid) IN {_GUID_TYPES} AND json_type(gold) IN {_GOLD_TYPES} AS typed
        FROM read_json({sql_path(path)}, format = 'newline_delimited', records = true, columns = {columns})
    """
    try:
        (non_number,) = con.execute(
            f"SELECT regexp_matches(content, {_sql_string(_NON_NUMBER_ARRAY)}) FROM read_text({sql_path(path)})"
        ).fetchall()[0]
        if non_number:
            return None
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {records_sql(source)}")
        rows = con.execute(
            f"""SELECT count(*), count(guid), count(width), count(gold), count(DISTINCT guid), bool_and(typed),
                       bool_and(finite), bool_or(n_values <> width), min(width), max(width), min(gold), max(gold)
                FROM {table}"""
        ).fetchall()
    except duckdb.Error:  # every read error: bad JSON, a line that is not an object, a nested logit, ...
        return None
    n, n_guid, n_logits, n_gold, distinct, typed, finite, null_logit, shortest, width, low, high = rows[0]
    # a NaN or infinite logit makes its list's sum non-finite (so can a sum of huge finite ones: the line reader
    # then reads the file, and accepts it)
    if not n or not (n == n_guid == n_logits == n_gold == distinct) or not typed or not finite or null_logit:
        return None
    if shortest != width or not width or (n_classes is not None and width != n_classes):
        return None
    if low < 0 or high >= width:
        return None
    return int(width)


def load_epoch(con: duckdb.DuckDBPyConnection, path: Path, epoch: int, n_classes: int | None) -> int:
    """Read and check one dynamics_epoch_N.jsonl file into table epoch_N of `con`'s database, one row per record
    in file order (rowid = the record's position): guid VARCHAR, gold BIGINT and the shard columns (records_sql);
    returns the number of classes. Raises BadInputError naming the file and line of the first problem."""
    width = _fast_load(con, path, epoch, n_classes)
    if width is not None:
        return width
    guids, logits, golds = _scan_lines(path, epoch, n_classes)
    scanned = pa.table(
        {
            "guid": pa.array(guids, pa.string()),
            "logits": pa.array(logits, pa.list_(pa.float64())),
            "gold": pa.array(golds, pa.int64()),
        }
    )
    con.register("scanned", scanned)
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {_epoch_table(epoch)} AS "
            f"{records_sql('SELECT guid, logits, gold, true AS typed FROM scanned')}"
        )
    finally:
        con.unregister("scanned")
    return len(logits[0])


def _workers(n: int) -> int:
    return max(1, min(n, os.cpu_count() or 1, 8))


def load_epochs(con: duckdb.DuckDBPyConnection, files: list[tuple[int, Path]]) -> int:
    """Read every file into table epoch_N of `con`'s database; returns the number of classes. The files are read
    in parallel (DuckDB's reader keeps about one core busy per file), with the error a reading in epoch order
    gives: the first bad file's, and a later file's logits counted against epoch 0's."""

    def read(item: tuple[int, Path]) -> int | BadInputError:
        epoch, path = item
        cur = con.cursor()
        try:
            return load_epoch(cur, path, epoch, None)
        except BadInputError as exc:
            return exc
        finally:
            cur.close()

    with ThreadPoolExecutor(_workers(len(files))) as pool:
        results = list(pool.map(read, files))
    first = results[0]
    if isinstance(first, BadInputError):
        raise first
    for (epoch, path), result in zip(files[1:], results[1:]):
        if isinstance(result, BadInputError) or result != first:
            load_epoch(con, path, epoch, first)  # again, as in order: raises the line's error
    return first


def _line_of(path: Path, guid: str) -> int:
    """Line number of a guid's record in a file (for messages only)."""
    for lineno, raw in _lines(path):
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and str(record.get("guid")) == guid:
            return lineno
    return 0


def _keyed_table(epoch: int) -> str:
    return f"keyed_{int(epoch)}"


def shard_sql(epoch: int) -> str:
    """The shard rows of one epoch: epoch 0's records (their position in its file is the example index) or a later
    epoch's, keyed by `_key_epochs`."""
    if epoch == 0:
        source, key = _epoch_table(0), f"rowid::INTEGER AS {SHARD_KEY}"
    else:
        source, key = _keyed_table(epoch), SHARD_KEY
    return f"SELECT {int(epoch)} AS epoch, 0 AS rank, {key}, {', '.join(SHARD_COLUMNS)} FROM {source}"


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...] | None:
    rows = con.execute(sql).fetchall()
    return rows[0] if rows else None


def _unknown_error(
    con: duckdb.DuckDBPyConnection, epoch: int, path: Path, dataset: str
) -> BadInputError | None:
    """The error for the first guid of the epoch (in file order) that is not an example id of the dataset."""
    table = _epoch_table(epoch)
    row = _first(
        con,
        f"""SELECT e.guid, count(*) OVER (), (SELECT count(*) FROM {table})
            FROM {table} e ANTI JOIN known k ON k.example_id = e.guid ORDER BY e.rowid LIMIT 1""",
    )
    if row is None:
        return None
    guid, n_missing, n = row
    return BadInputError(
        f"{path}:{_line_of(path, guid)}: guid {guid} is not an example id of dataset "
        f"'{dataset}' ({n_missing} of {n} guids in this file are unknown); import the "
        "dataset the model was trained on, with the same ids (--id-col)"
    )


def _key_epochs(con: duckdb.DuckDBPyConnection, files: list[tuple[int, Path]], dataset: str) -> None:
    """Build the id list `ids` (epoch 0's guids in file order, with their gold class) and key every later epoch
    by it (tables keyed_N), checking on the way: every guid is an example id of the dataset, and later epochs
    only hold guids of epoch 0, with the same gold (as cartography's reader asserts). The first offending record
    of the first offending file (in file order) is named; unknown ids are reported before inconsistent ones."""
    con.execute(
        f"CREATE OR REPLACE TABLE ids AS SELECT rowid::INTEGER AS {SHARD_KEY}, guid AS example_id, gold "
        f"FROM {_epoch_table(0)} ORDER BY rowid"
    )
    error = _unknown_error(con, 0, files[0][1], dataset)
    if error:
        raise error

    def key(item: tuple[int, Path]) -> tuple[int, int]:
        epoch, _ = item
        with con.cursor() as cur:
            cur.execute(
                f"""CREATE OR REPLACE TABLE {_keyed_table(epoch)} AS
                    SELECT e.rowid AS pos, e.guid, i.{SHARD_KEY}, e.gold, i.gold AS gold0,
                           {", ".join(f"e.{c}" for c in SHARD_COLUMNS)}
                    FROM {_epoch_table(epoch)} e LEFT JOIN ids i ON i.example_id = e.guid"""
            )
            outside, differ = cur.execute(
                f"""SELECT count(*) FILTER (WHERE {SHARD_KEY} IS NULL), count(*) FILTER (WHERE gold <> gold0)
                    FROM {_keyed_table(epoch)}"""
            ).fetchall()[0]
        return outside, differ

    with ThreadPoolExecutor(_workers(len(files) - 1)) as pool:
        counts = list(pool.map(key, files[1:]))
    # (epoch, file, whether a guid is outside epoch 0 rather than a gold label changed)
    problems = [(e, p, bool(out)) for (e, p), (out, diff) in zip(files[1:], counts) if out or diff]
    if not problems:
        return
    if any(is_outside for _, _, is_outside in problems):
        # an id unknown to the dataset is outside epoch 0 too: that message comes first
        for epoch, path in files[1:]:
            error = _unknown_error(con, epoch, path, dataset)
            if error:
                raise error
    epoch, path, is_outside = problems[0]
    where = f"{SHARD_KEY} IS NULL" if is_outside else "gold <> gold0"
    row = _first(con, f"SELECT guid FROM {_keyed_table(epoch)} WHERE {where} ORDER BY pos LIMIT 1")
    assert row is not None
    guid = row[0]
    if is_outside:
        raise BadInputError(
            f"{path}:{_line_of(path, guid)}: guid {guid} is not in epoch 0 "
            f"({files[0][1].name}); every epoch must log the same training examples"
        )
    raise BadInputError(
        f"{path}:{_line_of(path, guid)}: guid {guid} has a different gold label than in epoch 0"
    )


def new_run_id(dataset: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-") or "dataset"
    return f"import-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def import_cartography(
    ws: Workspace, directory: Path, dataset: str, run_id: str | None = None
) -> ImportResult:
    """Read, check, write the run folder, then sync it into the catalog."""
    if run_id is not None and not RUN_ID_RE.match(run_id):
        raise BadInputError(
            f"--name {run_id!r}: a run name is letters, digits, '.', '_' or '-' (at most 100), starting with a letter or digit"
        )
    files = find_epoch_files(directory)
    # the dataset and its ids first: a typo in --dataset should not cost a long read
    with open_catalog(ws) as con:
        sync(ws, con)
        ds = con.execute("SELECT n_examples FROM datasets WHERE name = ?", [dataset]).fetchall()
        if not ds:
            names = [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]
            raise BadInputError(
                f"--dataset '{dataset}': no such dataset; known: {', '.join(names) or '(none yet: dynascope import)'}"
            )
        if (
            run_id is not None
            and con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run_id]).fetchall()
        ):
            raise BadInputError(f"--name '{run_id}': a run with that name already exists; choose another")
        known = con.sql(
            "SELECT example_id, label FROM examples WHERE dataset = ?", params=[dataset]
        ).to_arrow_table()
    if run_id is not None and ws.run_dir(run_id).exists():
        raise BadInputError(
            f"--name '{run_id}': the folder {ws.run_dir(run_id)} already exists; choose another name"
        )

    with duckdb.connect() as mem:
        n_classes = load_epochs(mem, files)
        mem.register("known", known)
        _key_epochs(mem, files, dataset)
        (n_examples,) = mem.execute("SELECT count(*) FROM ids").fetchall()[0]
        differ, labelled = mem.execute(
            """SELECT count(*) FILTER (WHERE i.gold <> k.label), count(*)
               FROM ids i JOIN known k ON k.example_id = i.example_id WHERE k.label IS NOT NULL"""
        ).fetchall()[0]

        run_id = run_id or new_run_id(dataset)
        run_dir = ws.run_dir(run_id)
        n_epochs = len(files)
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise BadInputError(f"the run folder {run_dir} already exists; choose another --name") from None
        try:
            append_event(
                run_dir,
                "state",
                status="running",
                n_epochs=n_epochs,
                message="importing cartography dynamics",
            )
            copy_example_ids(mem, f"SELECT {SHARD_KEY}, example_id FROM ids", run_dir)

            def write(epoch: int) -> float:
                with mem.cursor() as cur:
                    copy_shard(cur, shard_sql(epoch), run_dir, epoch, 0)
                    (accuracy,) = cur.execute(
                        f"SELECT avg(correct::DOUBLE) FROM {_epoch_table(epoch)}"
                    ).fetchall()[0]
                return float(accuracy)

            with ThreadPoolExecutor(_workers(n_epochs)) as pool:  # shards in parallel, events in order
                accuracy = list(pool.map(write, [epoch for epoch, _ in files]))
            for (epoch, _), acc in zip(files, accuracy):
                append_event(run_dir, "epoch_end", epoch=epoch, metrics={"train_acc": acc})
            append_event(run_dir, "state", status="done", n_epochs=n_epochs)
            config: dict[str, Any] = {
                "kind": "import",
                "format": "cartography",
                "dataset": dataset,
                "model": None,
                "epochs": n_epochs,
                "source": str(directory.resolve()),
                "n_classes": n_classes,
                "el2n_epoch": 0,
                "created_at": time.time(),
            }
            write_config(run_dir, config)  # last: sync ignores the folder until it is there
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    with open_catalog(ws) as con:
        sync(ws, con)
    notes = []
    if differ:
        notes.append(
            f"{differ} of {labelled} examples have a cartography gold class different from the "
            f"dataset's label index; the metrics use cartography's gold (check the label order)"
        )
    missing_from_log = int(known.num_rows) - n_examples
    if missing_from_log > 0:
        notes.append(
            f"{missing_from_log} example{'s' if missing_from_log != 1 else ''} of '{dataset}' "
            f"{'have' if missing_from_log != 1 else 'has'} no dynamics in the imported files"
        )
    return ImportResult(run_id, dataset, n_epochs, n_examples, int(n_classes or 0), str(directory), notes)
