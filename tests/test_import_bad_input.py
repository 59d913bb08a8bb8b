"""Each kind of bad input: exit code 2, a message that names the place, and the catalog exactly as it was."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.catalog_dump import dump_catalog

GOOD_TSV = "sentence\tlabel\na fine film\t1\na dull film\t0\n"


def squad(qas: list[dict], context: str = "Normandy is a region in France.", version: str = "1.1") -> dict:
    return {"version": version, "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}


def good_qa(qid: str = "q1") -> dict:
    return {"id": qid, "question": "Where is Normandy?", "answers": [{"text": "France", "answer_start": 24}]}


@pytest.fixture
def seeded(ws, cli, tmp_path):
    """A workspace that already holds one dataset, so 'unchanged' means something."""
    good = tmp_path / "good.tsv"
    good.write_text(GOOD_TSV)
    assert cli("import", str(good), "--name", "existing").code == 0
    return ws


def assert_refused(cli, ws, args: list[str], *needles: str) -> str:
    before = dump_catalog(ws)
    result = cli("import", *args)
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    message = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert "Traceback" not in result.stderr
    assert dump_catalog(ws) == before
    return message


def test_non_utf8_file(seeded, cli, tmp_path):
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes("sentence\tlabel\nok\t1\ncaf\xe9 au lait\t0\n".encode("latin-1"))
    assert_refused(cli, seeded, [str(bad), "--name", "x"], f"{bad}:3", "UTF-8")


def test_unreadable_file(seeded, cli, tmp_path):
    missing = tmp_path / "nope.tsv"
    assert_refused(cli, seeded, [str(missing), "--name", "x"], str(missing), "no such file")


def test_truncated_json(seeded, cli, tmp_path, data_dir):
    text = gzip.decompress((data_dir / "squad_v1.1/dev-v1.1.json.gz").read_bytes()).decode()
    bad = tmp_path / "cut.json"
    bad.write_text(text[: len(text) // 2])
    assert_refused(cli, seeded, [str(bad), "--name", "x"], str(bad), "truncated JSON")


def test_truncated_gzip(seeded, cli, tmp_path, data_dir):
    raw = (data_dir / "squad_v1.1/dev-v1.1.json.gz").read_bytes()
    bad = tmp_path / "cut.json.gz"
    bad.write_bytes(raw[: len(raw) // 3])
    assert_refused(cli, seeded, [str(bad), "--name", "x"], str(bad), "gzip stream is truncated")


def test_missing_required_field(seeded, cli, tmp_path):
    qa = good_qa("q7")
    del qa["question"]
    bad = tmp_path / "noquestion.json"
    bad.write_text(json.dumps(squad([good_qa("q1"), qa])))
    assert_refused(cli, seeded, [str(bad), "--name", "x"], "'q7'", "missing required field 'question'")


def test_missing_required_column(seeded, cli, tmp_path):
    bad = tmp_path / "cols.csv"
    bad.write_text("body,label\nhello,1\n")
    assert_refused(
        cli, seeded, [str(bad), "--name", "x"], str(bad), "missing required text column", "--text-col"
    )
    assert_refused(
        cli, seeded, [str(bad), "--name", "x", "--text-col", "sentence"], "'sentence' was not found", "body"
    )


def test_empty_text(seeded, cli, tmp_path):
    bad = tmp_path / "empty.tsv"
    bad.write_text("sentence\tlabel\nfine\t1\n   \t0\n")
    assert_refused(cli, seeded, [str(bad), "--name", "x"], f"{bad}:3", "empty text")


def test_answer_not_at_answer_start_and_fix_spans(seeded, cli, tmp_path):
    qa = good_qa("q2")
    qa["answers"][0]["answer_start"] = 3
    bad = tmp_path / "span.json"
    bad.write_text(json.dumps(squad([good_qa("q1"), qa])))
    assert_refused(cli, seeded, [str(bad), "--name", "x"], "'q2'", "not at answer_start 3", "--fix-spans")

    fixed = cli("import", str(bad), "--name", "x", "--fix-spans")
    assert fixed.code == 0, fixed.stderr
    assert "relocated 1 answer span" in fixed.stderr
    rows = cli(
        "sql", "SELECT answers FROM examples WHERE dataset = 'x' AND example_id = 'q2'", "--json"
    ).json()
    assert json.loads(rows[0]["answers"]) == [{"text": "France", "answer_start": 24}]


def test_answer_absent_even_with_fix_spans(seeded, cli, tmp_path):
    qa = good_qa("q3")
    qa["answers"][0]["text"] = "Germany"
    bad = tmp_path / "absent.json"
    bad.write_text(json.dumps(squad([qa])))
    assert_refused(
        cli, seeded, [str(bad), "--name", "x", "--fix-spans"], "'q3'", "does not occur in the context"
    )


def test_duplicate_ids(seeded, cli, tmp_path):
    bad = tmp_path / "dups.jsonl"
    lines = [
        {"id": "a", "text": "one", "label": 0},
        {"id": "b", "text": "two", "label": 1},
        {"id": "a", "text": "3", "label": 1},
    ]
    bad.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert_refused(cli, seeded, [str(bad), "--name", "x"], f"{bad}:3", "duplicate id 'a'", f"{bad}:1")


def test_label_outside_label_set(seeded, cli, tmp_path):
    bad = tmp_path / "labels.tsv"
    bad.write_text("sentence\tlabel\ngood\t1\nbad\t0\nodd\t2\n")
    assert_refused(
        cli, seeded, [str(bad), "--name", "x", "--labels", "0,1"], f"{bad}:4", "label '2' is outside"
    )


def test_existing_name_and_replace(seeded, cli, tmp_path):
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\nnew one\t0\n")
    assert_refused(cli, seeded, [str(other), "--name", "existing"], "'existing' already exists", "--replace")
    replaced = cli("import", str(other), "--name", "existing", "--replace")
    assert replaced.code == 0, replaced.stderr
    data = {d["name"]: d["n_examples"] for d in cli("datasets", "--json").json()}
    assert data == {"existing": 1}


def test_unknown_format(seeded, cli, tmp_path):
    bad = tmp_path / "data.xml"
    bad.write_text("<x/>")
    assert_refused(cli, seeded, [str(bad), "--name", "x"], str(bad), "unknown format '.xml'")


def test_unreachable_hub(seeded, cli):
    # No network here or in CI: the hub cannot be reached, and the message says how to import a local file.
    message = assert_refused(
        cli, seeded, ["someone/some-dataset", "--name", "x"], "'someone/some-dataset'", "unreachable"
    )
    assert "import a local file" in message


def test_failure_midway_lands_nothing(seeded, cli, tmp_path):
    """The error is on the last row: the rows before it must not land either."""
    bad = tmp_path / "late.tsv"
    bad.write_text("sentence\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(500)) + "\t1\n")
    assert_refused(cli, seeded, [str(bad), "--name", "late"], f"{bad}:502", "empty text")


def test_bad_name(seeded, cli, tmp_path):
    good = tmp_path / "g.tsv"
    good.write_text(GOOD_TSV)
    assert_refused(cli, seeded, [str(good), "--name", "bad name;drop"], "--name", "letters, digits")
