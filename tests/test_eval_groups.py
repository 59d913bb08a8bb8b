"""Natural-shift evaluation: one evaluation job scores a real v2.0 run on several SQuAD-format sets at once, and
each set falls in its group (engine.analysis.evaluations): in-domain (cut from the training set), adversarial
(AddOneSent variants), shift (another SQuAD set); the compare screen shows the groups over the set names."""

from __future__ import annotations

from tests.conftest import run_cli

pytest_plugins = ["tests.qa_v2_fixture"]


def test_one_job_scores_several_sets_each_in_its_group(qa_v2_evaluated):
    from engine.analysis.evaluations import DatasetLineage, evaluations, set_groups
    from storage.catalog import open_catalog

    ws, run_id, results = qa_v2_evaluated
    assert [r["eval_set"] for r in results] == ["squad2-half", "addonesent", "squad11"]
    assert all(r["run_id"] == run_id and r["n_examples"] > 0 for r in results)
    assert "worst_f1" in results[1]["metrics"] and "HasAns_f1" in results[0]["metrics"]
    with open_catalog(ws) as con:
        rows = [r for r in evaluations(con) if r["run_id"] == run_id]
        lineage = DatasetLineage(con, ["squad2", "squad2-half", "addonesent", "squad11"])
    groups = {r["eval_set"]: r["group"] for r in rows}
    assert groups == {"squad2-half": "in-domain", "addonesent": "adversarial", "squad11": "shift"}
    assert list(set_groups(rows)) == ["squad2-half", "addonesent", "squad11"]  # in GROUPS order
    assert lineage.group("squad2", "squad2") == "in-domain"
    assert lineage.group("squad2-half", "squad11") == "shift" and lineage.group(None, "squad11") == "shift"


def test_a_second_import_of_the_training_file_is_in_domain(qa_v2_evaluated, tmp_path):
    from engine.analysis.evaluations import DatasetLineage
    from storage.catalog import open_catalog

    ws, _, _ = qa_v2_evaluated
    with open_catalog(ws) as con:
        source = con.execute("SELECT source FROM datasets WHERE name = 'squad2'").fetchone()[0]
    assert run_cli(ws, "import", source, "--name", "squad2-again").code == 0
    with open_catalog(ws) as con:
        lineage = DatasetLineage(con, ["squad2-again"])
        assert lineage.group("squad2-half", "squad2-again") == "in-domain"  # same file, through the parent


async def test_compare_screen_heads_each_set_with_its_group(qa_v2_evaluated):
    from textual.widgets import DataTable

    from tests.tui_helpers import make_app, settle

    ws, run_id, _ = qa_v2_evaluated
    app = make_app(ws)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        app.open_compare()
        await settle(app, pilot, rounds=4)
        table = app.screen.query_one(DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert "in-domain\nsquad2-half" in labels and "adversarial\naddonesent" in labels
        assert "shift\nsquad11" in labels
        assert labels.index("in-domain\nsquad2-half") < labels.index("adversarial\naddonesent")
        assert not app.errors
