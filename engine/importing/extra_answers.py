"""Synthetic second answer spans without an LLM (seed 001, section 5.3: "we create a new 'synthetic' answer span in
a number of answerable questions", so a model cannot assume that a question has one answer).

The rule, per sampled answerable question: take the sentence that holds its (first) gold answer, replace that
answer in a copy of the sentence by another answer of the same shape drawn from the dataset's other questions (a
date for a date, a number for a number, a capitalised name for a name, a lower-case phrase otherwise; answers to
questions of the same wh-word first) that the context does not already contain, and insert the copy right after the original sentence. The new span is an additional
gold answer (the QA objectives train on every gold span); the original answers keep their text, and their
offsets are shifted where they lie after the insertion. Everything else of the context is kept character for
character. Questions the rule cannot serve are kept unchanged and counted by reason.

The result is a new dataset (default DATASET-extra) holding every question of the source, so a run on it differs
from a run on the source only by the synthetic spans. An LLM writing the sentence (the generation issue's
`extra-answers` pipeline) would give more natural sentences; this rule needs no endpoint.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import BadInputError
from storage.datasets import DatasetSpec, get_dataset, list_datasets, write_dataset

# a sentence ends at . ! or ? followed by whitespace (abbreviations split early sometimes: the inserted copy is
# then a shorter clause, still holding the new answer)
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
_NUMBER = re.compile(r"^[\d.,]+$")
_DATE = re.compile(
    r"\b(january|february|march|april|may|june|july|august|september|october|november|december)\b",
    re.IGNORECASE,
)
_WH_WORD = re.compile(r"\b(how many|how much|who|whom|whose|when|where|which|what|why|how)\b")


@dataclass
class ExtraAnswersResult:
    name: str
    n_examples: int
    n_added: int
    skipped: dict[str, int] = field(default_factory=dict)


def answer_shape(text: str) -> str:
    """The kind of answer a replacement must match: 'date' (names a month), 'number', 'name' (capitalised) or
    'phrase'."""
    stripped = text.strip()
    if _DATE.search(stripped):
        return "date"
    if _NUMBER.match(stripped) and any(ch.isdigit() for ch in stripped):
        return "number"
    if stripped[:1].isupper():
        return "name"
    return "phrase"


def sentence_bounds(context: str, start: int, end: int) -> tuple[int, int] | None:
    """[begin, stop) of the sentence holding context[start:end] (stop includes its final punctuation), or None
    when the answer crosses a sentence end."""
    begin = 0
    for match in _SENTENCE_END.finditer(context):
        stop = match.end()
        if stop <= start:
            begin = stop
            continue
        if stop < end:
            return None  # the answer spans two sentences
        break
    else:
        stop = len(context)
    while begin < start and context[begin].isspace():
        begin += 1
    return begin, stop


def gold_sentence(context: str, answers: list[dict[str, Any]]) -> tuple[int, int, int, int] | str:
    """(sentence begin, sentence stop, answer start, answer end) of the first gold answer, or the reason there is
    no single sentence to insert after."""
    gold = answers[0]
    start = int(gold["answer_start"])
    end = start + len(gold["text"])
    if context[start:end] != gold["text"]:
        return "gold answer not at its offset"
    if (start > 0 and context[start - 1].isalnum()) or (end < len(context) and context[end].isalnum()):
        return "gold answer is part of a word"
    bounds = sentence_bounds(context, start, end)
    if bounds is None:
        return "gold answer crosses a sentence end"
    return bounds[0], bounds[1], start, end


def insert_sentence(
    context: str, answers: list[dict[str, Any]], stop: int, sentence: str, span_start: int, span_text: str
) -> tuple[str, list[dict[str, Any]]]:
    """`sentence` inserted at `stop` (after a space), the answers shifted past it, and its span
    sentence[span_start:][:len(span_text)] appended as an additional gold answer."""
    inserted = " " + sentence
    new_context = context[:stop] + inserted + context[stop:]
    shifted = []
    for answer in answers:
        offset = int(answer["answer_start"])
        moved = offset + len(inserted) if offset >= stop else offset
        shifted.append({"text": answer["text"], "answer_start": moved})
    shifted.append({"text": span_text, "answer_start": stop + 1 + span_start})
    return new_context, shifted


def insert_extra_answer(
    context: str, answers: list[dict[str, Any]], replacement: str
) -> tuple[str, list[dict[str, Any]], str] | str:
    """(new context, answers with the new span appended, the inserted sentence), or the reason it cannot."""
    found = gold_sentence(context, answers)
    if isinstance(found, str):
        return found
    begin, stop, start, end = found
    sentence = context[begin:stop]
    copy = sentence[: start - begin] + replacement + sentence[end - begin :]
    new_context, shifted = insert_sentence(context, answers, stop, copy, start - begin, replacement)
    return new_context, shifted, copy


def question_kind(question: str) -> str:
    """The question's wh-word (who, when, how, ...): answers of the same kind are more plausible replacements."""
    match = _WH_WORD.search(question.lower())
    return match.group(0) if match else ""


