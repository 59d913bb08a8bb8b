"""The qa-from-context filter on its own: offsets are computed from the context (never taken from the model),
on word boundaries; every rejected pair keeps its reason."""

from __future__ import annotations

from engine.generation.pipelines import answer_span, qa_records

CONTEXT = "Denver Broncos defeated the Carolina Panthers 24-10 at Levi's Stadium in Santa Clara."


def test_answer_span_is_computed_on_word_boundaries() -> None:
    assert answer_span(CONTEXT, "Carolina Panthers") == CONTEXT.index("Carolina")
    assert answer_span(CONTEXT, "Panth") is None  # cut mid-word
    assert answer_span(CONTEXT, "24-10") == CONTEXT.index("24-10")
    assert answer_span(CONTEXT, "Oakland") is None and answer_span(CONTEXT, "") is None


def test_qa_records_keep_rejections_with_reasons() -> None:
    reply = {
        "pairs": [
            {"question": "Who lost?", "answer": "Carolina Panthers"},
            {"question": "Where?", "answer": "Oakland"},
            {"question": "", "answer": "Denver"},
            {"question": "Who lost?", "answer": "Carolina Panthers"},
            {"question": "Score?", "answer": ""},
        ]
    }
    records = qa_records({"text_pair": CONTEXT}, reply, {"pairs": 5})
    assert [r.reason for r in records] == [
        None,
        "answer-not-in-context",
        "empty-question",
        "duplicate",
        "empty-answer",
    ]
    (answer,) = records[0].answers
    assert (
        CONTEXT[answer["answer_start"] : answer["answer_start"] + len(answer["text"])] == "Carolina Panthers"
    )
    assert records[1].answers[0]["answer_start"] == -1 and records[1].verdicts["substring"] == "missing"
    assert [r.reason for r in qa_records({"text_pair": CONTEXT}, {"pairs": []}, {"pairs": 2})] == ["no-pairs"]
