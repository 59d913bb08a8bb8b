"""`dynascope import-dynamics --format cartography`: allenai/cartography's per-epoch JSONL files become a run
whose metrics equal cartography's own definitions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BadInputError
from engine.importing.cartography import import_cartography
from storage.workspace import Workspace

N_CLASSES = 3
EPOCHS = 5


def write_dataset(path: Path, guids: list[int]) -> None:
    with open(path, "w") as fh:
        for i, guid in enumerate(guids):
            fh.write(json.dumps({"id": guid, "text": f"sentence number {i}", "label": i % N_CLASSES}) + "\n")


def make_logits(guids: list[int], seed: int = 0) -> tuple[dict[int, list[list[float]]], dict[int, int]]:
    """Per guid: logits per epoch (varied: examples learned early, late, forgotten, never) and the gold class."""
    rng = np.random.default_rng(seed)
    logits: dict[int, list[list[float]]] = {}
    gold: dict[int, int] = {}
    for i, guid in enumerate(guids):
        g = i % N_CLASSES
        gold[guid] = g
        ease = rng.normal(0, 1.5)
        trend = rng.normal(0.3, 0.4)
        rows = []
        for e in range(EPOCHS):
            vec = rng.normal(0, 1.0, N_CLASSES)
            vec[g] += ease + trend * e
            rows.append([round(float(v), 10) for v in vec])
        logits[guid] = rows
    # hand-made cases: never learned; forgotten twice; integer logits (a JSON writer may drop the ".0")
    logits[guids[0]] = [[5.0, 0.0, 0.0] if gold[guids[0]] != 0 else [0.0, 5.0, 0.0] for _ in range(EPOCHS)]
    pattern = [1, 0, 1, 0, 1]
    g1 = gold[guids[1]]
    logits[guids[1]] = [[3.0 if (c == g1) == bool(p) else 0.0 for c in range(N_CLASSES)] for p in pattern]
    logits[guids[2]] = [[1, 2, 3] for _ in range(EPOCHS)]
    return logits, gold


def write_cartography_files(
    folder: Path, logits: dict[int, list[list[float]]], gold: dict[int, int], seed: int = 1
) -> None:
    """One dynamics_epoch_N.jsonl per epoch, records in a shuffled (training) order, as their trainer writes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    guids = list(logits)
    for e in range(EPOCHS):
        order = rng.permutation(len(guids))
        with open(folder / f"dynamics_epoch_{e}.jsonl", "w") as fh:
            for k in order:
                guid = guids[k]
                fh.write(
                    json.dumps({"guid": guid, f"logits_epoch_{e}": logits[guid][e], "gold": gold[guid]})
                    + "\n"
                )


# ---- the reference: allenai/cartography's per-example loop (train_dy_filtering.compute_train_dy_metrics) ----


def compute_forgetfulness(correctness_trend: list[bool]) -> int:
    if not any(correctness_trend):
        return 1000
    learnt = False
    times_forgotten = 0
    for is_correct in correctness_trend:
        if (not learnt and not is_correct) or (learnt and is_correct):
            continue
        elif learnt and not is_correct:
            learnt = False
            times_forgotten += 1
        elif not learnt and is_correct:
            learnt = True
    return times_forgotten


def cartography_reference(folder: Path) -> dict[str, dict[str, float]]:
    training_dynamics: dict[str, dict] = {}
    for epoch_num in range(EPOCHS):
        with open(folder / f"dynamics_epoch_{epoch_num}.jsonl") as infile:
            for line in infile:
                record = json.loads(line.strip())
                guid = record["guid"]
                if guid not in training_dynamics:
                    assert epoch_num == 0
                    training_dynamics[guid] = {"gold": record["gold"], "logits": []}
                training_dynamics[guid]["logits"].append(record[f"logits_epoch_{epoch_num}"])
    out = {}
    for guid, record in training_dynamics.items():
        correctness_trend = []
        true_probs_trend = []
        for epoch_logits in record["logits"]:
            x = np.asarray(epoch_logits, dtype=np.float64)
            probs = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
            true_probs_trend.append(float(probs[record["gold"]]))
            prediction = np.argmax(epoch_logits)
            correctness_trend.append(bool(prediction == record["gold"]))
        out[str(guid)] = {
            "correctness": sum(correctness_trend),
            "confidence": np.mean(true_probs_trend),
            "variability": np.std(true_probs_trend),
            "forgetfulness": compute_forgetfulness(correctness_trend),
        }
    return out


