"""A tiny real SQuAD v2.0 run shared by the QA attack, error-analysis and evaluation-group tests (a pytest plugin:
`pytest_plugins = ["tests.qa_v2_fixture"]`): MiniLM trained 1 epoch at max length 64 on the first 40 questions
of the v2.0 dev set (half unanswerable), imported as `squad2`."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import run_cli
from tests.test_evaluation import squad_file

N_QUESTIONS = 40
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def qa_v2(tmp_path_factory, data_dir):
    from storage.workspace import Workspace

    tmp = tmp_path_factory.mktemp("qa-attack")
    ws = Workspace(tmp / "ws").create()
    content, _ = squad_file(
        data_dir / "squad_v2.0" / "dev-v2.0-reconstructed.json.gz", lambda q, i: i < N_QUESTIONS
    )
    path = tmp / "squad2.json"
    path.write_text(json.dumps(content))
    assert run_cli(ws, "import", str(path), "--name", "squad2").code == 0
    trained = run_cli(
        ws,
        "train",
        "squad2",
        *("--max-length", "64", "--epochs", "1", "--batch-size", "8", "--lr", "1e-4", "--json"),
        env=ONE_THREAD,
    )
    assert trained.code == 0, trained.stderr
    return ws, trained.json()["run_id"]


@pytest.fixture(scope="session")
def qa_v2_evaluated(qa_v2, data_dir, tmp_path_factory):
    """The run evaluated in one job on three sets, one per group: `squad2-half` (a seeded random half of its own
    training set: in-domain through `parent`), `addonesent` (8 AddOneSent originals and their variants:
    adversarial) and `squad11` (16 SQuAD v1.1 dev questions from another article: shift)."""
    ws, run_id = qa_v2
    tmp = tmp_path_factory.mktemp("qa-eval-sets")
    with gzip.open(data_dir / "adversarial_squad" / "sample1k-HCVerifySample.json.gz", "rt") as fh:
        data = json.load(fh)
    originals = [
        qa["id"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"] if "-" not in qa["id"]
    ]
    variants = {
        qa["id"].split("-")[0]
        for a in data["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
        if "-" in qa["id"]
    }
    chosen = {o for o in originals if o in variants}
    chosen = set(sorted(chosen)[:8])
    sets = {
        "addonesent": squad_file(
            data_dir / "adversarial_squad" / "sample1k-HCVerifySample.json.gz",
            lambda qid, i: qid.split("-")[0] in chosen,
        ),
        "squad11": squad_file(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", lambda qid, i: 3000 <= i < 3016),
    }
    for name, (content, _) in sets.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(content))
        assert run_cli(ws, "import", str(path), "--name", name).code == 0
    selected = run_cli(
        ws, "select", run_id, "--region", "random", "--fraction", "0.5", "--name", "squad2-half", "--json"
    )
    assert selected.code == 0, selected.stderr
    evaluated = run_cli(ws, "eval", run_id, "squad2-half", "addonesent", "squad11", "--json", env=ONE_THREAD)
    assert evaluated.code == 0, evaluated.stderr
    return ws, run_id, evaluated.json()
