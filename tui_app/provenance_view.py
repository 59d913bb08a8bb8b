"""How a generated example's provenance and its parent read on screen (the examples list's panel and the detail
view): the words are the same in both, so a user learns them once."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from engine.analysis.provenance import Provenance, answers_of

GOLD_STYLE = "bold black on green3"


def compact(value: Any) -> str:
    """A verdict on one line: {"prediction": "positive", "run": "r1"} -> prediction=positive run=r1."""
    if isinstance(value, dict):
        return " ".join(f"{k}={compact(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def provenance_text(p: Provenance) -> Text:
    row = p.row
    text = Text()
    text.append("generated", style="bold")
    text.append(f" by {row['pipeline']} · model {row['model']}")
    if row.get("endpoint_host"):
        text.append(f" @ {row['endpoint_host']}")
    if row.get("prompt_id"):
        text.append(f" · prompt {row['prompt_id']} v{row.get('prompt_version')}")
    tokens = f"tokens {row.get('prompt_tokens') or 0}+{row.get('completion_tokens') or 0}"
    text.append(f"\n{tokens} · cached {'yes' if row.get('cached') else 'no'} · ")
    if row.get("accepted"):
        text.append("accepted", style="green")
    else:
        text.append(f"rejected: {row.get('reason')}", style="red")
    verdicts = p.verdicts
    if verdicts:
        text.append("\nverdicts: " + "; ".join(f"{name}: {compact(v)}" for name, v in verdicts.items()))
    return text


def highlighted_context(record: dict[str, Any]) -> Text:
    """A QA record's context with its gold answers highlighted."""
    context = str(record.get("text_pair") or "")
    text = Text(context)
    for answer in answers_of(record):
        start = answer.get("answer_start")
        if isinstance(start, int) and 0 <= start <= len(context):
            text.stylize(GOLD_STYLE, start, start + len(str(answer.get("text", ""))))
    return text


def answers_line(record: dict[str, Any]) -> str:
    answers = answers_of(record)
    if answers:
        return "answers: " + "; ".join(dict.fromkeys(repr(a.get("text")) for a in answers))
    return "answers: none (unanswerable)" if record.get("is_impossible") else "answers: none"


def parent_heading(p: Provenance) -> Text:
    row = p.row
    text = Text()
    text.append("parent", style="bold")
    text.append(f" {row['parent_dataset']}/{row['parent_example_id']}")
    if p.parent is not None and (p.parent.get("label_name") or p.parent.get("label") is not None):
        text.append(f" · label {p.parent.get('label_name') or p.parent.get('label')}")
    return text


def parent_text(p: Provenance) -> Text:
    """The parent example in full (the detail view): its text, and for QA its context and answers."""
    text = parent_heading(p)
    parent = p.parent
    if parent is None:
        text.append("\nnot in the catalog any more", style="italic")
        return text
    if p.task == "qa":
        text.append("\nquestion: ", style="bold")
        text.append(str(parent.get("text") or ""))
        text.append("\ncontext: ", style="bold")
        text.append_text(highlighted_context(parent))
        text.append("\n" + answers_line(parent))
    else:
        text.append("\n" + str(parent.get("text") or ""))
        if parent.get("text_pair"):
            text.append("\n\n" + str(parent["text_pair"]))
    return text


def parent_line(p: Provenance) -> Text:
    """The parent in a line or two (the examples list's panel): its text, for QA the question and answers."""
    text = parent_heading(p)
    parent = p.parent
    if parent is None:
        text.append(": not in the catalog any more", style="italic")
        return text
    text.append(": " + " ".join(str(parent.get("text") or "").split()))
    if p.task == "qa":
        text.append(" · " + answers_line(parent))
    return text
