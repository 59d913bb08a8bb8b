"""Read a dataset from a local file or the Hugging Face hub into a `DatasetSpec`, validating every example.

Nothing here touches the catalog: the whole source is read and checked first, and only a dataset that passed
every check is handed to `storage.datasets.write_dataset`, which lands it in one transaction.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.errors import BadInputError
from storage.datasets import EXAMPLE_SCHEMA, DatasetSpec

FORMATS = {".json": "squad-json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
TEXT_COLUMNS = ("text", "sentence", "sentence1", "premise", "question1", "title", "content", "review")
PAIR_COLUMNS = ("text_pair", "sentence2", "hypothesis", "question2", "description")
LABEL_COLUMNS = ("label", "labels", "gold_label", "class", "category")
ID_COLUMNS = ("id", "guid", "idx", "index", "example_id", "uid")


@dataclass
class ImportOptions:
    task: str | None = None
    text_col: str | None = None
    text_pair_col: str | None = None
    label_col: str | None = None
    id_col: str | None = None
    labels: Sequence[str] | None = None
    fix_spans: bool = False
    split: str = "train"


# ---- reading bytes ---------------------------------------------------------------------------------------


def detect_format(path: Path) -> tuple[str, bool]:
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise BadInputError(
            f"{path}: unknown format '{''.join(path.suffixes) or '(no extension)'}'; supported: "
            ".json (SQuAD), .jsonl, .csv, .tsv, .parquet, each optionally .gz, or a Hugging Face hub name"
        )
    return fmt, compressed


def read_text(path: Path, compressed: bool) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInputError(
            f"{path}: cannot read the file ({exc.strerror}); check the path and permissions"
        ) from exc
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error) as exc:
            raise BadInputError(
                f"{path}: the gzip stream is truncated or corrupt ({exc}); download or copy the file again"
            ) from exc
        except gzip.BadGzipFile as exc:
            raise BadInputError(
                f"{path}: not a gzip file although it ends in .gz ({exc}); rename or recompress it"
            ) from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from exc


def _json_error(place: str, exc: json.JSONDecodeError, text_len: int) -> BadInputError:
    truncated = (
        exc.pos >= text_len - 1
        or "Unterminated" in exc.msg
        or "Expecting" in exc.msg
        and exc.pos >= text_len - 2
    )
    what = "truncated JSON (the file ends early)" if truncated else f"malformed JSON ({exc.msg})"
    return BadInputError(f"{place}:{exc.lineno}:{exc.colno}: {what}; fix or re-download the file")


# ---- building rows -----------------------------------------------------------------------------------------


class RowBuilder:
    """Collects validated examples column by column and checks ids for duplicates."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in EXAMPLE_SCHEMA.names}
        self.places: dict[str, str] = {}

    def add(self, example_id: str, place: str, **values: Any) -> None:
        if example_id in self.places:
            raise BadInputError(
                f"{place}: duplicate id '{example_id}' (first seen at {self.places[example_id]}); ids must be unique"
            )
        self.places[example_id] = place
        self.columns["example_id"].append(example_id)
        self.columns["row_idx"].append(len(self.places) - 1)
        for name in EXAMPLE_SCHEMA.names[2:]:
            self.columns[name].append(values.get(name))

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=EXAMPLE_SCHEMA)


# ---- SQuAD -------------------------------------------------------------------------------------------------


