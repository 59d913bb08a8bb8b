"""Property: whatever bytes or structures a file holds, an import either lands it (exit 0) or refuses it with a
BadInputError (exit 2) and leaves the catalog as it was; never another exception (a traceback, exit 1).

In-process for speed, through the functions the CLI's `import` calls, in the same order: `load_source`, then
`write_dataset` in the catalog unit of work. The CLI turns BadInputError (and DatasetExistsError) into exit 2 and
anything else into a traceback, so "raises BadInputError or succeeds" here is "exits 2 or 0" there; a handful of
examples also go through the real CLI in a subprocess.
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import BadInputError
from storage.workspace import Workspace
from tests.catalog_dump import dump_catalog
from tests.conftest import run_cli

EXAMPLES = int(os.environ.get("DYNASCOPE_PROPERTY_EXAMPLES", "60"))  # raise it for a longer hunt
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXTENSIONS = [".json", ".jsonl", ".csv", ".tsv", ".parquet", ".json.gz", ".jsonl.gz", ".csv.gz", ".tsv.gz"]
FIELDS = [
    "id",
    "text",
    "label",
    "text_pair",
    "sentence",
    "question",
    "context",
    "answers",
    "is_impossible",
    "title",
]

_counter = itertools.count()


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Workspace]:
    """A folder for the generated files and a seeded workspace the successful imports land in."""
    from engine.cli.common import catalog
    from engine.importing.sources import ImportOptions, load_source
    from storage.datasets import write_dataset

    root = tmp_path_factory.mktemp("prop")
    ws = Workspace(root / "ws").create()
    seed = root / "seed.tsv"
    seed.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    with catalog(ws) as con:
        write_dataset(con, load_source(str(seed), "existing", ImportOptions()))
    return root, ws


def fingerprint(ws: Workspace) -> tuple[tuple[str, int, str], ...]:
    """Every file of the workspace with its size and content hash: equal fingerprints mean nothing was written
    at all (stronger than an equal dump, and cheap enough for every example)."""
    return tuple(
        (str(p.relative_to(ws.root)), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(ws.root.rglob("*"))
        if p.is_file()
    )


OUTCOMES: collections.Counter[str] = collections.Counter()


def attempt(place: tuple[Path, Workspace], name: str, content: bytes, **opts: Any) -> None:
    """Write `content` as file `name` and import it the way the CLI does: succeed, or BadInputError and an
    untouched workspace. Any other exception fails the test."""
    from engine.cli.common import catalog
    from engine.importing.sources import ImportOptions, load_source
    from storage.datasets import write_dataset

    root, ws = place
    path = root / f"{next(_counter)}-{name}"
    path.write_bytes(content)
    before = fingerprint(ws)
    try:
        spec = load_source(str(path), "prop", ImportOptions(**opts))
    except BadInputError as exc:
        OUTCOMES[f"{name}: refused: {str(exc).split(': ', 1)[-1][:40]}"] += 1
        assert fingerprint(ws) == before
        return
    finally:
        path.unlink()
    OUTCOMES[f"{name}: imported"] += 1
    with catalog(ws) as con:
        assert write_dataset(con, spec, replace=True) == spec.examples.num_rows


# ---- strategies ------------------------------------------------------------------------------------------------
# Two kinds: anything at all (random bytes, any JSON value), and a valid document with a few random mutations
# (a value replaced by any JSON value, a key or an item removed; bytes inserted into a delimited file), so
# that most checks are reached and a fair share of examples import.

# text with what breaks readers: delimiters, quotes, newlines, NUL, a BOM, non-ASCII, lone surrogates
nasty_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(',\t"\n\r\x00\ufeff\u2028 \\')),
        st.characters(codec="utf-8"),
        st.characters(categories=["Cs"]),
    ),
    max_size=30,
)
plain_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
words = st.text(alphabet=st.sampled_from("abc xyzé,\"'"), min_size=1, max_size=25).filter(lambda s: s.strip())
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(plain_text, children, max_size=4),
    max_leaves=12,
)
good_labels = st.sampled_from([0, 1, 1.0, "1", "0", "1.0", 2, "pos", "neg", -1])


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _nodes(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _nodes(value, (*path, i))
    return found


def mutate(draw: st.DrawFn, obj: Any, at_most: int = 2) -> Any:
    """`obj` with up to `at_most` random changes: a node replaced by any JSON value, or removed."""
    for _ in range(draw(st.integers(0, at_most))):
        path = draw(st.sampled_from(_nodes(obj)))
        if not path:
            return draw(json_values)
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return obj


@st.composite
def squad_docs(draw: st.DrawFn) -> bytes:
    paragraphs = []
    n = 0
    for _ in range(draw(st.integers(1, 2))):
        context = draw(words)
        qas = []
        for _ in range(draw(st.integers(0, 3))):
            n += 1
            qa: dict[str, Any] = {"id": f"q{n}", "question": draw(words)}
            if draw(st.integers(0, 4)) == 0:
                qa.update(answers=[], is_impossible=True)
            else:
                start = draw(st.integers(0, len(context) - 1))
                end = draw(st.integers(start + 1, len(context)))
                qa["answers"] = [{"text": context[start:end], "answer_start": start}]
            qas.append(qa)
        paragraphs.append({"context": context, "qas": qas})
    doc = {
        "version": draw(st.sampled_from(["1.1", "v2.0"])),
        "data": [{"title": "T", "paragraphs": paragraphs}],
    }
    return dumps(mutate(draw, doc))


@st.composite
def table_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Classification rows (text, maybe a pair, label, id) or, now and then, QA rows in the hub layout."""
    rows = []
    if draw(st.integers(0, 4)) == 0:
        for i in range(draw(st.integers(1, 4))):
            context = draw(words)
            start = draw(st.integers(0, len(context) - 1))
            text = context[start : draw(st.integers(start + 1, len(context)))]
            answers = {"text": [text], "answer_start": [start]}
            rows.append({"id": f"q{i}", "question": draw(words), "context": context, "answers": answers})
        return rows
    pair = draw(st.booleans())
    for i in range(draw(st.integers(1, 5))):
        row: dict[str, Any] = {"id": draw(st.sampled_from([i, str(i), f"r{i}"])), "text": draw(words)}
        if pair:
            row["text_pair"] = draw(words)
        row["label"] = draw(good_labels)
        rows.append(row)
    return rows


