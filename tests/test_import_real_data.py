"""Every dataset file listed in ../shared/data/README.md imports with exactly the listed counts."""

from __future__ import annotations

import json

import pytest

# (file, name, expected questions/examples, task)
FILES = [
    ("squad_v1.1/dev-v1.1.json.gz", "squad-dev", 10570, "qa"),
    ("adversarial_squad/sample1k-HCVerifyAll.json.gz", "addsent", 3560, "qa"),
    ("adversarial_squad/sample1k-HCVerifySample.json.gz", "addonesent", 1787, "qa"),
    ("squad_v1.0_train/train-v1.0-explorer-reconstructed.json.gz", "squad-train", 87387, "qa"),
    ("squad_v2.0/dev-v2.0-reconstructed.json.gz", "squad2-dev", 11873, "qa"),
    ("sst2/train.tsv.gz", "sst2-train", 67349, "classification"),
    ("sst2/dev.tsv", "sst2-dev", 872, "classification"),
    ("sst2/test.tsv", "sst2-test", 1821, "classification"),
    ("sst2/test-labeled.tsv", "sst2-test-labeled", 1821, "classification"),
    ("ag_news/test.csv.gz", "agnews-test", 7600, "classification"),
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory, data_dir):
    from storage.workspace import Workspace
    from tests.conftest import run_cli

    ws = Workspace(tmp_path_factory.mktemp("real") / "ws").create()
    for rel, name, _, _ in FILES:
        result = run_cli(ws, "import", str(data_dir / rel), "--name", name)
        assert result.code == 0, result.stderr
    return ws


def test_counts_match_the_data_readme(imported):
    from tests.conftest import run_cli

    result = run_cli(imported, "datasets", "--json")
    assert result.code == 0, result.stderr
    by_name = {d["name"]: d for d in json.loads(result.stdout)}  # stdout is one JSON document, nothing else
    for _, name, count, task in FILES:
        assert by_name[name]["n_examples"] == count, name
        assert by_name[name]["task"] == task, name
    assert by_name["squad2-dev"]["version"] == "v2.0"
    assert by_name["squad-dev"]["version"] == "v1.1"


def test_squad_v2_unanswerable_and_sst2_labels(imported):
    from tests.conftest import run_cli

    rows = run_cli(
        imported,
        "sql",
        "SELECT dataset, count(*) FILTER (WHERE is_impossible) AS impossible, count(label) AS labeled, "
        "count(DISTINCT label) AS classes FROM examples GROUP BY dataset",
        "--json",
    ).json()
    stats = {r["dataset"]: r for r in rows}
    assert stats["squad2-dev"]["impossible"] == 5945
    assert stats["sst2-train"]["classes"] == 2 and stats["sst2-train"]["labeled"] == 67349
    assert stats["sst2-test"]["labeled"] == 0  # GLUE test has no labels: imported as unlabeled
    assert stats["agnews-test"]["classes"] == 4


@pytest.mark.parametrize("name,originals,adversarial", [("addsent", 1000, 2560), ("addonesent", 1000, 787)])
def test_adversarial_questions_keep_their_original(imported, name, originals, adversarial):
    from tests.conftest import run_cli

    rows = run_cli(
        imported,
        "sql",
        f"""SELECT count(*) FILTER (WHERE e.orig_id IS NULL) AS originals,
                   count(*) FILTER (WHERE e.orig_id IS NOT NULL) AS adversarial,
                   count(*) FILTER (WHERE e.orig_id IS NOT NULL AND o.example_id IS NULL) AS dangling,
                   count(*) FILTER (WHERE e.orig_id IS NOT NULL AND NOT starts_with(e.example_id, e.orig_id || '-'))
                       AS wrong_prefix
            FROM examples e LEFT JOIN examples o ON o.dataset = e.dataset AND o.example_id = e.orig_id
            WHERE e.dataset = '{name}'""",
        "--json",
    ).json()[0]
    assert rows == {"originals": originals, "adversarial": adversarial, "dangling": 0, "wrong_prefix": 0}


def test_squad_answers_point_at_their_text(imported):
    from tests.conftest import run_cli

    rows = run_cli(
        imported,
        "sql",
        """SELECT count(*) AS bad FROM (
               SELECT text_pair, unnest(from_json(answers, '[{"text":"VARCHAR","answer_start":"INTEGER"}]')) AS a
               FROM examples WHERE dataset = 'squad-dev')
           WHERE substr(text_pair, a.answer_start + 1, length(a.text)) != a.text""",
        "--json",
    ).json()
    assert rows == [{"bad": 0}]


def test_examples_listing_with_where(imported):
    from tests.conftest import run_cli

    result = run_cli(imported, "examples", "sst2-dev", "--where", "label = 1", "--limit", "5", "--json")
    assert result.code == 0, result.stderr
    rows = result.json()
    assert len(rows) == 5 and all(r["label"] == 1 and r["label_name"] == "1" for r in rows)
    assert rows[0]["example_id"] != rows[1]["example_id"]