@pytest.fixture
def setup(ws: Workspace, tmp_path: Path, cli):  # noqa: ANN001, ANN201
    guids = [4734364254410 + i * 7919 for i in range(90)]  # large integer guids, like cartography's SNLI ones
    write_dataset(tmp_path / "train.jsonl", guids)
    assert cli("import", str(tmp_path / "train.jsonl"), "--name", "snli-mini").code == 0
    guids = guids[:-1]  # the dataset's last example has no dynamics logged
    logits, gold = make_logits(guids)
    folder = tmp_path / "out" / "training_dynamics"
    write_cartography_files(folder, logits, gold)
    return guids, logits, gold, folder


def test_imported_metrics_equal_cartography_definitions(ws: Workspace, cli, setup) -> None:  # noqa: ANN001
    guids, _, _, folder = setup
    # the folder their trainer was given (with training_dynamics/ inside) works as well as the inner one
    result = cli(
        "import-dynamics",
        str(folder.parent),
        "--format",
        "cartography",
        "--dataset",
        "snli-mini",
        "--name",
        "imp",
        "--json",
    )
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["run_id"] == "imp" and summary["epochs"] == EPOCHS and summary["n_examples"] == len(guids)

    runs = {r["run_id"]: r for r in cli("runs", "--json").json()}
    assert (
        runs["imp"]["kind"] == "import"
        and runs["imp"]["status"] == "done"
        and runs["imp"]["epochs_done"] == EPOCHS
    )

    rows = {r["example_id"]: r for r in cli("metrics", "imp", "--json").json()}
    ref = cartography_reference(folder)
    assert set(rows) == set(ref) == {str(g) for g in guids}
    assert any("1 example of 'snli-mini' has no dynamics" in note for note in summary["notes"])
    never = forgotten = 0
    for guid, expected in ref.items():
        got = rows[guid]
        assert got["epochs"] == EPOCHS
        assert got["confidence"] == pytest.approx(expected["confidence"], abs=1e-6)
        assert got["variability"] == pytest.approx(expected["variability"], abs=1e-6)
        # cartography's correctness is a count of epochs; ours is the fraction
        assert got["correct_epochs"] == expected["correctness"]
        assert got["correctness"] * got["epochs"] == pytest.approx(expected["correctness"], abs=1e-9)
        if expected["forgetfulness"] == 1000:  # cartography's marker for never learned
            assert got["never_learned"] is True and got["forgetting"] == 0
            never += 1
        else:
            assert got["never_learned"] is False and got["forgetting"] == expected["forgetfulness"]
            forgotten += expected["forgetfulness"] > 0
        assert got["region"] in ("easy", "ambiguous", "hard") and got["label"] is not None
    assert rows[str(guids[1])]["forgetting"] == 2 and rows[str(guids[0])]["never_learned"] is True
    assert never >= 1 and forgotten >= 3

    # the shards carry the columns our trainer writes, computed from the logits (read back as logical rows;
    # stored compactly: integer example index into the run's id list, float32 values)
    import duckdb
    import pyarrow.parquet as pq

    from storage.artifacts import read_example_ids, shard_scan_sql
    from storage.metrics import DYNAMICS_COLUMNS

    run_dir = ws.run_dir("imp")
    stored = pq.read_schema(run_dir / "dynamics" / "epoch=000" / "rank=0.parquet")
    assert "example_id" not in stored.names and str(stored.field("example_idx").type) == "int32"
    assert str(stored.field("gold_prob").type) == "float"
    assert sorted(read_example_ids(run_dir).to_pylist()) == sorted(str(g) for g in guids)
    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(run_dir)} WHERE epoch = 0")
    table = [dict(zip(rel.columns, r)) for r in rel.fetchall()]
    assert set(table[0]) == set(DYNAMICS_COLUMNS) and len(table) == len(guids)
    rec = next(r for r in table if r["example_id"] == str(guids[2]))  # logits [1, 2, 3]
    probs = np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum()
    gold2 = 2 % N_CLASSES
    assert rec["gold_prob"] == pytest.approx(probs[gold2])
    assert rec["loss"] == pytest.approx(-np.log(probs[gold2]))
    assert rec["prediction"] == "2" and rec["correct"] is (gold2 == 2)
    assert rec["margin"] == pytest.approx(3 - max(v for c, v in enumerate([1, 2, 3]) if c != gold2))
    onehot = np.eye(N_CLASSES)[gold2]
    assert rec["el2n"] == pytest.approx(np.linalg.norm(probs - onehot))

    # the import is a run like any other: map and select work on it
    assert cli("map", "imp").code == 0
    sel = cli("select", "imp", "--region", "ambiguous", "--fraction", "0.33", "--name", "snli-amb", "--json")
    assert sel.code == 0, sel.stderr
    assert sel.json()["n_examples"] == int(0.33 * len(guids))


