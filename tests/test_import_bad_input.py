"""Each kind of bad input: exit code 2, a message that names the place, and the catalog exactly as it was."""

from __future__ import annotations

import gzip
import json
import os

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


# ---- the rules, seen from the accepting side (in-process: the function the CLI calls) -------------------------


def load(path, **opts):  # noqa: ANN001, ANN003, ANN201
    from engine.importing.sources import ImportOptions, load_source

    return load_source(str(path), "x", ImportOptions(**opts))


def refused(path, *needles: str, **opts) -> str:  # noqa: ANN001, ANN003
    from engine.errors import BadInputError

    with pytest.raises(BadInputError) as info:
        load(path, **opts)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (1, "1"),
        (1.0, "1"),
        ("1", "1"),
        (" 1.0 ", "1"),
        ("01", "1"),
        ("1e0", "1"),
        (-0.0, "0"),
        ("-2", "-2"),
        ("positive", "positive"),
        (" neutral ", "neutral"),
        (None, None),
        ("  ", None),
    ],
)
def test_label_rule_accepts(value, key) -> None:  # noqa: ANN001
    from engine.importing.sources import label_key

    assert label_key(value) == key


@pytest.mark.parametrize(
    "value",
    [True, False, float("nan"), float("inf"), -float("inf"), "nan", "-Infinity", "inf", 0.5, "2.5", [1], {}],
)
def test_label_rule_refuses(value) -> None:  # noqa: ANN001
    from engine.importing.sources import label_key

    with pytest.raises(ValueError):
        label_key(value)


def test_one_class_however_written(tmp_path) -> None:  # noqa: ANN001
    rows = [
        {"text": "a", "label": 1},
        {"text": "b", "label": 1.0},
        {"text": "c", "label": "1"},
        {"text": "d", "label": 0},
    ]
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = load(path)
    assert spec.label_names == ["0", "1"]
    assert spec.examples.column("label").to_pylist() == [1, 1, 1, 0]
    csv_path = tmp_path / "l.csv"
    csv_path.write_text("text,label\na,1\nb,1.0\nc,0\n")
    assert load(csv_path).label_names == ["0", "1"]
    assert load(csv_path, labels=["0", "1.0"]).examples.column("label").to_pylist() == [1, 1, 0]


def test_text_limit_is_the_same_for_every_format(tmp_path) -> None:  # noqa: ANN001
    from engine.importing.sources import MAX_TEXT_CHARS

    at_limit, over = "x" * MAX_TEXT_CHARS, "x" * (MAX_TEXT_CHARS + 1)
    for text, ok in ((at_limit, True), (over, False)):
        files = {
            "t.csv": f"text,label\n{text},1\n",
            "t.tsv": f"text\tlabel\n{text}\t1\n",
            "t.jsonl": json.dumps({"text": text, "label": 1}) + "\n",
            "t.json": json.dumps(
                {
                    "data": [
                        {
                            "paragraphs": [
                                {
                                    "context": text,
                                    "qas": [
                                        {
                                            "id": "q",
                                            "question": "?",
                                            "answers": [{"text": "x", "answer_start": 0}],
                                        }
                                    ],
                                }
                            ]
                        }
                    ]
                }
            ),
        }
        for name, content in files.items():
            path = tmp_path / name
            path.write_text(content)
            if ok:
                assert load(path).examples.num_rows == 1, name
            else:
                message = refused(path, f"{MAX_TEXT_CHARS:,}")
                assert str(path) in message and ("characters" in message), message


