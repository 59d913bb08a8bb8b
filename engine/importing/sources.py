"""Read a dataset from a local file or the Hugging Face hub into a `DatasetSpec`, validating every example.

Nothing here touches the catalog: the whole source is read and checked first, and only a dataset that passed
every check is handed to `storage.datasets.write_dataset`, which lands it in one transaction.

The rules, one place each: files are read by `engine.importing.files` (regular files only, links followed, at most
`MAX_IMPORT_BYTES` on disk and decompressed, gzip checked member by member); every text field of every format
passes `check_text` (at most `MAX_TEXT_CHARS` characters, no NUL bytes); labels follow `LABEL_RULE`
(`label_key`); ids `example_id`; SQuAD answers the checks of `parse_squad`. Every failure is a BadInputError that
names the place (file and line, row, or question id) and says what to do.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.errors import BadInputError
from engine.importing.files import (
    check_regular_file,
    describe,
    gunzip,
    json_too_deep,
    read_bytes,
    read_text,
)
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


MAX_TEXT_CHARS = 1_000_000
"""The longest text field an import accepts, the same for every format and every text field (sentence, text pair,
question, context, answer, title, id, label): one field over it is refused with its row. CSV's own reader is set to
the same limit."""

LABEL_RULE = (
    "a label is a class name (text) or a whole number, and a whole number is one class however it is written "
    '(1, 1.0 and "1" are the same class); booleans, NaN, infinities, fractions, lists and objects are refused'
)


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


def _json_error(place: str, exc: json.JSONDecodeError, text_len: int) -> BadInputError:
    truncated = (
        exc.pos >= text_len - 1
        or "Unterminated" in exc.msg
        or "Expecting" in exc.msg
        and exc.pos >= text_len - 2
    )
    what = "truncated JSON (the file ends early)" if truncated else f"malformed JSON ({exc.msg})"
    return BadInputError(f"{place}:{exc.lineno}:{exc.colno}: {what}; fix or re-download the file")


def parse_json(text: str, place: str, first_line: int = 1) -> Any:
    """`json.loads`, every failure a BadInputError naming the place: syntax (line and column), nesting too deep
    for the parser, numbers Python refuses (more than 4,300 digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if first_line == 1:
            raise _json_error(place, exc, len(text)) from exc
        raise BadInputError(
            f"{place}:{first_line}:{exc.colno}: malformed JSON line ({exc.msg}); fix or remove the line"
        ) from exc
    except RecursionError as exc:
        raise json_too_deep(place, text, first_line) from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise BadInputError(f"{place}:{first_line}: malformed JSON ({exc}); fix the file") from exc


# ---- checking values -----------------------------------------------------------------------------------------


def check_text(value: Any, place: str, what: str) -> str:
    """A text field: a string of at most MAX_TEXT_CHARS characters, without NUL bytes or lone surrogates (which
    no file encoding can hold). NUL bytes are refused rather than stripped: the row is named, nothing is
    changed silently."""
    if not isinstance(value, str):
        raise BadInputError(f"{place}: {what} must be text, got {describe(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise BadInputError(
            f"{place}: {what} is {len(value):,} characters long, over the limit of {MAX_TEXT_CHARS:,} "
            "characters for one text field; shorten or split it"
        )
    nul = value.find("\x00")
    if nul >= 0:
        raise BadInputError(
            f"{place}: {what} holds a NUL byte (\\x00) at character {nul}; NUL bytes are refused: remove them "
            "(e.g. `tr -d '\\000' < IN > OUT`)"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadInputError(
                f"{place}: {what} holds an invalid character (a lone surrogate U+{ord(value[exc.start]):04X} at "
                f"character {exc.start}, from a broken \\u escape); fix the text"
            ) from exc
    return value


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = {"nan", "inf", "infinity"}


def _whole(x: float) -> str:
    if math.isnan(x):
        raise ValueError("NaN is not a class")
    if math.isinf(x):
        raise ValueError("an infinity is not a class")
    if not x.is_integer():
        raise ValueError(f"{x!r} is not a whole number")
    return str(int(x))


def label_key(value: Any) -> str | None:
    """The class a raw label stands for, as its name; None for a missing label (null or blank). Raises
    ValueError with the reason for a value that is not a label. The rule (LABEL_RULE): a label is a class name
    (text) or a whole number. Whole numbers are one class however they are written: the integer 1, the float 1.0
    and the strings "1", "1.0", "01", "1e0" all name class "1" (a CSV holds only text, a JSON file numbers, so
    the same data reads the same from either). Booleans (true is neither a name nor an index), NaN and
    infinities (also as the strings "nan", "inf", "infinity"), fractions (0.5), lists and objects are refused."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a class; write the class name or number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _whole(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.lower().lstrip("+-") in _NON_FINITE:
            raise ValueError("NaN and infinities are not classes")
        if _NUMBER.fullmatch(text):
            if "." in text or "e" in text.lower():
                return _whole(float(text))
            return str(int(text))
        return text
    raise ValueError(f"{describe(value)} is not a class")


def _given_labels(given: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """--labels: class names in class-index order, each a label by the same rule, each once."""
    names: list[str] = []
    lookup: dict[str, int] = {}
    for j, raw in enumerate(given):
        try:
            key = label_key(raw)
        except ValueError as exc:
            raise BadInputError(
                f"--labels: {describe(raw)} is not a label ({exc}); the rule: {LABEL_RULE}"
            ) from exc
        if key is None:
            raise BadInputError(
                f"--labels: class {j} is empty; give the class names comma-separated in class-index order, "
                "e.g. --labels negative,positive"
            )
        if key in lookup:
            raise BadInputError(
                f"--labels: {describe(raw.strip())} names the same class as {describe(names[lookup[key]])}; "
                "name each class once"
            )
        check_text(key, "--labels", f"class {j}")
        lookup[key] = j
        names.append(key)
    return names, lookup


def example_id(value: Any, place: str, column: str) -> str:
    """An id from an id column: text (as written) or a whole number (1 and 1.0 are the id "1")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadInputError(
            f"{place}: missing id in column '{column}'; fill it in, or name another id column with --id-col"
        )
    if isinstance(value, str):
        return check_text(value, place, f"the id in column '{column}'")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    raise BadInputError(
        f"{place}: id {describe(value)} in column '{column}' is refused; an id is text or a whole number"
    )


# ---- building rows -----------------------------------------------------------------------------------------


class RowBuilder:
    """Collects validated examples column by column and checks ids for duplicates."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in EXAMPLE_SCHEMA.names}
        self.places: dict[str, str] = {}

    def add(self, example_id: str, place: str, **values: Any) -> None:
        if example_id in self.places:
            raise BadInputError(
                f"{place}: duplicate id {describe(example_id, 80)} (first seen at {self.places[example_id]}); "
                'ids must be unique (the number 1 and the text "1" are the same id)'
            )
        self.places[example_id] = place
        self.columns["example_id"].append(example_id)
        self.columns["row_idx"].append(len(self.places) - 1)
        for name in EXAMPLE_SCHEMA.names[2:]:
            self.columns[name].append(values.get(name))

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=EXAMPLE_SCHEMA)


# ---- SQuAD -------------------------------------------------------------------------------------------------


def parse_squad(
    obj: Any, origin: str, fix_spans: bool, article_place: Callable[[int], str] | None = None
) -> tuple[pa.Table, str, list[str]]:
    """A SQuAD v1.1 / v2.0 document. Every question is checked: id, question and context are non-empty text;
    each answer has non-empty `text` and an integer `answer_start` (not a boolean) with `0 <= answer_start` and
    `answer_start + len(text) <= len(context)`, and the context holds the text there (--fix-spans relocates it);
    `is_impossible` is true or false, and an unanswerable question has no answers. `article_place` names an
    article in messages (a JSONL line, a table row); by default `origin: article N`."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise BadInputError(f"{origin}: not a SQuAD file (expected an object with a 'data' list of articles)")
    rows = RowBuilder()
    notes: list[str] = []
    version = obj.get("version")
    is_v2 = isinstance(version, str) and version.startswith("v2")
    fixed = 0
    for a_idx, article in enumerate(obj["data"]):
        base = article_place(a_idx) if article_place else f"{origin}: article {a_idx}"
        if not isinstance(article, dict):
            raise BadInputError(
                f"{base}: expected an object with 'title' and 'paragraphs', got {describe(article)}"
            )
        title = article.get("title")
        if title is not None:
            check_text(title, base, "the title")
        if article_place is None and title:
            base = f"{base} ({describe(title)})"
        paragraphs = article.get("paragraphs")
        if not isinstance(paragraphs, list):
            raise BadInputError(f"{base} has no 'paragraphs' list")
        for p_idx, para in enumerate(paragraphs):
            where = base if article_place else f"{base} paragraph {p_idx}"
            if not isinstance(para, dict):
                raise BadInputError(
                    f"{where}: expected an object with 'context' and 'qas', got {describe(para)}"
                )
            context = para.get("context")
            if context is None:
                raise BadInputError(f"{where}: missing required field 'context'")
            check_text(context, where, "the context")
            qas = para.get("qas")
            if qas is None:
                qas = []
            if not isinstance(qas, list):
                raise BadInputError(f"{where}: 'qas' must be a list of questions, got {describe(qas)}")
            for q_idx, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    raise BadInputError(f"{where} question {q_idx}: expected an object, got {describe(qa)}")
                qid = qa.get("id")
                if not isinstance(qid, str) or not qid.strip():
                    raise BadInputError(f"{where} question {q_idx}: missing required field 'id'")
                check_text(qid, f"{where} question {q_idx}", "the id")
                place = f"{base if article_place else origin}: question id {describe(qid, 80)}"
                question = qa.get("question")
                if question is None:
                    raise BadInputError(f"{place}: missing required field 'question'")
                check_text(question, place, "the question")
                if not question.strip():
                    raise BadInputError(f"{place}: empty question; remove the question or fill it in")
                if not context.strip():
                    raise BadInputError(f"{place}: empty context; remove the paragraph or fill it in")
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):
                    raise BadInputError(
                        f"{place}: is_impossible must be true or false, got {describe(impossible)}"
                    )
                is_v2 = is_v2 or impossible
                answers = qa.get("answers")
                if answers is None:
                    raise BadInputError(f"{place}: missing required field 'answers'")
                if not isinstance(answers, list):
                    raise BadInputError(f"{place}: 'answers' must be a list, got {describe(answers)}")
                if impossible and answers:
                    raise BadInputError(
                        f'{place}: marked "is_impossible": true but has {len(answers)} answer(s); an unanswerable '
                        'question has no answers (SQuAD v2.0 keeps them as "plausible_answers"): empty "answers" '
                        'or set "is_impossible": false'
                    )
                if not answers and not impossible:
                    raise BadInputError(
                        f'{place}: no answers and not marked is_impossible; add an answer or set "is_impossible": true'
                    )
                clean = []
                for k, ans in enumerate(answers):
                    text, start = (
                        (ans.get("text"), ans.get("answer_start")) if isinstance(ans, dict) else (None, None)
                    )
                    if not isinstance(text, str) or isinstance(start, bool) or not isinstance(start, int):
                        raise BadInputError(
                            f"{place}: answer {k}: each answer needs 'text' (string) and 'answer_start' (integer), "
                            f"got text {describe(text)} and answer_start {describe(start)}"
                        )
                    check_text(text, f"{place}: answer {k}", "the answer text")
                    if not text.strip():
                        raise BadInputError(
                            f"{place}: answer {k} has an empty text; fill it in or remove the answer"
                        )
                    end = start + len(text)
                    inside = 0 <= start and end <= len(context)
                    if not inside or context[start:end] != text:
                        found = _relocate(context, text, start) if fix_spans else -1
                        if found < 0:
                            hint = (
                                "the text does not occur in the context at all; fix the answer"
                                if fix_spans
                                else "pass --fix-spans to relocate answers by searching the context"
                            )
                            if not inside:
                                raise BadInputError(
                                    f"{place}: answer {describe(text)} at answer_start {start} lies outside the "
                                    f"context of {len(context)} characters (need 0 <= answer_start and "
                                    f"answer_start + len(text) <= {len(context)}); {hint}"
                                )
                            raise BadInputError(
                                f"{place}: answer {describe(text)} is not at answer_start {start} (the context there "
                                f"reads {describe(context[start:end])}); {hint}"
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
    place_of: Callable[[int], str],
    opts: ImportOptions,
    class_names: list[str] | None = None,
) -> tuple[str, pa.Table, list[str] | None, bool]:
    """Rows of a table-like source. Returns task, examples, label names, and whether the task is a text pair.
    Texts are checked by `check_text`, labels by `label_key` (LABEL_RULE), ids by `example_id`."""
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

    names, indices = _label_set(records, label_col, opts.labels, class_names, place_of)

    rows = RowBuilder()
    for i, rec in enumerate(records):
        place = place_of(i)
        ex_id = example_id(rec.get(id_col), place, id_col) if id_col is not None else str(i)
        text = rec.get(text_col)
        if text is None or isinstance(text, str) and not text.strip():
            raise BadInputError(
                f"{place}: empty text in column '{text_col}' (id {ex_id}); fill it in or drop the row"
            )
        check_text(text, place, f"the text in column '{text_col}'")
        pair = rec.get(pair_col) if pair_col else None
        if pair_col:
            if pair is None or isinstance(pair, str) and not pair.strip():
                raise BadInputError(
                    f"{place}: empty text pair in column '{pair_col}' (id {ex_id}); fill it in or drop the row"
                )
            check_text(pair, place, f"the text pair in column '{pair_col}'")
        label = indices[i] if indices is not None else None
        rows.add(
            ex_id,
            place,
            text=text,
            text_pair=pair,
            label=label,
            label_name=names[label] if label is not None and names else None,
        )
    return "classification", rows.table(), names, pair_col is not None


def _label_set(
    records: Sequence[dict[str, Any]],
    label_col: str | None,
    given: Sequence[str] | None,
    class_names: list[str] | None,
    place_of: Callable[[int], str],
) -> tuple[list[str] | None, list[int | None] | None]:
    """The ordered label names and each row's class index (None: unlabeled, only -1 of a hub ClassLabel).
    Labels follow LABEL_RULE (see `label_key`); without --labels the classes are the distinct labels, in
    numeric order when all are whole numbers, else in text order."""
    if label_col is None:
        return None, None
    keys: list[str] = []
    for i, rec in enumerate(records):
        value = rec.get(label_col)
        if isinstance(value, str):
            check_text(value, place_of(i), f"the label in column '{label_col}'")
        try:
            key = label_key(value)
        except ValueError as exc:
            raise BadInputError(
                f"{place_of(i)}: column '{label_col}' holds {describe(value)} as a label, which is refused "
                f"({exc}); the rule: {LABEL_RULE}"
            ) from exc
        if key is None:
            raise BadInputError(
                f"{place_of(i)}: empty label in column '{label_col}'; fill it in or drop the label column"
            )
        keys.append(key)
    if class_names is not None:  # hub ClassLabel: integers index the names; -1 means unlabeled
        names = list(class_names)
        lookup = {str(i): i for i in range(len(names))}
    elif given:
        names, lookup = _given_labels(given)
    else:
        distinct = set(keys)
        if all(_INTEGER.fullmatch(k) for k in distinct):
            names = [str(v) for v in sorted(int(k) for k in distinct)]
        else:
            names = sorted(distinct)
        lookup = {n: i for i, n in enumerate(names)}
    indices: list[int | None] = []
    for i, key in enumerate(keys):
        if class_names is not None and key == "-1":
            indices.append(None)
        elif key in lookup:
            indices.append(lookup[key])
        else:
            shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", ..."
            raise BadInputError(
                f"{place_of(i)}: label {describe(key)} is outside the label set {{{shown}}}; "
                "fix the row, or pass the full set with --labels"
            )
    return names, indices


_INTEGER = re.compile(r"-?\d+")


def _qa_records(records, columns, origin, place_of, opts) -> pa.Table:  # type: ignore[no-untyped-def]
    """JSONL / Parquet / hub QA rows in the Hugging Face SQuAD layout: question, context, answers, id."""
    id_col = opts.id_col or ("id" if "id" in columns else None)
    articles: dict[str, Any] = {"version": "", "data": []}
    for i, rec in enumerate(records):
        place = place_of(i)
        for required in ("question", "context"):
            if rec.get(required) is None:
                raise BadInputError(f"{place}: missing required field '{required}'")
        answers = rec.get("answers")
        if answers is None:
            answers = []
        if isinstance(answers, dict):  # {"text": [...], "answer_start": [...]}
            texts, starts = answers.get("text", []), answers.get("answer_start", [])
            if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
                raise BadInputError(
                    f"{place}: 'answers' in the Hugging Face layout needs lists 'text' and 'answer_start' of the "
                    "same length"
                )
            answers = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
        qid = example_id(rec.get(id_col), place, id_col) if id_col is not None else str(i)
        impossible = rec.get("is_impossible")
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
                                "is_impossible": (not answers) if impossible is None else impossible,
                            }
                        ],
                    }
                ],
            }
        )
    table, _version, _notes = parse_squad(articles, origin, opts.fix_spans, article_place=place_of)
    return table


