"""The `generate` job kind: synthetic examples from an LLM behind any OpenAI-compatible endpoint (seed 004's
`context` and `qa-from-context` steps), landed as a new dataset with the provenance of every example.

The launcher samples the source examples (seeded) into the run's inputs. The job process asks the endpoint for
each of them through `engine.generation.client` (bounded concurrency, the openai client's retries, the
workspace's response cache) and appends one line per finished source example to `generated/results.jsonl`
(flushed and fsynced: a kill -9 loses at most the line being written, which a resume truncates away). A resumed
job skips every source example with a line whose request succeeded (its reply is also in the cache), and asks
again only for those whose request failed. At the end it writes the dataset files (`storage.generated`); sync
lands them in the catalog. The API key is read from the environment by the client: the config holds only the
variable's name.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.analysis.regions import SELECTION_REGIONS
from engine.analysis.runs import origin
from engine.errors import BadInputError
from engine.generation.client import DEFAULT_KEY_ENV, JSON_MODES, Endpoint, GenerationClient, Outcome
from engine.generation.pipelines import PIPELINES, Pipeline, Record
from engine.jobs.generate_offline import (
    OFFLINE_PIPELINES,
    check_label_run,
    label_check,
    prepare_offline,
    run_offline,
)
from engine.jobs.generate_sources import restrict_sources
from engine.jobs.runs import export_dataset, write_run
from engine.jobs.spec import Field, JobKind
from storage.artifacts import append_event
from storage.catalog import open_catalog
from storage.datasets import dataset_exists
from storage.generated import generated_dir, write_generated
from storage.sync import sync
from storage.workspace import Workspace

SOURCE_FILE = "source.parquet"
SOURCE_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("example_id", "text", "text_pair", "answers", "label_name")]
    + [("label", pa.int32())]
)
RESULTS_FILE = "results.jsonl"


def endpoint_of(config: dict[str, Any]) -> Endpoint:
    return Endpoint(
        base_url=config["base_url"],
        model=config["model"],
        api_key_env=config.get("api_key_env") or DEFAULT_KEY_ENV,
        concurrency=int(config["concurrency"]),
        timeout_s=float(config["timeout"]),
        max_retries=int(config["max_retries"]),
        json_mode=config["json_mode"],
    )


# ---- launcher ----------------------------------------------------------------------------------------------


def sample_sources(table: pa.Table, pipeline: Pipeline, n: int, seed: int) -> pa.Table:
    """n source rows, seeded: questions for `context`, distinct contexts for `qa-from-context`, answerable
    questions for `extra-answers`."""
    import numpy as np

    rows = table.to_pylist()
    if pipeline.needs == "context":
        by_context: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.get("text_pair"):
                by_context.setdefault(row["text_pair"], row)
        rows = list(by_context.values())
    elif pipeline.needs == "label":
        rows = [r for r in rows if r.get("text") and r.get("label") is not None]
    elif pipeline.needs == "answer":
        rows = [
            r
            for r in rows
            if r.get("text") and not r.get("is_impossible") and json.loads(r["answers"] or "[]")
        ]
    else:
        rows = [r for r in rows if r.get("text")]
    if not rows:
        raise BadInputError(f"the source has no {pipeline.needs}s to generate from")
    picked = np.random.default_rng(seed).permutation(len(rows))[: min(n, len(rows))]
    keep = [rows[int(i)] for i in sorted(picked)]
    return pa.Table.from_pylist(
        [{c: r.get(c) for c in SOURCE_SCHEMA.names} for r in keep], schema=SOURCE_SCHEMA
    )


def create_generate_run(ws: Workspace, values: dict[str, Any]) -> str:
    parsed = GENERATE.parse(values)
    config = {**GENERATE.defaults(), **{k: v for k, v in parsed.items() if k != "kind"}}
    if config["pipeline"] in OFFLINE_PIPELINES:
        for key in ("selection", "region", "bounds"):
            if config.get(key):
                raise BadInputError(
                    f"--{key} picks the source examples of an LLM pipeline; {config['pipeline']} takes "
                    f"every example of --from (pass the selection itself as --from)"
                )
        return create_offline_run(ws, config)
    for key in ("base_url", "model"):
        if not config.get(key):
            raise BadInputError(
                f"the {config['pipeline']} pipeline asks an LLM: give --{key.replace('_', '-')}"
            )
    pipeline = PIPELINES[config["pipeline"]]
    endpoint = endpoint_of(config)
    endpoint.check()
    endpoint.api_key()  # refuse now, not in the job, when a remote endpoint has no key in the environment
    with open_catalog(ws) as con:
        table, meta = export_dataset(con, config["from"], what="source dataset")
        if dataset_exists(con, config["name"]):
            raise BadInputError(f"a dataset named '{config['name']}' already exists; choose another --name")
        if config.get("region"):
            sync(ws, con)  # the run's latest epochs: its map as the app draws it now
        only, selection = restrict_sources(con, ws, config)
    if only is not None:
        table = table.filter(pc.is_in(table.column("example_id"), value_set=pa.array(sorted(only))))
    if meta["task"] != pipeline.task:
        raise BadInputError(
            f"the {pipeline.name} pipeline needs a {pipeline.task} dataset; '{config['from']}' is {meta['task']}"
        )
    if pipeline.name == "augment-region":
        check_label_run(ws, config, meta)
    sources = sample_sources(table, pipeline, int(config["n"]), int(config["seed"]))
    config.update(
        kind="generate",
        artifacts=list(GENERATE.artifacts),
        dataset=config["from"],
        task=pipeline.task,
        label_names=meta["label_names"],
        is_pair=bool(meta["is_pair"]),
        source_version=meta.get("version"),
        endpoint_host=endpoint.host,
        prompt_id=pipeline.template.id,
        prompt_version=pipeline.template.version,
        n_sources=sources.num_rows,
        selection=selection,  # None: sampled from all of --from
    )
    return write_run(ws, f"gen-{config['name']}", config, {SOURCE_FILE: sources})


def create_offline_run(ws: Workspace, config: dict[str, Any]) -> str:
    with open_catalog(ws) as con:
        if dataset_exists(con, config["name"]):
            raise BadInputError(f"a dataset named '{config['name']}' already exists; choose another --name")
    extra, inputs = prepare_offline(ws, config)
    config.update(extra, kind="generate", artifacts=list(GENERATE.artifacts), dataset=config["from"])
    return write_run(ws, f"gen-{config['name']}", config, inputs)


def announce_generate(config: dict[str, Any]) -> str:
    if config["pipeline"] == "blend":
        return (
            f"blend: {config['n']} examples, {config['ratio']:g} of them from {config['generated']}, "
            f"the rest from {config['from']}"
        )
    if config["pipeline"] == "round-trip":
        return f"round-trip: {config['n_sources']} pairs of {config['from']} checked by run {config['run']}"
    picked = f" ({origin(config)})" if config.get("selection") else ""
    return (
        f"{config['pipeline']}: {config['n_sources']} source examples of {config['from']}{picked} -> "
        f"{config['model']} at {config['endpoint_host']}, concurrency {config['concurrency']}"
    )


# ---- results log -------------------------------------------------------------------------------------------


def results_path(run_dir: Path) -> Path:
    return generated_dir(run_dir) / RESULTS_FILE


def read_results(run_dir: Path) -> dict[int, dict[str, Any]]:
    """The last line per source item; a torn last line (a kill -9 mid-write) is cut off the file."""
    path = results_path(run_dir)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    out: dict[int, dict[str, Any]] = {}
    for line in data[:end].splitlines():
        if line.strip():
            entry = json.loads(line)
            out[int(entry["item"])] = entry
    return out


class ResultsLog:
    def __init__(self, run_dir: Path) -> None:
        path = results_path(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def append(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def entry_for(item: int, row: dict[str, Any], outcome: Outcome, records: list[Record]) -> dict[str, Any]:
    return {
        "item": item,
        "parent": row["example_id"],
        "ok": outcome.ok,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "cached": outcome.cached,
        "repaired": outcome.repaired,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "records": [
            {
                "text": r.text,
                "text_pair": r.text_pair,
                "answers": r.answers,
                "accepted": r.accepted,
                "reason": r.reason,
                "verdicts": r.verdicts,
                "label": r.label,
                "label_name": r.label_name,
            }
            for r in records
        ],
    }


# ---- job process -------------------------------------------------------------------------------------------


class Progress:
    """Counts for the events log (throttled to one progress event a second)."""

    def __init__(self, run_dir: Path, total: int, entries: dict[int, dict[str, Any]]) -> None:
        self.run_dir = run_dir
        self.total = total
        self.entries = entries
        self.started = time.monotonic()
        self.last = 0.0
        self.new = 0

    def counts(self) -> dict[str, Any]:
        accepted, rejected, failed = 0, Counter[str](), Counter[str]()
        tokens = 0
        for entry in self.entries.values():
            tokens += entry["prompt_tokens"] + entry["completion_tokens"]
            if not entry["ok"]:
                failed[entry["reason"]] += 1
                continue
            for rec in entry["records"]:
                if rec["accepted"]:
                    accepted += 1
                else:
                    rejected[rec["reason"]] += 1
        done = sum(1 for e in self.entries.values() if e["ok"])
        return {
            "done": done,
            "accepted": accepted,
            "rejected": dict(rejected),
            "failed": dict(failed),
            "tokens": tokens,
        }

    def emit(self, usage: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        counts = self.counts()
        rate = self.new / max(now - self.started, 1e-6)
        eta = (self.total - len(self.entries)) / rate if rate > 0 else None
        append_event(
            self.run_dir,
            "progress",
            epoch=0,
            n_epochs=1,
            step=len(self.entries),
            total=self.total,
            unit="item",
            eta_s=round(eta, 1) if eta is not None else None,
            generation={**counts, **usage},
        )


async def generate_items(
    run_dir: Path,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    entries: dict[int, dict[str, Any]],
    stop: Any,
) -> tuple[bool, dict[str, Any]]:
    """Ask for every source item without a successful entry; (finished, usage)."""
    from engine.generation.cache import ResponseCache

    pipeline = PIPELINES[config["pipeline"]]
    todo = [i for i in range(len(rows)) if not (i in entries and entries[i]["ok"])]
    cache = ResponseCache.for_workspace(run_dir.parent.parent)
    log = ResultsLog(run_dir)
    progress = Progress(run_dir, len(rows), entries)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in todo:
        queue.put_nowait(i)
    settings = {"words": config["words"], "pairs": config["pairs"]}
    try:
        async with GenerationClient(endpoint_of(config), cache) as client:

            async def worker() -> None:
                while not queue.empty():
                    item = queue.get_nowait()
                    row = rows[item]
                    outcome = await client.structured(
                        pipeline.messages(row, settings),
                        pipeline.schema,
                        temperature=float(config["temperature"]),
                        max_tokens=pipeline.max_tokens(settings),
                        seed=int(config["seed"]),
                    )
                    records = (
                        pipeline.records(row, outcome.value, settings) if outcome.value is not None else []
                    )
                    entry = entry_for(item, row, outcome, records)
                    log.append(entry)
                    entries[item] = entry
                    progress.new += 1
                    progress.emit(client.usage.as_dict())

            workers = [asyncio.create_task(worker()) for _ in range(int(config["concurrency"]))]
            while not all(w.done() for w in workers):
                if stop():  # cancel: in-flight requests are dropped; their items are asked again on resume
                    for w in workers:
                        w.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    progress.emit(client.usage.as_dict(), force=True)
                    return False, client.usage.as_dict()
                await asyncio.sleep(0.1)
            for w in workers:
                w.result()  # a bug in a worker fails the job, loudly
            progress.emit(client.usage.as_dict(), force=True)
            return True, client.usage.as_dict()
    finally:
        log.close()
        cache.close()


def write_outputs(
    run_dir: Path, config: dict[str, Any], rows: list[dict[str, Any]], entries: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """The dataset files for sync (summary last): accepted examples, and every record with its provenance."""
    examples: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    is_qa = config["pipeline"] in ("qa-from-context", "extra-answers")
    for item in sorted(entries):
        entry = entries[item]
        parent = entry["parent"]
        base = {
            "pipeline": config["pipeline"],
            "model": config["model"],
            "prompt_id": config["prompt_id"],
            "prompt_version": int(config["prompt_version"]),
            "parent_dataset": config["from"],
            "parent_example_id": parent,
            "endpoint_host": config["endpoint_host"],
            "prompt_tokens": int(entry["prompt_tokens"]),
            "completion_tokens": int(entry["completion_tokens"]),
            "cached": bool(entry["cached"]),
        }
        if not entry["ok"]:  # the request failed for good: one record saying why, with its source
            row = rows[item]
            records.append(
                {
                    **base,
                    "example_id": f"{parent}/failed",
                    "accepted": False,
                    "reason": f"request:{entry['reason']}",
                    "verdicts": json.dumps({"request": entry["detail"]}),
                    "text": row["text"],
                    "text_pair": row.get("text_pair"),
                    "answers": None,
                }
            )
            continue
        for k, rec in enumerate(entry["records"]):
            example_id = f"{parent}/g{k}"
            answers = json.dumps(rec["answers"]) if rec["answers"] else "[]"
            records.append(
                {
                    **base,
                    "example_id": example_id,
                    "accepted": bool(rec["accepted"]),
                    "reason": rec["reason"],
                    "verdicts": json.dumps(rec["verdicts"]),
                    "text": rec["text"],
                    "text_pair": rec["text_pair"],
                    "answers": answers,
                }
            )
            if rec["accepted"]:
                examples.append(
                    {
                        "example_id": example_id,
                        "row_idx": len(examples),
                        "text": rec["text"],
                        "text_pair": rec["text_pair"],
                        "label": rec.get("label"),
                        "label_name": rec.get("label_name"),
                        "answers": answers if config["task"] == "qa" else None,
                        "is_impossible": False if is_qa else None,
                        "title": None,
                        "orig_id": None,
                    }
                )
    rejected = Counter(r["reason"] for r in records if not r["accepted"])
    summary = {
        "dataset": config["name"],
        "task": config["task"],
        "label_names": config.get("label_names") if config["task"] == "classification" else None,
        "is_pair": bool(config.get("is_pair", True)),
        "version": "v1.1" if is_qa else None,
        "parent_dataset": config["from"],
        "pipeline": config["pipeline"],
        "accepted": len(examples),
        "rejected": dict(rejected),
        "sources": len(rows),
    }
    write_generated(run_dir, examples, records, summary)
    return summary


def run_generate_job(run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    import pyarrow.parquet as pq

    if config["pipeline"] in OFFLINE_PIPELINES:
        return run_offline(run_dir, config, flag)
    rows = pq.read_table(run_dir / "inputs" / SOURCE_FILE).to_pylist()
    entries = read_results(run_dir)
    if entries:
        done = sum(1 for e in entries.values() if e["ok"])
        append_event(
            run_dir, "log", message=f"resuming: {done} of {len(rows)} source examples already answered"
        )
    finished, usage = asyncio.run(generate_items(run_dir, config, rows, entries, lambda: flag.requested))
    append_event(
        run_dir, "metrics", metrics={f"generation/{k}": v for k, v in usage.items() if k != "failures"}
    )
    if not finished:
        return "cancelled"
    if config["pipeline"] == "augment-region":  # the trained run must still predict each rewrite's label
        if not label_check(run_dir, config, entries, lambda: flag.requested):
            return "cancelled"
    summary = write_outputs(run_dir, config, rows, entries)
    append_event(
        run_dir,
        "log",
        message=f"{summary['accepted']} examples accepted for '{summary['dataset']}'; rejected: {summary['rejected']}",
    )
    return "done"


PIPELINE_NAMES = (*PIPELINES, *OFFLINE_PIPELINES)
ASKS_LLM = tuple(PIPELINES)  # the pipelines that ask an endpoint (the others compute offline)
SAMPLES = tuple(p for p in PIPELINE_NAMES if p != "round-trip")  # round-trip checks every pair of --from


def only(*pipelines: str) -> tuple[str, tuple[str, ...]]:
    """The form shows a field only for these pipelines (`Field.when`)."""
    return ("pipeline", pipelines)


GENERATE = JobKind(
    name="generate",
    help="Generate synthetic examples with an LLM (any OpenAI-compatible endpoint) into a new dataset.",
    fields=(
        Field("pipeline", str, "what to generate", choices=PIPELINE_NAMES, required=True),
        Field(
            "from", str, "the dataset to generate from (blend: the real one)", required=True, picks="dataset"
        ),
        Field("name", str, "the new dataset's name", required=True),
        Field(
            "selection",
            str,
            "start from the examples of this saved selection of --from (dynascope select) instead of all of it",
            when=only(*ASKS_LLM),
        ),
        Field(
            "region",
            str,
            "augment-region: start from the examples --run's data map puts in this region",
            choices=tuple(r for r in SELECTION_REGIONS if r != "random"),
            when=only("augment-region"),
        ),
        Field(
            "bounds",
            str,
            "with --region: the map's boundaries A,B [default: those fitted to the run]",
            when=only("augment-region"),
        ),
        Field(
            "base_url",
            str,
            "the OpenAI-compatible endpoint (dynascope llm serve prints one)",
            when=only(*ASKS_LLM),
        ),
        Field("model", str, "the model name the endpoint serves", when=only(*ASKS_LLM)),
        Field(
            "n",
            int,
            "source examples to sample (of the selection or region when given; blend: the total)",
            default=20,
            minimum=1,
            maximum=1_000_000,
            when=only(*SAMPLES),
        ),
        Field(
            "concurrency",
            int,
            "requests in flight at once",
            default=4,
            minimum=1,
            maximum=256,
            when=only(*ASKS_LLM),
        ),
        Field(
            "seed",
            int,
            "sampling of the sources and the LLM's seed",
            default=0,
            minimum=0,
            when=only(*SAMPLES),
        ),
        Field(
            "words",
            int,
            "context: at most this many words",
            default=250,
            minimum=10,
            maximum=2000,
            when=only("context"),
        ),
        Field(
            "pairs",
            int,
            "qa-from-context: pairs asked per context",
            default=2,
            minimum=1,
            maximum=20,
            when=only("qa-from-context"),
        ),
        Field(
            "generated",
            str,
            "blend: the generated dataset mixed into --from",
            picks="dataset",
            when=only("blend"),
        ),
        Field(
            "ratio",
            float,
            "blend: the share of generated examples",
            default=0.5,
            minimum=0,
            maximum=1,
            when=only("blend"),
        ),
        Field(
            "run",
            str,
            "round-trip: the QA run that must recover each answer; augment-region: the run that must predict "
            "each rewrite's label",
            picks="run",
            when=only("round-trip", "augment-region"),
        ),
        Field(
            "threshold",
            float,
            "round-trip: the least F1 of the run's answer to keep a pair",
            default=0.5,
            minimum=0,
            maximum=1,
            when=only("round-trip"),
        ),
        Field(
            "api_key_env",
            str,
            "the environment variable holding the API key (its value is never written anywhere)",
            default=DEFAULT_KEY_ENV,
            form=False,
        ),
        Field(
            "timeout",
            float,
            "seconds per request",
            default=60.0,
            minimum=0,
            exclusive_minimum=True,
            form=False,
        ),
        Field(
            "max_retries", int, "the openai client's retries", default=3, minimum=0, maximum=10, form=False
        ),
        Field(
            "json_mode", str, "how JSON is requested", default="json_schema", choices=JSON_MODES, form=False
        ),
        Field("temperature", float, "sampling temperature", default=0.0, minimum=0, maximum=2, form=False),
    ),
    create=create_generate_run,
    run=run_generate_job,
    artifacts=("generated",),
    resumable=True,
    announce=announce_generate,
)