def parse_squad(obj: Any, origin: str, fix_spans: bool) -> tuple[pa.Table, str, list[str]]:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise BadInputError(f"{origin}: not a SQuAD file (expected an object with a 'data' list of articles)")
    rows = RowBuilder()
    notes: list[str] = []
    is_v2 = str(obj.get("version", "")).startswith("v2")
    fixed = 0
    for a_idx, article in enumerate(obj["data"]):
        title = article.get("title") if isinstance(article, dict) else None
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise BadInputError(f"{origin}: article {a_idx} ({title!r}) has no 'paragraphs' list")
        for p_idx, para in enumerate(paragraphs):
            where = f"{origin}: article {a_idx} ({title!r}) paragraph {p_idx}"
            context = para.get("context") if isinstance(para, dict) else None
            if not isinstance(context, str):
                raise BadInputError(f"{where}: missing required field 'context'")
            for q_idx, qa in enumerate(para.get("qas") or []):
                qid = qa.get("id")
                if not isinstance(qid, str) or not qid:
                    raise BadInputError(f"{where} question {q_idx}: missing required field 'id'")
                place = f"{origin}: question id '{qid}'"
                question = qa.get("question")
                if not isinstance(question, str):
                    raise BadInputError(f"{place}: missing required field 'question'")
                if not question.strip():
                    raise BadInputError(f"{place}: empty question; remove the question or fill it in")
                if not context.strip():
                    raise BadInputError(f"{place}: empty context; remove the paragraph or fill it in")
                impossible = bool(qa.get("is_impossible", False))
                is_v2 = is_v2 or impossible
                answers = qa.get("answers")
                if not isinstance(answers, list):
                    raise BadInputError(f"{place}: missing required field 'answers'")
                if not answers and not impossible:
                    raise BadInputError(
                        f'{place}: no answers and not marked is_impossible; add an answer or set "is_impossible": true'
                    )
                clean = []
                for ans in answers:
                    text, start = (
                        (ans.get("text"), ans.get("answer_start")) if isinstance(ans, dict) else (None, None)
                    )
                    if not isinstance(text, str) or not isinstance(start, int):
                        raise BadInputError(
                            f"{place}: each answer needs 'text' (string) and 'answer_start' (integer)"
                        )
                    if context[start : start + len(text)] != text:
                        found = _relocate(context, text, start) if fix_spans else -1
                        if found < 0:
                            hint = (
                                "the text does not occur in the context at all; fix the answer"
                                if fix_spans
                                else "pass --fix-spans to relocate answers by searching the context"
                            )
                            raise BadInputError(
                                f"{place}: answer {text!r} is not at answer_start {start} (the context there reads "
                                f"{context[start : start + len(text)]!r}); {hint}"
                            )
                        start = found
                        fixed += 1
                    clean.append({"text": text, "answer_start": start})
                rows.add(
                    qid,
                    place,
                    text=question,
                    text_pair=context,
                    answers=json.dumps(clean, ensure_ascii=False),
                    is_impossible=impossible,
                    title=title,
                )
    if not rows.places:
        raise BadInputError(f"{origin}: the file holds no questions")
    # Adversarial SQuAD (AddSent / AddOneSent) ids read '<orig_id>-<suffix>' with the original in the same file.
    ids = rows.columns["example_id"]
    known = set(ids)
    rows.columns["orig_id"] = [
        prefix if "-" in i and (prefix := i.split("-", 1)[0]) in known else None for i in ids
    ]
    if fixed:
        notes.append(f"relocated {fixed} answer span(s) by searching the context (--fix-spans)")
    return rows.table(), "v2.0" if is_v2 else "v1.1", notes


def _relocate(context: str, text: str, start: int) -> int:
    """The occurrence of `text` in `context` nearest to `start`, or -1."""
    best, pos = -1, context.find(text)
    while pos >= 0:
        if best < 0 or abs(pos - start) < abs(best - start):
            best = pos
        pos = context.find(text, pos + 1)
    return best


# ---- tabular (CSV, TSV, JSONL, Parquet, hub) ------------------------------------------------------------------


