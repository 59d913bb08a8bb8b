"""Extractive QA training with dynamics on real SQuAD v1.1 dev questions whose contexts are much longer than the
window (max length 64: every context is split into several windows)."""

from __future__ import annotations

import gzip
import json
import math

import duckdb
import pytest

from engine.tasks.squad_metric import best_over_golds

N_QUESTIONS = 24


def shard_rows(ws, run_id: str) -> list[dict]:
    """The run's dynamics rows with the logical columns (example_id strings), read from the compact shards."""
    from storage.artifacts import shard_scan_sql

    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(ws.run_dir(run_id))} ORDER BY epoch, example_id")
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def squad_subset(data_dir, n: int) -> tuple[dict, dict[str, list[str]], str]:
    """The first `n` dev questions on contexts of 600+ characters, plus one question (kept from the same real
    paragraph) whose answer is a 400-character span: no 64-token window can hold it."""
    with gzip.open(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", "rt", encoding="utf-8") as fh:
        dev = json.load(fh)
    out: dict = {"version": "1.1", "data": []}
    golds: dict[str, list[str]] = {}
    long_id = ""
    for article in dev["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if len(para["context"]) < 600 or len(golds) >= n:
                continue
            qas = para["qas"][: n - len(golds)]
            for qa in qas:
                golds[qa["id"]] = [a["text"] for a in qa["answers"]]
            if not long_id:
                long_id = "long-answer-" + qas[0]["id"]
                text = para["context"][:400]
                qas = qas + [
                    {
                        "id": long_id,
                        "question": qas[0]["question"],
                        "answers": [{"text": text, "answer_start": 0}],
                    }
                ]
                golds[long_id] = [text]
            paragraphs.append({"context": para["context"], "qas": qas})
        if paragraphs:
            out["data"].append({"title": article["title"], "paragraphs": paragraphs})
        if len(golds) >= n + 1:
            break
    return out, golds, long_id


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    tmp = tmp_path_factory.mktemp("qa")
    ws = Workspace(tmp / "ws").create()
    subset, golds, long_id = squad_subset(data_dir, N_QUESTIONS)
    path = tmp / "squad-long.json"
    path.write_text(json.dumps(subset))
    imported = run_cli(ws, "import", str(path), "--name", "squad-long", "--json")
    assert imported.code == 0, imported.stderr
    result = run_cli(
        ws,
        "train",
        "squad-long",
        "--max-length",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-4",
        "--json",
    )
    assert result.code == 0, result.stderr
    return ws, result.json(), golds, long_id


def test_every_example_is_recorded_once_per_epoch_with_several_windows(qa_run):
    ws, summary, golds, _ = qa_run
    assert summary["status"] == "done"
    rows = shard_rows(ws, summary["run_id"])
    for epoch in (0, 1):
        ids = [r["example_id"] for r in rows if r["epoch"] == epoch]
        assert sorted(ids) == sorted(golds)  # one row per question, none dropped, none doubled
    windows = [r["n_windows"] for r in rows if r["epoch"] == 0]
    assert min(windows) >= 2 and sum(windows) > 3 * len(windows)  # contexts really were split


def test_answer_outside_every_window_is_recorded_not_dropped(qa_run):
    ws, summary, _, long_id = qa_run
    for r in shard_rows(ws, summary["run_id"]):
        if r["example_id"] == long_id:
            assert r["answer_in_window"] is False and r["gold_prob"] == 0.0 and not r["correct"]
            assert r["margin"] is None and r["loss"] > 0
        else:
            assert r["answer_in_window"] is True
            assert 0.0 < r["gold_prob"] <= 1.0
            # the gold window's loss is the mean of the start and end cross-entropies: -log(p_s p_e) / 2
            assert r["loss"] == pytest.approx(-math.log(r["gold_prob"]) / 2, rel=1e-4, abs=1e-5)


def test_correct_means_exact_match_after_squad_normalisation(qa_run):
    ws, summary, golds, _ = qa_run
    rows = shard_rows(ws, summary["run_id"])
    for r in rows:
        assert r["correct"] == (best_over_golds(r["prediction"], golds[r["example_id"]])[0] == 1.0)
        assert r["prediction"] != ""  # v1.1: always a span, never "no answer"
    # the margin is gold-span score minus the best other span: positive exactly when the gold span wins its window
    assert any(r["margin"] is not None and r["margin"] < 0 for r in rows)


def test_qa_metrics_land_in_the_catalog(qa_run):
    from tests.conftest import run_cli

    ws, summary, golds, _ = qa_run
    metrics = run_cli(
        ws,
        "sql",
        "SELECT example_id, epochs, confidence FROM example_metrics WHERE run_id = "
        f"'{summary['run_id']}' ORDER BY example_id",
        "--json",
    ).json()
    assert sorted(m["example_id"] for m in metrics) == sorted(golds)
    assert all(m["epochs"] == 2 and 0.0 <= m["confidence"] <= 1.0 for m in metrics)
