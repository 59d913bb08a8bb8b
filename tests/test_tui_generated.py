"""Generated data in the app and `generate --selection`, on a real workspace: two tiny trained SST-2 runs
(tests.real_run_fixtures), a saved selection of one run's hard examples (`dynascope select`), and `augment-region`
rewrites of exactly that selection from the real local llama.cpp server (tests.llm_fixtures), checked by the run.

- the CLI: the job's sources are the selection's examples; bad `--selection` / `--region` input exits 2 and
  changes nothing;
- the examples list and the detail view of the generated dataset show each example's parent beside it and a
  provenance panel holding the catalog's `generation_provenance` row;
- from the data map, `A` then ctrl+s launches an `augment-region` job on the region on screen (the job itself is
  shown end to end in tests/test_generate_augment.py, so this test stops it once its config is checked); on a QA
  run the map says why not.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from textual.widgets import Static

from engine import jobs as engine_jobs
from engine.generation.server import LocalServer
from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.conftest import run_cli
from tests.real_run_fixtures import DATASET, HELD, RealRuns, link_weights_copy_rest
from tests.test_generate_job import examples, generate, provenance
from tests.test_tui_demo import stop_jobs  # cancels every live job and waits for each to end
from tests.tui_helpers import make_app, settle, wait_until
from tui_app.page_table import PageTable
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.examples import ExamplesScreen
from tui_app.screens.jobs import JobForm, JobsScreen
from tui_app.screens.rejected import RejectedScreen

pytest_plugins = ["tests.llm_fixtures", "tests.real_run_fixtures", "tests.tui_fixtures"]

SIZE = (80, 24)
SELECTION = "few-hard"
GENERATED = "more-hard"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class GeneratedWs:
    root: Path
    run: str  # the trained run that made the selection and checks the rewrites
    job: str  # the generate job's run id


def cli_json(ws: Workspace, *args: str) -> dict:
    result = run_cli(ws, *args, "--json", env=ONE_THREAD)
    assert result.code == 0, result.stderr
    return result.json()


def copy_ws(root: Path, target: Path) -> Workspace:
    shutil.copytree(root, target, copy_function=link_weights_copy_rest)
    return Workspace(target)


@pytest.fixture(scope="module")
def generated_template(
    trained_runs_template: RealRuns, llm_server: LocalServer, tmp_path_factory: pytest.TempPathFactory
) -> GeneratedWs:
    ws = copy_ws(trained_runs_template.root, tmp_path_factory.mktemp("generated") / "ws")
    run = trained_runs_template.run_a
    cli_json(ws, "select", run, "--region", "hard", "--fraction", "0.05", "--name", SELECTION)
    done = generate(
        ws, llm_server.base_url, "--pipeline", "augment-region", "--from", DATASET, "--selection", SELECTION,
        "--run", run, "--name", GENERATED, "--n", "50", "--concurrency", "2",
    )  # fmt: skip
    assert done["status"] == "done", done
    return GeneratedWs(ws.root, run, done["run_id"])


@pytest.fixture
def gen_ws(generated_template: GeneratedWs, tmp_path: Path) -> Workspace:
    return copy_ws(generated_template.root, tmp_path / "ws")


def catalog_rows(ws: Workspace, sql: str, params: list) -> list[tuple]:
    with open_catalog(ws) as con:
        return con.execute(sql, params).fetchall()


def panel_text(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector, Static).render())


# ---- the CLI -----------------------------------------------------------------------------------------------


def test_selection_is_the_sources_and_bad_input_changes_nothing(
    gen_ws: Workspace, generated_template: GeneratedWs
) -> None:
    selected = {
        r[0] for r in catalog_rows(gen_ws, "SELECT example_id FROM examples WHERE dataset = ?", [SELECTION])
    }
    assert 0 < len(selected) < 20  # the top 5% of the run's 110 examples
    job_dir = gen_ws.run_dir(generated_template.job)
    sources = pq.read_table(job_dir / "inputs" / "source.parquet").column("example_id").to_pylist()
    assert sorted(sources) == sorted(selected)  # every example of the selection, no other
    records = provenance(gen_ws, GENERATED)
    assert {r["parent_example_id"] for r in records} == selected and {
        r["parent_dataset"] for r in records
    } == {DATASET}
    config = engine_jobs.job_info(gen_ws, generated_template.job)
    assert config["origin"] == f"hard 5% of {generated_template.run}", config

    runs_before = sorted(p.name for p in gen_ws.runs_dir.iterdir())
    datasets_before = catalog_rows(gen_ws, "SELECT name, n_examples FROM datasets ORDER BY name", [])
    common = ("generate", "--pipeline", "augment-region", "--run", generated_template.run, "--name", "nope",
              "--base-url", "http://127.0.0.1:9/v1", "--model", "smollm2")  # fmt: skip
    for args, said in (
        (("--from", DATASET, "--selection", "no-such"), "no selection named 'no-such'"),
        (("--from", HELD, "--selection", SELECTION), f"holds examples of '{DATASET}', not of '{HELD}'"),
        (("--from", HELD, "--region", "hard"), f"trained on '{DATASET}'"),
        (
            ("--pipeline", "blend", "--from", DATASET, "--selection", SELECTION),
            "--selection picks the source",
        ),
    ):
        result = run_cli(gen_ws, *common, *args, env=ONE_THREAD)
        assert result.code == 2, (args, result.stdout, result.stderr)
        assert said in result.stderr, result.stderr
    assert sorted(p.name for p in gen_ws.runs_dir.iterdir()) == runs_before
    assert catalog_rows(gen_ws, "SELECT name, n_examples FROM datasets ORDER BY name", []) == datasets_before


# ---- browsing the generated examples ----------------------------------------------------------------------


def expected_provenance_parts(row: dict, parent: dict) -> list[str]:
    """What the panel must say, from the catalog's provenance row and parent example."""
    parts = [
        f"by {row['pipeline']} · model {row['model']} @ {row['endpoint_host']}",
        f"prompt {row['prompt_id']} v{row['prompt_version']}",
        f"tokens {row['prompt_tokens']}+{row['completion_tokens']}",
        f"cached {'yes' if row['cached'] else 'no'}",
        "accepted" if row["accepted"] else f"rejected: {row['reason']}",
    ]
    for name, verdict in json.loads(row["verdicts"]).items():  # a request's failure: its detail, a string
        said = verdict if isinstance(verdict, str) else " ".join(f"{k}={v}" for k, v in verdict.items())
        parts.append(f"{name}: {said}")
    parts.append(f"parent {row['parent_dataset']}/{row['parent_example_id']} · label {parent['label_name']}")
    return parts


