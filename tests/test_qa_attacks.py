"""QA attacks (negation, entity-rename) end to end through the CLI on real SQuAD v2.0 dev questions: a tiny real
v2.0 run (MiniLM, 40 questions, 1 epoch, max length 64), both attacks on the same 40 questions. Each attacked
text is checked independently of the code that made it: a negated context differs from the original by one
negation in the answer's sentence and nothing else, a renamed context keeps every character but the renamed
name, every gold offset points at its answer; unattackable examples are counted with a reason; the reported
EM / F1 figures equal a recount of the stored rows (catalog and Parquet)."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from engine.evaluation.qa_attacks import QAExample, rename_entity, sentence_span
from storage.artifacts import attack_results_path
from tests.conftest import run_cli

pytest_plugins = ["tests.qa_v2_fixture"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
AUXILIARIES = set(
    "is are was were am has have had will would can could shall should may might must does do did".split()
)


def attack(ws, run_id: str, method: str) -> dict:
    result = run_cli(
        ws, "attack", run_id, "squad2", "--method", method, "--seed", "3", "--json", env=ONE_THREAD
    )
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["status"] == "done" and summary["attack"]["method"] == method
    return summary


@pytest.fixture(scope="module")
def negation(qa_v2):
    return attack(*qa_v2, "negation")


@pytest.fixture(scope="module")
def rename(qa_v2):
    return attack(*qa_v2, "entity-rename")


def n_questions(ws) -> int:
    return run_cli(ws, "sql", "SELECT count(*) AS n FROM examples WHERE dataset = 'squad2'", "--json").json()[
        0
    ]["n"]


def stored_rows(ws, attack_run: str) -> list[dict]:
    rows = run_cli(
        ws, "sql", f"SELECT * FROM attack_results WHERE run_id = '{attack_run}' ORDER BY example_id", "--json"
    ).json()
    assert len(rows) == n_questions(ws)  # every example has a row: attacked or counted with a reason
    return rows


def offsets_valid(context: str, answers: list[dict]) -> bool:
    return all(context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"] for a in answers)


def test_negation_changes_only_the_answer_sentence_by_one_negation(qa_v2, negation):
    from lemminflect import getAllInflections

    ws, _ = qa_v2
    rows = stored_rows(ws, negation["run_id"])
    attacked = [r for r in rows if r["status"] != "unattackable"]
    assert len(attacked) >= 8
    for row in attacked:
        original, negated = row["text"], row["perturbed_text"]
        gold = json.loads(row["answers"])[0]
        assert offsets_valid(original, json.loads(row["answers"]))
        assert json.loads(row["perturbed_answers"]) == []  # unanswerable now
        # one edit: the longest common prefix and suffix leave the changed middle
        shortest = min(len(original), len(negated))
        prefix = 0
        while prefix < shortest and original[prefix] == negated[prefix]:
            prefix += 1
        suffix = 0
        while suffix < shortest - prefix and original[-1 - suffix] == negated[-1 - suffix]:
            suffix += 1
        before, after = original[prefix : len(original) - suffix], negated[prefix : len(negated) - suffix]
        assert after  # something was added
        start, end = sentence_span(original, gold["answer_start"])
        assert start <= prefix <= end  # in the answer's sentence
        a_start, a_end = gold["answer_start"], gold["answer_start"] + len(gold["text"])
        assert prefix + len(before) <= a_start or prefix >= a_end  # never inside the answer
        # in words: "AUX" -> "AUX not", or "VERB" -> "did / does not LEMMA"
        old_words, new_words = (re.findall(r"[A-Za-z]+|[^\sA-Za-z]", t) for t in (original, negated))
        p = 0
        while old_words[p] == new_words[p]:
            p += 1
        q = 0
        while old_words[-1 - q] == new_words[-1 - q]:
            q += 1
        old, new = old_words[p : len(old_words) - q], new_words[p : len(new_words) - q]
        if old == []:
            assert new == ["not"] and old_words[p - 1] in AUXILIARIES, (old_words[p - 1], new)
        else:
            assert len(old) == 1 and len(new) == 3 and new[0] in ("did", "does") and new[1] == "not", (
                old,
                new,
            )
            tag = "VBD" if new[0] == "did" else "VBZ"
            assert old[0] in getAllInflections(new[2], upos="VERB").get(tag, ()), (old, new)


def test_negation_scores_count_abstentions_and_equal_a_recount(qa_v2, negation):
    from engine.tasks.squad_metric import normalize_answer

    ws, _ = qa_v2
    rows = stored_rows(ws, negation["run_id"])
    attacked = [r for r in rows if r["status"] != "unattackable"]
    for row in attacked:
        # a v2.0 model is right to abstain; as the official v2.0 scorer has it, a prediction that normalises to
        # nothing (",") is an abstention
        abstained = normalize_answer(row["prediction_after"]) == ""
        assert row["correct_after"] == abstained and row["f1_after"] == (1.0 if abstained else 0.0)
    recount_em = sum(r["correct_after"] for r in attacked) / len(attacked)
    recount_clean = sum(r["correct_before"] for r in attacked) / len(attacked)
    figures = negation["attack"]
    assert figures["aua"] == pytest.approx(recount_em) and figures["f1"] == pytest.approx(recount_em)
    assert figures["clean_accuracy"] == pytest.approx(recount_clean)
    assert figures["clean_f1"] == pytest.approx(sum(r["f1_before"] for r in attacked) / len(attacked))
    unattackable = [r for r in rows if r["status"] == "unattackable"]
    assert figures["n_unattackable"] == len(unattackable) and figures["n_examples"] == n_questions(ws)
    # half the v2.0 questions have no answer: they cannot be negated, and say so
    assert {r["reason"] for r in unattackable} >= {"unanswerable"}
    assert all(r["reason"] and r["perturbed_text"] is None for r in unattackable)


def test_entity_rename_keeps_every_other_character_and_valid_offsets(qa_v2, rename):
    ws, _ = qa_v2
    rows = stored_rows(ws, rename["run_id"])
    attacked = [r for r in rows if r["status"] != "unattackable"]
    assert len(attacked) >= 5
    for row in attacked:
        original, renamed = row["text"], row["perturbed_text"]
        answers, new_answers = json.loads(row["answers"]), json.loads(row["perturbed_answers"])
        assert offsets_valid(original, answers) and offsets_valid(renamed, new_answers) and new_answers
        old_name, new_name = answers[0]["text"], new_answers[0]["text"]
        assert old_name != new_name and new_name not in original
        # same shape: as many words, each capitalised
        assert len(new_name.split()) == len(old_name.split())
        assert all(re.fullmatch(r"[A-Z][a-z]+", w) for w in new_name.split())
        # every other character kept: cut both texts at the name occurrences, the pieces between are equal
        pieces = re.split(rf"(?<!\w){re.escape(old_name)}(?!\w)", original)
        assert len(pieces) >= 2
        assert renamed == new_name.join(pieces)
        assert old_name not in re.sub(re.escape(new_name), "", renamed) or old_name in new_name
        assert (
            row["text_pair"] and old_name not in row["text_pair"]
        )  # the question is kept and does not name it
    reasons = {r["reason"] for r in rows if r["status"] == "unattackable"}
    assert "not-a-name" in reasons and None not in reasons


def test_entity_rename_scores_equal_a_recount_of_the_parquet_rows(qa_v2, rename):
    from engine.tasks.squad_metric import best_over_golds

    ws, _ = qa_v2
    table = pq.read_table(attack_results_path(ws.run_dir(rename["run_id"]))).to_pylist()
    attacked = [r for r in table if r["status"] != "unattackable"]
    f1_after = []
    for row in attacked:
        golds = [a["text"] for a in json.loads(row["perturbed_answers"])]
        em, f1 = best_over_golds(row["prediction_after"], golds, v2=True)
        assert row["correct_after"] == (em == 1.0) and row["f1_after"] == pytest.approx(f1)
        f1_after.append(f1)
    figures = rename["attack"]
    assert figures["f1"] == pytest.approx(sum(f1_after) / len(f1_after))
    assert figures["aua"] == pytest.approx(sum(r["correct_after"] for r in attacked) / len(attacked))
    assert figures["n_unattackable"] == len(table) - len(attacked)


def test_rename_is_seeded_and_deterministic():
    context = (
        "Rollo led the Normans. Later Rollo, count of Rouen, swore fealty; Rollos are not Rollo's heirs."
    )
    ex = QAExample("q1", "Who led the Normans?", context, [{"text": "Rollo", "answer_start": 0}])
    first, again, other = rename_entity(ex, 1), rename_entity(ex, 1), rename_entity(ex, 2)
    assert first.context == again.context and first.context != other.context
    new = first.answers[0]["text"]
    assert first.context == context.replace("Rollo led", f"{new} led").replace(
        "Later Rollo,", f"Later {new},"
    ).replace("Rollo's", f"{new}'s")  # "Rollos" is another word: kept


def test_qa_attack_on_a_classification_method_is_refused(qa_v2):
    ws, run_id = qa_v2
    result = run_cli(ws, "attack", run_id, "squad2", "--method", "char-swap")
    assert result.code == 2 and "needs a classification run" in result.stderr and "negation" in result.stderr


async def test_the_app_browses_qa_attack_rows(qa_v2, negation, rename):
    from tests.tui_helpers import make_app, settle
    from tui_app.screens.attacks import AttacksScreen

    ws, _ = qa_v2
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_attacks(rename["run_id"])
        await settle(app, pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, AttacksScreen) and screen.chosen == rename["run_id"]
        assert len(screen.examples) == n_questions(ws)
        title = str(screen.query_one("#attacks-title").render())
        f1 = rename["attack"]["f1"]
        assert f"F1 {100 * rename['attack']['clean_f1']:.1f} -> {100 * f1:.1f}" in title
        detail = str(screen.query_one("#attack-detail").render())
        first = screen.examples[0]
        assert first["status"] != "unattackable" and first["example_id"] in detail
        assert json.loads(first["perturbed_answers"])[0]["text"] in detail
        for _ in range(4):  # status filter: all -> succeeded -> failed -> wrong-before -> unattackable
            await pilot.press("s")
        await settle(app, pilot, rounds=4)
        assert screen.status == "unattackable"
        assert screen.examples and all(r["status"] == "unattackable" for r in screen.examples)
        assert f"not attacked: {screen.examples[0]['reason']}" in str(
            screen.query_one("#attack-detail").render()
        )
        assert not app.errors


def test_compare_table_counts_attacked_examples_only(qa_v2, negation, rename):
    ws, run_id = qa_v2
    result = run_cli(ws, "compare", run_id, "--json")
    assert result.code == 0, result.stderr
    (row,) = result.json()
    assert row["dataset"] == "squad2" and set(row["attacks"]) == {"negation", "entity-rename"}
    for summary in (negation, rename):
        assert row["attacks"][summary["attack"]["method"]]["aua"] == pytest.approx(summary["attack"]["aua"])
    attacked = {
        r["example_id"]: r["correct_before"]
        for s in (negation, rename)
        for r in stored_rows(ws, s["run_id"])
        if r["status"] != "unattackable"
    }
    assert row["n_examples"] == len(attacked)  # Clean% beside the Aua%: the examples some attack changed
    assert row["clean_accuracy"] == pytest.approx(sum(attacked.values()) / len(attacked))
