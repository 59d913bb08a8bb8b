"""Real small SQuAD v2.0 runs with each QA objective (`--qa-objective cls|uniform-null`): dynamics are recorded for
answerable and unanswerable questions with each objective's definition of the gold probability and correctness,
and the evaluation's HasAns / NoAns / overall EM and F1 equal the official v2.0 scorer on the run's predictions
(the scorer of tests/test_squad_metric.py). Training articles and evaluation articles differ."""

from __future__ import annotations

import gzip
import json
import math

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.tasks.squad_metric import normalize_answer
from storage.artifacts import read_config
from storage.workspace import Workspace
from tests.conftest import finish_cli, run_cli, start_cli
from tests.test_evaluation import predictions
from tests.test_squad_metric import v20_evaluate
from tests.test_training_qa import shard_rows

SQUAD_V2 = "squad_v2.0/dev-v2.0-reconstructed.json.gz"
PER_KIND = {"train": 20, "eval": 8}  # answerable and unanswerable questions each


def v2_subsets(data_dir) -> dict[str, tuple[dict, dict[str, list[str]]]]:
    """A training set from the first articles and an evaluation set from later ones, each half unanswerable."""
    with gzip.open(data_dir / SQUAD_V2, "rt", encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    out = {}
    for name, chosen in (("train", articles[:2]), ("eval", articles[5:7])):
        want = {False: PER_KIND[name], True: PER_KIND[name]}
        data, golds = [], {}
        for article in chosen:
            paragraphs = []
            for para in article["paragraphs"]:
                qas = []
                for qa in para["qas"]:
                    if want[bool(qa["is_impossible"])] > 0:
                        want[bool(qa["is_impossible"])] -= 1
                        qas.append(qa)
                        golds[qa["id"]] = [a["text"] for a in qa["answers"]]
                if qas:
                    paragraphs.append({"context": para["context"], "qas": qas})
            data.append({"title": article["title"], "paragraphs": paragraphs})
        assert not any(want.values())
        out[name] = ({"version": "v2.0", "data": data}, golds)
    return out


@pytest.fixture(scope="module")
def v2_runs(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("qa-objectives")
    ws = Workspace(tmp / "ws").create()
    subsets = v2_subsets(data_dir)
    for name, (content, _) in subsets.items():
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(content))
        assert run_cli(ws, "import", str(path), "--name", f"sq2-{name}").code == 0
    training = {  # both runs at once, one CPU thread each
        objective: start_cli(
            ws,
            *("train", "sq2-train", "--qa-objective", objective, "--max-length", "128", "--epochs", "1"),
            *("--batch-size", "8", "--lr", "1e-4", "--eval", "sq2-eval", "--json"),
            env={"OMP_NUM_THREADS": "1"},
        )
        for objective in ("cls", "uniform-null")
    }
    runs = {}
    for objective, proc in training.items():
        result = finish_cli(proc)
        assert result.code == 0, result.stderr
        runs[objective] = result.json()
    return ws, runs, {name: golds for name, (_, golds) in subsets.items()}


def test_the_objective_and_tagging_weight_are_in_the_run_spec(v2_runs, data_dir):
    ws, runs, _ = v2_runs
    for objective, summary in runs.items():
        config = read_config(ws.run_dir(summary["run_id"]))
        assert config["qa_objective"] == objective and config["tagging_loss_weight"] is None
    runner = CliRunner()  # refusals in-process: the same click command, no job started
    refused = runner.invoke(
        cli, ["--workspace", str(ws.root), "train", "sq2-train", "--tagging-loss-weight", "-1"]
    )
    assert refused.exit_code == 2 and "tagging loss weight" in refused.stderr
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    for option, value in (("--qa-objective", "uniform-null"), ("--tagging-loss-weight", "1")):
        refused = runner.invoke(cli, ["--workspace", str(ws.root), "train", "sst2", option, value])
        assert refused.exit_code == 2 and f"{option} is for QA datasets" in refused.stderr, refused.output
    assert sorted(ws.run_ids()) == sorted(s["run_id"] for s in runs.values())  # nothing else created


@pytest.mark.parametrize("objective", ["cls", "uniform-null"])
def test_dynamics_are_recorded_for_answerable_and_unanswerable_questions(v2_runs, objective):
    ws, runs, golds = v2_runs
    rows = shard_rows(ws, runs[objective]["run_id"])
    assert sorted(r["example_id"] for r in rows) == sorted(golds["train"])  # one epoch, one row each
    unanswerable = [r for r in rows if not golds["train"][r["example_id"]]]
    answerable = [r for r in rows if golds["train"][r["example_id"]]]
    assert len(unanswerable) == len(answerable) == PER_KIND["train"]
    for r in rows:
        assert 0.0 <= r["gold_prob"] <= 1.0 and math.isfinite(r["loss"]) and r["loss"] >= 0
        assert r["el2n"] is None or 0 <= r["el2n"] <= math.sqrt(2)
    for r in unanswerable:  # right when the model abstains (or predicts what normalises to nothing, as "the")
        assert r["answer_in_window"] and r["correct"] == (normalize_answer(r["prediction"]) == "")
        if objective == "uniform-null":  # gold_prob = sigmoid(-best span score), margin = -best span score
            assert r["gold_prob"] == pytest.approx(1 / (1 + math.exp(-r["margin"])), rel=1e-6)
            assert (r["gold_prob"] > 0.5) == (r["prediction"] == "")
        else:  # p(start = [CLS]) p(end = [CLS])
            assert r["gold_prob"] > 0 and r["margin"] is not None
    # the data map has both kinds of question to place: their confidences are not all the same
    assert len({round(r["gold_prob"], 6) for r in unanswerable}) > 1
    assert len({round(r["gold_prob"], 6) for r in answerable}) > 1


@pytest.mark.parametrize("objective", ["cls", "uniform-null"])
def test_has_ans_no_ans_and_overall_scores_equal_the_official_v20_scorer(v2_runs, objective):
    ws, runs, golds = v2_runs
    summary = runs[objective]
    metrics = summary["evaluations"]["sq2-eval"]
    preds = predictions(ws, summary["run_id"], "sq2-eval")
    assert sorted(preds) == sorted(golds["eval"])
    official = v20_evaluate(golds["eval"], {qid: p["prediction"] for qid, p in preds.items()})
    assert official["HasAns_total"] == official["NoAns_total"] == PER_KIND["eval"]
    for key, value in official.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