async def test_generated_examples_show_parent_and_provenance(gen_ws: Workspace) -> None:
    rows = examples(gen_ws, GENERATED)
    assert rows, "the server's rewrites were all rejected: nothing to browse"
    by_id = {r["example_id"]: r for r in provenance(gen_ws, GENERATED)}
    parents = {r["example_id"]: r for r in examples(gen_ws, DATASET)}
    first = rows[0]
    record = by_id[first["example_id"]]
    parent = parents[record["parent_example_id"]]
    rejected = [r for r in by_id.values() if not r["accepted"]]

    app = make_app(gen_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_examples(dataset=GENERATED)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ExamplesScreen)
        assert await wait_until(app, pilot, lambda: screen.provenance is not None, timeout=15), app.errors
        assert screen.query_one(PageTable).cursor_key == first["example_id"]
        panel = " ".join(panel_text(screen, "#provenance").split())
        summary = f"generated (augment-region): {len(rows)} kept"
        if rejected:
            summary += f", {len(rejected)} rejected"
        assert summary in panel, panel
        for part in expected_provenance_parts(record, parent):
            assert part in panel, (part, panel)
        assert " ".join(parent["text"].split())[:30] in panel, panel  # the parent's text (as much as fits)

        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        assert await wait_until(app, pilot, lambda: detail.provenance is not None, timeout=15), app.errors
        body = " ".join(panel_text(detail, "#body").split())
        beside = " ".join(panel_text(detail, "#parent").split())
        assert " ".join(first["text"].split()) in body, body  # the rewrite ...
        assert " ".join(parent["text"].split()) in beside, beside  # ... and its parent, whole, beside it
        assert detail.query_one("#parent").region.x > detail.query_one("#body").region.x  # beside, not under
        shown = " ".join((panel_text(detail, "#provenance") + " " + beside).split())
        for part in expected_provenance_parts(record, parent):
            assert part in shown, (part, shown)

        # v on the list: the rejected records with their reasons, each with its provenance and parent
        await pilot.press("escape", "v")
        await settle(app, pilot)
        listed = app.screen
        assert isinstance(listed, RejectedScreen)
        assert await wait_until(app, pilot, lambda: listed.provenance is not None, timeout=15), app.errors
        assert [(r["example_id"], r["reason"]) for r in listed.rows] == sorted(
            ((r["example_id"], r["reason"]) for r in rejected), key=lambda t: (t[1], t[0])
        )
        first_rejected = by_id[listed.rows[0]["example_id"]]
        panel = " ".join(panel_text(listed, "#rejected-provenance").split())
        for part in expected_provenance_parts(first_rejected, parents[first_rejected["parent_example_id"]]):
            assert part in panel, (part, panel)
    assert not app.errors


