"""Text attacks on extractive QA examples (no model, no torch): each turns one SQuAD example (question, context,
gold answers with character offsets) into an attacked example, or says why it cannot.

- `negation`: the sentence that holds the (first) gold answer is negated with one edit: " not" inserted after an
  auxiliary or copula (is, was, has, can, ...), or a past-tense / third-person verb replaced by "did not" /
  "does not" + its lemma (lemminflect, offline). The edit never touches the answer span, and nothing else in the
  context changes. The question then has no answer in the context: the attacked gold is [] (a v2.0 model should
  abstain; EM / F1 count abstentions).
- `entity-rename`: when the (first) gold answer is a capitalised name ("Denver Broncos"), every whole-word
  occurrence of it in the context is replaced by a new name of the same shape (as many capitalised words; Faker,
  offline, seeded by the attack's seed and the example id, so a run is reproducible), and every gold answer with
  it (offsets shifted; a gold answer that only partly overlaps an occurrence can no longer be stated and is left
  out). The model should follow the rename.

An example that cannot be attacked gets `Attacked.reason` (one of REASONS) and no attacked text.
"""

from __future__ import annotations

import calendar
import json
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.analysis.attacks import QA_METHODS

AUXILIARIES = frozenset(
    "is are was were am has have had will would can could shall should may might must does do did".split()
)
NEGATIONS = frozenset("not no never nor neither cannot n't".split())
# a sentence ends at . ! or ? followed by white space and a capital letter, a digit or a quote
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")
WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
NAME = re.compile(r"^[A-Z][a-z]+(?: [A-Z][a-z]+){0,3}$")
NAME_WORD = re.compile(r"^[A-Z][a-z]+$")
CALENDAR = frozenset(w for w in (*calendar.month_name, *calendar.day_name) if w)

REASONS = {
    "unanswerable": "the question has no gold answer to attack",
    "already-negated": "the answer's sentence already holds a negation",
    "no-verb": "no auxiliary or finite verb outside the answer in the answer's sentence",
    "not-a-name": "the gold answer is not a capitalised name",
    "name-in-question": "the question names the answer, so renaming it would change the question",
    "no-fresh-name": "no new name of the same shape that the context does not hold already",
}


@dataclass
class QAExample:
    example_id: str
    question: str
    context: str
    answers: list[dict[str, Any]]  # [{"text", "answer_start"}], as imported


@dataclass
class Attacked:
    """One attack's outcome: the attacked context and gold answers, or a reason (REASONS) it was not attacked."""

    context: str | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None


def sentence_span(context: str, position: int) -> tuple[int, int]:
    """[start, end) of the sentence of `context` holding character `position`."""
    start = 0
    for match in SENTENCE_END.finditer(context):
        if match.start() > position:
            return start, match.start()
        start = match.end()
    return start, len(context)


def _negated_verb(word: str) -> str | None:
    """ "did not <lemma>" for a past-tense verb, "does not <lemma>" for a third-person one; None when `word` is
    not unambiguously a finite verb (a noun reading, as in "states", rules it out)."""
    from lemminflect import getAllLemmas, getInflection

    lemmas = getAllLemmas(word)
    if "VERB" not in lemmas or "NOUN" in lemmas or "AUX" in lemmas:
        return None
    for lemma in lemmas["VERB"]:
        if lemma != word and word in getInflection(lemma, tag="VBD"):
            return f"did not {lemma}"
        if lemma != word and word in getInflection(lemma, tag="VBZ"):
            return f"does not {lemma}"
    return None


def negate(example: QAExample) -> Attacked:
    if not example.answers:
        return Attacked(reason="unanswerable")
    gold = example.answers[0]
    a_start = int(gold["answer_start"])
    a_end = a_start + len(gold["text"])
    s_start, s_end = sentence_span(example.context, a_start)
    words = [
        (m.start() + s_start, m.end() + s_start, m.group())
        for m in WORD.finditer(example.context[s_start:s_end])
    ]
    if any(w.lower() in NEGATIONS or w.lower().endswith("n't") for _, _, w in words):
        return Attacked(reason="already-negated")
    candidates: list[tuple[int, int, int, str]] = []  # (distance to the answer, start, end, replacement)
    for k, (start, end, word) in enumerate(words):
        if start < a_end and end > a_start:
            continue  # inside the answer
        distance = a_start - end if end <= a_start else start - a_end
        if word in AUXILIARIES:
            candidates.append((distance, start, end, f"{word} not"))
            continue
        if not word.islower() or any(
            w.lower() in AUXILIARIES | {"to"} for _, _, w in words[max(0, k - 2) : k]
        ):
            continue  # a participle or infinitive after an auxiliary: the auxiliary is the one to negate
        replacement = _negated_verb(word)
        if replacement is not None:
            candidates.append((distance, start, end, replacement))
    if not candidates:
        return Attacked(reason="no-verb")
    _, start, end, replacement = min(candidates)
    context = example.context[:start] + replacement + example.context[end:]
    return Attacked(context=context, answers=[])


def _fresh_name(shape: int, seed: int, example_id: str, taken: str) -> str | None:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(int(seed) * 1_000_003 + zlib.crc32(example_id.encode()))
    for _ in range(50):
        words = (
            [fake.last_name()]
            if shape == 1
            else [fake.first_name()] + [fake.last_name() for _ in range(shape - 1)]
        )
        name = " ".join(words)
        if all(NAME_WORD.match(w) for w in words) and not re.search(
            rf"(?<!\w){re.escape(name)}(?!\w)", taken
        ):
            return name
    return None


