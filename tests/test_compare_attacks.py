"""Runs under attack side by side (issue 9, item 5; the paper's Table 3): `dynascope compare [RUN ...] [--json]`
and the app's compare screen show, per attacked run and dataset, Clean% and per method Aua% and #Query of the
latest attack of that method. A tiny real run (MiniLM, 48 real SST-2 sentences, 1 epoch, max length 32) attacked
with char-swap and pgd on 12 of them, then pgd again on 6: every figure shown equals a recount from the stored
per-example rows (`attack_results` through `dynascope sql`), the second pgd replacing the first.

The CLI calls run with one torch thread (OMP_NUM_THREADS=1): on 2 shared cores, two threads were several times
slower for these small forward passes.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

N_TRAIN = 48
N_ATTACK = 12
N_SECOND_PGD = 6
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def attack(ws, run_id: str, method: str, limit: int) -> str:  # noqa: ANN001
    result = run_cli(
        ws,
        *("attack", run_id, "sst2", "--method", method, "--limit", str(limit), "--json"),
        env=ONE_THREAD,
    )
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "done"
    return result.json()["run_id"]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory, data_dir):  # noqa: ANN001, ANN201
    """(workspace, trained run, {method: latest attack run}, first pgd run)."""
    from storage.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("compare") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2",
        *("--limit", str(N_TRAIN), "--max-length", "32", "--epochs", "1", "--batch-size", "8"),
        *("--lr", "2e-4", "--seed", "7", "--json"),
        env=ONE_THREAD,
    )
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    first_pgd = attack(ws, run_id, "pgd", N_ATTACK)
    char_swap = attack(ws, run_id, "char-swap", N_ATTACK)
    pgd = attack(ws, run_id, "pgd", N_SECOND_PGD)  # the latest pgd: it replaces the first
    return ws, run_id, {"pgd": pgd, "char-swap": char_swap}, first_pgd


def sql(ws, query: str) -> list[dict]:  # noqa: ANN001
    result = run_cli(ws, "sql", query, "--json")
    assert result.code == 0, result.stderr
    return result.json()


def recount(ws, run_id: str) -> dict:  # noqa: ANN001
    """Clean% and per method Aua% and #Query from the per-example rows alone: the latest attack (by its run's
    creation) of each method; Clean% over every example of those attacks, once each, its latest clean result."""
    rows = sql(
        ws,
        f"""SELECT x.*, r.created_at FROM attack_results x JOIN runs r USING (run_id)
            WHERE x.run_id IN (SELECT run_id FROM attacks WHERE source_run = '{run_id}')""",
    )
    latest: dict[str, tuple[str, str]] = {}
    for r in rows:
        if r["method"] not in latest or (r["created_at"], r["run_id"]) > latest[r["method"]]:
            latest[r["method"]] = (r["created_at"], r["run_id"])
    chosen = {m: [r for r in rows if r["run_id"] == run] for m, (_, run) in latest.items()}
    clean: dict[str, tuple[str, bool]] = {}
    for method_rows in chosen.values():
        for r in method_rows:
            if r["example_id"] not in clean or r["created_at"] > clean[r["example_id"]][0]:
                clean[r["example_id"]] = (r["created_at"], r["correct_before"])
    out = {"n_examples": len(clean), "clean": sum(c for _, c in clean.values()) / len(clean), "attacks": {}}
    for method, method_rows in chosen.items():
        attacked = [r for r in method_rows if r["correct_before"]]
        out["attacks"][method] = {
            "attack_run": latest[method][1],
            "n_examples": len(method_rows),
            "aua": sum(r["correct_after"] for r in method_rows) / len(method_rows),
            "avg_queries": sum(r["queries"] for r in attacked) / len(attacked) if attacked else None,
        }
    return out


def test_compare_json_is_a_recount_of_the_stored_rows(attacked):  # noqa: ANN001
    ws, run_id, latest, first_pgd = attacked
    result = run_cli(ws, "compare", run_id, "--json")
    assert result.code == 0, result.stderr
    rows = result.json()
    assert [(r["run_id"], r["dataset"]) for r in rows] == [(run_id, "sst2")]
    row = rows[0]
    expected = recount(ws, run_id)
    assert {m: a["attack_run"] for m, a in expected["attacks"].items()} == latest
    assert list(row["attacks"]) == ["pgd", "char-swap"]  # the paper's order
    assert row["n_examples"] == expected["n_examples"] == N_ATTACK  # the union: char-swap's 12 cover pgd's 6
    assert row["clean_accuracy"] == pytest.approx(expected["clean"])
    for method, figures in expected["attacks"].items():
        shown = row["attacks"][method]
        assert shown["attack_run"] == figures["attack_run"] and shown["n_examples"] == figures["n_examples"]
        assert shown["aua"] == pytest.approx(figures["aua"])
        assert shown["avg_queries"] == pytest.approx(figures["avg_queries"])
    assert row["attacks"]["pgd"]["attack_run"] != first_pgd and row["attacks"]["pgd"]["n_examples"] == 6
    # without RUN: every attacked run, the same rows
    assert run_cli(ws, "compare", "--json").json() == rows


def test_compare_text_table_shows_the_figures(attacked):  # noqa: ANN001
    ws, run_id, _, _ = attacked
    result = run_cli(ws, "compare", run_id)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header == [
        "run",
        "dataset",
        "n",
        "Clean%",
        "pgd",
        "Aua%",
        "pgd",
        "#Query",
        "char-swap",
        "Aua%",
    ] + [
        "char-swap",
        "#Query",
    ]
    expected = recount(ws, run_id)
    figures = [100 * expected["clean"]]
    for method in ("pgd", "char-swap"):
        figures += [100 * expected["attacks"][method]["aua"], expected["attacks"][method]["avg_queries"]]
    row = next(line for line in lines if line.startswith(run_id)).split()
    assert row[:3] == [run_id, "sst2", str(N_ATTACK)]
    assert row[3:] == [f"{v:.1f}" for v in figures]
    assert "Aua%: accuracy under attack" in result.stdout


def test_compare_of_a_run_without_attacks_and_of_an_unknown_run(attacked):  # noqa: ANN001
    ws, run_id, latest, _ = attacked
    # an attack job is a run too, never attacked itself: it gets a row with no figures, after the asked order
    result = run_cli(ws, "compare", latest["pgd"], run_id, "--json")
    assert result.code == 0, result.stderr
    rows = result.json()
    assert [r["run_id"] for r in rows] == [latest["pgd"], run_id]
    assert rows[0]["attacks"] == {} and rows[0]["clean_accuracy"] is None
    text = run_cli(ws, "compare", latest["pgd"]).stdout
    assert latest["pgd"] in text and " - " in text
    unknown = run_cli(ws, "compare", "no-such-run")
    assert unknown.code == 2 and "no run named 'no-such-run'" in unknown.stderr


async def test_the_compare_screen_shows_clean_and_aua_per_attack(attacked):  # noqa: ANN001
    from tests.tui_helpers import make_app, screen_text, settle
    from tui_app.screens.compare import CompareScreen

    ws, run_id, _, _ = attacked
    expected = recount(ws, run_id)
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_compare()
        await settle(app, pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        table = screen.query_one("#compare-table")
        # most important first (80 columns show Clean% and every Aua%): each label the method over the figure
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["run", "\nClean%", "pgd\nAua%", "char-swap\nAua%", "pgd\n#Q", "char-swap\n#Q"]
        cells = [str(c) for c in table.get_row_at(0)]
        attacks = expected["attacks"]
        figures = [100 * expected["clean"], 100 * attacks["pgd"]["aua"], 100 * attacks["char-swap"]["aua"]]
        figures += [attacks["pgd"]["avg_queries"], attacks["char-swap"]["avg_queries"]]
        assert cells == [run_id, *(f"{v:.1f}" for v in figures)]
        # at 80 columns the row shows the run, its Clean% and each Aua% (the #Q columns may need a scroll)
        row = next(line for line in screen_text(app).splitlines() if run_id in line and "%" not in line)
        assert row.split("▎", 1)[1].split()[:4] == cells[:4], row
        assert not app.errors