def test_gzip_members_and_zero_padding_are_fine(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "m.tsv.gz"
    path.write_bytes(gzip.compress(b"sentence\tlabel\na\t1\n") + gzip.compress(b"b\t0\n") + b"\x00" * 64)
    assert load(path).examples.column("text").to_pylist() == ["a", "b"]


def test_size_limit_boundary_and_env(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "g.tsv"
    path.write_text(GOOD_TSV)
    size = len(GOOD_TSV.encode())
    monkeypatch.setenv("DYNASCOPE_MAX_IMPORT_BYTES", str(size))
    assert load(path).examples.num_rows == 2
    monkeypatch.setenv("DYNASCOPE_MAX_IMPORT_BYTES", str(size - 1))
    refused(
        path, f"the file is {size} bytes", f"import limit of {size - 1} bytes", "DYNASCOPE_MAX_IMPORT_BYTES"
    )
    monkeypatch.setenv("DYNASCOPE_MAX_IMPORT_BYTES", "many")
    refused(path, "DYNASCOPE_MAX_IMPORT_BYTES='many'", "whole number of bytes")


def test_links_are_followed_to_a_regular_file(tmp_path) -> None:  # noqa: ANN001
    real = tmp_path / "real.tsv"
    real.write_text(GOOD_TSV)
    via = tmp_path / "via.tsv"
    via.symlink_to(real)
    assert load(via).examples.num_rows == 2


def test_squad_answers_at_the_edges_pass(tmp_path) -> None:  # noqa: ANN001
    context = "Normandy is a region in France."
    qas: list[dict] = [
        {"id": "start", "question": "?", "answers": [{"text": "Normandy", "answer_start": 0}]},
        {"id": "end", "question": "?", "answers": [{"text": "France.", "answer_start": len(context) - 7}]},
        {"id": "none", "question": "?", "answers": [], "is_impossible": True},
    ]
    path = tmp_path / "edges.json"
    path.write_text(json.dumps(squad(qas, context, version="v2.0")))
    spec = load(path)
    assert spec.version == "v2.0"
    assert spec.examples.column("is_impossible").to_pylist() == [False, False, True]


def test_fix_spans_relocates_an_answer_start_outside_the_context(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "neg.json"
    path.write_text(
        json.dumps(squad([{**good_qa("q1"), "answers": [{"text": "France", "answer_start": -7}]}]))
    )
    refused(path, "'q1'", "answer_start -7 lies outside the context", "--fix-spans")
    spec = load(path, fix_spans=True)
    assert json.loads(spec.examples.column("answers")[0].as_py()) == [{"text": "France", "answer_start": 24}]


def test_jsonl_lines_split_on_newlines_only(tmp_path) -> None:  # noqa: ANN001
    """U+2028 (line separator) is valid inside a JSON string; it must not split the record."""
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps({"text": "one\u2028two", "label": 0}, ensure_ascii=False) + "\n")
    assert load(path).examples.column("text").to_pylist() == ["one\u2028two"]


def test_csv_messages_name_the_first_line_of_a_multiline_record(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "ml.csv"
    path.write_text('text,label\n"two\nlines",1\n\n"also\ntwo",\n')
    refused(path, f"{path}:5:", "empty label")


def test_import_hardening_through_the_cli(seeded, cli, tmp_path) -> None:  # noqa: ANN001
    """The issue's reproductions, end to end: each one exits 2, fast, and lands nothing."""
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    assert_refused(cli, seeded, [str(fifo), "--name", "x"], str(fifo), "named pipe")
    zero = tmp_path / "z.csv"
    zero.symlink_to("/dev/zero")
    assert_refused(cli, seeded, [str(zero), "--name", "x"], f"{zero} -> /dev/zero", "character device")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)
    assert_refused(cli, seeded, [str(deep), "--name", "x"], f"{deep}:1:", "nested too deeply")
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    assert_refused(cli, seeded, [str(loop), "--name", "x"], str(loop), "symbolic link loop")
    garbage = tmp_path / "g.tsv.gz"
    garbage.write_bytes(gzip.compress(GOOD_TSV.encode()) + b"junk")
    message = assert_refused(
        cli, seeded, [str(garbage), "--name", "x"], str(garbage), "trailing garbage at byte"
    )
    assert "not a gzip file" not in message
