"""`dynascope demo`: a workspace built from real data, found locally or on the hub."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.analysis.progress import progress_label
from engine.errors import BadInputError
from engine.importing.sources import ImportOptions, load_source
from storage.artifacts import BROKEN, BrokenRunError, read_config
from storage.catalog import open_catalog
from storage.datasets import list_datasets, write_dataset
from storage.joblock import waiting_lock
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


# two `dynascope demo` started at once (two terminals, `make run` twice) take turns at checking what is there and
# creating what is not: one imports and starts the run, the other then finds them
DEMO_LOCK = ".demo.lock"


def build_demo(ws: Workspace, log: Callable[[str], None] = print) -> list[str]:
    """Import the demo datasets that are not there yet; returns the names imported now."""
    ws.create()
    with waiting_lock(ws.root / DEMO_LOCK):
        return _import_missing(ws, log)


def _import_missing(ws: Workspace, log: Callable[[str], None]) -> list[str]:
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
        log(f"  {name}: importing ...")
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
# the settings that tell the demo run from the user's own runs on the same dataset
DEMO_KEYS = ("kind", "dataset", "limit", "max_length", "epochs", "seed")


def is_demo_run(config: dict[str, Any]) -> bool:
    wanted = {"kind": "train", **DEMO_RUN}
    return all((config.get(k) or ("train" if k == "kind" else None)) == wanted[k] for k in DEMO_KEYS)


def find_demo_run(ws: Workspace) -> dict[str, Any] | None:
    """The workspace's demo run as `engine.jobs.list_jobs` lists it (the newest, should there be several)."""
    from engine.jobs import list_jobs

    for job in list_jobs(ws):  # newest first
        if job["status"] == BROKEN:
            continue
        try:
            config = read_config(ws.run_dir(job["run_id"])) or {}
        except BrokenRunError:
            continue
        if is_demo_run(config):
            return job
    return None


def start_demo_run(
    ws: Workspace, log: Callable[[str], None] = print
) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    """Make sure the demo run is trained or training, as a detached job: a finished one is kept, a running one
    left alone, an interrupted or cancelled one resumed from its last complete epoch, a failed one reported (and
    left for the user to resume), none yet created and started. Returns its run id (None without the sst2-train
    dataset) and the job process when this call started one."""
    ws.create()
    with waiting_lock(ws.root / DEMO_LOCK):
        return _start_or_find(ws, log)


def _start_or_find(
    ws: Workspace, log: Callable[[str], None]
) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    from engine.jobs import ACTIVE_STATES, create_run, resume, spawn

    job = find_demo_run(ws)
    if job is not None:
        run_id, status = str(job["run_id"]), job["status"]
        if status == "done":
            log(f"demo run {run_id}: already trained")
            return run_id, None
        if status in ACTIVE_STATES:
            log(f"demo run {run_id}: training in the background ({progress_label(job)})")
            return run_id, None
        if status == "failed":
            log(
                f"demo run {run_id} failed: {job['message'] or 'see its job.log'}; "
                f"resume it with R on the jobs screen (or dynascope train --resume {run_id})"
            )
            return run_id, None
        try:
            proc = resume(ws, run_id)
        except BadInputError as exc:  # another `dynascope demo` resumed it a moment ago
            log(f"demo run {run_id}: {exc}")
            return run_id, None
        log(f"demo run {run_id}: {status} after {job['epochs_done']} epoch(s); resumed in the background")
        return run_id, proc
    with open_catalog(ws) as con:
        names = {d["name"] for d in list_datasets(con)}
    if DEMO_RUN["dataset"] not in names:
        log("demo run: no sst2-train dataset; skipped")
        return None, None
    config = {**DEMO_RUN, "eval": [e for e in DEMO_RUN["eval"] if e in names]}
    run_id = create_run(ws, config)
    proc = spawn(ws, run_id)
    log(
        f"demo run {run_id}: training in the background "
        f"({config['limit']} examples x {config['epochs']} epochs, pid {proc.pid})"
    )
    return run_id, proc


def start_demo(ws: Workspace, log: Callable[[str], None] = print) -> str | None:
    """What the app does when opened by `dynascope demo`, in a worker: import the demo datasets not there yet
    (seconds), then start (or resume) the demo run in the background. Returns the demo run's id."""
    build_demo(ws, log)
    run_id, _ = start_demo_run(ws, log)
    return run_id


def train_demo_run(
    ws: Workspace, log: Callable[[str], None] = print, follow: Callable[[str, Any], str] | None = None
) -> str | None:
    """`dynascope demo --no-tui`: start the demo run as `start_demo_run` does, then wait for it to end (with the
    CLI's progress bar, `follow`, when this call started its job); returns its run id."""
    from engine.jobs import ACTIVE_STATES, job_info

    run_id, proc = start_demo_run(ws, log)
    if run_id is None:
        return None
    if proc is not None and follow is not None:  # the CLI's progress bar, fed by the run's events.jsonl
        status = follow(run_id, proc)
        if status != "done":
            raise RuntimeError(
                f"the demo run {run_id} ended {status}; see {ws.run_dir(run_id) / 'events.jsonl'}"
            )
        return run_id
    seen = -1
    while True:
        info = job_info(ws, run_id)
        if info["epochs_done"] != seen:
            seen = info["epochs_done"]
            log(f"    {progress_label(info)}")
        if info["status"] not in ACTIVE_STATES:
            break
        time.sleep(1.0)
    if info["status"] != "done":
        raise RuntimeError(f"the demo run {run_id} ended {info['status']}: {info['message']}")
    log(f"demo run {run_id}: done")
    return run_id
