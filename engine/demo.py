"""`dynascope demo`: a workspace built from real data, found locally or on the hub."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.importing.sources import ImportOptions, load_source
from storage.catalog import open_catalog
from storage.datasets import list_datasets, write_dataset
from storage.sync import sync
from storage.workspace import Workspace

# (dataset name, file under the data folder, options)
DEMO_FILES: list[tuple[str, str, ImportOptions]] = [
    ("sst2-train", "sst2/train.tsv.gz", ImportOptions()),
    ("sst2-dev", "sst2/dev.tsv", ImportOptions()),
    ("squad-dev", "squad_v1.1/dev-v1.1.json.gz", ImportOptions()),
    ("addsent", "adversarial_squad/sample1k-HCVerifyAll.json.gz", ImportOptions()),
]
HUB_FALLBACK = [
    ("sst2-train", "stanfordnlp/sst2", ImportOptions(split="train", text_col="sentence", id_col="idx"))
]


def find_data_dir() -> tuple[Path | None, str]:
    """$DYNASCOPE_DATA_DIR, then ../shared/data (from here and from the project checkout)."""
    env = os.environ.get("DYNASCOPE_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path, f"$DYNASCOPE_DATA_DIR ({path})"
        raise BadInputError(f"$DYNASCOPE_DATA_DIR points at {path}, which is not a folder; fix or unset it")
    here = Path(__file__).resolve().parent.parent
    for candidate in (Path.cwd() / ".." / "shared" / "data", here / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve(), f"../shared/data ({candidate.resolve()})"
    return None, "the Hugging Face hub"


def build_demo(ws: Workspace, log: Callable[[str], None] = print) -> list[str]:
    """Import the demo datasets that are not there yet; returns the names imported now."""
    data_dir, where = find_data_dir()
    log(f"demo data: {where}")
    with open_catalog(ws) as con:
        sync(ws, con)
        present = {d["name"] for d in list_datasets(con)}
    imported = []
    plan = (
        [(name, str(data_dir / rel), opts) for name, rel, opts in DEMO_FILES if (data_dir / rel).exists()]
        if data_dir
        else HUB_FALLBACK
    )
    if not plan:
        raise BadInputError(
            f"no demo files found under {data_dir}; set DYNASCOPE_DATA_DIR to the data folder"
        )
    for name, source, opts in plan:
        if name in present:
            log(f"  {name}: already in the workspace")
            continue
        spec = load_source(source, name, opts)
        with open_catalog(ws) as con:
            n = write_dataset(con, spec)
        log(f"  {name}: imported {n} examples from {source}")
        imported.append(name)
    return imported


DEMO_RUN: dict = {
    "dataset": "sst2-train",
    "limit": 1000,
    "max_length": 48,
    "epochs": 3,
    "batch_size": 32,
    "lr": 1e-4,
    "seed": 42,
    "eval": ["sst2-dev"],
}


def train_demo_run(
    ws: Workspace, log: Callable[[str], None] = print, follow: Callable[[str, Any], str] | None = None
) -> str | None:
    """Train the demo's small SST-2 run with inline dynamics (a job process, as the app would start it) and wait
    for it; returns its run id. A finished demo run already in the workspace is reused."""
    import time

    from engine.jobs import create_run, job_info, list_jobs, spawn

    for job in list_jobs(ws):
        if job["kind"] == "train" and job["dataset"] == DEMO_RUN["dataset"] and job["status"] == "done":
            log(f"  demo run: {job['run_id']} already trained")
            return str(job["run_id"])
    with open_catalog(ws) as con:
        names = {d["name"] for d in list_datasets(con)}
    if DEMO_RUN["dataset"] not in names:
        log("  demo run: no sst2-train dataset; skipped")
        return None
    config = {**DEMO_RUN, "eval": [e for e in DEMO_RUN["eval"] if e in names]}
    run_id = create_run(ws, config)
    proc = spawn(ws, run_id)
    log(
        f"  demo run: training {run_id} ({config['limit']} examples x {config['epochs']} epochs, pid {proc.pid}) ..."
    )
    if follow is not None:  # the CLI's progress bar, fed by the run's events.jsonl
        status = follow(run_id, proc)
        if status != "done":
            raise RuntimeError(
                f"the demo run {run_id} ended {status}; see {ws.run_dir(run_id) / 'events.jsonl'}"
            )
        return run_id
    seen = 0
    while True:
        info = job_info(ws, run_id)
        if info["epochs_done"] > seen:
            seen = info["epochs_done"]
            log(f"    epoch {seen}/{info['n_epochs']} done")
        if info["status"] in ("done", "failed", "cancelled", "interrupted"):
            break
        time.sleep(1.0)
    if info["status"] != "done":
        raise RuntimeError(f"the demo run {run_id} ended {info['status']}: {info['message']}")
    log(f"  demo run: {run_id} done")
    return run_id
