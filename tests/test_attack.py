"""The `attack` job kind end to end through the CLI: a tiny real run (MiniLM, 48 real SST-2 sentences, 2 epochs,
max length 32), then char-swap and pgd on 20 of them. Every reported figure (Clean%, Aua%, success rate, #Query)
is recounted from the stored per-example rows (the catalog table through `dynascope sql`, and the Parquet file);
queries stay under the cap; a perturbed text differs from the original exactly in the reported words; a resumed
attack gives the same rows as the uninterrupted one; bad requests exit 2 with a message.

The attack jobs run with one torch thread (OMP_NUM_THREADS=1): on 2 cores shared with other work, two threads
made the small forward passes of an attack several times slower.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from engine.analysis.attacks import changed_positions
from engine.evaluation.attacks import summarise
from storage.artifacts import attack_results_path, attack_summary_path, write_config
from tests.conftest import run_cli

N_TRAIN = 48
N_ATTACK = 20
MAX_QUERIES = 60
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    from storage.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("attack") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2",
        *("--limit", str(N_TRAIN), "--max-length", "32", "--epochs", "2", "--batch-size", "8"),
        *("--lr", "2e-4", "--seed", "7", "--json"),
        env=ONE_THREAD,
    )
    assert result.code == 0, result.stderr
    return ws, result.json()["run_id"]


def attack(ws, run_id: str, method: str, *extra: str) -> dict:
    result = run_cli(
        ws,
        "attack",
        run_id,
        "sst2",
        "--method",
        method,
        "--limit",
        str(N_ATTACK),
        *extra,
        "--json",
        env=ONE_THREAD,
    )
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["status"] == "done" and summary["attack"]["method"] == method
    return summary


@pytest.fixture(scope="module")
def char_swap(trained):
    ws, run_id = trained
    return attack(ws, run_id, "char-swap", "--max-queries", str(MAX_QUERIES))


@pytest.fixture(scope="module")
def word_swap(trained):
    ws, run_id = trained
    return attack(ws, run_id, "word-swap", "--max-queries", str(MAX_QUERIES))


@pytest.fixture(scope="module")
def pgd(trained):
    ws, run_id = trained
    return attack(ws, run_id, "pgd")


def stored_rows(ws, attack_run: str) -> list[dict]:
    """The per-example results as the catalog holds them, through `dynascope sql`."""
    result = run_cli(
        ws, "sql", f"SELECT * FROM attack_results WHERE run_id = '{attack_run}' ORDER BY example_id", "--json"
    )
    assert result.code == 0, result.stderr
    return result.json()


def recount(rows: list[dict]) -> dict:
    n = len(rows)
    attacked = [r for r in rows if r["correct_before"]]
    return {
        "n_examples": n,
        "clean_accuracy": sum(r["correct_before"] for r in rows) / n,
        "aua": sum(r["correct_after"] for r in rows) / n,
        "success_rate": sum(r["status"] == "succeeded" for r in attacked) / len(attacked),
        "avg_queries": sum(r["queries"] for r in attacked) / len(attacked),
    }


def check_figures(ws, summary: dict) -> list[dict]:
    """The reported figures (CLI, catalog summary row, summary.json) equal a recount of the stored rows."""
    attack_run = summary["run_id"]
    rows = stored_rows(ws, attack_run)
    assert len(rows) == N_ATTACK and len({r["example_id"] for r in rows}) == N_ATTACK
    expected = recount(rows)
    reported = summary["attack"]
    for key, value in expected.items():
        assert reported[key] == pytest.approx(value), key
    table = run_cli(ws, "sql", f"SELECT * FROM attacks WHERE run_id = '{attack_run}'", "--json").json()
    assert len(table) == 1
    for key, value in expected.items():
        assert table[0][key] == pytest.approx(value), key
    run_dir = ws.run_dir(attack_run)
    from_file = json.loads(attack_summary_path(run_dir).read_text())["metrics"]
    for key, value in expected.items():
        assert from_file[key] == pytest.approx(value), key
    parquet = pq.read_table(attack_results_path(run_dir)).to_pydict()
    assert sorted(parquet["example_id"]) == sorted(r["example_id"] for r in rows)
    assert summarise(parquet) == {**from_file}
    # correctness and status follow from the predictions and the gold label
    names = json.loads((run_dir / "config.json").read_text())["label_names"]
    for r in rows:
        assert r["correct_before"] == (r["prediction_before"] == names[r["label"]])
        assert r["correct_after"] == (r["prediction_after"] == names[r["label"]])
        if not r["correct_before"]:
            assert (
                r["status"] == "skipped"
                and r["queries"] == 1
                and r["prediction_after"] == r["prediction_before"]
            )
        else:
            assert r["status"] == ("failed" if r["correct_after"] else "succeeded")
    return rows


def test_char_swap_changes_predictions_and_its_figures_are_a_recount(trained, char_swap):
    ws, run_id = trained
    assert char_swap["attack"]["source_run"] == run_id
    rows = check_figures(ws, char_swap)
    assert any(r["status"] == "succeeded" for r in rows), "no prediction changed"
    assert any(r["prediction_after"] != r["prediction_before"] for r in rows)
    assert all(r["queries"] <= MAX_QUERIES for r in rows)
    for r in rows:
        # the perturbed text differs from the original exactly in the reported words, each changed
        assert changed_positions(r["text"], r["perturbed_text"]) == r["changed_words"], r
        if r["status"] == "skipped":
            assert r["perturbed_text"] == r["text"] and r["changed_words"] == []
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert all(r["changed_words"] for r in succeeded)


def test_char_swap_cancel_then_resume_gives_the_same_rows(trained, char_swap):
    """A detached attack cancelled part-way (SIGTERM: it stops after the part it is on) ends as cancelled with
    some examples written; `--resume` skips those and ends with exactly the rows of the uninterrupted attack
    of the fixture (same settings; each example's letters are drawn from a generator seeded by its id)."""
    import os
    import signal
    import time

    from storage.artifacts import read_events, run_state

    ws, run_id = trained
    started = run_cli(
        ws,
        *("attack", run_id, "sst2", "--method", "char-swap", "--limit", str(N_ATTACK)),
        *("--max-queries", str(MAX_QUERIES), "--detach", "--json"),
        env=ONE_THREAD,
    )
    assert started.code == 0, started.stderr
    attack_run = started.json()["run_id"]
    run_dir = ws.run_dir(attack_run)
    deadline = time.monotonic() + 120
    while not any(e["type"] == "progress" for e in read_events(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    # SIGTERM straight away, as `dynascope job cancel` sends it: a cancel CLI process takes a second or two to
    # start on a loaded machine, long enough for the job to finish its last part first
    os.kill(started.json()["pid"], signal.SIGTERM)
    while not run_state(run_dir).finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_state(run_dir).status == "cancelled"
    written = pq.read_table(run_dir / "attack" / "parts").num_rows
    assert 0 < written < N_ATTACK and not attack_summary_path(run_dir).exists()

    result = run_cli(ws, "attack", "--resume", attack_run, "--json", env=ONE_THREAD)
    assert result.code == 0, result.stderr
    assert result.json()["attack"]["aua"] == char_swap["attack"]["aua"]
    uninterrupted = pq.read_table(attack_results_path(ws.run_dir(char_swap["run_id"]))).to_pydict()
    assert pq.read_table(attack_results_path(run_dir)).to_pydict() == uninterrupted
    assert (
        f"resuming: {written} of {N_ATTACK} examples already attacked"
        in (run_dir / "events.jsonl").read_text()
    )


def test_pgd_reports_accuracy_under_the_budget(trained, pgd):
    ws, run_id = trained
    rows = check_figures(ws, pgd)
    config = json.loads((ws.run_dir(pgd["run_id"]) / "config.json").read_text())
    assert (config["steps"], config["budget"]) == (8, 0.5)
    for r in rows:
        assert r["perturbed_text"] == r["text"] and r["changed_words"] == []
        assert r["queries"] == (config["steps"] + 2 if r["correct_before"] else 1)
        assert r["queries"] <= config["max_queries"]


def test_word_swap_respects_similarity_and_the_changed_word_budget(trained, word_swap):
    """Every output: the reported changed words are the only difference, at most max_change of the words (at
    least one), each substitute a whole word; the sentence similarity, recomputed here with the MiniLM encoder,
    is at or above the threshold and equals the stored one."""
    from engine.analysis.attacks import words_of
    from engine.evaluation.synonyms import STOP_WORDS, default_sentence_encoder, wordnet_dir

    ws, _ = trained
    rows = check_figures(ws, word_swap)
    config = json.loads((ws.run_dir(word_swap["run_id"]) / "config.json").read_text())
    threshold, max_change = config["min_similarity"], config["max_change"]
    assert (threshold, max_change) == (0.8, 0.3)
    settings = json.loads(
        run_cli(ws, "sql", "SELECT settings FROM attacks WHERE method = 'word-swap'", "--json").json()[0][
            "settings"
        ]
    )
    assert settings["wordnet"] == (wordnet_dir() is not None)
    changed = [r for r in rows if r["changed_words"]]
    assert changed, "word-swap changed no text"
    encoder = default_sentence_encoder()  # one batch: original and perturbed texts of every changed row
    emb = encoder.embed([r["text"] for r in changed] + [r["perturbed_text"] for r in changed])
    similarity_of = {r["example_id"]: float(emb[i] @ emb[len(changed) + i]) for i, r in enumerate(changed)}
    for r in rows:
        assert r["queries"] <= MAX_QUERIES
        assert changed_positions(r["text"], r["perturbed_text"]) == r["changed_words"], r
        words = words_of(r["text"])
        assert len(r["changed_words"]) <= max(1, int(max_change * len(words))), r
        assert all(words[i].lower() not in STOP_WORDS for i in r["changed_words"]), r
        if r["changed_words"]:
            similarity = similarity_of[r["example_id"]]
            assert similarity >= threshold - 1e-4, r
            assert similarity == pytest.approx(r["similarity"], abs=1e-4), r
        else:
            assert r["perturbed_text"] == r["text"] and r["similarity"] is None


async def test_the_apps_job_form_makes_the_same_attack_request(trained):
    """The app's form for an attack is generated from the kind: run and dataset chosen, method from the
    choices; what it collects creates the same run as the CLI would (nothing is launched here)."""
    from engine.jobs import create_run
    from storage.artifacts import read_config
    from tests.tui_helpers import make_app, settle
    from tui_app.screens.jobs import JobForm

    ws, run_id = trained
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        app.open_jobs(
            new=True, preset={"kind": "attack", "run": run_id, "dataset": "sst2", "method": "char-swap"}
        )
        await settle(app, pilot, rounds=4)
        form = app.screen
        assert isinstance(form, JobForm)
        assert (form.value("run"), form.value("dataset"), form.value("method")) == (
            run_id,
            "sst2",
            "char-swap",
        )
        assert form.value("max_queries") == "200" and form.value("max_change") == "0.3"
        assert not form.query("#f-budget")  # a PGD setting: not asked for a char-swap
        form.query_one("#f-limit").value = "5"
        spec = form.collect()
    assert spec["kind"] == "attack" and spec["method"] == "char-swap" and spec["limit"] == 5
    config = read_config(ws.run_dir(create_run(ws, spec)))
    assert config["source_run"] == run_id and config["n_examples"] == 5 and config["max_queries"] == 200


async def test_the_app_shows_attacks_with_the_changed_words_highlighted(trained, char_swap, pgd, word_swap):
    from engine.analysis.attacks import words_of
    from tests.tui_helpers import make_app, settle
    from tui_app.screens.attacks import CHANGED, AttacksScreen, highlighted

    ws, _ = trained
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        app.open_attacks(char_swap["run_id"])
        await settle(app, pilot, rounds=4)
        screen = app.screen
        assert isinstance(screen, AttacksScreen)
        assert {a["method"]: a["aua"] for a in screen.attacks} == {
            s["attack"]["method"]: s["attack"]["aua"] for s in (char_swap, pgd, word_swap)
        }
        assert screen.chosen == char_swap["run_id"] and len(screen.examples) == N_ATTACK
        assert screen.examples[0]["status"] == "succeeded"  # succeeded first
        assert screen.query_one("#attack-examples").row_count == N_ATTACK
        for row in screen.examples:
            text = highlighted(row["perturbed_text"], row["changed_words"])
            marked = [text.plain[s.start : s.end] for s in text.spans if s.style == CHANGED]
            words = words_of(row["perturbed_text"])
            assert marked == [words[i] for i in row["changed_words"]]
        await pilot.press("s")  # status filter: succeeded only
        await settle(app, pilot, rounds=4)
        assert screen.examples and {r["status"] for r in screen.examples} == {"succeeded"}
        assert not app.errors


def test_bad_requests_exit_2_with_a_message(trained):
    ws, run_id = trained
    bad = run_cli(ws, "attack", run_id, "sst2", "--method", "word-flip")
    assert bad.code == 2 and "word-flip" in bad.stderr and "char-swap" in bad.stderr
    unknown = run_cli(ws, "attack", "no-such-run", "sst2", "--method", "pgd")
    assert unknown.code == 2 and "no run named 'no-such-run'" in unknown.stderr
    missing = run_cli(ws, "attack", run_id, "no-such-set", "--method", "pgd")
    assert missing.code == 2 and "no-such-set" in missing.stderr
    qa_dir = ws.run_dir("qa-run")
    qa_dir.mkdir(parents=True)
    write_config(qa_dir, {"kind": "train", "task": "qa", "dataset": "squad", "created_at": 1.0})
    qa = run_cli(ws, "attack", "qa-run", "sst2", "--method", "char-swap")
    assert qa.code == 2 and "qa run" in qa.stderr and "classification" in qa.stderr
    no_method = run_cli(ws, "attack", run_id, "sst2")
    assert no_method.code == 2 and "--method" in no_method.stderr