@st.composite
def jsonl_docs(draw: st.DrawFn) -> bytes:
    mutated = mutate(draw, draw(table_records()))
    lines = [dumps(r) for r in (mutated if isinstance(mutated, list) else [mutated])]
    if draw(st.integers(0, 4)) == 0:  # a raw line now and then: not JSON, or not an object
        lines.insert(
            draw(st.integers(0, len(lines))), draw(st.sampled_from([b"[1]", b"{", b"", b"nul\x00l", b"7"]))
        )
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


@st.composite
def delimited_docs(draw: st.DrawFn, delimiter: str) -> bytes:
    records = [r for r in draw(table_records()) if "question" not in r] or [{"text": "a", "label": 1}]
    header = list(records[0])
    rows = [[str(r.get(h, "")) for h in header] for r in records]
    if delimiter == "\t":
        rows = [[c.replace("\t", " ") for c in row] for row in rows]
    for _ in range(draw(st.integers(0, 2))):  # a cell or a header name replaced by nasty text
        table = [header, *rows]
        row = draw(st.sampled_from(table))
        if row:
            row[draw(st.integers(0, len(row) - 1))] = draw(nasty_text)
    if delimiter == "," and draw(st.booleans()):  # written properly by the csv module, or joined raw
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
        writer.writerows([header, *rows])
        text = buf.getvalue()
    else:
        text = "".join(delimiter.join(row) + "\n" for row in [header, *rows])
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:  # a few random bytes somewhere
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=4)) + raw[at:]
    return raw


@st.composite
def parquet_docs(draw: st.DrawFn) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = draw(table_records())
    columns: dict[str, list[Any]] = {}
    for name in records[0]:
        values = [r.get(name) for r in records]
        if name == "label" or name == "id":  # one type per column, as Parquet wants
            values = [None if v is None else str(v) for v in values]
        columns[name] = values
    kinds = {
        "int": st.integers(-(2**62), 2**62),
        "float": st.floats(allow_nan=True, allow_infinity=True),
        "bool": st.booleans(),
        "str": nasty_text.map(lambda s: s.encode("utf-8", "replace").decode()),
        "list": st.lists(st.integers(0, 3), max_size=3),
    }
    for _ in range(draw(st.integers(0, 2))):  # a column replaced by one of another type (None allowed)
        name = draw(st.sampled_from([*columns, "label", "text"]))
        kind = kinds[draw(st.sampled_from(sorted(kinds)))]
        columns[name] = draw(
            st.lists(st.one_of(st.none(), kind), min_size=len(records), max_size=len(records))
        )
    try:
        table = pa.table(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # answers dicts of mixed shapes after a mutation
        table = pa.table({k: v for k, v in columns.items() if k != "answers"})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@st.composite
def dynamics_files(draw: st.DrawFn) -> list[bytes]:
    """allenai/cartography logs of 1-3 epochs over the seeded dataset's examples (ids "0" and "1")."""
    n_classes = draw(st.integers(1, 3))
    files = []
    for epoch in range(draw(st.integers(1, 3))):
        records = [
            {
                "guid": draw(st.sampled_from([i, str(i)])),
                f"logits_epoch_{epoch}": draw(
                    st.lists(st.floats(-5, 5), min_size=n_classes, max_size=n_classes)
                ),
                "gold": draw(st.integers(0, n_classes - 1)),
            }
            for i in range(2)
        ]
        mutated = mutate(draw, records, at_most=1)
        lines = [dumps(r) for r in (mutated if isinstance(mutated, list) else [mutated])]
        files.append(b"\n".join(lines) + b"\n")
    return files


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# options as a user gives them: mostly none
options: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.just({}),
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "task": st.sampled_from(["classification", "qa"]),
            "labels": st.one_of(
                st.just(["0", "1"]), st.just(["neg", "pos"]), st.lists(plain_text, max_size=3)
            ),
            "fix_spans": st.booleans(),
        },
    ),
)


