"""A generate job from the app, against the real local llama.cpp server (SmolLM2-135M) on real SQuAD questions: the
jobs screen's form (at 80x24) lays out the generate fields for the chosen pipeline and launches the job with what it
was given; the job's panel shows the figures of the job's own records: items, accepted, rejected and failed by
reason, requests, cache hits and tokens. A second job asking the same is answered from the response cache."""

from __future__ import annotations

import json
import re
import time

import pyarrow.parquet as pq

from engine import jobs as engine_jobs
from engine.generation.server import LocalServer
from engine.jobs.registry import KINDS
from storage.artifacts import read_config
from storage.generated import generated_paths
from storage.workspace import Workspace
from tests.tui_helpers import make_app, screen_text, settle, wait_until
from tui_app.screens.jobs import JobForm, JobsScreen

pytest_plugins = ["tests.llm_fixtures"]  # llm_server, gen_ws (squad-few: 8 real SQuAD dev questions)

SIZE = (80, 24)
SOURCE = "squad-few"  # what gen_ws imports


def stop_jobs(ws: Workspace) -> None:
    for job in engine_jobs.list_jobs(ws):
        if job["alive"]:
            engine_jobs.cancel(ws, job["run_id"])


def usage_of(ws: Workspace, run_id: str) -> dict:
    """The client's usage as the job wrote it last (its `metrics` event)."""
    lines = (ws.run_dir(run_id) / "events.jsonl").read_text().splitlines()
    metrics = [e for e in map(json.loads, lines) if e.get("type") == "metrics"]
    return metrics[-1]["metrics"]


def reasons(text: str) -> dict[str, int]:
    """`2 (too-long 1, no-pairs 1)` -> {too-long: 1, no-pairs: 1}; `0` -> {}."""
    inner = re.fullmatch(r"(\d+)(?: \((.*)\))?", text.strip())
    assert inner is not None, text
    out = {}
    for part in (inner.group(2) or "").split(", "):
        if part:
            reason, n = part.rsplit(" ", 1)
            out[reason] = int(n)
    assert sum(out.values()) == int(inner.group(1))
    return out


def panel(screen: JobsScreen) -> dict:
    """The generation panel's figures, read off what the screen shows."""
    lines = str(screen.query_one("#job-metrics").render()).splitlines()
    first = re.fullmatch(r"items (\d+)/(\d+) · accepted (\d+) · rejected (.*)", lines[0].strip())
    second = re.fullmatch(
        r"failed (.*) · requests (\d+) · cache hits (\d+) · tokens (\d+) in, (\d+) out", lines[1].strip()
    )
    assert first and second, lines
    return {
        "done": int(first.group(1)),
        "total": int(first.group(2)),
        "accepted": int(first.group(3)),
        "rejected": reasons(first.group(4)),
        "failed": reasons(second.group(1)),
        "requests": int(second.group(2)),
        "cache_hits": int(second.group(3)),
        "prompt_tokens": int(second.group(4)),
        "completion_tokens": int(second.group(5)),
    }


def job_figures(ws: Workspace, run_id: str) -> dict:
    """The same figures from the job's own files: its records (every generated example, accepted or rejected with
    its reason; a request that failed for good is a `request:<reason>` record), summary and usage."""
    _, records_path, summary_path = generated_paths(ws.run_dir(run_id))
    summary = json.loads(summary_path.read_text())
    records = pq.read_table(records_path).to_pylist()
    rejected: dict[str, int] = {}
    failed: dict[str, int] = {}
    for rec in records:
        if not rec["accepted"]:
            reason = rec["reason"]
            if reason.startswith("request:"):
                failed[reason.removeprefix("request:")] = failed.get(reason.removeprefix("request:"), 0) + 1
            else:
                rejected[reason] = rejected.get(reason, 0) + 1
    usage = usage_of(ws, run_id)
    assert summary["accepted"] == sum(1 for r in records if r["accepted"])
    return {
        "done": summary["sources"],
        "total": summary["sources"],
        "accepted": summary["accepted"],
        "rejected": rejected,
        "failed": failed,
        "requests": usage["generation/requests"],
        "cache_hits": usage["generation/cache_hits"],
        "prompt_tokens": usage["generation/prompt_tokens"],
        "completion_tokens": usage["generation/completion_tokens"],
    }