def _expect_error(cli, *args: str, contains: list[str]) -> str:  # noqa: ANN001
    result = cli("import-dynamics", *args)
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    text = " ".join(result.stderr.split())
    for piece in contains:
        assert piece in text, (piece, text)
    assert "Traceback" not in result.stderr
    return text


def test_clear_errors_name_file_and_line(ws: Workspace, cli, setup, tmp_path: Path) -> None:  # noqa: ANN001
    guids, logits, gold, folder = setup

    _expect_error(
        cli, str(tmp_path / "nowhere"), "--dataset", "snli-mini", contains=["nowhere", "no such directory"]
    )
    _expect_error(cli, str(folder), "--dataset", "nope", contains=["nope", "no such dataset", "snli-mini"])
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(cli, str(empty), "--dataset", "snli-mini", contains=["no dynamics_epoch_N.jsonl"])

    def broken(name: str, epoch: int, line: int, record: dict | str) -> Path:
        target = tmp_path / name
        write_cartography_files(target, logits, gold)
        path = target / f"dynamics_epoch_{epoch}.jsonl"
        lines = path.read_text().splitlines()
        lines[line - 1] = record if isinstance(record, str) else json.dumps(record)
        path.write_text("\n".join(lines) + "\n")
        return target

    g = guids[5]
    missing_field = broken("missing", 1, 3, {"guid": g, "logits_epoch_1": logits[g][1]})
    _expect_error(
        cli,
        str(missing_field),
        "--dataset",
        "snli-mini",
        contains=["dynamics_epoch_1.jsonl:3", "missing field 'gold'"],
    )

    # the same checks through the Python API (no subprocess per case)
    def api_error(folder: Path, *pieces: str) -> None:
        with pytest.raises(BadInputError) as info:
            import_cartography(ws, folder, "snli-mini")
        for piece in pieces:
            assert piece in str(info.value), (piece, str(info.value))

    short = broken("short", 0, 4, {"guid": g, "logits_epoch_0": [0.1, 0.2], "gold": gold[g]})
    api_error(short, "dynamics_epoch_0.jsonl:4", "2 logits", "earlier records have 3")
    wrong_epoch = broken("wrong_epoch", 2, 1, {"guid": g, "logits_epoch_1": logits[g][1], "gold": gold[g]})
    api_error(wrong_epoch, "dynamics_epoch_2.jsonl:1", "logits_epoch_2", "logits_epoch_1")
    bad_json = broken("bad_json", 3, 2, '{"guid": 1, "logits_epoch_3": [1, 2')
    api_error(bad_json, "dynamics_epoch_3.jsonl:2", "not valid JSON")
    bad_gold = broken("bad_gold", 1, 6, {"guid": g, "logits_epoch_1": logits[g][1], "gold": 3})
    api_error(bad_gold, "dynamics_epoch_1.jsonl:6", "gold must be a class index in 0..2")
    extra = 4734364254410 + 89 * 7919  # in the dataset, but not logged in epoch 0
    later = broken("later", 2, 5, {"guid": extra, "logits_epoch_2": [0.0, 1.0, 2.0], "gold": 1})
    api_error(later, "dynamics_epoch_2.jsonl:5", str(extra), "not in epoch 0")
    dup = broken("dup", 4, 7, {"guid": guids[10], "logits_epoch_4": [0.0, 1.0, 2.0], "gold": gold[guids[10]]})
    api_error(dup, "dynamics_epoch_4.jsonl:", f"guid {guids[10]} appears twice in this file (first on line")
    gap = tmp_path / "gap"
    write_cartography_files(gap, logits, gold)
    (gap / "dynamics_epoch_2.jsonl").unlink()
    api_error(gap, "dynamics_epoch_2.jsonl is missing")

    # nothing was left behind by the failures
    assert cli("runs", "--json").json() == []
    assert not any(ws.runs_dir.iterdir())

    # an existing run name is refused
    assert cli("import-dynamics", str(folder), "--dataset", "snli-mini", "--name", "first").code == 0
    _expect_error(
        cli, str(folder), "--dataset", "snli-mini", "--name", "first", contains=["first", "already exists"]
    )


