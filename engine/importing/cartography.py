"""Import training dynamics logged by allenai/cartography into a run of this workspace.

Their trainer writes one JSONL file per epoch, `training_dynamics/dynamics_epoch_N.jsonl` (their reader also
looks for `.json`), one line per training example: `{"guid": ..., "logits_epoch_N": [logits], "gold": class}`.
Each file becomes the dynamics shard of epoch N of a new run (kind `import`), with the columns our trainer writes:
gold_prob = softmax(logits)[gold], correct = argmax(logits) == gold (first maximum, as np.argmax), loss =
-log gold_prob, margin = gold logit - largest other logit, el2n = ||softmax - onehot(gold)||_2, prediction = the
argmax class index. The run folder gets its events (one epoch_end per epoch, state done) and config.json last,
so `sync` registers it like any finished run, and the metrics follow their definitions (see storage.metrics).

Everything is read and checked before anything is written: a bad file leaves no run behind.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from engine.errors import BadInputError
from storage.artifacts import append_event, write_config, write_shard
from storage.catalog import open_catalog
from storage.sync import sync
from storage.workspace import Workspace

FILE_RE = re.compile(r"^dynamics_epoch_(\d+)\.jsonl?$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class EpochRecords:
    epoch: int
    path: Path
    guid: pa.Array  # string
    logits: np.ndarray  # (n, classes) float64
    gold: np.ndarray  # (n,) int64


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
    """dynamics_epoch_N.jsonl files of DIR, or of DIR/training_dynamics, numbered 0..N-1 without gaps."""
    if not directory.exists():
        raise BadInputError(
            f"{directory}: no such directory; give the folder holding dynamics_epoch_N.jsonl files"
        )
    if not directory.is_dir():
        raise BadInputError(
            f"{directory}: not a directory; give the folder holding dynamics_epoch_N.jsonl files"
        )
    for folder in (directory, directory / "training_dynamics"):
        if not folder.is_dir():
            continue
        found: dict[int, Path] = {}
        for path in sorted(folder.iterdir()):
            match = FILE_RE.match(path.name)
            if match and path.is_file():
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
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
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
                raise BadInputError(f"{where}: guid must be a string or an integer, got {json.dumps(guid)}")
            vec = record[field_name]
            if (
                not isinstance(vec, list)
                or not vec
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vec)
            ):
                raise BadInputError(f"{where}: {field_name} must be a non-empty list of numbers")
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
                    f"{where}: gold must be a class index in 0..{n_classes - 1}, got {json.dumps(gold)}"
                )
            key = str(guid)
            if key in seen:
                raise BadInputError(
                    f"{where}: guid {key} appears twice in this file (first on line {seen[key]})"
                )
            seen[key] = lineno
            guids.append(key)
            logits.append([float(v) for v in vec])
            golds.append(gold)
    if not guids:
        raise BadInputError(f"{path}: the file holds no records")
    return guids, logits, golds


def _fast_read(path: Path, epoch: int, n_classes: int | None) -> EpochRecords | None:
    """pyarrow's JSON reader, checked column-wise; None when anything is off (the caller rescans for the line)."""
    field_name = f"logits_epoch_{epoch}"
    try:
        table = pj.read_json(path)
    except (pa.ArrowException, OSError):  # every pyarrow read error
        return None
    names = table.column_names
    if table.num_rows == 0 or any(n not in names for n in ("guid", field_name, "gold")):
        return None
    guid, vec, gold = table.column("guid"), table.column(field_name), table.column("gold")
    if guid.null_count or vec.null_count or gold.null_count:
        return None
    if not (
        pa.types.is_integer(guid.type) or pa.types.is_string(guid.type) or pa.types.is_large_string(guid.type)
    ):
        return None
    if not pa.types.is_integer(gold.type) or not pa.types.is_list(vec.type):
        return None
    value_type = vec.type.value_type
    if not (pa.types.is_integer(value_type) or pa.types.is_floating(value_type)):
        return None
    vec = vec.combine_chunks()
    lengths = pc.list_value_length(vec)
    mn, mx = pc.min_max(lengths).values()
    width = mx.as_py()
    if mn.as_py() != width or not width or (n_classes is not None and width != n_classes):
        return None
    if vec.values.null_count:
        return None
    golds = gold.to_numpy().astype(np.int64)
    if golds.min() < 0 or golds.max() >= width:
        return None
    guid_str = pc.cast(guid.combine_chunks(), pa.string())
    if pc.count_distinct(guid_str).as_py() != len(guid_str):
        return None
    values = pc.list_flatten(vec).to_numpy(zero_copy_only=False).astype(np.float64)
    return EpochRecords(epoch, path, guid_str, values.reshape(-1, width), golds)


def read_epoch(path: Path, epoch: int, n_classes: int | None) -> EpochRecords:
    records = _fast_read(path, epoch, n_classes)
    if records is not None:
        return records
    guids, logits, golds = _scan_lines(path, epoch, n_classes)
    return EpochRecords(
        epoch, path, pa.array(guids, pa.string()), np.asarray(logits, np.float64), np.asarray(golds)
    )


