"""`dynascope select`: top-p% regions, label balance, the seeded random baseline, and the dataset it creates."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.analysis.regions import balanced_quotas, selection_size
from engine.analysis.selection import select_examples
from storage.artifacts import append_event, write_config
from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.conftest import CliResult, run_cli
from tests.test_metrics import finish, random_dynamics, write_run

LABEL_COUNTS = {"neg": 60, "pos": 30, "neutral": 10}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One workspace for the module (selections get distinct names): a dataset of 100 labelled sentences
    (imbalanced) and a finished run with adversarial dynamics on it."""
    tmp_path = tmp_path_factory.mktemp("selection")
    ws = Workspace(tmp_path / "ws").create()

    def cli(*args: str) -> CliResult:
        return run_cli(ws, *args)

    labels = [name for name, count in LABEL_COUNTS.items() for _ in range(count)]
    rng = np.random.default_rng(7)
    rng.shuffle(labels)
    ids = np.array([f"s{i:03d}" for i in range(len(labels))])
    with open(tmp_path / "train.jsonl", "w") as fh:
        for eid, label in zip(ids, labels):
            fh.write(json.dumps({"id": eid, "text": f"text of {eid}", "label": label}) + "\n")
    result = cli("import", str(tmp_path / "train.jsonl"), "--name", "train", "--labels", "neg,pos,neutral")
    assert result.code == 0, result.stderr
    dyn = random_dynamics(len(ids), 4, seed=11)
    write_run(ws.run_dir("r1"), ids, dyn, 4)
    finish(ws.run_dir("r1"), 4, dataset="train")
    metrics = {
        "confidence": dyn["gold_prob"].mean(axis=1),
        "variability": dyn["gold_prob"].std(axis=1),
        "sensitivity": dyn["adv_loss"].mean(axis=1),
        "adv_variability": dyn["adv_loss"].std(axis=1),
    }
    return ws, cli, (ids, np.array(labels), metrics)


@pytest.fixture
def world(shared):  # noqa: ANN001, ANN201
    return shared[2]


@pytest.fixture
def ws(shared) -> Workspace:  # noqa: ANN001
    return shared[0]


@pytest.fixture
def cli(shared):  # noqa: ANN001, ANN201
    return shared[1]


def selected_ids(ws: Workspace, name: str) -> list[str]:
    with open_catalog(ws) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT example_id FROM examples WHERE dataset = ? ORDER BY row_idx", [name]
            ).fetchall()
        ]


REGIONS = [
    ("easy", "confidence", True),
    ("hard", "confidence", False),
    ("ambiguous", "variability", True),
    ("robust", "sensitivity", False),
    ("non-robust", "sensitivity", True),
    ("swing", "adv_variability", True),
]


def test_top_fraction_by_region(ws: Workspace, cli, world) -> None:  # noqa: ANN001
    ids, _, metrics = world
    for region, metric, highest in REGIONS:
        if region in ("easy", "swing"):  # as a user runs it
            result = cli(
                "select", "r1", "--region", region, "--fraction", "0.25", "--name", f"sel-{region}", "--json"
            )
            assert result.code == 0, result.stderr
            summary = result.json()
        else:  # the same function, in-process (saves a subprocess per region)
            with open_catalog(ws) as con:
                summary = select_examples(con, "r1", region, 0.25, f"sel-{region}").as_dict()
        assert summary["n_examples"] == 25 and summary["n_candidates"] == 100
        order = np.argsort(-metrics[metric] if highest else metrics[metric], kind="stable")
        assert sorted(selected_ids(ws, f"sel-{region}")) == sorted(ids[order[:25]]), region


def test_selection_is_a_dataset_with_copied_rows_a_parent_and_a_record(ws: Workspace, cli, world) -> None:  # noqa: ANN001
    ids, labels, metrics = world
    assert cli("select", "r1", "--region", "easy", "--fraction", "0.1", "--name", "easy10").code == 0
    with open_catalog(ws) as con:
        ds = con.execute(
            "SELECT task, n_examples, parent, label_names FROM datasets WHERE name = 'easy10'"
        ).fetchone()
        assert ds == ("classification", 10, "train", json.dumps(["neg", "pos", "neutral"]))
        sel = con.execute(
            "SELECT run_id, region, fraction, balanced, seed FROM selections WHERE name = 'easy10'"
        ).fetchone()
        assert sel == ("r1", "easy", 0.1, False, 0)
        # every column of the copied rows equals the source row
        diff = con.execute(
            """SELECT count(*) FROM examples a JOIN examples b ON a.example_id = b.example_id
               WHERE a.dataset = 'easy10' AND b.dataset = 'train'
                 AND (a.text, a.label, a.label_name, a.row_idx) IS DISTINCT FROM (b.text, b.label, b.label_name, b.row_idx)"""
        ).fetchone()[0]
        assert diff == 0
        assert con.execute("SELECT count(*) FROM examples WHERE dataset = 'easy10'").fetchone()[0] == 10
    listed = {d["name"]: d for d in cli("datasets", "--json").json()}
    assert listed["easy10"]["n_examples"] == 10 and listed["train"]["n_examples"] == 100