def _pick(
    columns: Sequence[str], given: str | None, candidates: Iterable[str], what: str, origin: str
) -> str | None:
    if given is not None:
        if given not in columns:
            raise BadInputError(
                f"{origin}: the {what} column '{given}' was not found; the columns are: {', '.join(columns)}"
            )
        return given
    lowered = {c.lower(): c for c in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


def parse_records(
    records: Sequence[dict[str, Any]],
    columns: Sequence[str],
    origin: str,
    place_of: Any,
    opts: ImportOptions,
    class_names: list[str] | None = None,
) -> tuple[str, pa.Table, list[str] | None, bool]:
    """Rows of a table-like source. Returns task, examples, label names, and whether the task is a text pair."""
    if not records:
        raise BadInputError(f"{origin}: the file holds no rows")
    task = opts.task
    if task is None:
        task = "qa" if {"question", "context"} <= set(columns) else "classification"
    if task == "qa":
        return "qa", _qa_records(records, columns, origin, place_of, opts), None, True
    text_col = _pick(columns, opts.text_col, TEXT_COLUMNS, "text", origin)
    if text_col is None:
        raise BadInputError(
            f"{origin}: missing required text column (looked for {', '.join(TEXT_COLUMNS)}); "
            "name it with --text-col"
        )
    pair_col = _pick(columns, opts.text_pair_col, PAIR_COLUMNS, "text pair", origin)
    label_col = _pick(columns, opts.label_col, LABEL_COLUMNS, "label", origin)
    id_col = _pick(columns, opts.id_col, ID_COLUMNS, "id", origin)

    raw_labels: list[Any] = []
    if label_col is not None:
        raw_labels = [r.get(label_col) for r in records]
    names, index_of = _label_set(raw_labels, opts.labels, class_names, records, label_col, origin, place_of)

    rows = RowBuilder()
    for i, rec in enumerate(records):
        place = place_of(i)
        example_id = str(rec.get(id_col)) if id_col is not None and rec.get(id_col) is not None else str(i)
        text = rec.get(text_col)
        if text is None or not str(text).strip():
            raise BadInputError(
                f"{place}: empty text in column '{text_col}' (id {example_id}); fill it in or drop the row"
            )
        pair = rec.get(pair_col) if pair_col else None
        if pair_col and (pair is None or not str(pair).strip()):
            raise BadInputError(
                f"{place}: empty text pair in column '{pair_col}' (id {example_id}); fill it in or drop the row"
            )
        label = index_of(raw_labels[i]) if label_col is not None else None
        rows.add(
            example_id,
            place,
            text=str(text),
            text_pair=str(pair) if pair_col else None,
            label=label,
            label_name=names[label] if label is not None and names else None,
        )
    return "classification", rows.table(), names, pair_col is not None


def _label_set(raw, given, class_names, records, label_col, origin, place_of):  # type: ignore[no-untyped-def]
    """The ordered label names and a function from a raw label to its class index (None: unlabeled)."""
    if label_col is None:
        return None, lambda value: None

    def as_key(value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip()

    keys = [as_key(v) for v in raw]
    for i, key in enumerate(keys):
        if key is None:
            raise BadInputError(
                f"{place_of(i)}: empty label in column '{label_col}'; fill it in or drop the label column"
            )
    if class_names is not None:  # hub ClassLabel: integers index the names; -1 means unlabeled
        names = list(class_names)
        lookup = {str(i): i for i in range(len(names))}
    elif given:
        names = [str(x) for x in given]
        lookup = {n: i for i, n in enumerate(names)}
    else:
        distinct = set(keys)
        if all(k.lstrip("-").isdigit() for k in distinct):  # type: ignore[union-attr]
            names = [str(v) for v in sorted(int(k) for k in distinct)]  # type: ignore[arg-type]
        else:
            names = sorted(distinct)  # type: ignore[arg-type]
        lookup = {n: i for i, n in enumerate(names)}
    for i, key in enumerate(keys):
        if key not in lookup and not (class_names is not None and key == "-1"):
            raise BadInputError(
                f"{place_of(i)}: label '{key}' is outside the label set {{{', '.join(names)}}}; "
                "fix the row, or pass the full set with --labels"
            )

    def index_of(value: Any) -> int | None:
        key = as_key(value)
        return None if key == "-1" and class_names is not None else lookup[key]  # type: ignore[index]

    return names, index_of


def _qa_records(records, columns, origin, place_of, opts) -> pa.Table:  # type: ignore[no-untyped-def]
    """JSONL / Parquet / hub QA rows in the Hugging Face SQuAD layout: question, context, answers, id."""
    articles: dict[str, Any] = {"version": "", "data": []}
    for i, rec in enumerate(records):
        for required in ("question", "context"):
            if required not in rec:
                raise BadInputError(f"{place_of(i)}: missing required field '{required}'")
        answers = rec.get("answers") or {}
        if isinstance(answers, dict):  # {"text": [...], "answer_start": [...]}
            answers = [
                {"text": t, "answer_start": s}
                for t, s in zip(answers.get("text", []), answers.get("answer_start", []))
            ]
        qid = rec.get(opts.id_col or "id")
        qid = str(qid) if qid is not None else str(i)
        articles["data"].append(
            {
                "title": rec.get("title"),
                "paragraphs": [
                    {
                        "context": rec["context"],
                        "qas": [
                            {
                                "id": qid,
                                "question": rec["question"],
                                "answers": answers,
                                "is_impossible": bool(rec.get("is_impossible", not answers)),
                            }
                        ],
                    }
                ],
            }
        )
    table, _version, _notes = parse_squad(articles, origin, opts.fix_spans)
    return table


# ---- per-format readers ---------------------------------------------------------------------------------


def read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
    import csv

    # GLUE TSVs hold bare quote characters inside sentences: no quoting for tab-separated files.
    stream = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise BadInputError(f"{path}: the file is empty") from None
    header = [h.strip() for h in header]
    records = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise BadInputError(
                    f"{path}:{reader.line_num}: {len(row)} fields where the header has {len(header)} "
                    f"({', '.join(header)}); check the delimiter and quoting of this line"
                )
            records.append(dict(zip(header, row)))
    except csv.Error as exc:
        raise BadInputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc
    return records, header


def read_jsonl(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    records, lines, columns = [], [], {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(
                f"{path}:{lineno}: malformed JSON line ({exc.msg}); fix or remove the line"
            ) from exc
        if not isinstance(obj, dict):
            raise BadInputError(f"{path}:{lineno}: expected a JSON object per line")
        records.append(obj)
        lines.append(lineno)
        columns.update(dict.fromkeys(obj))
    return records, list(columns), lines


def load_local(path: Path, opts: ImportOptions) -> DatasetSpec:
    fmt, compressed = detect_format(path)
    source = str(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise BadInputError(f"{path}: cannot read Parquet ({exc}); is the file complete?") from exc
        records = table.to_pylist()
        return _tabular_spec(records, table.column_names, path, lambda i: f"{path}: row {i}", opts, fmt)
    text = read_text(path, compressed)
    if fmt == "squad-json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(str(path), exc, len(text)) from exc
        if opts.task not in (None, "qa"):
            raise BadInputError(f"{path}: a SQuAD JSON file is a QA dataset; drop --task {opts.task}")
        table, version, notes = parse_squad(obj, str(path), opts.fix_spans)
        return DatasetSpec("", "qa", source, fmt, table, is_pair=True, version=version, notes=notes)
    if fmt == "jsonl":
        records, columns, lines = read_jsonl(path, text)
        return _tabular_spec(records, columns, path, lambda i: f"{path}:{lines[i]}", opts, fmt)
    records, columns = read_delimited(path, text, "\t" if fmt == "tsv" else ",")
    # line numbers: header is line 1, so record i sits on line i + 2 (blank lines aside)
    return _tabular_spec(records, columns, path, lambda i: f"{path}:{i + 2}", opts, fmt)


def _tabular_spec(records, columns, origin, place_of, opts, fmt, class_names=None) -> DatasetSpec:  # type: ignore[no-untyped-def]
    task, table, names, is_pair = parse_records(records, columns, str(origin), place_of, opts, class_names)
    return DatasetSpec("", task, str(origin), fmt, table, label_names=names, is_pair=is_pair)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so an offline machine gets its answer in seconds, not after
    the hub client's retries with backoff."""
    import os
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_unreachable(name: str) -> BadInputError:
    return BadInputError(
        f"'{name}': the Hugging Face hub is unreachable from this machine, so the dataset cannot be "
        "downloaded; copy the data files here and import a local file instead, e.g. "
        f"`dynascope import path/to/train.jsonl --name {name.split('/')[-1]}`"
    )


def load_hub(name: str, opts: ImportOptions) -> DatasetSpec:
    import os

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "")
    if not offline and not hub_reachable():
        raise _hub_unreachable(name)
    try:
        import datasets
        from datasets.features import ClassLabel
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise BadInputError(f"importing a hub dataset needs the 'datasets' package ({exc})") from exc
    try:
        ds = datasets.load_dataset(name, split=opts.split)
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        unreachable = any(
            word in text
            for word in (
                "Connection",
                "offline",
                "resolve",
                "Network",
                "unreachable",
                "Max retries",
                "Temporary failure",
            )
        )
        if unreachable or "HF_HUB_OFFLINE" in text or "Couldn't reach" in text:
            raise _hub_unreachable(name) from exc
        raise BadInputError(
            f"'{name}': not a readable local file and the hub could not load it ({text})"
        ) from exc
    label_feature = ds.features.get(opts.label_col or "label")
    class_names = label_feature.names if isinstance(label_feature, ClassLabel) else None
    records = ds.to_list()
    return _tabular_spec(
        records,
        ds.column_names,
        f"hf://{name}[{opts.split}]",
        lambda i: f"{name}: row {i}",
        opts,
        "hub",
        class_names,
    )


def looks_like_path(source: str) -> bool:
    return any(
        source.lower().endswith(ext) or source.lower().endswith(ext + ".gz") for ext in FORMATS
    ) or source.startswith((".", "/", "~"))


def load_source(source: str, name: str, opts: ImportOptions) -> DatasetSpec:
    if opts.task not in (None, "classification", "qa"):
        raise BadInputError(f"--task must be 'classification' or 'qa', not '{opts.task}'")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BadInputError(f"--name '{name}': use letters, digits, '-', '_' and '.' only")
    path = Path(source).expanduser()
    if path.is_dir():
        raise BadInputError(f"{source}: is a folder; name a data file inside it")
    if path.exists():
        spec = load_local(path, opts)
    elif looks_like_path(source):
        raise BadInputError(
            f"{source}: no such file; check the path (relative paths start from {Path.cwd()})"
        )
    else:
        spec = load_hub(source, opts)
    spec.name = name
    return spec