def test_the_fast_reader_is_as_strict_as_the_line_reader(tmp_path: Path) -> None:
    """DuckDB's JSON reader, given the column types, would cast quietly a value of another type (a float or string
    gold to an integer, a boolean or string logit to a number); the fast reader checks every record's JSON types
    (and the logits' raw text), so such a record far down a large file still gets the line reader's message. What
    the line reader accepts is still read."""
    import duckdb

    from engine.importing.cartography import load_epoch

    def write(name: str, lines: list[str]) -> Path:
        path = tmp_path / name / "dynamics_epoch_0.jsonl"
        path.parent.mkdir()
        path.write_text("\n".join(lines) + "\n")
        return path

    good = [json.dumps({"guid": i, "logits_epoch_0": [0.5, -1.0, 2.0], "gold": i % 3}) for i in range(25_000)]
    cases = {
        "float_gold": (
            '{"guid": 99999, "logits_epoch_0": [0.5, 1.5, -2.0], "gold": 1.5}',
            "gold must be a class",
        ),
        "bool_logit": ('{"guid": 99999, "logits_epoch_0": [true, 1.5, -2.0], "gold": 1}', "list of numbers"),
        "string_logit": ('{"guid": 99999, "logits_epoch_0": ["3", 1.5, -2.0], "gold": 1}', "list of numbers"),
        "bool_guid": (
            '{"guid": true, "logits_epoch_0": [0.5, 1.5, -2.0], "gold": 1}',
            "guid must be a string",
        ),
        "null_logit": ('{"guid": 99999, "logits_epoch_0": [0.5, null, -2.0], "gold": 1}', "list of numbers"),
        "string_gold": (
            '{"guid": 99999, "logits_epoch_0": [0.5, 1.5, -2.0], "gold": "1"}',
            "gold must be a class",
        ),
        "float_guid": (
            '{"guid": 1.5, "logits_epoch_0": [0.5, 1.5, -2.0], "gold": 1}',
            "guid must be a string",
        ),
    }
    for name, (bad, message) in cases.items():
        path = write(name, good[:24_000] + [bad] + good[24_000:])
        with duckdb.connect() as con, pytest.raises(BadInputError) as info:
            load_epoch(con, path, 0, None)
        assert f"{path}:24001" in str(info.value) and message in str(info.value), (name, str(info.value))

    # mixed integer and string guids: each reads as str(guid), as the line reader gives it
    mixed = write("mixed", good[:3] + ['{"guid": "s-1", "logits_epoch_0": [1, 2, 3], "gold": 2}'])
    # blank lines and CRLF endings: the fast reader keeps the file's record order
    crlf = write("crlf", [good[2], "", good[0] + "\r", "   ", good[1]])
    with duckdb.connect() as con:
        assert load_epoch(con, mixed, 0, None) == 3
        assert con.execute("SELECT guid, gold FROM epoch_0 ORDER BY rowid").fetchall() == [
            ("0", 0),
            ("1", 1),
            ("2", 2),
            ("s-1", 2),
        ]
        assert load_epoch(con, crlf, 0, 3) == 3
        assert [r[0] for r in con.execute("SELECT guid::VARCHAR FROM epoch_0 ORDER BY rowid").fetchall()] == [
            "2",
            "0",
            "1",
        ]
