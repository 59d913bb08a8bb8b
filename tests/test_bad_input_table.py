"""The bad-input table: every way a careful user was seen to break dynascope, as one table of cases.

Each case is an id, a setup that writes the bad input (into `ctx.tmp`, or into the workspace copy `ctx.ws`) and
returns the CLI arguments, the expected exit code and a regular expression the stderr message must match (after
whitespace is collapsed), naming the place: the file and line, the row, the question id, the option. Every case
also asserts: no traceback on stderr, and the catalog exactly as it was (a full dump before and after).

Most cases run the CLI in this process (tests/conftest.py cli_in_process: the same click command, a process start
cheaper); the few marked `own_process` run it as a user does, a separate process through `python -m tui_app`, so
the console script, real exit codes and real stderr stay covered, and so does a lock another process holds. An
in-process case also asserts the command left no file of the workspace open.

To add a case, append a `Case` to `CASES` (or to a group below). A setup may change the workspace copy (write a
broken run folder, take a lock, make it read-only): it is a fresh copy of the seeded workspace for every case,
and the "before" dump is taken after the setup. `{tmp}` and `{ws}` in the pattern stand for those folders.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from storage.workspace import Workspace
from tests.catalog_dump import dump_catalog
from tests.conftest import CliResult, open_files_under, run_cli

GOOD_TSV = "sentence\tlabel\na fine film\t1\na dull film\t0\n"
SEEDED = "existing"  # the dataset every workspace copy holds
CONTEXT = "Normandy is a region in France."


@dataclass
class Ctx:
    """What a setup gets: a folder for its files, the workspace copy, the real data, and an env to extend."""

    tmp: Path
    ws: Workspace
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)  # run after the case (a lock holder ends)

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]  # writes the bad input, returns the CLI arguments
    pattern: str  # a regex the collapsed stderr must match; {tmp}, {ws} are replaced (escaped)
    code: int | tuple[int, ...] = 2
    own_process: bool = False  # run the CLI as a subprocess (run_cli), not in this process


def imp(path: Path, *extra: str, name: str = "x") -> list[str]:
    return ["import", str(path), "--name", name, *extra]


def squad(qas: list[dict], context: str = CONTEXT, version: str = "1.1") -> str:
    return json.dumps(
        {"version": version, "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}
    )


def qa(qid: str = "q1", **answer: object) -> dict:
    ans = {"text": "France", "answer_start": 24, **answer}
    return {"id": qid, "question": "Where is Normandy?", "answers": [ans]}


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def file_case(
    id: str, name: str, content: str | bytes | Callable[[Ctx], str | bytes], pattern: str, *extra: str
) -> Case:
    """A file written as is and imported: the usual shape of a case."""

    def setup(ctx: Ctx) -> list[str]:
        data = content(ctx) if callable(content) else content
        return imp(ctx.write(name, data), *extra)

    return Case(id, setup, pattern)


# ---- paths: what is not a regular file, or not there --------------------------------------------------------


def fifo(ctx: Ctx) -> list[str]:
    path = ctx.tmp / "x.csv"
    os.mkfifo(path)
    return imp(path)


def link(target: str | Path, name: str = "x.csv") -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        path = ctx.tmp / name
        path.symlink_to(target)
        return imp(path)

    return setup


def loop(ctx: Ctx) -> list[str]:
    (ctx.tmp / "a.csv").symlink_to(ctx.tmp / "b.csv")
    (ctx.tmp / "b.csv").symlink_to(ctx.tmp / "a.csv")
    return imp(ctx.tmp / "a.csv")


def folder(ctx: Ctx) -> list[str]:
    (ctx.tmp / "data.csv").mkdir()
    return imp(ctx.tmp / "data.csv")


def unreadable(ctx: Ctx) -> list[str]:
    # As root the permission bits do not stop a read: the file then holds a header only, refused for that.
    path = ctx.write("locked.tsv", "sentence\tlabel\n")
    path.chmod(0)
    return imp(path)


UNREADABLE = (
    r"{tmp}/locked\.tsv: .*(permission denied|holds no rows)"
    if os.geteuid() == 0
    else r"{tmp}/locked\.tsv: .*permission denied"
)


def with_limit(limit: int, name: str, content: str | bytes) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        ctx.env["DYNASCOPE_MAX_IMPORT_BYTES"] = str(limit)
        return imp(ctx.write(name, content))

    return setup


PATH_CASES = [
    Case("fifo-named-csv", fifo, r"{tmp}/x\.csv: a named pipe \(FIFO\), not a regular file"),
    Case(
        "link-to-dev-zero", link("/dev/zero"), r"{tmp}/x\.csv -> /dev/zero: a character device, not a regular"
    ),
    Case("symlink-loop", loop, r"{tmp}/a\.csv -> .*b\.csv: a symbolic link loop"),
    Case(
        "dangling-link", link("/nonexistent/data.csv"), r"{tmp}/x\.csv -> /nonexistent/data\.csv: a dangling"
    ),
    Case("directory-not-file", folder, r"{tmp}/data\.csv: is a folder; name a data file inside it"),
    Case(
        "missing-file",
        lambda ctx: imp(ctx.tmp / "nope.csv"),
        r"{tmp}/nope\.csv: no such file; check the path",
        own_process=True,
    ),
    Case("unreadable-file", unreadable, UNREADABLE),
    # readable to nobody, root included: reading /proc/<pid>/mem at offset 0 is an I/O error
    Case(
        "io-error-on-read",
        link("/proc/self/mem"),
        r"{tmp}/x\.csv: cannot read the file \(Input/output error\)",
    ),
    Case(
        "file-over-size-limit",
        with_limit(64, "big.tsv", GOOD_TSV * 10),
        r"{tmp}/big\.tsv: the file is 4[0-9]{2} bytes, over the import limit of 64 bytes;"
        r".*DYNASCOPE_MAX_IMPORT_BYTES",
    ),
    Case(
        "gz-decompresses-over-limit",
        with_limit(4096, "bomb.tsv.gz", gzip.compress(b"sentence\tlabel\n" + b"a" * 200_000 + b"\t1\n")),
        r"{tmp}/bomb\.tsv\.gz: the data decompresses to more than 4,096 bytes, over the import limit",
    ),
    Case(
        "bad-size-limit-variable",
        with_limit(-5, "g.tsv", GOOD_TSV),
        r"\$DYNASCOPE_MAX_IMPORT_BYTES='-5': give the import size limit as a whole number of bytes",
    ),
    file_case("unknown-extension", "data.xml", "<x/>", r"{tmp}/data\.xml: unknown format '\.xml'"),
    file_case("no-extension", "data", GOOD_TSV, r"{tmp}/data: unknown format '\(no extension\)'"),
]

# ---- bytes: compression and encoding --------------------------------------------------------------------------

GZ = gzip.compress(GOOD_TSV.encode())


def corrupt_gzip() -> bytes:
    raw = bytearray(gzip.compress(("sentence\tlabel\n" + "words and more words\t1\n" * 200).encode()))
    raw[30:40] = b"\xff" * 10
    return bytes(raw)


BYTE_CASES = [
    file_case(
        "gzip-trailing-garbage",
        "t.tsv.gz",
        GZ + b"this is not gzip",
        rf"{{tmp}}/t\.tsv\.gz: trailing garbage at byte {len(GZ)}: .*not gzip",
    ),
    file_case("gzip-truncated", "t.tsv.gz", GZ[:20], r"{tmp}/t\.tsv\.gz: the gzip stream is truncated"),
    file_case("gzip-corrupt", "t.tsv.gz", corrupt_gzip(), r"{tmp}/t\.tsv\.gz: the gzip stream is corrupt"),
    file_case(
        "not-gzip-but-gz", "t.tsv.gz", GOOD_TSV, r"{tmp}/t\.tsv\.gz: not a gzip file although it ends in"
    ),
    replace(
        file_case(
            "latin1-not-utf8",
            "l.tsv",
            "sentence\tlabel\nok\t1\ncaf\xe9\t0\n".encode("latin-1"),
            r"{tmp}/l\.tsv:3: not valid UTF-8 .*iconv",
        ),
        own_process=True,
    ),
    file_case(
        "utf16-with-bom", "u.csv", "text,label\na,1\n".encode("utf-16"), r"{tmp}/u\.csv: the file is UTF-16"
    ),
    file_case(
        "utf8-bom-is-not-a-column-name",
        "bom.csv",
        "\ufefftext,label\na,1\n".encode(),
        r"{tmp}/bom\.csv: the text column 'body' was not found; the columns are: text, label",
        "--text-col",
        "body",
    ),
    file_case("empty-csv", "e.csv", "", r"{tmp}/e\.csv: the file is empty"),
    file_case("blank-json", "e.json", "  \n\n", r"{tmp}/e\.json: the file is empty"),
    file_case(
        "empty-gz",
        "e.jsonl.gz",
        gzip.compress(b""),
        r"{tmp}/e\.jsonl\.gz: the file is empty once decompressed",
    ),
]

# ---- tables: CSV, TSV, JSONL, Parquet --------------------------------------------------------------------------


def parquet(rows: dict[str, list]) -> Callable[[Ctx], bytes]:
    def build(ctx: Ctx) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(pa.table(rows), sink)
        return sink.getvalue()

    return build


def truncated_parquet(ctx: Ctx) -> bytes:
    whole = parquet({"text": [f"row {i}" for i in range(100)], "label": [i % 2 for i in range(100)]})(ctx)
    return whole[: len(whole) // 2]


TABLE_CASES = [
    file_case("header-only", "h.csv", "text,label\n", r"{tmp}/h\.csv: the file holds no rows"),
    file_case(
        "wrong-column-names",
        "c.csv",
        "body,label\nhello,1\n",
        r"{tmp}/c\.csv: missing required text column .*--text-col",
    ),
    file_case(
        "label-col-not-found",
        "c.tsv",
        GOOD_TSV,
        r"{tmp}/c\.tsv: the label column 'gold' was not found; the columns are: sentence, label",
        "--label-col",
        "gold",
    ),
    file_case(
        "duplicate-header-column",
        "d.csv",
        "text,text,label\na,b,1\n",
        r"{tmp}/d\.csv:1: column 'text' appears twice",
    ),
    file_case(
        "field-count-mismatch",
        "f.csv",
        "text,label\na,1\nb,0,extra\n",
        r"{tmp}/f\.csv:3: 3 fields where the header has 2",
    ),
    file_case(
        "unclosed-quote",
        "q.csv",
        'text,label\na,1\n"b,0\nc,1\n',
        r"{tmp}/q\.csv:3: an unclosed quote",
    ),
    file_case(
        "duplicate-ids",
        "dups.jsonl",
        jsonl(
            {"id": "a", "text": "one", "label": 0},
            {"id": "b", "text": "two", "label": 1},
            {"id": "a", "text": "3", "label": 1},
        ),
        r"{tmp}/dups\.jsonl:3: duplicate id 'a' \(first seen at {tmp}/dups\.jsonl:1\)",
    ),
    file_case(
        "mixed-type-ids-collide",
        "mixed.jsonl",
        jsonl({"id": 1, "text": "one", "label": 0}, {"id": "1", "text": "two", "label": 1}),
        r"{tmp}/mixed\.jsonl:2: duplicate id '1' .*the number 1 and the text \"1\" are the same id",
    ),
    file_case(
        "missing-id-value",
        "noid.jsonl",
        jsonl({"id": "a", "text": "one", "label": 0}, {"id": None, "text": "two", "label": 1}),
        r"{tmp}/noid\.jsonl:2: missing id in column 'id'",
    ),
    file_case(
        "empty-text",
        "e.tsv",
        "sentence\tlabel\nfine\t1\n   \t0\n",
        r"{tmp}/e\.tsv:3: empty text in column 'sentence'",
    ),
    file_case(
        "text-not-a-string",
        "t.jsonl",
        jsonl({"text": "fine", "label": 1}, {"text": ["a", "list"], "label": 0}),
        r"{tmp}/t\.jsonl:2: the text in column 'text' must be text, got a list",
    ),
    file_case(
        "nul-byte-in-csv-text",
        "n.csv",
        "text,label\nfine,1\nbad\x00text,0\n",
        r"{tmp}/n\.csv:3: the text in column 'text' holds a NUL byte \(\\x00\) at character 3",
    ),
    file_case(
        "csv-text-over-limit",
        "long.csv",
        "text,label\nfine,1\n" + "x" * 1_000_001 + ",0\n",
        r"{tmp}/long\.csv:3: a field is longer than 1,000,000 characters",
    ),
    file_case(
        "jsonl-text-over-limit",
        "long.jsonl",
        jsonl({"text": "fine", "label": 1}, {"text": "x" * 1_000_001, "label": 0}),
        r"{tmp}/long\.jsonl:2: the text in column 'text' is 1,000,001 characters long, over the limit of 1,000,000",
    ),
    file_case(
        "lone-surrogate",
        "s.jsonl",
        '{"text": "fine", "label": 1}\n{"text": "bad \\ud800 escape", "label": 0}\n',
        r"{tmp}/s\.jsonl:2: the text in column 'text' holds an invalid character \(a lone surrogate U\+D800",
    ),
    file_case(
        "bad-parquet", "p.parquet", b"PAR1 this is not parquet", r"{tmp}/p\.parquet: cannot read Parquet"
    ),
    file_case("truncated-parquet", "p.parquet", truncated_parquet, r"{tmp}/p\.parquet: cannot read Parquet"),
    file_case(
        "parquet-boolean-labels",
        "b.parquet",
        parquet({"text": ["a", "b"], "label": [True, False]}),
        r"{tmp}/b\.parquet: row 0: column 'label' holds true as a label, which is refused",
    ),
]

# ---- labels --------------------------------------------------------------------------------------------------

RULE = r".*the rule: a label is a class name \(text\) or a whole number"

LABEL_CASES = [
    file_case(
        "label-boolean",
        "b.jsonl",
        jsonl({"text": "a", "label": 1}, {"text": "b", "label": 1.0}, {"text": "c", "label": True}),
        rf"{{tmp}}/b\.jsonl:3: column 'label' holds true as a label, which is refused{RULE}",
    ),
    file_case(
        "label-nan",
        "n.jsonl",
        '{"text": "a", "label": 0}\n{"text": "b", "label": NaN}\n',
        rf"{{tmp}}/n\.jsonl:2: column 'label' holds NaN as a label{RULE}",
    ),
    file_case(
        "label-inf-in-csv",
        "i.csv",
        "text,label\na,0\nb,inf\n",
        rf"{{tmp}}/i\.csv:3: column 'label' holds 'inf' as a label.*NaN and infinities are not classes{RULE}",
    ),
    file_case(
        "label-list",
        "l.jsonl",
        jsonl({"text": "a", "label": 0}, {"text": "b", "label": [1]}),
        rf"{{tmp}}/l\.jsonl:2: column 'label' holds a list as a label{RULE}",
    ),
    file_case(
        "label-object",
        "o.jsonl",
        jsonl({"text": "a", "label": 0}, {"text": "b", "label": {"c": 1}}),
        rf"{{tmp}}/o\.jsonl:2: column 'label' holds an object as a label{RULE}",
    ),
    file_case(
        "label-fraction",
        "f.jsonl",
        jsonl({"text": "a", "label": 0}, {"text": "b", "label": 0.5}),
        rf"{{tmp}}/f\.jsonl:2: column 'label' holds 0\.5 as a label.*not a whole number{RULE}",
    ),
    file_case(
        "label-outside-given-set",
        "o.tsv",
        "sentence\tlabel\ngood\t1\nbad\t0\nodd\t2\n",
        r"{tmp}/o\.tsv:4: label '2' is outside the label set \{0, 1\}",
        "--labels",
        "0,1",
    ),
    file_case(
        "labels-option-same-class-twice",
        "g.tsv",
        GOOD_TSV,
        r"--labels: '1\.0' names the same class as '1'; name each class once",
        "--labels",
        "0,1,1.0",
    ),
    file_case(
        "labels-option-empty-name", "g.tsv", GOOD_TSV, r"--labels: class 1 is empty", "--labels", "0,,1"
    ),
    file_case("labels-option-nan", "g.tsv", GOOD_TSV, r"--labels: 'nan' is not a label", "--labels", "0,nan"),
]

# ---- JSON and SQuAD ------------------------------------------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000

JSON_CASES = [
    file_case("json-5000-levels", "deep.json", DEEP, r"{tmp}/deep\.json:1:513: JSON nested too deeply"),
    file_case(
        "jsonl-5000-levels",
        "deep.jsonl",
        '{"text": "a", "label": 0}\n{"text": ' + DEEP + "}\n",
        r"{tmp}/deep\.jsonl:2:\d+: JSON nested too deeply",
    ),
    file_case(
        "json-truncated",
        "cut.json",
        squad([qa()])[:-30],
        r"{tmp}/cut\.json:1:\d+: truncated JSON \(the file ends early\); fix or re-download",
    ),
    file_case(
        "jsonl-malformed-line",
        "m.jsonl",
        '{"text": "a", "label": 0}\n{"text": "b", label: 1}\n',
        r"{tmp}/m\.jsonl:2:\d+: malformed JSON line",
    ),
    file_case(
        "jsonl-line-not-object",
        "a.jsonl",
        '{"text": "a", "label": 0}\n[1, 2]\n',
        r"{tmp}/a\.jsonl:2: expected a JSON object per line, got a list",
    ),
    file_case(
        "json-huge-integer",
        "big.json",
        '{"version": "1.1", "data": [' + "7" * 5000 + "]}",
        r"{tmp}/big\.json:1: malformed JSON \(Exceeds the limit \(4300 digits\)",
    ),
    file_case("json-not-squad", "l.json", "[1, 2, 3]", r"{tmp}/l\.json: not a SQuAD file"),
    file_case(
        "squad-qas-not-a-list",
        "q.json",
        json.dumps({"data": [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": {"id": "q1"}}]}]}),
        r"{tmp}/q\.json: article 0 \('T'\) paragraph 0: 'qas' must be a list of questions",
    ),
    file_case(
        "squad-missing-question",
        "mq.json",
        squad([qa("q1"), {"id": "q7", "answers": []}]),
        r"{tmp}/mq\.json: question id 'q7': missing required field 'question'",
    ),
    file_case(
        # the case: -23 on a 23-character context passed, as negative slicing matched
        "squad-negative-answer-start",
        "neg.json",
        squad(
            [qa("q1", text="Normandy is in France.x", answer_start=-23)], context="Normandy is in France.x"
        ),
        r"{tmp}/neg\.json: question id 'q1': answer .* at answer_start -23 lies outside the context of 23 characters",
    ),
    file_case(
        "squad-answer-past-the-end",
        "end.json",
        squad([qa("q1", text="France.", answer_start=28)]),
        r"{tmp}/end\.json: question id 'q1': .*answer_start 28 lies outside .*answer_start \+ len\(text\) <= 31",
    ),
    file_case(
        "squad-boolean-answer-start",
        "b.json",
        squad([qa("q1", text="N", answer_start=True)]),
        r"{tmp}/b\.json: question id 'q1': answer 0: .*'answer_start' \(integer\), got .*answer_start true",
    ),
    file_case(
        "squad-float-answer-start",
        "f.json",
        squad([qa("q1", answer_start=24.0)]),
        r"{tmp}/f\.json: question id 'q1': answer 0: .*got text 'France' and answer_start 24\.0",
    ),
    file_case(
        "squad-empty-answer-text",
        "e.json",
        squad([qa("q1", text="", answer_start=0)]),
        r"{tmp}/e\.json: question id 'q1': answer 0 has an empty text",
    ),
    file_case(
        "squad-impossible-with-answers",
        "i.json",
        squad([{**qa("q2"), "is_impossible": True}], version="v2.0"),
        r"{tmp}/i\.json: question id 'q2': marked \"is_impossible\": true but has 1 answer",
    ),
    file_case(
        "squad-impossible-not-boolean",
        "i.json",
        squad([{**qa("q3"), "is_impossible": "no"}], version="v2.0"),
        r"{tmp}/i\.json: question id 'q3': is_impossible must be true or false, got 'no'",
    ),
    file_case(
        "squad-answer-not-at-start",
        "s.json",
        squad([qa("q4", answer_start=3)]),
        r"{tmp}/s\.json: question id 'q4': answer 'France' is not at answer_start 3 .*--fix-spans",
    ),
    file_case(
        "squad-nul-in-question",
        "n.json",
        squad([{**qa("q5"), "question": "Where\x00is it?"}]),
        r"{tmp}/n\.json: question id 'q5': the question holds a NUL byte",
    ),
    file_case(
        "jsonl-qa-bad-answer-lists",
        "qa.jsonl",
        jsonl(
            {
                "id": "q1",
                "question": "Where?",
                "context": CONTEXT,
                "answers": {"text": ["France"], "answer_start": []},
            }
        ),
        r"{tmp}/qa\.jsonl:1: 'answers' in the Hugging Face layout needs lists",
    ),
]

# ---- cartography dynamics (import-dynamics) -------------------------------------------------------------------


def dynamics(write: Callable[[Path], None]) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        folder = ctx.tmp / "dyn"
        folder.mkdir()
        write(folder)
        return ["import-dynamics", str(folder), "--dataset", SEEDED]

    return setup


def dyn_line(folder: Path, name: str = "dynamics_epoch_0.jsonl", extra: str = "") -> None:
    (folder / name).write_text('{"guid": 0, "logits_epoch_0": [0.1, 0.9], "gold": 1}\n' + extra)


def dyn_big(ctx: Ctx) -> list[str]:
    ctx.env["DYNASCOPE_MAX_IMPORT_BYTES"] = "32"
    return dynamics(dyn_line)(ctx)


def dyn_loop(ctx: Ctx) -> list[str]:
    (ctx.tmp / "d1").symlink_to(ctx.tmp / "d2")
    (ctx.tmp / "d2").symlink_to(ctx.tmp / "d1")
    return ["import-dynamics", str(ctx.tmp / "d1"), "--dataset", SEEDED]


DYNAMICS_CASES = [
    Case(
        "dynamics-fifo",
        dynamics(lambda d: os.mkfifo(d / "dynamics_epoch_0.jsonl")),
        r"{tmp}/dyn/dynamics_epoch_0\.jsonl: a named pipe \(FIFO\), not a regular file",
    ),
    Case(
        "dynamics-link-to-dev-zero",
        dynamics(lambda d: (d / "dynamics_epoch_0.jsonl").symlink_to("/dev/zero")),
        r"{tmp}/dyn/dynamics_epoch_0\.jsonl -> /dev/zero: a character device",
    ),
    Case(
        "dynamics-5000-levels",
        dynamics(lambda d: dyn_line(d, extra='{"guid": 1, "x": ' + DEEP + "}\n")),
        r"{tmp}/dyn/dynamics_epoch_0\.jsonl:2:\d+: JSON nested too deeply",
    ),
    Case(
        "dynamics-over-size-limit",
        dyn_big,
        r"{tmp}/dyn/dynamics_epoch_0\.jsonl: the file is \d+ bytes, over the import limit of 32 bytes",
    ),
    Case("dynamics-symlink-loop", dyn_loop, r"{tmp}/d1 -> .*d2: a symbolic link loop"),
    Case(
        "dynamics-nan-logit",
        dynamics(lambda d: dyn_line(d, extra='{"guid": 1, "logits_epoch_0": [NaN, 1.0], "gold": 0}\n')),
        r"{tmp}/dyn/dynamics_epoch_0\.jsonl:2: logits_epoch_0 must be a non-empty list of numbers \(finite",
    ),
]

# ---- other options of import, training options, SQL -----------------------------------------------------------


def existing_name(ctx: Ctx) -> list[str]:
    return imp(ctx.write("g.tsv", GOOD_TSV), name=SEEDED)


def cmd(*args: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: list(args)


OPTION_CASES = [
    Case("existing-dataset-name", existing_name, r"a dataset named 'existing' already exists; .*--replace"),
    Case(
        "bad-dataset-name",
        lambda ctx: imp(ctx.write("g.tsv", GOOD_TSV), name="bad name;drop"),
        r"--name .*letters",
    ),
    Case("train-lr-inf", cmd("train", SEEDED, "--lr", "inf"), r"--lr.*inf is not a finite number"),
    Case("train-lr-nan", cmd("train", SEEDED, "--lr", "nan"), r"--lr.*nan is not a finite number"),
    Case(
        "train-epochs-0",
        cmd("train", SEEDED, "--epochs", "0"),
        r"--epochs.* must be >= 1.*got 0",
        own_process=True,  # a click usage error: its exit code 2 and message from the console script
    ),
    Case("train-batch-size-negative", cmd("train", SEEDED, "--batch-size", "-1"), r"--batch-size.*got -1"),
    Case("train-unknown-dataset", cmd("train", "nosuch"), r"no dataset named 'nosuch'; known: existing"),
    Case("sql-delete", cmd("sql", "DELETE FROM runs"), r"got a DELETE statement"),
    Case(
        "sql-copy-to-file",
        lambda ctx: ["sql", f"COPY (SELECT 1 AS x) TO '{ctx.tmp}/out.csv'"],
        r"got a COPY statement",
    ),
    Case(
        "examples-where-widening",
        cmd("examples", SEEDED, "--where", "1=1) OR (1=1"),
        r"--where '1=1\) OR \(1=1' is not one SQL condition",
    ),
]

# ---- the workspace: a broken run folder, a run another process holds, user SQL ---------------------------------


def broken_run(*args: str) -> Callable[[Ctx], list[str]]:
    """A run folder whose config.json is not JSON: every command still works, the run is named as broken."""

    def setup(ctx: Ctx) -> list[str]:
        run_dir = ctx.ws.run_dir("bad")
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_bytes(b"{not json")
        return list(args)

    return setup


def held_run(ctx: Ctx) -> list[str]:
    """A run whose lock another live process holds (storage.joblock): a resume is refused, naming it."""
    import subprocess
    import sys

    from storage.catalog import open_catalog
    from storage.sync import sync
    from tests.conftest import REPO
    from tests.tui_helpers import write_run

    write_run(ctx.ws, "held", SEEDED, ["0", "1"], epochs=1, status="running")
    with open_catalog(ctx.ws) as con:  # registered before the "before" dump
        sync(ctx.ws, con)
    code = (
        "import sys, time; from pathlib import Path; from storage.joblock import acquire\n"
        "lock = acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(ctx.ws.run_dir("held"))], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    ctx.cleanup.append(lambda: (holder.kill(), holder.wait()))
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    ctx.env["HOLDER_PID"] = str(holder.pid)
    return ["train", "--resume", "held"]


WORKSPACE_CASES = [
    Case("resume-broken-run", broken_run("train", "--resume", "bad"), r"run 'bad'.*broken.*config\.json"),
    Case(
        "runs-beside-broken-run",
        broken_run("runs"),
        r"run 'bad' is broken.*config\.json is not valid JSON",
        0,
        own_process=True,  # a note printed once per process
    ),
    Case("sql-beside-broken-run", broken_run("sql", "SELECT 1"), r"run 'bad' is broken", 0),
    Case("datasets-beside-broken-run", broken_run("datasets"), r"run 'bad' is broken", 0),
    Case(
        "resume-held-run",
        held_run,
        r"run 'held' is already running \(pid \d+\); one job per run folder",
        own_process=True,  # the lock holder and the refused job are separate processes, as in use
    ),
    Case(
        "sql-explain-analyze-copy",
        lambda ctx: ["sql", f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{ctx.tmp}/o.csv'"],
        r'Permission Error: Cannot access file ".*/o\.csv" - file system operations are disabled',
    ),
    Case(
        "sql-read-file",
        cmd("sql", "SELECT * FROM read_text('/proc/self/environ')"),
        r'Cannot access file "/proc/self/environ" - file system operations are disabled',
    ),
    Case(
        "sql-attach",
        lambda ctx: ["sql", f"ATTACH '{ctx.tmp}/other.duckdb' AS o"],
        r"only read-only queries .* got a ATTACH statement",
    ),
]

CASES = (
    PATH_CASES
    + BYTE_CASES
    + TABLE_CASES
    + LABEL_CASES
    + JSON_CASES
    + DYNAMICS_CASES
    + OPTION_CASES
    + WORKSPACE_CASES
)


# ---- the runner ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One seeded workspace per module (a dataset, so that 'unchanged' means something); copied per case."""
    root = tmp_path_factory.mktemp("seeded")
    ws = Workspace(root / "ws").create()
    good = root / "good.tsv"
    good.write_text(GOOD_TSV)
    result = run_cli(ws, "import", str(good), "--name", SEEDED)
    assert result.code == 0, result.stderr
    return ws


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    assert len(CASES) >= 40


