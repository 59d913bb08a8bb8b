"""The `generate` job kind end to end, through the CLI as a user runs it, against the real local llama.cpp server:
seed 004's `context` -> `qa-from-context` chain on real SQuAD questions, the cache, faults from the proxy with a
kill -9 and a resume, and an API key that is never written anywhere."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from engine.generation.cache import CACHE_FILE, cache_key
from engine.generation.faultproxy import FaultProxy
from engine.generation.server import LocalServer
from engine.jobs import job_info
from engine.jobs.generate import read_results
from storage.catalog import open_catalog
from storage.workspace import Workspace
from tests.conftest import run_cli

pytest_plugins = ["tests.llm_fixtures"]  # llm_server, fault_proxy, gen_ws

SQUAD_NAME = "squad-few"  # what gen_ws imports (tests.llm_fixtures)


def generate(ws: Workspace, base_url: str, *args: str, env: dict[str, str] | None = None) -> dict:
    result = run_cli(
        ws,
        "generate",
        "--base-url",
        base_url,
        "--model",
        "smollm2",
        "--json-mode",
        "json_object_schema",
        *args,
        "--json",
        env=env,
    )
    assert result.code == 0, result.stderr
    return result.json()


def events(ws: Workspace, run_id: str) -> list[dict]:
    lines = (ws.run_dir(run_id) / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def usage_of(ws: Workspace, run_id: str) -> dict:
    metrics = [e for e in events(ws, run_id) if e.get("type") == "metrics"]
    return metrics[-1]["metrics"]


def provenance(ws: Workspace, dataset: str) -> list[dict]:
    with open_catalog(ws) as con:
        cur = con.execute(
            "SELECT * FROM generation_provenance WHERE dataset = ? ORDER BY example_id", [dataset]
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def examples(ws: Workspace, dataset: str) -> list[dict]:
    with open_catalog(ws) as con:
        cur = con.execute("SELECT * FROM examples WHERE dataset = ? ORDER BY row_idx", [dataset])
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def test_context_then_qa_from_context_with_cache(gen_ws: Workspace, llm_server: LocalServer) -> None:
    url = llm_server.base_url
    ctx = generate(
        gen_ws,
        url,
        "--pipeline",
        "context",
        "--from",
        SQUAD_NAME,
        "--name",
        "ctx",
        "--n",
        "2",
        "--words",
        "30",
    )
    assert ctx["status"] == "done"
    contexts = examples(gen_ws, "ctx")
    records = provenance(gen_ws, "ctx")
    assert len(records) == 2  # one context per sampled question, accepted or rejected with a reason
    assert {r["reason"] for r in records if not r["accepted"]} <= {"too-long", "empty-context"}
    assert contexts, records  # a 135M model still writes some short paragraphs
    for ex in contexts:
        assert ex["text"] and len(ex["text_pair"].split()) <= 250

    qa = generate(
        gen_ws,
        url,
        "--pipeline",
        "qa-from-context",
        "--from",
        "ctx",
        "--name",
        "qa",
        "--n",
        "2",
        "--pairs",
        "2",
    )
    assert qa["status"] == "done"
    pairs = examples(gen_ws, "qa")
    records = provenance(gen_ws, "qa")
    assert records and len(records) >= len(pairs)
    for ex in pairs:  # every accepted answer is an exact substring at its stored offset
        (answer,) = json.loads(ex["answers"])
        start = answer["answer_start"]
        assert ex["text_pair"][start : start + len(answer["text"])] == answer["text"]
    for rec in records:  # provenance complete, rejected pairs kept with their reason
        for key in ("pipeline", "model", "endpoint_host", "prompt_id", "prompt_version", "parent_example_id"):
            assert rec[key] not in (None, ""), (key, rec)
        assert rec["pipeline"] == "qa-from-context" and rec["endpoint_host"] == "127.0.0.1"
        assert rec["parent_dataset"] == "ctx" and rec["completion_tokens"] >= 0
        filtered = ("answer-not-in-context", "empty-answer", "empty-question", "duplicate", "no-pairs")
        assert rec["accepted"] or rec["reason"] in filtered or rec["reason"].startswith("request:"), rec
        assert rec["accepted"] == (rec["reason"] is None)
    first_usage = usage_of(gen_ws, qa["run_id"])
    assert first_usage["generation/requests"] >= len(contexts)

    again = generate(
        gen_ws,
        url,
        "--pipeline",
        "qa-from-context",
        "--from",
        "ctx",
        "--name",
        "qa2",
        "--n",
        "2",
        "--pairs",
        "2",
    )
    usage = usage_of(gen_ws, again["run_id"])
    assert usage["generation/requests"] == 0  # the same requests: all from the cache
    assert usage["generation/cache_hits"] == first_usage["generation/requests"]
    assert [e["text"] for e in examples(gen_ws, "qa2")] == [e["text"] for e in pairs]


def source_questions(ws: Workspace) -> list[str]:
    with open_catalog(ws) as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT text FROM examples WHERE dataset = ? ORDER BY row_idx", [SQUAD_NAME]
            ).fetchall()
        ]


def cached_keys(ws: Workspace) -> set[str]:
    con = sqlite3.connect(ws.root / "cache" / CACHE_FILE)
    try:
        return {row[0] for row in con.execute("SELECT key FROM replies")}
    finally:
        con.close()


def key_of(body: bytes) -> str:
    request = json.loads(body)
    params = {k: v for k, v in request.items() if k not in ("model", "messages")}
    return cache_key(request["model"], request["messages"], params)


def test_faults_then_kill_and_resume(
    gen_ws: Workspace, fault_proxy: FaultProxy, llm_server: LocalServer
) -> None:
    """qa-from-context on the 8 real paragraphs through the proxy (300 ms a reply, a fault on six of them); the job is
    killed with -9 once a few results are stored, then resumed: every good result kept, every failure counted with
    its reason, no duplicate example, and no request repeated for a result stored before the kill."""
    fault_proxy.settings.latency_s = 0.3
    # past the job's --timeout 20, which leaves room for a request queued behind another (the server answers one
    # request at a time, a few seconds each on a busy 2-core machine; at 10 a loaded machine saw extra timeouts)
    fault_proxy.settings.hang_s = 21.0
    contexts = []
    with open_catalog(gen_ws) as con:
        contexts = [
            r[0]
            for r in con.execute(
                "SELECT text_pair FROM examples WHERE dataset = ? ORDER BY row_idx", [SQUAD_NAME]
            ).fetchall()
        ]
    marker = [c[:60] for c in contexts]  # each prompt holds its paragraph
    permanent = {
        0: ("500", "request:server-error"),
        2: ("malformed", "request:malformed-response"),
        3: ("schema", "request:schema"),
    }
    for item, (fault, _) in permanent.items():
        fault_proxy.add(fault, json.dumps(marker[item])[1:-1], times=None)
    for item, fault in {1: "429", 4: "hang", 5: "refused"}.items():
        fault_proxy.add(fault, json.dumps(marker[item])[1:-1], times=1)

    args = [
        "--pipeline",
        "qa-from-context",
        "--from",
        SQUAD_NAME,
        "--name",
        "faulty",
        "--n",
        "8",
        "--pairs",
        "1",
        "--concurrency",
        "2",
        "--timeout",
        "20",
        "--max-retries",
        "2",
    ]
    started = generate(gen_ws, fault_proxy.base_url, *args, "--detach")
    run_id, run_dir = started["run_id"], gen_ws.run_dir(started["run_id"])
    deadline = time.monotonic() + 120
    while len(read_results(run_dir)) < 3:
        assert time.monotonic() < deadline, "the job stored no results"
        time.sleep(0.1)
    os.kill(started["pid"], signal.SIGKILL)
    time.sleep(0.5)
    stored_before = cached_keys(gen_ws)
    results_before = read_results(run_dir)
    log_mark = len(fault_proxy.log)
    assert len(results_before) < 8  # killed mid-job

    resumed = run_cli(gen_ws, "generate", "--resume", run_id, "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "done"

    for entry in fault_proxy.log[log_mark:]:  # after the kill: nothing asked again whose reply was stored
        assert key_of(entry.body) not in stored_before
    assert len(stored_before) >= len([e for e in results_before.values() if e["ok"]])

    records = provenance(gen_ws, "faulty")
    failed = {
        r["parent_example_id"]: r["reason"]
        for r in records
        if r["reason"] and r["reason"].startswith("request:")
    }
    with open_catalog(gen_ws) as con:
        ids = [
            r[0]
            for r in con.execute(
                "SELECT example_id FROM examples WHERE dataset = ? ORDER BY row_idx", [SQUAD_NAME]
            ).fetchall()
        ]
    assert failed == {ids[item]: reason for item, (_, reason) in permanent.items()}
    good = {r["parent_example_id"] for r in records if not (r["reason"] or "").startswith("request:")}
    assert good == {ids[i] for i in (1, 4, 5, 6, 7)}  # every good result kept (transient faults retried)
    ex_ids = [e["example_id"] for e in examples(gen_ws, "faulty")]
    assert len(ex_ids) == len(set(ex_ids))  # no duplicate examples
    assert len({r["example_id"] for r in records}) == len(records)
    assert sorted(read_results(run_dir)) == list(range(8))


FAKE_KEY = "sk-dynascope-FAKE-KEY-7f3a9c1e5b2d4680"


def test_api_key_is_never_written(gen_ws: Workspace, fault_proxy: FaultProxy) -> None:
    result = run_cli(
        gen_ws,
        "generate",
        "--base-url",
        fault_proxy.base_url,
        "--model",
        "smollm2",
        "--pipeline",
        "qa-from-context",
        "--from",
        SQUAD_NAME,
        "--name",
        "keyed",
        "--n",
        "1",
        "--pairs",
        "1",
        "--json-mode",
        "json_object_schema",
        "--api-key-env",
        "DYNASCOPE_TEST_KEY",
        "--json",
        env={"DYNASCOPE_TEST_KEY": FAKE_KEY},
    )
    assert result.code == 0, result.stderr
    assert f"Bearer {FAKE_KEY}" in fault_proxy.auth_seen  # the key was used
    assert FAKE_KEY not in result.stdout + result.stderr
    files = [p for p in Path(gen_ws.root).rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in files) and any(p.name == "config.json" for p in files)
    for path in files:  # the catalog, the cache, config.json, events, logs: everything in the workspace
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    config = json.loads((gen_ws.run_dir(result.json()["run_id"]) / "config.json").read_text())
    assert config["api_key_env"] == "DYNASCOPE_TEST_KEY"


def test_cancel_then_resume_with_progress(gen_ws: Workspace, fault_proxy: FaultProxy) -> None:
    """A detached generate job reports progress (requests, accepted / rejected, tokens, cache hits), stops as
    `cancelled` on `dynascope job cancel`, and `--resume` finishes it without asking again for stored results."""
    fault_proxy.settings.latency_s = 0.5
    started = generate(
        gen_ws, fault_proxy.base_url, "--pipeline", "qa-from-context", "--from", SQUAD_NAME, "--name", "paused",
        "--n", "3", "--pairs", "1", "--concurrency", "1", "--detach",
    )  # fmt: skip
    run_id, run_dir = started["run_id"], gen_ws.run_dir(started["run_id"])
    deadline = time.monotonic() + 120
    while not read_results(run_dir):
        assert time.monotonic() < deadline, "the job stored no results"
        time.sleep(0.1)
    assert run_cli(gen_ws, "job", "cancel", run_id).code == 0
    while job_info(gen_ws, run_id)["status"] != "cancelled":
        assert time.monotonic() < deadline, job_info(gen_ws, run_id)
        time.sleep(0.2)
    progress = [e for e in events(gen_ws, run_id) if e.get("type") == "progress"]
    counts = progress[-1]["generation"]
    assert progress[-1]["total"] == 3 and counts["requests"] >= 1
    assert {"accepted", "rejected", "failed", "tokens", "cache_hits"} <= set(counts)
    assert len(read_results(run_dir)) < 3
    stored_before = cached_keys(gen_ws)

    mark = len(fault_proxy.log)
    resumed = run_cli(gen_ws, "generate", "--resume", run_id, "--json")
    assert resumed.code == 0 and resumed.json()["status"] == "done", resumed.stderr
    assert sorted(read_results(run_dir)) == [0, 1, 2]
    for entry in fault_proxy.log[mark:]:  # nothing asked again whose reply was stored before the cancel
        assert key_of(entry.body) not in stored_before