# ---- properties --------------------------------------------------------------------------------------------------


@SETTINGS
@given(content=st.binary(max_size=300), ext=st.sampled_from(EXTENSIONS), gzipped=st.booleans())
def test_random_bytes(place, content: bytes, ext: str, gzipped: bool) -> None:  # noqa: ANN001
    attempt(place, "r" + ext, gz(content) if gzipped and ext.endswith(".gz") else content)


@SETTINGS
@given(doc=squad_docs(), compress=st.booleans(), opts=options)
def test_squad_structures(place, doc: bytes, compress: bool, opts: dict) -> None:  # noqa: ANN001
    attempt(place, "s.json.gz" if compress else "s.json", gz(doc) if compress else doc, **opts)


@SETTINGS
@given(value=json_values, ext=st.sampled_from([".json", ".jsonl"]))
def test_any_json_document(place, value: Any, ext: str) -> None:  # noqa: ANN001
    attempt(place, "j" + ext, dumps(value))


@SETTINGS
@given(doc=jsonl_docs(), opts=options)
def test_jsonl_records(place, doc: bytes, opts: dict) -> None:  # noqa: ANN001
    attempt(place, "l.jsonl", doc, **opts)


@SETTINGS
@given(data=st.data(), delimiter=st.sampled_from([",", "\t"]), compress=st.booleans(), opts=options)
def test_delimited_rows(place, data: st.DataObject, delimiter: str, compress: bool, opts: dict) -> None:  # noqa: ANN001
    doc = data.draw(delimited_docs(delimiter))
    ext = ".csv" if delimiter == "," else ".tsv"
    attempt(place, "d" + ext + (".gz" if compress else ""), gz(doc) if compress else doc, **opts)


@SETTINGS
@given(doc=parquet_docs(), opts=options)
def test_parquet_tables(place, doc: bytes, opts: dict) -> None:  # noqa: ANN001
    attempt(place, "p.parquet", doc, **opts)


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(1, 20_000), ext=st.sampled_from([".json", ".jsonl"]), kind=st.sampled_from("[{"))
def test_any_nesting_depth(place, depth: int, ext: str, kind: str) -> None:  # noqa: ANN001
    doc = "[" * depth + "]" * depth if kind == "[" else '{"a":' * depth + "1" + "}" * depth
    attempt(place, "deep" + ext, doc.encode())


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=dynamics_files())
def test_cartography_dynamics(place, files: list[bytes]) -> None:  # noqa: ANN001
    """import-dynamics: the same guarantee (its successes write a run folder and sync it)."""
    from engine.importing.cartography import import_cartography

    root, ws = place
    folder = root / f"dyn-{next(_counter)}"
    folder.mkdir()
    for epoch, content in enumerate(files):
        (folder / f"dynamics_epoch_{epoch}.jsonl").write_bytes(content)
    before = dump_catalog(ws)
    runs = sorted(p.name for p in ws.runs_dir.iterdir()) if ws.runs_dir.exists() else []
    try:
        import_cartography(ws, folder, "existing")
    except BadInputError as exc:
        OUTCOMES[f"dynamics: refused: {str(exc).split(': ', 1)[-1][:40]}"] += 1
        assert dump_catalog(ws) == before
        assert (sorted(p.name for p in ws.runs_dir.iterdir()) if ws.runs_dir.exists() else []) == runs
        return
    OUTCOMES["dynamics: imported"] += 1


# ---- the same guarantee through the real CLI, for a few random inputs ---------------------------------------


def _cli_inputs() -> list[tuple[str, bytes]]:
    rng = random.Random(8)
    out = [(f"bytes{ext}", rng.randbytes(200)) for ext in (".csv", ".json.gz", ".parquet")]
    out.append(("squad.json", b'{"data": [{"paragraphs": [{"context": "c", "qas": 3}]}]}'))
    out.append(("rows.jsonl", b'{"text": "a", "label": true}\n{"text": 1, "label": [1]}\n'))
    out.append(("rows.csv", b'text,label\n"a\x00",1\n"b",\xff\n'))
    return out


@pytest.mark.parametrize(("name", "content"), _cli_inputs(), ids=[n for n, _ in _cli_inputs()])
def test_random_inputs_through_the_cli(name: str, content: bytes, place) -> None:  # noqa: ANN001
    """The guarantee as the user sees it: exit 0, or exit 2 naming the file, no traceback, the catalog as it was."""
    root, ws = place
    path = root / f"cli-{name}"
    path.write_bytes(content)
    before = dump_catalog(ws)
    result = run_cli(ws, "import", str(path), "--name", f"cli-{next(_counter)}")
    assert result.code in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    if result.code == 2:
        assert dump_catalog(ws) == before
        assert str(path) in " ".join(result.stderr.split())