def test_balanced_gives_each_label_an_equal_share_as_far_as_available(ws: Workspace, cli, world) -> None:  # noqa: ANN001
    ids, labels, metrics = world
    # 30 of 100: 10 per label (the 10-example label gives all it has)
    r = cli(
        "select", "r1", "--region", "ambiguous", "--fraction", "0.3", "--balanced", "--name", "b30", "--json"
    )
    assert r.code == 0, r.stderr
    assert r.json()["per_group"] == {"neg": 10, "neutral": 10, "pos": 10}
    chosen = set(selected_ids(ws, "b30"))
    for label in LABEL_COUNTS:
        mask = labels == label
        order = np.argsort(-metrics["variability"][mask], kind="stable")
        assert {i for i in ids[mask][order[:10]]} == {i for i in chosen if labels[ids == i][0] == label}
    # 60 of 100: neutral has only 10, the other 50 split between neg and pos
    r = cli("select", "r1", "--region", "hard", "--fraction", "0.6", "--balanced", "--name", "b60", "--json")
    assert r.json()["per_group"] == {"neg": 25, "neutral": 10, "pos": 25}
    # unbalanced, the same fraction follows the metric only
    r = cli("select", "r1", "--region", "hard", "--fraction", "0.6", "--name", "u60", "--json")
    assert r.json()["n_examples"] == 60 and r.json()["per_group"] != {"neg": 25, "neutral": 10, "pos": 25}


def test_random_baseline_is_seeded(ws: Workspace, cli, world) -> None:  # noqa: ANN001
    ids, _, _ = world
    summary = cli("metrics", "r1")  # a run with adversarial dynamics: both maps' regions are listed
    assert summary.code == 0 and "robustness" in summary.stdout and "swing" in summary.stdout
    robust_map = cli("map", "r1", "--kind", "robustness", "--width", "30", "--height", "8")
    assert robust_map.code == 0, robust_map.stderr
    assert "sensitivity" in robust_map.stdout and "non-robust" in robust_map.stdout
    r = cli("select", "r1", "--region", "random", "--fraction", "0.2", "--seed", "1", "--name", "ra")
    assert r.code == 0, r.stderr
    with open_catalog(ws) as con:
        select_examples(con, "r1", "random", 0.2, "rb", seed=1)
        select_examples(con, "r1", "random", 0.2, "rc", seed=2)
    a, b, c = (set(selected_ids(ws, n)) for n in ("ra", "rb", "rc"))
    assert a == b and a != c and len(a) == len(c) == 20 and a <= set(ids)
    with open_catalog(ws) as con:
        balanced = select_examples(con, "r1", "random", 0.5, "rbal", balanced=True, seed=3)
    assert balanced.per_group == {"neg": 20, "neutral": 10, "pos": 20}


def test_selection_errors(ws: Workspace, cli, world) -> None:  # noqa: ANN001
    def error(*args: str) -> str:
        result = cli("select", *args)
        assert result.code == 2, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return " ".join(result.stderr.split())

    assert "no run named 'nope'" in error("nope", "--region", "easy", "--fraction", "0.5", "--name", "x")
    for bad in ("0", "1.5", "-0.1"):
        assert "(0, 1]" in error("r1", "--region", "easy", "--fraction", bad, "--name", "x")
    assert "already exists" in error("r1", "--region", "easy", "--fraction", "0.5", "--name", "train")
    assert "middling" in error("r1", "--region", "middling", "--fraction", "0.5", "--name", "x")

    # a run that has not finished an epoch has no metrics
    young = ws.run_dir("young")
    append_event(young, "state", status="running", n_epochs=3)
    write_config(young, {"kind": "train", "dataset": "train", "epochs": 3})
    assert "no per-example metrics" in error("young", "--region", "easy", "--fraction", "0.5", "--name", "x")

    # robustness regions need adversarial dynamics
    ids = np.array([f"s{i:03d}" for i in range(100)])
    write_run(ws.run_dir("plain"), ids, random_dynamics(100, 2, adversarial=False), 2)
    finish(ws.run_dir("plain"), 2, dataset="train")
    assert "adversarial" in error("plain", "--region", "swing", "--fraction", "0.5", "--name", "x")
    assert cli("select", "plain", "--region", "easy", "--fraction", "1", "--name", "all").code == 0
    listed = {d["name"]: d for d in cli("datasets", "--json").json()}
    assert listed["all"]["n_examples"] == 100
    # nothing half-made by the failures
    assert "x" not in listed
    with open_catalog(ws) as con:
        assert con.execute("SELECT count(*) FROM examples WHERE dataset = 'x'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM selections WHERE name = 'x'").fetchone()[0] == 0


def test_sizes_and_quotas() -> None:
    assert selection_size(0.33, 100) == 33 and selection_size(1.0, 7) == 7 and selection_size(0.001, 10) == 1
    assert selection_size(0.3, 10) == 3  # 0.3 * 10 is 2.9999999999999996 in binary floating point
    with pytest.raises(ValueError):
        selection_size(0.0, 10)
    assert balanced_quotas({"a": 60, "b": 30, "c": 10}, 30) == {"a": 10, "b": 10, "c": 10}
    assert balanced_quotas({"a": 60, "b": 30, "c": 10}, 60) == {"a": 25, "b": 25, "c": 10}
    assert balanced_quotas({"a": 60, "b": 30, "c": 10}, 95) == {"a": 55, "b": 30, "c": 10}
    assert sum(balanced_quotas({"a": 5, "b": 5}, 7).values()) == 7
    assert balanced_quotas({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}