def _line_of(path: Path, guid: str) -> int:
    """Line number of a guid's record in a file (for messages only)."""
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and str(record.get("guid")) == guid:
                return lineno
    return 0


def dynamics_table(rec: EpochRecords) -> pa.Table:
    """The shard rows of one epoch, computed vectorised from the logits."""
    logits = rec.logits
    n, _ = logits.shape
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    gold_prob = probs[rows, rec.gold]
    pred = logits.argmax(axis=1)
    others = logits.copy()
    others[rows, rec.gold] = -np.inf
    margin = logits[rows, rec.gold] - others.max(axis=1) if logits.shape[1] > 1 else np.zeros(n)
    onehot = np.zeros_like(probs)
    onehot[rows, rec.gold] = 1.0
    el2n = np.linalg.norm(probs - onehot, axis=1)
    log_p = shifted[rows, rec.gold] - np.log(exp.sum(axis=1))
    return pa.table(
        {
            "epoch": pa.array(np.full(n, rec.epoch, np.int32)),
            "rank": pa.array(np.zeros(n, np.int32)),
            "example_id": rec.guid,
            "gold_prob": pa.array(gold_prob),
            "correct": pa.array(pred == rec.gold),
            "loss": pa.array(-log_p),
            "margin": pa.array(margin),
            "el2n": pa.array(el2n),
            "prediction": pc.cast(pa.array(pred), pa.string()),
        }
    )


def _check_consistency(epochs: list[EpochRecords]) -> None:
    """Later epochs may only hold guids of epoch 0, with the same gold (as cartography's reader asserts)."""
    first = epochs[0]
    index = {"guid": first.guid, "gold": pa.array(first.gold)}
    base = pa.table(index)
    for rec in epochs[1:]:
        here = pa.table({"guid": rec.guid, "gold_here": pa.array(rec.gold)})
        joined = here.join(base, "guid", join_type="left outer")
        unknown = pc.filter(joined.column("guid"), pc.is_null(joined.column("gold")))
        if len(unknown):
            guid = unknown[0].as_py()
            raise BadInputError(
                f"{rec.path}:{_line_of(rec.path, guid)}: guid {guid} is not in epoch 0 "
                f"({first.path.name}); every epoch must log the same training examples"
            )
        differs = pc.filter(
            joined.column("guid"), pc.not_equal(joined.column("gold"), joined.column("gold_here"))
        )
        if len(differs):
            guid = differs[0].as_py()
            raise BadInputError(
                f"{rec.path}:{_line_of(rec.path, guid)}: guid {guid} has a different gold label than in epoch 0"
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

    epochs: list[EpochRecords] = []
    n_classes: int | None = None
    for epoch, path in files:
        rec = read_epoch(path, epoch, n_classes)
        n_classes = rec.logits.shape[1]
        epochs.append(rec)
    ids = known.column("example_id").combine_chunks()
    for rec in epochs:
        missing = pc.filter(rec.guid, pc.invert(pc.is_in(rec.guid, value_set=ids)))
        if len(missing):
            guid = missing[0].as_py()
            raise BadInputError(
                f"{rec.path}:{_line_of(rec.path, guid)}: guid {guid} is not an example id of dataset "
                f"'{dataset}' ({len(missing)} of {len(rec.guid)} guids in this file are unknown); import the "
                "dataset the model was trained on, with the same ids (--id-col)"
            )
    _check_consistency(epochs)
    first = epochs[0]

    run_id = run_id or new_run_id(dataset)
    run_dir = ws.run_dir(run_id)
    n_epochs = len(epochs)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise BadInputError(f"the run folder {run_dir} already exists; choose another --name") from None
    try:
        append_event(
            run_dir, "state", status="running", n_epochs=n_epochs, message="importing cartography dynamics"
        )
        for rec in epochs:
            table = dynamics_table(rec)
            write_shard(run_dir, rec.epoch, 0, table)
            acc = float(pc.mean(table.column("correct").cast(pa.float64())).as_py())
            append_event(run_dir, "epoch_end", epoch=rec.epoch, metrics={"train_acc": acc})
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
    labelled = pa.table({"example_id": first.guid, "gold": pa.array(first.gold)}).join(known, "example_id")
    labelled = labelled.filter(pc.is_valid(labelled.column("label")))
    if labelled.num_rows:
        differ = (
            pc.sum(pc.not_equal(labelled.column("gold"), labelled.column("label").cast(pa.int64()))).as_py()
            or 0
        )
        if differ:
            notes.append(
                f"{differ} of {labelled.num_rows} examples have a cartography gold class different from the "
                f"dataset's label index; the metrics use cartography's gold (check the label order)"
            )
    missing_from_log = int(known.num_rows) - len(first.guid)
    if missing_from_log > 0:
        notes.append(
            f"{missing_from_log} example{'s' if missing_from_log != 1 else ''} of '{dataset}' "
            f"{'have' if missing_from_log != 1 else 'has'} no dynamics in the imported files"
        )
    return ImportResult(
        run_id, dataset, n_epochs, len(first.guid), int(n_classes or 0), str(directory), notes
    )
