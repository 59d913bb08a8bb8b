"""Rule-based synthetic second answers (seed 001, section 5.3) on real SQuAD v1.1 dev questions."""

from __future__ import annotations

import gzip
import json

import duckdb

from engine.importing.extra_answers import answer_shape, insert_extra_answer
from tests.catalog_dump import dump_catalog

N_ARTICLES = 3


def write_subset(data_dir, path) -> int:
    with gzip.open(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", "rt", encoding="utf-8") as fh:
        dev = json.load(fh)
    subset = {"version": "1.1", "data": dev["data"][:N_ARTICLES]}
    path.write_text(json.dumps(subset))
    return sum(len(p["qas"]) for a in subset["data"] for p in a["paragraphs"])


def examples(ws, dataset: str) -> dict[str, dict]:
    with duckdb.connect(str(ws.catalog_path), read_only=True) as con:
        rel = con.execute(
            "SELECT example_id, text, text_pair, answers, title FROM examples WHERE dataset = ?", [dataset]
        )
        cols = [d[0] for d in rel.description]
        return {r[0]: dict(zip(cols, r)) for r in rel.fetchall()}


def test_extra_answers_insert_one_sentence_with_a_valid_second_span(ws, cli, data_dir, tmp_path):
    n = write_subset(data_dir, tmp_path / "squad.json")
    assert cli("import", str(tmp_path / "squad.json"), "--name", "sq").code == 0
    result = cli("extra-answers", "sq", "--fraction", "0.5", "--seed", "3", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["name"] == "sq-extra" and report["n_examples"] == n
    # every sampled question got a span or is counted with its reason
    assert report["n_added"] + sum(report["skipped"].values()) == round(0.5 * n)
    assert report["n_added"] >= 0.8 * round(0.5 * n)

    before, after = examples(ws, "sq"), examples(ws, "sq-extra")
    assert before.keys() == after.keys()
    changed = 0
    for example_id, new in after.items():
        old = before[example_id]
        assert (new["text"], new["title"]) == (old["text"], old["title"])
        answers = json.loads(new["answers"])
        for answer in answers:  # every gold span, old and new, is at its stored offset
            assert new["text_pair"][answer["answer_start"] :][: len(answer["text"])] == answer["text"]
        if new["text_pair"] == old["text_pair"]:
            assert new["answers"] == old["answers"]
            continue
        changed += 1
        original, context = old["text_pair"], new["text_pair"]
        # one contiguous insertion: the common prefix and suffix cover the whole original
        prefix = next((i for i, (a, b) in enumerate(zip(original, context)) if a != b), len(original))
        suffix = next(
            (i for i, (a, b) in enumerate(zip(reversed(original), reversed(context))) if a != b),
            len(original),
        )
        assert prefix + suffix >= len(original)
        old_answers = json.loads(old["answers"])
        assert [a["text"] for a in answers[:-1]] == [a["text"] for a in old_answers]
        extra, gold = answers[-1]["text"], old_answers[0]["text"]
        assert extra.lower() != gold.lower() and extra.lower() not in original.lower()
        assert answer_shape(extra) == answer_shape(gold)
        # the new span lies inside the inserted text, wherever (between lo and hi) the insertion is placed
        width, start = len(context) - len(original), answers[-1]["answer_start"]
        lo, hi = len(original) - suffix, prefix
        assert max(lo, start + len(extra) - width) <= min(hi, start)
    assert changed == report["n_added"]

    again = cli("extra-answers", "sq", "--fraction", "0.5", "--seed", "3", "--name", "sq-again", "--json")
    assert again.code == 0
    assert examples(ws, "sq-again") == {k: v for k, v in after.items()}  # deterministic for a seed
    other = cli("extra-answers", "sq", "--fraction", "0.5", "--seed", "4", "--name", "sq-other")
    assert other.code == 0
    assert examples(ws, "sq-other") != after


def test_insertion_keeps_the_context_and_shifts_later_answers():
    context = "Alpha came first. The winner was Denver in 2016. Later, Denver celebrated."
    answers = [
        {"text": "Denver", "answer_start": 33},
        {"text": "Denver", "answer_start": context.rindex("Denver")},
    ]
    outcome = insert_extra_answer(context, answers, "Carolina")
    assert not isinstance(outcome, str)
    new_context, new_answers, sentence = outcome
    assert sentence == "The winner was Carolina in 2016."
    assert (
        new_context
        == "Alpha came first. The winner was Denver in 2016. The winner was Carolina in 2016. Later, Denver celebrated."
    )
    for answer in new_answers:
        assert new_context[answer["answer_start"] :][: len(answer["text"])] == answer["text"]
    assert [a["text"] for a in new_answers] == ["Denver", "Denver", "Carolina"]
    assert (
        insert_extra_answer(context, [{"text": "Denver", "answer_start": 3}], "X")
        == "gold answer not at its offset"
    )


def test_extra_answers_bad_input_changes_nothing(ws, cli, data_dir, tmp_path):
    write_subset(data_dir, tmp_path / "squad.json")
    assert cli("import", str(tmp_path / "squad.json"), "--name", "sq").code == 0
    (tmp_path / "cls.csv").write_text("text,label\ngood,1\nbad,0\n")
    assert cli("import", str(tmp_path / "cls.csv"), "--name", "cls").code == 0
    before = dump_catalog(ws)
    for args, needle in [
        (("extra-answers", "nope"), "no dataset named 'nope'"),
        (("extra-answers", "cls"), "extra answers need a QA dataset"),
        (("extra-answers", "sq", "--fraction", "0"), "--fraction must be in (0, 1]"),
        (("extra-answers", "sq", "--name", "cls"), "'cls' already exists"),
    ]:
        result = cli(*args)
        assert result.code == 2 and needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert dump_catalog(ws) == before