async def type_into(pilot, form: JobForm, name: str, text: str) -> None:  # noqa: ANN001
    """Focus a text field of the form, clear it and type, as a user does."""
    field = form.query_one(f"#f-{name}")
    field.focus()
    await pilot.pause()
    await pilot.press("home", "ctrl+k", *text)  # home, delete to the end of the line; every character a key


async def pick(app, pilot, name: str, option: str) -> None:  # noqa: ANN001
    """Choose an option of a form's drop-down by keys: open its list, move to the option, Enter."""
    form = app.screen
    select = form.query_one(f"#f-{name}")
    # the options, in order, as the registry lists them
    options = list(KINDS) if name == "kind" else list(form.kind.field(name).choices)
    select.focus()
    await pilot.press("enter")
    await settle(app, pilot)
    # the list opens on the current option
    steps = options.index(option) - options.index(str(select.value))
    await pilot.press(*(["down"] * steps if steps >= 0 else ["up"] * -steps), "enter")
    await settle(app, pilot)
    assert app.screen.value(name) == option


async def launch_from_form(app, pilot, base_url: str, name: str) -> str:  # noqa: ANN001
    jobs = app.screen
    assert isinstance(jobs, JobsScreen)
    before = set(jobs.launched)
    await pilot.press("n")
    await settle(app, pilot)
    form = app.screen
    assert isinstance(form, JobForm) and form.kind_name == "train"
    await pick(app, pilot, "kind", "generate")  # by keys: the drop-down's list, down to `generate`, Enter
    form = app.screen
    assert isinstance(form, JobForm) and form.kind_name == "generate", form
    # the `context` pipeline (the first) shows its fields and none of the other pipelines'
    shown = {f.name for f in form.form_fields()}
    assert {"pipeline", "from", "name", "base_url", "model", "n", "concurrency", "words"} <= shown
    assert not shown & {"pairs", "generated", "ratio", "run", "threshold"}
    assert form.value("pipeline") == "context" and form.value("from") == SOURCE
    await type_into(pilot, form, "name", name)
    # another pipeline lays out its own fields, keeping what was typed; back to `context` by keys as well
    await pick(app, pilot, "pipeline", "blend")
    form = app.screen
    shown = {f.name for f in form.form_fields()}
    assert {"generated", "ratio", "n", "seed"} <= shown and not shown & {"base_url", "model", "words"}, shown
    assert form.value("name") == name and app.focused is form.query_one("#f-pipeline")
    await pick(app, pilot, "pipeline", "context")
    form = app.screen
    assert form.value("name") == name and "words" in {f.name for f in form.form_fields()}
    await type_into(pilot, form, "base_url", base_url)
    await type_into(pilot, form, "model", "smollm2")
    await type_into(pilot, form, "n", "2")
    await type_into(pilot, form, "concurrency", "2")
    await type_into(pilot, form, "words", "20")
    await pilot.press("ctrl+s")
    await settle(app, pilot)
    assert app.screen is jobs, (
        {f.name: form.value(f.name) for f in form.form_fields()},
        [n.message for n in app._notifications],
        app.errors,
    )
    assert await wait_until(app, pilot, lambda: len(jobs.launched) > len(before), timeout=30), app.errors
    return jobs.launched[-1]


async def test_generate_from_the_form_and_its_panel(gen_ws: Workspace, llm_server: LocalServer) -> None:
    try:
        await generate_and_watch(gen_ws, llm_server.base_url)
    finally:
        stop_jobs(gen_ws)