# ---- from the data map --------------------------------------------------------------------------------------


async def test_map_sends_the_region_on_screen_to_augment_region(
    gen_ws: Workspace, generated_template: GeneratedWs, llm_server: LocalServer
) -> None:
    run = generated_template.run
    app = make_app(gen_ws)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            app.open_map(run)
            await settle(app, pilot, rounds=3)
            screen = app.screen
            assert isinstance(screen, DataMapScreen) and screen.loaded
            await pilot.press("3", "k", "k")  # hard; the confidence line moved up: boundaries of the user's
            await settle(app, pilot, rounds=3)
            bounds = screen.bounds.cartography
            a, e = bounds.ambiguous_variability, bounds.easy_confidence
            shown = screen.counts["hard"]
            assert shown > 0 and screen.bounds != screen.fitted

            await pilot.press("A")
            await settle(app, pilot, rounds=3)
            form = app.screen
            assert isinstance(form, JobForm) and form.kind_name == "generate", app.errors
            note = str(form.query_one("#form-note").render())
            assert f"each of the {shown} examples the map puts in 'hard'" in note, note
            assert llm_server.base_url in note  # the endpoint of the last generate job (the fixture's)
            await pilot.press("ctrl+s")
            await settle(app, pilot)
            jobs = app.screen
            assert isinstance(jobs, JobsScreen), app.errors
            assert await wait_until(app, pilot, lambda: bool(jobs.launched), timeout=30), app.errors
            job = jobs.launched[-1]
        config = json.loads((gen_ws.run_dir(job) / "config.json").read_text())
        assert (config["kind"], config["pipeline"], config["run"]) == ("generate", "augment-region", run)
        assert (config["from"], config["region"], config["bounds"]) == (DATASET, "hard", f"{a:g},{e:g}")
        assert (config["base_url"], config["model"]) == (llm_server.base_url, "smollm2")
        assert config["selection"]["bounds"] == f"{a:g},{e:g}" and config["n"] == shown
        # the sources: every example the map put in 'hard' (the cartography rule, written out here)
        expected = {
            r[0]
            for r in catalog_rows(
                gen_ws,
                "SELECT example_id FROM example_metrics WHERE run_id = ? AND variability < ? AND confidence < ?",
                [run, a, e],
            )
        }
        sources = pq.read_table(gen_ws.run_dir(job) / "inputs" / "source.parquet").column("example_id")
        assert set(sources.to_pylist()) == expected and len(expected) == shown
    finally:
        stop_jobs(gen_ws)


async def test_map_of_a_qa_run_says_augment_region_is_for_classification(tui_ws: Workspace) -> None:
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_map("squad-run")
        await settle(app, pilot, rounds=3)
        assert isinstance(app.screen, DataMapScreen) and app.screen.loaded
        await pilot.press("A")
        await settle(app, pilot)
        assert isinstance(app.screen, DataMapScreen)  # no form opened
        said = " ".join(str(n.message) for n in app._notifications)
        assert "augment-region rewrites classification examples; run squad-run is a qa run" in said, said


