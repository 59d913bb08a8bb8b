"""The `augment-region` pipeline against the real local LLM server: label-preserving rewrites of a selection of
real SST-2 examples, each kept only when a trained run still predicts its label; the new dataset trains."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from engine.generation.server import LocalServer
from storage.workspace import Workspace
from tests.conftest import run_cli
from tests.test_generate_job import examples, generate, provenance

pytest_plugins = ["tests.llm_fixtures"]  # llm_server

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def cli_json(ws: Workspace, *args: str) -> dict:
    result = run_cli(ws, *args, "--json", env=ONE_THREAD)
    assert result.code == 0, result.stderr
    return result.json()


def test_augment_region_rewrites_checked_by_the_run(
    ws: Workspace, llm_server: LocalServer, data_dir: Path, tmp_path: Path
) -> None:
    with gzip.open(data_dir / "sst2" / "train.tsv.gz", "rt", encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(33)]  # the header and 32 real rows
    path = tmp_path / "sst-few.tsv"
    path.write_text("".join(lines))
    cli_json(ws, "import", str(path), "--name", "sst-few")
    run_id = cli_json(ws, "train", "sst-few", "--max-length", "64", "--epochs", "1", "--batch-size", "16")[
        "run_id"
    ]
    # the region: the run's hard third, as a user sends it from the map (`dynascope select`)
    cli_json(ws, "select", run_id, "--region", "hard", "--fraction", "0.25", "--name", "sst-hard")

    done = generate(
        ws, llm_server.base_url, "--pipeline", "augment-region", "--from", "sst-hard", "--run", run_id,
        "--name", "sst-more", "--n", "6", "--concurrency", "2",
    )  # fmt: skip
    assert done["status"] == "done"
    sources = {e["example_id"]: e for e in examples(ws, "sst-hard")}
    records = provenance(ws, "sst-more")
    assert len(records) == 6
    for rec in records:
        assert rec["pipeline"] == "augment-region" and rec["parent_example_id"] in sources
        assert rec["accepted"] == (rec["reason"] is None)
        reasons = {"empty-rewrite", "unchanged", "label-check"}
        assert rec["accepted"] or rec["reason"] in reasons or rec["reason"].startswith("request:"), rec
        verdict = json.loads(rec["verdicts"]).get("label-check")
        if rec["accepted"] or rec["reason"] == "label-check":  # every rewrite the run saw has its prediction
            assert verdict["run"] == run_id
    rows = examples(ws, "sst-more")
    by_id = {r["example_id"]: r for r in records}
    for row in rows:  # label preserved, text rewritten
        parent = sources[by_id[row["example_id"]]["parent_example_id"]]
        assert row["label_name"] == parent["label_name"] and row["label"] == parent["label"]
        assert row["text"] != parent["text"]
        assert (
            json.loads(by_id[row["example_id"]]["verdicts"])["label-check"]["prediction"] == row["label_name"]
        )
    assert rows, [(r["reason"], r["text"]) for r in records]

    # a recount: the run predicts every kept rewrite's label (its accuracy on them is 1)
    evaluated = cli_json(ws, "eval", run_id, "sst-more")
    assert evaluated["metrics"]["accuracy"] == 1.0, evaluated
    trained = cli_json(ws, "train", "sst-more", "--max-length", "64", "--epochs", "1", "--batch-size", "4")
    assert trained["status"] == "done"