async def generate_and_watch(ws: Workspace, base_url: str) -> None:
    started = time.perf_counter()
    app = make_app(ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("j")
        await settle(app, pilot)
        jobs = app.screen
        assert isinstance(jobs, JobsScreen)
        run_id = await launch_from_form(app, pilot, base_url, "ctx-form")

        config = read_config(ws.run_dir(run_id))  # the job holds what the form was given
        assert config is not None
        expected = {"kind": "generate", "pipeline": "context", "from": SOURCE, "name": "ctx-form"}
        expected |= {"base_url": base_url, "model": "smollm2", "n": 2, "concurrency": 2, "words": 20}
        assert {k: config.get(k) for k in expected} == expected
        assert config["n_sources"] == 2

        def finished(run: str) -> bool:
            return engine_jobs.job_info(ws, run)["status"] in ("done", "failed", "cancelled")

        assert await wait_until(app, pilot, lambda: finished(run_id), timeout=90), screen_text(app)
        assert engine_jobs.job_info(ws, run_id)["status"] == "done", engine_jobs.job_info(ws, run_id)
        await pilot.pause(1.5)  # the screen's next poll reads the job's end
        await settle(app, pilot)
        assert jobs.shown_run == run_id
        figures = job_figures(ws, run_id)
        assert panel(jobs) == figures, screen_text(app)
        assert figures["requests"] >= 2 and figures["prompt_tokens"] > 0  # it did ask the server
        assert figures["accepted"] + sum(figures["rejected"].values()) + sum(figures["failed"].values()) >= 2
        text = screen_text(app)
        assert "items 2/2 · accepted" in text and "cache hits" in text  # on screen, within 80 columns

        # The same questions again under another name: every reply comes from the workspace's cache.
        again = await launch_from_form(app, pilot, base_url, "ctx-again")
        assert await wait_until(app, pilot, lambda: finished(again), timeout=60), screen_text(app)
        await pilot.pause(1.5)
        await settle(app, pilot)
        assert jobs.shown_run == again
        repeat = job_figures(ws, again)
        assert panel(jobs) == repeat, screen_text(app)
        assert repeat["cache_hits"] >= 2 and repeat["prompt_tokens"] == 0  # nothing paid twice
        assert {k: repeat[k] for k in ("accepted", "rejected")} == {
            k: figures[k] for k in ("accepted", "rejected")
        }
        assert not app.errors
    print(f"\ngenerate from the form, twice: {time.perf_counter() - started:.1f} s")


def test_generation_figures_from_progress_then_from_the_written_dataset(ws: Workspace) -> None:
    """While it runs, the figures are the last progress event's counts; once done, the written dataset's summary
    (a request that failed for good counted under failed, not rejected)."""
    from engine.analysis.progress import JobFollower
    from tests.generate_fixture import ENTRIES, USAGE, write_generate_run

    write_generate_run(ws, "gen-running", {k: ENTRIES[k] for k in (0, 1)}, done=False)
    follower = JobFollower(ws.run_dir("gen-running"))
    follower.poll()
    running = follower.generation()
    assert running is not None and not running.final
    assert (running.done, running.total, running.accepted) == (2, 3, 1)
    assert running.rejected == {"too-long": 1} and running.failed == {}
    assert (running.requests, running.cache_hits) == (USAGE["requests"], USAGE["cache_hits"])
    assert running.tokens == USAGE["prompt_tokens"] + USAGE["completion_tokens"]
    assert follower.progress().label == "items 2/3  66%"  # a generate job counts items, not epochs

    write_generate_run(ws, "gen-done", ENTRIES, done=True)
    follower = JobFollower(ws.run_dir("gen-done"))
    follower.poll()
    done = follower.generation()
    summary = json.loads(generated_paths(ws.run_dir("gen-done"))[2].read_text())
    assert done is not None and done.final
    assert summary["rejected"] == {"too-long": 1, "request:timeout": 1}
    assert (done.done, done.total, done.accepted) == (3, 3, summary["accepted"])
    assert done.rejected == {"too-long": 1} and done.failed == {"timeout": 1}
    assert follower.progress().label == "items 3/3  100%"
    assert JobFollower(ws.run_dir("gen-done")).generation() is None  # nothing read yet: nothing to show