# ---- per-format readers ---------------------------------------------------------------------------------


def read_delimited(
    path: Path, text: str, delimiter: str
) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    """Records, header and each record's first line. Fields are limited to MAX_TEXT_CHARS characters (CSV's
    reader is set to it); a CSV is read strictly (an unclosed quote or text after a closing quote is an
    error, not a field that runs on)."""
    import csv

    # GLUE TSVs hold bare quote characters inside sentences: no quoting for tab-separated files.
    stream = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(stream, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, strict=True)
    old_limit = csv.field_size_limit(MAX_TEXT_CHARS)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    last = 0  # the line the previous record ended on: a record (or an error) starts on the next
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise BadInputError(f"{path}: the file is empty") from None
        header = [h.strip() for h in header]
        if not any(header):
            raise BadInputError(
                f"{path}:1: the first line is empty; it must be the header (the column names)"
            )
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise BadInputError(f"{path}:1: column '{name}' appears twice in the header; rename one")
            seen.add(name)
        last = reader.line_num
        for row in reader:
            first, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise BadInputError(
                    f"{path}:{first}: {len(row)} fields where the header has {len(header)} "
                    f"({', '.join(header)}); check the delimiter and quoting of this line"
                )
            records.append(dict(zip(header, row)))
            lines.append(first)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise BadInputError(
                f"{path}:{last + 1}: a field is longer than {MAX_TEXT_CHARS:,} characters, the limit for "
                "one text field; shorten or split it (or look for an unclosed quote)"
            ) from exc
        if "unexpected end of data" in str(exc):
            raise BadInputError(
                f"{path}:{last + 1}: an unclosed quote (the record starting on this line runs to the end of the "
                "file); close the quote, or double a quote character inside a quoted field"
            ) from exc
        raise BadInputError(
            f"{path}:{last + 1}: malformed CSV ({exc}); check the quoting of this line"
        ) from exc
    finally:
        csv.field_size_limit(old_limit)
    return records, header, lines


