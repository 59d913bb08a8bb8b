"""`dynascope eval` (and `train --eval`) on real dev subsets: accuracy on SST-2 dev, EM/F1 on SQuAD v1.1,
HasAns/NoAns on SQuAD v2.0, and the plain average plus the worst case per original question on AddSent.

Each figure is recomputed here from the per-example predictions the run wrote, so a wrong aggregation, a lost
row or a wrong grouping by original question fails."""

from __future__ import annotations

import gzip
import json

import pytest

from engine.tasks.squad_metric import best_over_golds

N_DEV = 256  # the first SST-2 dev sentences


def squad_file(path, keep) -> tuple[dict, dict[str, list[str]]]:
    """The questions of a real SQuAD file for which keep(qid, index) holds, in the file's own layout."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    out: dict = {"version": data.get("version", "1.1"), "data": []}
    golds: dict[str, list[str]] = {}
    index = 0
    for article in data["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            qas = []
            for qa in para["qas"]:
                if keep(qa["id"], index):
                    qas.append(qa)
                    golds[qa["id"]] = [a["text"] for a in qa["answers"]]
                index += 1
            if qas:
                paragraphs.append({"context": para["context"], "qas": qas})
        if paragraphs:
            out["data"].append({"title": article["title"], "paragraphs": paragraphs})
    return out, golds


@pytest.fixture(scope="module")
def qa_ws(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    tmp = tmp_path_factory.mktemp("eval")
    ws = Workspace(tmp / "ws").create()
    dev = data_dir / "squad_v1.1" / "dev-v1.1.json.gz"
    sets = {
        "squad-train": squad_file(dev, lambda qid, i: i < 32),
        "squad-dev": squad_file(dev, lambda qid, i: 5000 <= i < 5040),
        "squad2-dev": squad_file(
            data_dir / "squad_v2.0" / "dev-v2.0-reconstructed.json.gz", lambda q, i: i < 40
        ),
    }
    with gzip.open(data_dir / "adversarial_squad" / "sample1k-HCVerifyAll.json.gz", "rt") as fh:
        originals = [
            qa["id"]
            for a in json.load(fh)["data"]
            for p in a["paragraphs"]
            for qa in p["qas"]
            if "-" not in qa["id"]
        ]
    chosen = set(originals[:8])
    sets["addsent"] = squad_file(
        data_dir / "adversarial_squad" / "sample1k-HCVerifyAll.json.gz",
        lambda qid, i: qid.split("-")[0] in chosen,
    )
    for name, (content, _) in sets.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(content))
        result = run_cli(ws, "import", str(path), "--name", name)
        assert result.code == 0, result.stderr
    trained = run_cli(
        ws,
        "train",
        "squad-train",
        "--max-length",
        "128",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-4",
        "--eval",
        "squad-dev",
        "--json",
    )
    assert trained.code == 0, trained.stderr
    return ws, trained.json(), {name: golds for name, (_, golds) in sets.items()}


def predictions(ws, run_id: str, eval_set: str) -> dict[str, dict]:
    from tests.conftest import run_cli

    rows = run_cli(
        ws,
        "sql",
        f"""SELECT p.example_id, p.prediction, p.correct, p.score, e.orig_id, e.is_impossible
                                  FROM predictions p JOIN examples e ON e.dataset = p.eval_set
                                       AND e.example_id = p.example_id
                                  WHERE p.run_id = '{run_id}' AND p.eval_set = '{eval_set}'""",
        "--json",
    ).json()
    return {r["example_id"]: r for r in rows}


def test_squad_v1_em_f1_from_train_eval(qa_ws):
    ws, trained, golds = qa_ws
    metrics = trained["evaluations"]["squad-dev"]  # scored by the job itself (--eval), registered by sync
    preds = predictions(ws, trained["run_id"], "squad-dev")
    assert sorted(preds) == sorted(golds["squad-dev"]) and metrics["total"] == 40
    for qid, p in preds.items():
        em, f1 = best_over_golds(p["prediction"], golds["squad-dev"][qid])
        assert p["correct"] == (em == 1.0) and p["score"] == pytest.approx(f1)
    assert metrics["exact"] == pytest.approx(100 * sum(p["correct"] for p in preds.values()) / 40)
    assert metrics["f1"] == pytest.approx(100 * sum(p["score"] for p in preds.values()) / 40)
    assert metrics["f1"] >= metrics["exact"]


def test_squad_v2_has_and_no_answer(qa_ws):
    from tests.conftest import run_cli

    ws, trained, golds = qa_ws
    result = run_cli(ws, "eval", trained["run_id"], "squad2-dev", "--json")
    assert result.code == 0, result.stderr
    m = result.json()["metrics"]
    preds = predictions(ws, trained["run_id"], "squad2-dev")
    no_ans = [p for p in preds.values() if p["is_impossible"]]
    assert (
        m["total"] == 40
        and m["HasAns_total"] + m["NoAns_total"] == 40
        and m["NoAns_total"] == len(no_ans) > 0
    )
    # an unanswerable question is right exactly when the model abstains ("" = [CLS] beat every span)
    assert m["NoAns_exact"] == pytest.approx(100 * sum(p["prediction"] == "" for p in no_ans) / len(no_ans))
    overall = (m["HasAns_exact"] * m["HasAns_total"] + m["NoAns_exact"] * m["NoAns_total"]) / 40
    assert m["exact"] == pytest.approx(overall)


def test_addsent_plain_average_and_worst_case(qa_ws):
    from tests.conftest import run_cli

    ws, trained, golds = qa_ws
    result = run_cli(ws, "eval", trained["run_id"], "addsent", "--json")
    assert result.code == 0, result.stderr
    m = result.json()["metrics"]
    preds = predictions(ws, trained["run_id"], "addsent")
    assert len(preds) == len(golds["addsent"]) == m["total"] > 8  # originals plus their adversarial variants
    groups: dict[str, list[float]] = {}
    for qid, p in preds.items():
        groups.setdefault(p["orig_id"] or qid, []).append(p["score"])
    assert m["worst_total"] == len(groups) == 8
    assert m["worst_f1"] == pytest.approx(100 * sum(min(s) for s in groups.values()) / 8)
    assert m["f1"] == pytest.approx(100 * sum(p["score"] for p in preds.values()) / len(preds))
    assert m["worst_f1"] <= 100 * sum(max(s) for s in groups.values()) / 8


def test_sst2_dev_accuracy(ws, cli, data_dir, tmp_path):
    assert cli("import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2").code == 0
    dev_lines = (data_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "sst2-dev.tsv").write_text(
        "".join(dev_lines[: N_DEV + 1]), encoding="utf-8"
    )  # header + N_DEV
    assert cli("import", str(tmp_path / "sst2-dev.tsv"), "--name", "sst2-dev").code == 0
    trained = cli(
        "train",
        "sst2",
        "--limit",
        "48",
        "--max-length",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--json",
    )
    assert trained.code == 0, trained.stderr
    run_id = trained.json()["run_id"]
    result = cli("eval", run_id, "sst2-dev", "--json")
    assert result.code == 0, result.stderr
    body = result.json()
    assert body["n_examples"] == N_DEV and set(body["metrics"]) == {"accuracy", "total"}
    rows = cli(
        "sql",
        f"""SELECT p.correct, p.score, p.prediction = e.label_name AS agrees
                          FROM predictions p JOIN examples e ON e.dataset = 'sst2-dev' AND e.example_id = p.example_id
                          WHERE p.run_id = '{run_id}'""",
        "--json",
    ).json()
    assert len(rows) == N_DEV and all(r["correct"] == r["agrees"] == (r["score"] == 1.0) for r in rows)
    assert body["metrics"]["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / N_DEV)
    assert (ws.run_dir(run_id) / "eval" / "sst2-dev.json").is_file()
    # an unknown evaluation set: a clear message and exit 2
    bad = cli("eval", run_id, "no-such-set")
    assert bad.code == 2 and "no evaluation set named 'no-such-set'" in bad.stderr


def test_evaluate_job_through_the_jobs_api(qa_ws):
    """What the app does: create_run(kind=evaluate) + launch (detached); the scores land under the trained run."""
    import time

    from engine import jobs
    from tests.conftest import run_cli

    ws, trained, golds = qa_ws
    job_id = jobs.create_run(ws, {"kind": "evaluate", "run": trained["run_id"], "eval": ["squad-train"]})
    pid = jobs.launch(ws, job_id)
    assert pid > 0
    deadline = time.monotonic() + 180
    while (info := jobs.job_info(ws, job_id))["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["status"] == "done", info["message"]
    assert info["metrics"]["squad-train/total"] == len(golds["squad-train"])
    rows = run_cli(
        ws,
        "sql",
        f"""SELECT eval_set, n_examples FROM evaluations
                                  WHERE run_id = '{trained["run_id"]}' AND eval_set = 'squad-train'""",
        "--json",
    ).json()
    assert rows == [{"eval_set": "squad-train", "n_examples": len(golds["squad-train"])}]
    kinds = {j["run_id"]: j["kind"] for j in jobs.list_jobs(ws)}
    assert kinds[job_id] == "evaluate" and kinds[trained["run_id"]] == "train"
    # progress events, as for training: the app's bar reaches the last batch of the set
    from storage.artifacts import read_events

    progress = [e for e in read_events(ws.run_dir(job_id)) if e["type"] == "progress"]
    assert progress and progress[0]["step"] == 1
    assert progress[-1]["step"] == progress[-1]["total"] > 0 and progress[-1]["n_epochs"] == 1