def _replacement_pool(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Candidate answers by (question kind, shape), and by ("", shape) for any kind."""
    pool: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        kind = question_kind(row["text"] or "")
        for answer in json.loads(row["answers"] or "[]"):
            text = str(answer.get("text", "")).strip().rstrip(".,;:")
            if 0 < len(text) <= 40:
                shape = answer_shape(text)
                pool.setdefault((kind, shape), set()).add(text)
                pool.setdefault(("", shape), set()).add(text)
    return {key: sorted(texts) for key, texts in pool.items()}


def _pick(rng: random.Random, candidates: list[str], gold: str, context: str) -> str | None:
    """A candidate of the same shape that differs from the gold answer and is nowhere in the context."""
    lowered = context.lower()
    for _ in range(20 if candidates else 0):
        text = rng.choice(candidates)
        if text.lower() != gold.lower() and text.lower() not in lowered:
            return text
    return None


def add_extra_answers(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    *,
    fraction: float = 0.3,
    seed: int = 0,
    name: str | None = None,
) -> ExtraAnswersResult:
    """Write DATASET with a synthetic second answer in `fraction` of its answerable questions as a new dataset."""
    if not 0 < fraction <= 1:
        raise BadInputError(f"--fraction must be in (0, 1], got {fraction:g}")
    meta = get_dataset(con, dataset)
    if meta is None:
        known = ", ".join(d["name"] for d in list_datasets(con)) or "(none yet: dynascope import)"
        raise BadInputError(f"no dataset named '{dataset}'; known: {known}")
    if meta["task"] != "qa":
        raise BadInputError(f"'{dataset}' is a {meta['task']} dataset: extra answers need a QA dataset")
    target = name or f"{dataset}-extra"
    if get_dataset(con, target) is not None:
        raise BadInputError(f"a dataset named '{target}' already exists; choose another --name")
    table = con.sql(
        """SELECT example_id, row_idx, text, text_pair, label, label_name, answers, is_impossible, title, orig_id
           FROM examples WHERE dataset = ? ORDER BY row_idx""",
        params=[dataset],
    ).to_arrow_table()
    rows = table.to_pylist()
    answerable = [
        i for i, row in enumerate(rows) if not row["is_impossible"] and json.loads(row["answers"] or "[]")
    ]
    rng = random.Random(seed)
    chosen = sorted(rng.sample(answerable, round(fraction * len(answerable))))
    pool = _replacement_pool(rows)
    skipped: Counter[str] = Counter()
    added = 0
    for i in chosen:
        row = rows[i]
        answers = json.loads(row["answers"])
        gold = str(answers[0]["text"])
        shape, context = answer_shape(gold), row["text_pair"] or ""
        replacement = _pick(rng, pool.get((question_kind(row["text"] or ""), shape), []), gold, context)
        replacement = replacement or _pick(rng, pool[("", shape)], gold, context)
        if replacement is None:
            skipped["no replacement of the same shape outside the context"] += 1
            continue
        outcome = insert_extra_answer(row["text_pair"] or "", answers, replacement)
        if isinstance(outcome, str):
            skipped[outcome] += 1
            continue
        row["text_pair"], new_answers, _ = outcome
        row["answers"] = json.dumps(new_answers)
        added += 1
    examples = pa.Table.from_pylist(rows, schema=table.schema)
    spec = DatasetSpec(
        name=target,
        task="qa",
        source=(
            f"'{dataset}' with a rule-based synthetic second answer in {added} of {len(answerable)} answerable "
            f"questions (fraction {fraction:g}, seed {seed})"
        ),
        format=meta["format"],
        examples=examples,
        is_pair=bool(meta["is_pair"]),
        version=meta["version"],
        parent=dataset,
    )
    write_dataset(con, spec)
    return ExtraAnswersResult(target, len(rows), added, dict(sorted(skipped.items())))
