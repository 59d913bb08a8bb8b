"""The `extra-answers` pipeline (seed 001, section 5.3) against the real local LLM server: a second plausible answer
in a sentence inserted after the gold answer's sentence, labelled as an additional gold span; the new dataset
imports and trains with the objective that trains on every gold span."""

from __future__ import annotations

import json

from engine.generation.server import LocalServer
from storage.workspace import Workspace
from tests.conftest import run_cli
from tests.test_generate_job import examples, generate, provenance

pytest_plugins = ["tests.llm_fixtures"]  # llm_server, gen_ws

SQUAD_NAME = "squad-few"


def test_extra_answers_insert_a_sentence_and_train(gen_ws: Workspace, llm_server: LocalServer) -> None:
    done = generate(
        gen_ws, llm_server.base_url, "--pipeline", "extra-answers", "--from", SQUAD_NAME, "--name", "extra",
        "--n", "6", "--concurrency", "2",
    )  # fmt: skip
    assert done["status"] == "done"
    sources = {e["example_id"]: e for e in examples(gen_ws, SQUAD_NAME)}
    records = provenance(gen_ws, "extra")
    rows = {e["example_id"]: e for e in examples(gen_ws, "extra")}
    assert len(records) == 6  # one record per sampled question, accepted or rejected with its reason
    reasons = {"no-gold-sentence", "empty-sentence", "empty-answer", "answer-not-in-sentence", "same-answer"}
    for rec in records:
        assert rec["pipeline"] == "extra-answers" and rec["prompt_id"] == "extra-answers"
        assert rec["parent_dataset"] == SQUAD_NAME and rec["parent_example_id"] in sources
        assert rec["accepted"] == (rec["reason"] is None)
        assert rec["accepted"] or rec["reason"] in reasons or rec["reason"].startswith("request:"), rec
    assert rows, [(r["reason"], r["verdicts"]) for r in records]  # a 135M model still manages a few

    for example_id, row in rows.items():
        rec = next(r for r in records if r["example_id"] == example_id)
        parent = sources[rec["parent_example_id"]]
        answers = json.loads(row["answers"])
        old_answers = json.loads(parent["answers"])
        assert len(answers) == len(old_answers) + 1
        for answer in answers:  # every answer at its offset
            start = answer["answer_start"]
            assert row["text_pair"][start : start + len(answer["text"])] == answer["text"]
        assert [a["text"] for a in answers[:-1]] == [a["text"] for a in old_answers]
        # the context differs from the original only by the inserted sentence, right after the gold one
        sentence = json.loads(rec["verdicts"])["sentence"]
        inserted = " " + sentence
        at = row["text_pair"].index(inserted)
        assert row["text_pair"][:at] + row["text_pair"][at + len(inserted) :] == parent["text_pair"]
        assert at >= old_answers[0]["answer_start"] + len(old_answers[0]["text"])
        assert at <= answers[-1]["answer_start"] < at + len(inserted)
        assert row["text"] == parent["text"]

    trained = run_cli(
        gen_ws, "train", "extra", "--max-length", "128", "--epochs", "1", "--batch-size", "4",
        "--qa-objective", "uniform-null", "--json", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert trained.code == 0, trained.stderr
    assert trained.json()["status"] == "done"
