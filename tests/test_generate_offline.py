"""The generate job's pipelines without an LLM, through the CLI as a user runs them: `blend` (real and generated
examples at a ratio, at a fixed total) and `round-trip` (a pair is kept only when a trained QA run recovers its
answer), on real SQuAD questions and the rule-based synthetic second answers (`dynascope extra-answers`); then seed
004's whole chain with the real local LLM server."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from engine.generation.server import LocalServer
from engine.tasks.squad_metric import best_over_golds
from storage.workspace import Workspace
from tests.conftest import finish_cli, run_cli, start_cli
from tests.test_generate_job import examples, generate, provenance

pytest_plugins = ["tests.llm_fixtures"]  # gen_ws, llm_server

SQUAD_NAME = "squad-few"
EXTRA_NAME = "squad-few-extra"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli_json(ws: Workspace, *args: str) -> dict:
    result = run_cli(ws, *args, "--json", env=ONE_THREAD)
    assert result.code == 0, result.stderr
    return result.json()


@pytest.fixture
def two_sources(gen_ws: Workspace) -> Workspace:
    """squad-few (8 real questions) and its copy with synthetic second answers, the 'generated' side."""
    cli_json(gen_ws, "extra-answers", SQUAD_NAME, "--fraction", "1", "--name", EXTRA_NAME)
    return gen_ws


def blend(ws: Workspace, name: str, *args: str) -> dict:
    return cli_json(
        ws, "generate", "--pipeline", "blend", "--from", SQUAD_NAME, "--generated", EXTRA_NAME, "--name", name, *args
    )  # fmt: skip


def by_id(ws: Workspace, dataset: str) -> dict[str, dict]:
    return {e["example_id"]: e for e in examples(ws, dataset)}


def test_blend_counts_ratio_determinism_and_sources(two_sources: Workspace, cli_in_process) -> None:
    ws = two_sources
    assert blend(ws, "mix", "--n", "8", "--ratio", "0.5", "--seed", "3")["status"] == "done"
    assert blend(ws, "mix-again", "--n", "8", "--ratio", "0.5", "--seed", "3")["status"] == "done"
    assert blend(ws, "mix-quarter", "--n", "8", "--ratio", "0.25", "--seed", "3")["status"] == "done"
    sources = {"real": by_id(ws, SQUAD_NAME), "generated": by_id(ws, EXTRA_NAME)}
    parent_name = {"real": SQUAD_NAME, "generated": EXTRA_NAME}

    for name, n_generated in (("mix", 4), ("mix-quarter", 2)):
        rows = examples(ws, name)
        records = {r["example_id"]: r for r in provenance(ws, name)}
        assert len(rows) == 8 and len(records) == 8
        parts = [json.loads(records[r["example_id"]]["verdicts"])["part"] for r in rows]
        assert parts.count("generated") == n_generated and parts.count("real") == 8 - n_generated
        for row in rows:  # every example exactly as in its source, and its provenance says which
            rec = records[row["example_id"]]
            part = json.loads(rec["verdicts"])["part"]
            assert row["example_id"] == f"{part}/{rec['parent_example_id']}"
            assert rec["parent_dataset"] == parent_name[part] and rec["pipeline"] == "blend"
            source = sources[part][rec["parent_example_id"]]
            for col in ("text", "text_pair", "answers", "is_impossible", "label", "title", "orig_id"):
                assert row[col] == source[col], (col, row, source)
        ids = [r["example_id"] for r in rows]
        assert len(set(ids)) == 8

    same = [(r["example_id"], r["text_pair"]) for r in examples(ws, "mix-again")]
    assert same == [(r["example_id"], r["text_pair"]) for r in examples(ws, "mix")]  # deterministic by seed

    runs_before = sorted(p.name for p in ws.run_dir("x").parent.iterdir())
    bad = {
        ("--pipeline", "blend", "--from", SQUAD_NAME, "--generated", EXTRA_NAME, "--name", "big", "--n", "20"):
            "lower --n",
        ("--pipeline", "blend", "--from", SQUAD_NAME, "--name", "nogen"): "--generated",
        ("--pipeline", "round-trip", "--from", EXTRA_NAME, "--name", "norun"): "--run",
        ("--pipeline", "round-trip", "--from", EXTRA_NAME, "--run", "no-such-run", "--name", "norun"): "no run",
        ("--pipeline", "extra-answers", "--from", SQUAD_NAME, "--name", "nourl"): "--base-url",
        ("--pipeline", "augment-region", "--from", SQUAD_NAME, "--name", "aug", "--base-url", "http://127.0.0.1:9/v1",
         "--model", "m", "--run", "r"): "needs a classification dataset",
        ("--pipeline", "blend", "--from", SQUAD_NAME, "--generated", EXTRA_NAME, "--name", "mix"): "already exists",
    }  # fmt: skip
    for args, message in bad.items():  # refusals in this process: the same click command, no job started
        result = cli_in_process(ws, "generate", *args)
        assert result.code == 2 and message in result.stderr, (args, result.stderr)
    assert sorted(p.name for p in ws.run_dir("x").parent.iterdir()) == runs_before  # nothing changed


def test_round_trip_verdicts_equal_a_recount_then_the_whole_chain(
    two_sources: Workspace, llm_server: LocalServer
) -> None:
    """round-trip on the rule-based second answers (threshold 0.2) against a recount of the run's predictions; then
    seed 004's chain on real questions with the real LLM: context -> qa-from-context -> round-trip -> blend."""
    ws = two_sources
    trained = cli_json(
        ws, "train", SQUAD_NAME, "--max-length", "128", "--epochs", "1", "--batch-size", "8", "--lr", "1e-4"
    )
    run_id = trained["run_id"]
    threshold = 0.2
    # the recount: the run's own predictions on the same pairs (`dynascope eval`, made meanwhile), scored below
    recount = start_cli(ws, "eval", run_id, EXTRA_NAME, "--json", env=ONE_THREAD)
    try:
        done = cli_json(
            ws, "generate", "--pipeline", "round-trip", "--from", EXTRA_NAME, "--run", run_id,
            "--threshold", str(threshold), "--name", "checked",
        )  # fmt: skip
    finally:
        evaluated = finish_cli(recount)
    assert done["status"] == "done"
    assert evaluated.code == 0, evaluated.stderr
    predictions = pq.read_table(ws.run_dir(run_id) / "eval" / f"{EXTRA_NAME}.parquet").to_pylist()
    pairs = by_id(ws, EXTRA_NAME)
    expected = {}
    for p in predictions:
        golds = [a["text"] for a in json.loads(pairs[p["example_id"]]["answers"])]
        expected[p["example_id"]] = best_over_golds(p["prediction"], golds)[1] >= threshold

    records = {r["example_id"]: r for r in provenance(ws, "checked")}
    assert set(records) == set(expected) and len(records) == 8
    kept = {e["example_id"] for e in examples(ws, "checked")}
    for example_id, keep in expected.items():
        rec = records[example_id]
        assert rec["accepted"] == keep == (example_id in kept), rec
        assert rec["reason"] == (None if keep else "round-trip")
        assert rec["model"] == f"run:{run_id}" and rec["parent_dataset"] == EXTRA_NAME
        verdict = json.loads(rec["verdicts"])["round-trip"]
        assert verdict["threshold"] == threshold
    checked = by_id(ws, "checked")
    for example_id in kept:  # kept pairs land unchanged
        assert checked[example_id]["answers"] == pairs[example_id]["answers"]
        assert checked[example_id]["text_pair"] == pairs[example_id]["text_pair"]

    # the chain: every accepted answer at its offset all along, provenance complete
    url = llm_server.base_url
    generate(
        ws, url, "--pipeline", "context", "--from", SQUAD_NAME, "--name", "ctx", "--n", "4", "--words", "40"
    )
    generate(
        ws, url, "--pipeline", "qa-from-context", "--from", "ctx", "--name", "qa", "--n", "4", "--pairs", "2"
    )
    pairs = examples(ws, "qa")
    assert pairs, provenance(
        ws, "qa"
    )  # a 135M model still writes a few pairs whose answer is in the paragraph
    # threshold 0 keeps every pair the run scored (the filtering itself is checked above)
    cli_json(ws, "generate", "--pipeline", "round-trip", "--from", "qa", "--run", run_id, "--threshold", "0",
             "--name", "qa-rt")  # fmt: skip
    kept_pairs = examples(ws, "qa-rt")
    assert [e["answers"] for e in kept_pairs] == [e["answers"] for e in pairs]
    n_generated = min(len(kept_pairs), 4)
    cli_json(ws, "generate", "--pipeline", "blend", "--from", SQUAD_NAME, "--generated", "qa-rt",
             "--n", str(2 * n_generated), "--name", "final")  # fmt: skip
    final = examples(ws, "final")
    assert len(final) == 2 * n_generated
    assert sum(e["example_id"].startswith("generated/") for e in final) == n_generated
    for ex in final:
        for answer in json.loads(ex["answers"]):
            start = answer["answer_start"]
            assert ex["text_pair"][start : start + len(answer["text"])] == answer["text"]
    for name in ("ctx", "qa", "qa-rt", "final"):
        for rec in provenance(ws, name):
            for key in ("pipeline", "model", "parent_dataset", "parent_example_id"):
                assert rec[key] not in (None, ""), (name, key, rec)
