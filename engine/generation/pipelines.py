"""The generation pipelines (seed 004): what each asks the LLM for one source example, and what it keeps.

- `context` (step 1): for a real question, a new context of at most `words` words written for it.
- `extra-answers` (seed 001, section 5.3): for an answerable example, a sentence holding a second plausible answer,
  inserted after the gold answer's sentence and labelled as an additional gold span (offset computed here).
- `qa-from-context` (step 2): question + answer pairs from a context; an answer must be an exact substring of the
  context: its character offset is computed here (`str.find`), never taken from the model, or the pair is
  rejected with its reason.

Each prompt template has an id and a version, stored with every generated example (bump the version when the
wording changes: the cache key changes with the messages anyway, the version tells a reader which prompt it was).
A pipeline turns one source row into `Record`s: accepted ones become examples, rejected ones are kept with a
reason and the verdicts of each filter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field


class ContextReply(BaseModel):
    context: str = Field(description="the new paragraph")


# Length limits are part of the schema: a server that turns the schema into a grammar (llama.cpp) cannot ramble
# past them, and a reply that does fails validation.
class QAPair(BaseModel):
    question: str = Field(max_length=120)
    answer: str = Field(max_length=40, description="1 to 5 words copied exactly from the context")


class QAReply(BaseModel):
    pairs: list[QAPair] = Field(max_length=20)


@dataclass(frozen=True)
class Template:
    id: str
    version: int
    system: str
    user: str  # str.format fields: see each pipeline's `messages`


CONTEXT_TEMPLATE = Template(
    id="context",
    version=1,
    system="You write short encyclopedic paragraphs. Reply with JSON only.",
    user=(
        "Write a new factual paragraph of at most {words} words that answers this question somewhere in it.\n"
        'Question: {question}\nReply as {{"context": "..."}}'
    ),
)

QA_TEMPLATE = Template(
    id="qa-from-context",
    version=1,
    system="You write reading-comprehension questions. Reply with JSON only.",
    user=(
        "Paragraph: {context}\n\nWrite {pairs} question(s) about the paragraph above. Each answer is 1 to 5 "
        "words copied word for word from the paragraph.\n"
        'Reply as {{"pairs": [{{"question": "...", "answer": "..."}}]}}'
    ),
)


@dataclass
class Record:
    """One generated example, accepted or not, with what decided it."""

    text: str  # the question
    text_pair: str | None  # the context (classification: the second text, if any)
    answers: list[dict[str, Any]] = field(default_factory=list)
    label: int | None = None  # classification: the label the example keeps
    label_name: str | None = None
    accepted: bool = True
    reason: str | None = None
    verdicts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    name: str
    template: Template
    schema: type[BaseModel]
    messages: Callable[[dict[str, Any], dict[str, Any]], list[dict[str, str]]]
    max_tokens: Callable[[dict[str, Any]], int]
    records: Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], list[Record]]
    # what a source row must have: "question" (a QA example), "context", "answer" (an answerable example) or
    # "label" (a labelled classification example)
    needs: str = "question"
    task: str = "qa"  # of the source dataset and of the new one


def _messages(template: Template, **values: Any) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": template.system},
        {"role": "user", "content": template.user.format(**values)},
    ]


# ---- context ------------------------------------------------------------------------------------------------


def context_records(row: dict[str, Any], reply: dict[str, Any], settings: dict[str, Any]) -> list[Record]:
    text = " ".join(str(reply.get("context") or "").split())
    words = len(text.split())
    record = Record(text=row["text"], text_pair=text)
    if not text:
        record.accepted, record.reason = False, "empty-context"
    elif words > int(settings["words"]):
        record.accepted, record.reason = False, "too-long"
    record.verdicts["length"] = f"{words} words (max {settings['words']})"
    return [record]


CONTEXT = Pipeline(
    name="context",
    template=CONTEXT_TEMPLATE,
    schema=ContextReply,
    messages=lambda row, s: _messages(CONTEXT_TEMPLATE, words=s["words"], question=row["text"]),
    max_tokens=lambda s: int(s["words"] * 2) + 32,  # about 1.3 tokens a word, and the JSON around it
    records=context_records,
)


# ---- qa-from-context ------------------------------------------------------------------------------------------


def answer_span(context: str, answer: str) -> int | None:
    """The character offset of `answer` in `context`: its first exact occurrence on word boundaries (a span cut
    mid-word, as a length limit leaves it, is no answer), or None."""
    if not answer:
        return None
    offset = context.find(answer)
    while offset >= 0:
        end = offset + len(answer)
        before_ok = offset == 0 or not (context[offset - 1].isalnum() and answer[0].isalnum())
        after_ok = end == len(context) or not (context[end].isalnum() and answer[-1].isalnum())
        if before_ok and after_ok:
            return offset
        offset = context.find(answer, offset + 1)
    return None


def qa_records(row: dict[str, Any], reply: dict[str, Any], settings: dict[str, Any]) -> list[Record]:
    context = row["text_pair"]
    out: list[Record] = []
    seen: set[tuple[str, str]] = set()
    for pair in (reply.get("pairs") or [])[: int(settings["pairs"])]:
        question = " ".join(str(pair.get("question") or "").split())
        answer = str(pair.get("answer") or "").strip()
        record = Record(text=question, text_pair=context)
        offset = answer_span(context, answer)
        if not question:
            record.accepted, record.reason = False, "empty-question"
        elif not answer:
            record.accepted, record.reason = False, "empty-answer"
        elif offset is None:
            record.accepted, record.reason = False, "answer-not-in-context"
        elif (question.lower(), answer.lower()) in seen:
            record.accepted, record.reason = False, "duplicate"
        record.verdicts["substring"] = "found" if offset is not None else "missing"
        # the answer as the model wrote it, also for rejected pairs (they are kept for inspection)
        record.answers = [{"text": answer, "answer_start": offset if offset is not None else -1}]
        seen.add((question.lower(), answer.lower()))
        out.append(record)
    if not out:
        out.append(Record(text="", text_pair=context, accepted=False, reason="no-pairs"))
    return out


QA_FROM_CONTEXT = Pipeline(
    name="qa-from-context",
    template=QA_TEMPLATE,
    schema=QAReply,
    messages=lambda row, s: _messages(QA_TEMPLATE, pairs=s["pairs"], context=row["text_pair"]),
    max_tokens=lambda s: 64 * int(s["pairs"]) + 24,  # within the schema's length limits
    records=qa_records,
    needs="context",
)

# ---- extra-answers --------------------------------------------------------------------------------------------


class ExtraAnswerReply(BaseModel):
    sentence: str = Field(max_length=240, description="one new sentence")
    answer: str = Field(max_length=40, description="the other answer, copied exactly from the sentence")


EXTRA_ANSWER_TEMPLATE = Template(
    id="extra-answers",
    version=1,
    system="You write one sentence for a reading-comprehension dataset. Reply with JSON only.",
    user=(
        "Paragraph: {context}\nQuestion: {question}\nThe paragraph's answer: {answer}\n\n"
        "Write one new sentence in the style of the paragraph that gives a different but plausible answer to the "
        "question. The different answer (1 to 5 words) must appear word for word in your sentence.\n"
        'Reply as {{"sentence": "...", "answer": "..."}}'
    ),
)


def _gold(row: dict[str, Any]) -> list[dict[str, Any]]:
    return list(json.loads(row.get("answers") or "[]"))


def extra_answer_records(
    row: dict[str, Any], reply: dict[str, Any], settings: dict[str, Any]
) -> list[Record]:
    """The source example with the model's sentence inserted after its gold answer's sentence and the sentence's
    answer as an additional gold span (offset computed here); or the source rejected with the reason."""
    from engine.importing.extra_answers import gold_sentence, insert_sentence
    from engine.tasks.squad_metric import normalize_answer

    context, answers = row["text_pair"] or "", _gold(row)
    sentence = " ".join(str(reply.get("sentence") or "").split())
    if sentence and sentence[-1] not in ".!?":
        sentence += "."  # a sentence end, so the next sentence of the context stays a sentence of its own
    answer = str(reply.get("answer") or "").strip()
    record = Record(text=row["text"], text_pair=context, answers=answers)
    offset = answer_span(sentence, answer)
    record.verdicts["substring"] = "found" if offset is not None else "missing"
    record.verdicts["sentence"] = sentence
    found = gold_sentence(context, answers) if answers else "no gold answer"
    if isinstance(found, str):
        record.accepted, record.reason = False, "no-gold-sentence"
        record.verdicts["gold"] = found
    elif not sentence:
        record.accepted, record.reason = False, "empty-sentence"
    elif not answer:
        record.accepted, record.reason = False, "empty-answer"
    elif offset is None:
        record.accepted, record.reason = False, "answer-not-in-sentence"
    elif any(normalize_answer(answer) == normalize_answer(a["text"]) for a in answers):
        record.accepted, record.reason = False, "same-answer"
    if not record.accepted or isinstance(found, str) or offset is None:
        return [record]
    record.text_pair, record.answers = insert_sentence(context, answers, found[1], sentence, offset, answer)
    return [record]


EXTRA_ANSWERS = Pipeline(
    name="extra-answers",
    template=EXTRA_ANSWER_TEMPLATE,
    schema=ExtraAnswerReply,
    messages=lambda row, s: _messages(
        EXTRA_ANSWER_TEMPLATE, context=row["text_pair"], question=row["text"], answer=_gold(row)[0]["text"]
    ),
    max_tokens=lambda s: 120,  # within the schema's length limits
    records=extra_answer_records,
    needs="answer",
)

# ---- augment-region -------------------------------------------------------------------------------------------


class RewriteReply(BaseModel):
    rewrite: str = Field(max_length=600, description="the rewritten text")


REWRITE_TEMPLATE = Template(
    id="augment-region",
    version=1,
    system="You rewrite short texts for a text-classification dataset. Reply with JSON only.",
    user=(
        "Text: {text}\nIts label: {label}\n\nRewrite the text in different words, about as long, so that it "
        'keeps the same meaning and the same label.\nReply as {{"rewrite": "..."}}'
    ),
)


def rewrite_records(row: dict[str, Any], reply: dict[str, Any], settings: dict[str, Any]) -> list[Record]:
    """A label-preserving rewrite of the example's text (a pair keeps its second text); the trained run checks the
    label afterwards (engine.jobs.generate: `label-check`)."""
    rewrite = " ".join(str(reply.get("rewrite") or "").split())
    record = Record(
        text=rewrite, text_pair=row.get("text_pair"), label=row.get("label"), label_name=row.get("label_name")
    )
    if not rewrite:
        record.accepted, record.reason = False, "empty-rewrite"
    elif rewrite.lower() == " ".join(str(row["text"]).split()).lower():
        record.accepted, record.reason = False, "unchanged"
    return [record]


AUGMENT_REGION = Pipeline(
    name="augment-region",
    template=REWRITE_TEMPLATE,
    schema=RewriteReply,
    messages=lambda row, s: _messages(REWRITE_TEMPLATE, text=row["text"], label=row.get("label_name")),
    max_tokens=lambda s: 160,
    records=rewrite_records,
    needs="label",
    task="classification",
)

PIPELINES: dict[str, Pipeline] = {
    p.name: p for p in (CONTEXT, QA_FROM_CONTEXT, EXTRA_ANSWERS, AUGMENT_REGION)
}