# ---- snapshots of the provenance views at 80x24 (fixed data: a generated dataset written as a job writes it) ----


def write_generated_qa(ws: Workspace, parent_dataset: str, name: str) -> None:
    """A generate job's run folder for a QA dataset made from the first three questions of `parent_dataset`: two
    kept (a question reworded on the parent's context), one rejected; then synced, as after a real job."""
    from storage.artifacts import append_event, write_config
    from storage.generated import write_generated
    from tests.tui_helpers import FIXED_TS, sync_ws

    parents = [r for r in examples(ws, parent_dataset)[:3]]
    run_dir = ws.run_dir("gen-squad-fixed")
    rows, records = [], []
    for i, parent in enumerate(parents):
        accepted = i < 2
        example_id = f"{parent['example_id']}/g0"
        text = f"In other words: {parent['text']}"
        records.append(
            {
                "example_id": example_id, "pipeline": "qa-from-context", "model": "smollm2",
                "prompt_id": "qa-from-context", "prompt_version": 1, "parent_dataset": parent_dataset,
                "parent_example_id": parent["example_id"], "endpoint_host": "127.0.0.1", "prompt_tokens": 180 + i,
                "completion_tokens": 40 + i, "cached": i == 1, "accepted": accepted,
                "reason": None if accepted else "answer-not-in-context",
                "verdicts": json.dumps({"substring": {"found": accepted}}), "text": text,
                "text_pair": parent["text_pair"], "answers": parent["answers"],
            }
        )  # fmt: skip
        if accepted:
            rows.append(
                {
                    "example_id": example_id, "row_idx": len(rows), "text": text, "text_pair": parent["text_pair"],
                    "label": None, "label_name": None, "answers": parent["answers"], "is_impossible": False,
                    "title": None, "orig_id": None,
                }
            )  # fmt: skip
    append_event(run_dir, "state", status="running", pid=0)
    write_generated(
        run_dir,
        rows,
        records,
        {"dataset": name, "task": "qa", "version": "v1.1", "is_pair": True, "parent_dataset": parent_dataset,
         "pipeline": "qa-from-context", "accepted": len(rows), "rejected": {"answer-not-in-context": 1}},
    )  # fmt: skip
    append_event(run_dir, "state", status="done")
    write_config(
        run_dir,
        {"kind": "generate", "dataset": parent_dataset, "created_at": FIXED_TS + 300, "artifacts": ["generated"],
         "pipeline": "qa-from-context", "from": parent_dataset, "name": name},
    )  # fmt: skip
    sync_ws(ws)


async def test_snapshots_of_generated_qa_examples(tui_ws: Workspace) -> None:
    from tests.conftest import DATA_DIR
    from tests.tui_helpers import check_snapshot, normalise, screen_text

    write_generated_qa(tui_ws, "squad-dev", "squad-gen")
    app = make_app(tui_ws)
    shots = {}
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_examples(dataset="squad-gen")
        await settle(app, pilot, rounds=3)
        screen = app.screen
        assert isinstance(screen, ExamplesScreen)
        assert await wait_until(app, pilot, lambda: screen.provenance is not None, timeout=15), app.errors
        await settle(app, pilot)
        shots["generated-examples"] = normalise(screen_text(app), DATA_DIR)
        await pilot.press("enter")
        await settle(app, pilot, rounds=3)
        assert isinstance(app.screen, DetailScreen) and app.screen.provenance is not None
        shots["generated-detail"] = normalise(screen_text(app), DATA_DIR)
        await pilot.press("escape", "v")
        await settle(app, pilot, rounds=3)
        assert isinstance(app.screen, RejectedScreen)
        assert await wait_until(app, pilot, lambda: app.screen.provenance is not None, timeout=15)
        await settle(app, pilot)
        shots["generated-rejected"] = normalise(screen_text(app), DATA_DIR)
        assert not app.errors
    assert "rejected (answer-not-in-context 1)" in shots["generated-examples"]
    for name, text in shots.items():
        check_snapshot(f"{name}-80x24", text)
