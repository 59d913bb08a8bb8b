"""Classification training with dynamics, end to end through the CLI: real MiniLM, real SST-2 and AG News rows.

Sizes are small (64 / 48 examples, max length 64, 2 epochs) so the file runs in about a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import gzip
import json
import math

import duckdb
import pytest

from storage.metrics import DYNAMICS_COLUMNS

N_SST2 = 64
N_PAIRS = 48


def shard_rows(ws, run_id: str) -> list[dict]:
    """The run's dynamics rows with the logical columns (example_id strings), read from the compact shards."""
    from storage.artifacts import shard_scan_sql

    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(ws.run_dir(run_id))} ORDER BY epoch, example_id")
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def assert_one_row_per_example_per_epoch(rows: list[dict], n_examples: int, n_epochs: int) -> None:
    for epoch in range(n_epochs):
        ids = [r["example_id"] for r in rows if r["epoch"] == epoch]
        assert len(ids) == n_examples, f"epoch {epoch}: {len(ids)} rows for {n_examples} examples"
        assert len(set(ids)) == n_examples, f"epoch {epoch}: an example was recorded twice"
    assert {r["epoch"] for r in rows} == set(range(n_epochs))


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    ws = Workspace(tmp_path_factory.mktemp("sst2") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2",
        "--limit",
        str(N_SST2),
        "--max-length",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-4",
        "--seed",
        "7",
        "--json",
    )
    assert result.code == 0, result.stderr
    return ws, result.json()


def test_sst2_run_records_one_row_per_example_per_epoch(sst2_run):
    ws, summary = sst2_run
    assert summary["status"] == "done" and summary["epochs_done"] == 2
    rows = shard_rows(ws, summary["run_id"])
    assert set(rows[0]) == set(DYNAMICS_COLUMNS)  # exactly the storage contract, no surprise columns
    assert_one_row_per_example_per_epoch(rows, N_SST2, 2)
    config = json.loads((ws.run_dir(summary["run_id"]) / "config.json").read_text())
    assert config["kind"] == "train" and config["dataset"] == "sst2" and config["epochs"] == 2
    assert isinstance(config["created_at"], float) and config["seed"] == 7 and config["lr"] == 1e-4


def test_inline_dynamics_are_consistent_with_the_definitions(sst2_run):
    """Binary softmax: loss = -log p(gold); EL2N = sqrt(2) * (1 - p(gold)); margin > 0 exactly when correct."""
    ws, summary = sst2_run
    rows = shard_rows(ws, summary["run_id"])
    for r in rows:
        assert 0.0 < r["gold_prob"] < 1.0
        assert r["loss"] == pytest.approx(-math.log(r["gold_prob"]), abs=1e-5)
        assert r["el2n"] == pytest.approx(math.sqrt(2) * (1 - r["gold_prob"]), abs=1e-5)
        assert (r["margin"] > 0) == r["correct"] == (r["gold_prob"] > 0.5)
        assert r["prediction"] in ("0", "1")


def test_predictions_match_gold_labels_from_the_catalog(sst2_run):
    from tests.conftest import run_cli

    ws, summary = sst2_run
    labels = {
        r["example_id"]: r["label_name"]
        for r in run_cli(
            ws, "sql", "SELECT example_id, label_name FROM examples WHERE dataset = 'sst2'", "--json"
        ).json()
    }
    for r in shard_rows(ws, summary["run_id"]):
        assert r["correct"] == (r["prediction"] == labels[r["example_id"]])


def test_per_example_metrics_land_in_the_catalog(sst2_run):
    from tests.conftest import run_cli

    ws, summary = sst2_run
    run_id = summary["run_id"]
    metrics = run_cli(
        ws,
        "sql",
        f"SELECT example_id, epochs, confidence, correctness FROM example_metrics WHERE run_id = '{run_id}'",
        "--json",
    ).json()
    assert len(metrics) == N_SST2 and all(m["epochs"] == 2 for m in metrics)
    rows = shard_rows(ws, run_id)
    by_id: dict[str, list[float]] = {}
    for r in rows:
        by_id.setdefault(r["example_id"], []).append(r["gold_prob"])
    for m in metrics:
        assert m["confidence"] == pytest.approx(sum(by_id[m["example_id"]]) / 2, abs=1e-9)
    runs = run_cli(ws, "runs", "--json").json()
    assert [(r["run_id"], r["status"], r["epochs_done"]) for r in runs] == [(run_id, "done", 2)]