def read_jsonl(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    records, lines, columns = [], [], {}
    # split on "\n" only: a JSON string may hold U+2028 and friends, which str.splitlines would split on
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = parse_json(line, str(path), first_line=lineno)
        if not isinstance(obj, dict):
            raise BadInputError(f"{path}:{lineno}: expected a JSON object per line, got {describe(obj)}")
        records.append(obj)
        lines.append(lineno)
        columns.update(dict.fromkeys(obj))
    return records, list(columns), lines


def load_local(path: Path, opts: ImportOptions) -> DatasetSpec:
    """A local file: a regular file (links followed) within the size limit, in a known format."""
    check_regular_file(path)
    fmt, compressed = detect_format(path)
    source = str(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        raw = read_bytes(path)
        if compressed:
            raw = gunzip(raw, source)
        try:
            table = pq.read_table(pa.BufferReader(raw))
            records = table.to_pylist()
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise BadInputError(f"{path}: cannot read Parquet ({exc}); is the file complete?") from exc
        columns = table.column_names
        if len(set(columns)) != len(columns):
            twice = next(c for c in columns if columns.count(c) > 1)
            raise BadInputError(f"{path}: column '{twice}' appears twice; rename one")
        return _tabular_spec(records, columns, path, lambda i: f"{path}: row {i}", opts, fmt)
    text = read_text(path, compressed)
    if not text.strip():
        raise BadInputError(
            f"{path}: the file is empty{' once decompressed' if compressed else ''}; nothing to import"
        )
    if fmt == "squad-json":
        obj = parse_json(text, source)
        if opts.task not in (None, "qa"):
            raise BadInputError(f"{path}: a SQuAD JSON file is a QA dataset; drop --task {opts.task}")
        table, version, notes = parse_squad(obj, source, opts.fix_spans)
        return DatasetSpec("", "qa", source, fmt, table, is_pair=True, version=version, notes=notes)
    if fmt == "jsonl":
        records, columns, lines = read_jsonl(path, text)
        return _tabular_spec(records, columns, path, lambda i: f"{path}:{lines[i]}", opts, fmt)
    records, columns, lines = read_delimited(path, text, "\t" if fmt == "tsv" else ",")
    return _tabular_spec(records, columns, path, lambda i: f"{path}:{lines[i]}", opts, fmt)


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
    """Read and check a whole source; every problem is a BadInputError (nothing here touches the catalog)."""
    if opts.task not in (None, "classification", "qa"):
        raise BadInputError(f"--task must be 'classification' or 'qa', not '{opts.task}'")
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BadInputError(f"--name '{name}': use letters, digits, '-', '_' and '.' only")
    if opts.labels:
        _given_labels(opts.labels)  # before a long read
    try:
        path = Path(source).expanduser()
    except RuntimeError:  # '~user' of an unknown user
        path = Path(source)
    try:
        if os.path.lexists(
            path
        ):  # something is there (a link too: a loop or a dangling link is named as such)
            spec = load_local(path, opts)
        elif looks_like_path(source):
            raise BadInputError(
                f"{source}: no such file; check the path (relative paths start from {Path.cwd()})"
            )
        else:
            spec = load_hub(source, opts)
    except RecursionError as exc:  # a safety net: parsers and checks above name the place themselves
        raise BadInputError(
            f"{source}: the data is nested too deeply to read; this is not a dataset file"
        ) from exc
    spec.name = name
    return spec