def test_some_cases_run_in_their_own_process() -> None:
    own = [c.id for c in CASES if c.own_process]
    assert 3 <= len(own) <= len(CASES) // 10, own  # the console-script path covered; the rest cheap


@pytest.mark.timeout(60)  # a case that hangs (a FIFO opened, /dev/zero read) fails, as run_cli's timeout did
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, seeded_template: Workspace, tmp_path: Path, data_dir: Path, cli_in_process
) -> None:
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(seeded_template.root, ws.root, symlinks=True)
    files = tmp_path / "in"
    files.mkdir()
    ctx = Ctx(files, ws, data_dir)
    try:
        args = case.setup(ctx)
        before = dump_catalog(ws)
        assert before, "the seeded catalog is empty"
        result: CliResult
        left_open: list[str] = []
        if case.own_process:
            result = run_cli(ws, *args, env=ctx.env, timeout=60)
        else:
            result = cli_in_process(ws, *args, env=ctx.env)
            left_open = open_files_under(ws.root)
        after = dump_catalog(ws)
    finally:
        for undo in ctx.cleanup:
            undo()
        restore(files)
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    detail = f"exit {result.code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.code in codes, detail
    assert "Traceback" not in result.stderr, detail
    message = " ".join(result.stderr.split())
    pattern = case.pattern.replace("{tmp}", re.escape(str(files))).replace("{ws}", re.escape(str(ws.root)))
    assert re.search(pattern, message), f"{pattern!r} not found in {message!r}"
    assert after == before, "the catalog changed"
    if not case.own_process:
        assert left_open == [], f"the command left workspace files open: {left_open}"


def restore(folder: Path) -> None:
    """Undo what a setup did to permissions, so pytest can clean its tmp folders (links are not followed)."""
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