def rename_entity(example: QAExample, seed: int) -> Attacked:
    if not example.answers:
        return Attacked(reason="unanswerable")
    name = example.answers[0]["text"].strip()
    if not NAME.match(name) or name in CALENDAR:
        return Attacked(reason="not-a-name")
    pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
    if pattern.search(example.question):
        return Attacked(reason="name-in-question")
    new = _fresh_name(len(name.split()), seed, example.example_id, example.context + "\n" + example.question)
    if new is None:
        return Attacked(reason="no-fresh-name")
    occurrences = [m.start() for m in pattern.finditer(example.context)]
    context = pattern.sub(new, example.context)
    delta = len(new) - len(name)
    answers = []
    for answer in example.answers:
        start = int(answer["answer_start"])
        text = pattern.sub(new, answer["text"])
        shifted = start + delta * sum(1 for o in occurrences if o + len(name) <= start)
        if context[shifted : shifted + len(text)] == text:  # else it only partly overlapped an occurrence
            answers.append({"text": text, "answer_start": shifted})
    return Attacked(context=context, answers=answers)


def attack_example(example: QAExample, method: str, seed: int) -> Attacked:
    if method == "negation":
        return negate(example)
    if method == "entity-rename":
        return rename_entity(example, seed)
    raise ValueError(f"unknown QA attack {method!r}; choose one of {QA_METHODS}")


# ---- result rows and figures ------------------------------------------------------------------------------


def result_rows(
    method: str,
    examples: list[QAExample],
    attacked: list[Attacked],
    predict: Callable[[list[tuple[str, str, str]]], list[str]],
    v2: bool,
) -> list[dict[str, Any]]:
    """One row per example (engine.evaluation.attacks.ATTACK_SCHEMA). `predict` answers (id, question, context)
    triples with the model's span ("" for no answer); every example is asked once clean, an attacked one once
    more on its attacked context (queries 1 or 2). Status: unattackable (with its reason), else succeeded
    (right before, wrong after, by exact match), failed (right after) or wrong-before (wrong both times)."""
    from engine.tasks.squad_metric import best_over_golds

    asks = [(f"clean:{ex.example_id}", ex.question, ex.context) for ex in examples]
    asks += [
        (f"attacked:{ex.example_id}", ex.question, att.context)
        for ex, att in zip(examples, attacked)
        if att.context is not None
    ]
    answers = dict(zip((a[0] for a in asks), predict(asks)))
    rows = []
    for ex, att in zip(examples, attacked):
        before = answers[f"clean:{ex.example_id}"]
        em_before, f1_before = best_over_golds(before, [a["text"] for a in ex.answers], v2)
        row: dict[str, Any] = {
            "example_id": ex.example_id,
            "method": method,
            "text": ex.context,
            "text_pair": ex.question,
            "prediction_before": before,
            "correct_before": em_before == 1.0,
            "f1_before": f1_before,
            "answers": json.dumps(ex.answers),
            "queries": 1,
            "changed_words": [],
        }
        if att.context is None:
            row.update(status="unattackable", reason=att.reason)
        else:
            after = answers[f"attacked:{ex.example_id}"]
            em_after, f1_after = best_over_golds(after, [a["text"] for a in att.answers], v2)
            status = "failed" if em_after == 1.0 else ("succeeded" if em_before == 1.0 else "wrong-before")
            row.update(
                perturbed_text=att.context,
                perturbed_answers=json.dumps(att.answers),
                prediction_after=after,
                correct_after=em_after == 1.0,
                f1_after=f1_after,
                status=status,
                queries=2,
                changed_words=changed_word_positions(ex.context, att.context),
            )
        rows.append(row)
    return rows


def changed_word_positions(original: str, perturbed: str) -> list[int]:
    """Positions (engine.analysis.attacks words) of the words of `perturbed` that are not in `original`."""
    import difflib

    from engine.analysis.attacks import words_of

    matcher = difflib.SequenceMatcher(None, words_of(original), words_of(perturbed), autojunk=False)
    return [j for tag, _, _, j1, j2 in matcher.get_opcodes() if tag != "equal" for j in range(j1, j2)]


def summarise_qa(rows: dict[str, list[Any]]) -> dict[str, Any]:
    """The figures of a QA attack, recounted from its rows (fractions): over the attacked examples, EM and F1
    before (clean_accuracy, clean_f1) and under attack (aua, f1), the drops, the attack success rate (succeeded
    over those right before) and #Query; the unattackable examples counted by reason."""
    n = len(rows.get("example_id", []))
    attacked = [i for i in range(n) if rows["status"][i] != "unattackable"]
    reasons: dict[str, int] = {}
    for i in range(n):
        if rows["status"][i] == "unattackable":
            reasons[rows["reason"][i]] = reasons.get(rows["reason"][i], 0) + 1

    def mean(column: str) -> float | None:
        values = [float(rows[column][i]) for i in attacked]
        return sum(values) / len(values) if values else None

    right_before = [i for i in attacked if rows["correct_before"][i]]
    clean_em, em = mean("correct_before"), mean("correct_after")
    clean_f1, f1 = mean("f1_before"), mean("f1_after")
    return {
        "n_examples": n,
        "n_attacked": len(attacked),
        "n_unattackable": n - len(attacked),
        "unattackable": dict(sorted(reasons.items())),
        "n_succeeded": sum(1 for i in attacked if rows["status"][i] == "succeeded"),
        "clean_accuracy": clean_em,
        "aua": em,
        "clean_f1": clean_f1,
        "f1": f1,
        "em_drop": None if clean_em is None or em is None else clean_em - em,
        "f1_drop": None if clean_f1 is None or f1 is None else clean_f1 - f1,
        "success_rate": (
            sum(1 for i in right_before if rows["status"][i] == "succeeded") / len(right_before)
            if right_before
            else None
        ),
        "avg_queries": mean("queries"),
    }