def test_text_pairs_with_epoch_end_dynamics(ws, cli, data_dir, tmp_path):
    """AG News title + description as a text pair; epoch-end mode is an eval-mode pass with the epoch's final
    weights, so the last epoch's rows must equal `dynascope eval` on the same examples."""
    with gzip.open(data_dir / "ag_news" / "test.csv.gz", "rt", encoding="utf-8") as fh:
        rows = [r for _, r in zip(range(N_PAIRS), csv.DictReader(fh))]
    path = tmp_path / "agpairs.jsonl"
    path.write_text("".join(json.dumps({"id": f"ag{i}", **r}) + "\n" for i, r in enumerate(rows)))
    imported = cli("import", str(path), "--name", "agpairs", "--json")
    assert imported.code == 0, imported.stderr
    assert cli("datasets", "--json").json()[0]["is_pair"] is True

    result = cli(
        "train",
        "agpairs",
        "--max-length",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--dynamics",
        "epoch-end",
        "--json",
    )
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    dyn = shard_rows(ws, run_id)
    assert_one_row_per_example_per_epoch(dyn, N_PAIRS, 2)
    assert {r["prediction"] for r in dyn} <= {"1", "2", "3", "4"}

    evaluated = cli("eval", run_id, "agpairs", "--json")
    assert evaluated.code == 0, evaluated.stderr
    eval_rows = cli(
        "sql", f"SELECT example_id, prediction, correct FROM predictions WHERE run_id = '{run_id}'", "--json"
    ).json()
    last = {r["example_id"]: (r["prediction"], r["correct"]) for r in dyn if r["epoch"] == 1}
    assert {r["example_id"]: (r["prediction"], r["correct"]) for r in eval_rows} == last
    accuracy = evaluated.json()["metrics"]["accuracy"]
    assert accuracy == pytest.approx(sum(c for _, c in last.values()) / N_PAIRS)


def test_bad_input_is_exit_2_with_a_message(ws, cli):
    result = cli("train", "no-such-dataset", "--epochs", "1")
    assert result.code == 2 and "no dataset named 'no-such-dataset'" in result.stderr
    result = cli("train", "--resume", "no-such-run")
    assert result.code == 2 and "no run named 'no-such-run'" in result.stderr


def test_subset_trains_on_the_selection_with_original_ids(sst2_run, tmp_path):
    """A selection is a dataset of its own holding original ids; here only positive reviews, so the subset's own
    class index for "1" is 0 and must be mapped back to the parent's index 1."""
    from tests.conftest import run_cli

    ws, _ = sst2_run
    positives = run_cli(ws, "examples", "sst2", "--where", "label = 1", "--limit", "20", "--json").json()
    path = tmp_path / "positives.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": r["example_id"], "sentence": r["text"], "label": r["label_name"]}) + "\n"
            for r in positives
        )
    )
    assert run_cli(ws, "import", str(path), "--name", "sst2-pos").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2",
        "--subset",
        "sst2-pos",
        "--max-length",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--json",
    )
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    rows = shard_rows(ws, run_id)
    assert sorted(r["example_id"] for r in rows) == sorted(r["example_id"] for r in positives)
    # the gold class is "1": correct exactly when "1" was predicted
    assert all(r["correct"] == (r["prediction"] == "1") for r in rows)
    runs = {r["run_id"]: r for r in run_cli(ws, "runs", "--json").json()}
    assert runs[run_id]["dataset"] == "sst2"
    bad = run_cli(ws, "train", "sst2", "--subset", "nope", "--epochs", "1")
    assert bad.code == 2 and "no subset named 'nope'" in bad.stderr
