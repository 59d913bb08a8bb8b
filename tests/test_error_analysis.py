"""Error analysis across adversarial variants (`dynascope error-analysis`, engine.analysis.error_analysis) on a
real v2.0 run evaluated on 8 real AddOneSent originals and their variants: every figure is recounted from the
stored predictions and the set's texts; the neighbours are the run's training examples with their map regions."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

pytest_plugins = ["tests.qa_v2_fixture"]


@pytest.fixture(scope="module")
def analysed(qa_v2_evaluated):
    ws, run_id, _ = qa_v2_evaluated
    result = run_cli(ws, "error-analysis", run_id, "--set", "addonesent", "--k", "3", "--json")
    assert result.code == 0, result.stderr
    return ws, run_id, result.json()


def sql(ws, query: str) -> list[dict]:
    result = run_cli(ws, "sql", query, "--json")
    assert result.code == 0, result.stderr
    return result.json()


def test_fooled_variants_and_inserted_spans_recount_from_the_stored_predictions(analysed):
    ws, run_id, result = analysed
    stored = {
        r["example_id"]: r
        for r in sql(
            ws,
            "SELECT e.example_id, e.orig_id, e.text_pair, p.prediction, p.correct FROM examples e JOIN predictions p "
            f"ON p.example_id = e.example_id AND p.run_id = '{run_id}' AND p.eval_set = 'addonesent' "
            "WHERE e.dataset = 'addonesent'",
        )
    }
    originals = {i for i, r in stored.items() if r["orig_id"] is None}
    with_variants = {r["orig_id"] for r in stored.values() if r["orig_id"]}
    assert {q["original_id"] for q in result["questions"]} == originals & with_variants
    n_variants = 0
    for q in result["questions"]:
        original = stored[q["original_id"]]
        assert q["correct"] == original["correct"] and q["prediction"] == original["prediction"]
        expected = {i for i, r in stored.items() if r["orig_id"] == q["original_id"]}
        assert {v["example_id"] for v in q["variants"]} == expected
        for v in q["variants"]:
            n_variants += 1
            variant = stored[v["example_id"]]
            assert v["fooled"] == (original["correct"] and not variant["correct"])
            # the inserted text is new to the context, and taking it out gives the original context back
            assert v["inserted"] and v["inserted"] not in original["text_pair"]
            ctx = variant["text_pair"]
            start = ctx.index(v["inserted"])
            assert ctx[:start] + ctx[start + len(v["inserted"]) :] == original["text_pair"]
            pred = variant["prediction"]
            in_ins, in_orig = (
                bool(pred) and pred in v["inserted"],
                bool(pred) and pred in original["text_pair"],
            )
            answered = any(ch.isalnum() for ch in pred or "")
            assert v["from_inserted"] == (in_ins if in_ins != in_orig and answered else None)
        assert q["fooled"] == [v["example_id"] for v in q["variants"] if v["fooled"]]
    assert n_variants >= 8
    s = result["summary"]
    assert s["n_fooled"] == sum(1 for q in result["questions"] if q["fooled"])
    assert s["n_fooled_variants"] == sum(len(q["fooled"]) for q in result["questions"])


def test_neighbours_are_training_examples_with_their_map_region(analysed):
    from engine.analysis.bounds import run_bounds
    from engine.analysis.regions import region_of
    from storage.catalog import open_catalog

    ws, run_id, result = analysed
    with open_catalog(ws) as con:  # the boundaries the run's data map shows
        bounds, rule = run_bounds(con, run_id, "cartography", None)
    assert result["regions"] == rule
    metrics = {
        r["example_id"]: region_of("cartography", bounds, r["variability"], r["confidence"])
        for r in sql(
            ws, f"SELECT example_id, confidence, variability FROM example_metrics WHERE run_id = '{run_id}'"
        )
    }
    for q in result["questions"]:
        near = q["neighbours"]
        assert len(near) == 3 and len({n["example_id"] for n in near}) == 3
        sims = [n["similarity"] for n in near]
        assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0001 for s in sims)
        for n in near:
            assert n["region"] == metrics[n["example_id"]]
        assert sum(q["neighbour_regions"].values()) == 3 and q["nearest_region"] == near[0]["region"]


def test_table_output_and_bad_sets(analysed):
    ws, run_id, result = analysed
    table = run_cli(ws, "error-analysis", run_id, "--set", "addonesent", env={"COLUMNS": "200"})
    assert table.code == 0 and result["questions"][0]["original_id"] in table.stdout
    assert (
        f"{result['summary']['n_fooled']} of {result['summary']['n_originals_right']} originals"
        in table.stdout
    )
    plain = run_cli(ws, "error-analysis", run_id, "--set", "squad11")
    assert plain.code == 2 and "no adversarial variants" in plain.stderr
    never = run_cli(ws, "error-analysis", run_id, "--set", "squad2")
    assert never.code == 2 and "no evaluation on 'squad2'" in never.stderr


def test_inserted_span_and_from_inserted_on_hand_made_text():
    from engine.analysis.error_analysis import from_inserted, inserted_span

    original = "Tesla was born in Smiljan. He moved to Graz."
    variant = original + " Edison was born in Milan."
    start, end = inserted_span(original, variant)
    assert variant[start:end].strip() == "Edison was born in Milan."
    inserted = variant[start:end]
    assert from_inserted("Milan", original, inserted) is True
    assert from_inserted("Smiljan", original, inserted) is False
    assert from_inserted("was born in", original, inserted) is None  # in both
    assert from_inserted("", original, inserted) is None and inserted_span(original, original) is None


def test_error_table_counts_fooled_variants_by_nearest_region():
    from engine.analysis.error_analysis import error_table, summary

    def variant(i, fooled, inserted):
        return {
            "example_id": i,
            "prediction": "x",
            "correct": not fooled,
            "f1": 0.0,
            "fooled": fooled,
            "inserted": "X.",
            "inserted_span": [0, 2],
            "from_inserted": inserted,
        }

    questions = [
        {
            "original_id": "a",
            "question": "qa",
            "golds": ["g"],
            "prediction": "g",
            "correct": True,
            "variants": [variant("a-1", True, True), variant("a-2", False, None)],
        },
        {
            "original_id": "b",
            "question": "qb",
            "golds": ["g"],
            "prediction": "g",
            "correct": True,
            "variants": [variant("b-1", False, False)],
        },
        {
            "original_id": "c",
            "question": "qc",
            "golds": ["g"],
            "prediction": "h",
            "correct": False,
            "variants": [variant("c-1", False, True)],
        },
    ]
    neighbours = {"a": [("t1", 0.9), ("t2", 0.5)], "b": [("t2", 0.8)], "c": [("t1", 0.7)]}
    rows = error_table(questions, neighbours, {"t1": "hard", "t2": "easy"})
    assert [r["fooled"] for r in rows] == [["a-1"], [], []]
    assert rows[0]["neighbour_regions"] == {"easy": 1, "ambiguous": 0, "hard": 1}
    assert [r["nearest_region"] for r in rows] == ["hard", "easy", "hard"]
    s = summary(rows)
    assert (s["n_originals_right"], s["n_fooled"], s["n_fooled_variants"], s["n_fooled_from_inserted"]) == (
        2,
        1,
        1,
        1,
    )
    assert s["by_nearest_region"] == {
        "hard": {"originals_right": 1, "fooled": 1},
        "easy": {"originals_right": 1, "fooled": 0},
    }


async def test_the_app_shows_the_error_analysis_table(analysed):
    from textual.widgets import DataTable

    from tests.tui_helpers import make_app, settle, wait_until
    from tui_app.screens.errors import ErrorAnalysisScreen

    ws, run_id, result = analysed
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_error_analysis()  # the newest evaluation on an adversarial set: addonesent
        screen = app.screen
        assert isinstance(screen, ErrorAnalysisScreen)
        assert await wait_until(app, pilot, lambda: bool(screen.questions), timeout=120)  # loads the encoder
        await settle(app, pilot)
        assert screen.chosen == (run_id, "addonesent")
        table = screen.query_one("#errors", DataTable)
        assert table.row_count == len(result["questions"])
        assert [q["original_id"] for q in screen.questions] == [q["original_id"] for q in result["questions"]]
        first = result["questions"][0]
        detail = str(screen.query_one("#errors-detail").render())
        assert first["original_id"] in detail and first["variants"][0]["example_id"] in detail
        assert not app.errors
