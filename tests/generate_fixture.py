"""A generate job's run folder with fixed content, for the jobs screen's generation panel (its figures, and its snapshot
at 80x24). The folder is written by the job's own code: its results-log entries folded by `engine.jobs.generate`'s
Progress (the progress event the job process writes), and its dataset files by `write_outputs`; only the replies
are fixed, as a run's dynamics are in tests.tui_helpers."""

from __future__ import annotations

from typing import Any

from engine.generation.pipelines import PIPELINES
from engine.jobs.generate import Progress, write_outputs
from storage.artifacts import append_event, write_config
from storage.workspace import Workspace
from tests.tui_helpers import FIXED_TS

QUESTIONS = [
    {"example_id": "q0", "text": "Which team won Super Bowl 50?", "text_pair": "Super Bowl 50 was ..."},
    {"example_id": "q1", "text": "Where was the game played?", "text_pair": "The game was played at ..."},
    {"example_id": "q2", "text": "Who sang the anthem?", "text_pair": "Lady Gaga sang ..."},
]


def record(text: str, accepted: bool, reason: str | None, words: int) -> dict[str, Any]:
    return {
        "text": text,
        "text_pair": "A new paragraph. " * (words // 3),
        "answers": [],
        "accepted": accepted,
        "reason": reason,
        "verdicts": {"length": f"{words} words (max 20)"},
        "label": None,
        "label_name": None,
    }


def entry(item: int, ok: bool, records: list[dict[str, Any]], reason: str | None = None) -> dict[str, Any]:
    return {
        "item": item,
        "parent": QUESTIONS[item]["example_id"],
        "ok": ok,
        "reason": reason,
        "detail": "" if ok else "APITimeoutError: Request timed out.",
        "cached": False,
        "repaired": False,
        "prompt_tokens": 70 if ok else 0,
        "completion_tokens": 25 if ok else 0,
        "records": records,
    }


# three questions: one context accepted, one too long (rejected), one request timed out after the retries
ENTRIES = {
    0: entry(0, True, [record(QUESTIONS[0]["text"], True, None, 18)]),
    1: entry(1, True, [record(QUESTIONS[1]["text"], False, "too-long", 31)]),
    2: entry(2, False, [], reason="timeout"),
}
USAGE = {
    "requests": 5,  # the timed-out request is counted once: the openai client's retries are inside it
    "cache_hits": 1,
    "prompt_tokens": 140,
    "completion_tokens": 50,
    "repairs": 0,
    "format_fallbacks": 1,
    "failures": {"timeout": 1},
}


def config_of(name: str) -> dict[str, Any]:
    template = PIPELINES["context"].template
    return {
        "kind": "generate",
        "artifacts": ["generated"],
        "pipeline": "context",
        "from": "squad-few",
        "dataset": "squad-few",
        "name": name,
        "task": "qa",
        "is_pair": True,
        "label_names": None,
        "base_url": "http://127.0.0.1:8080/v1",
        "model": "smollm2",
        "endpoint_host": "127.0.0.1",
        "prompt_id": template.id,
        "prompt_version": template.version,
        "n": 3,
        "n_sources": 3,
        "concurrency": 2,
        "words": 20,
        "created_at": FIXED_TS,
    }


def write_generate_run(ws: Workspace, run_id: str, entries: dict[int, dict[str, Any]], done: bool) -> None:
    """A generate run as its job leaves it: progress from `entries` (all three questions when `done`, then the
    usage metrics, the dataset files and `done`), or still running."""
    run_dir = ws.run_dir(run_id)
    config = config_of(run_id.removeprefix("gen-"))
    append_event(run_dir, "state", status="created")
    write_config(run_dir, config)
    append_event(run_dir, "state", status="running", pid=0, n_epochs=1)
    Progress(run_dir, len(QUESTIONS), entries).emit(USAGE, force=True)
    if not done:
        return
    append_event(
        run_dir, "metrics", metrics={f"generation/{k}": v for k, v in USAGE.items() if k != "failures"}
    )
    summary = write_outputs(run_dir, config, QUESTIONS, entries)
    append_event(
        run_dir, "log", message=f"{summary['accepted']} examples accepted for '{summary['dataset']}'"
    )
    append_event(run_dir, "state", status="done")
