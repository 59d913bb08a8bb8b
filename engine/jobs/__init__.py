"""Jobs: a run folder plus a detached process (`python -m engine.jobs RUN_DIR`).

Each kind (train, retrain, evaluate) is one typed spec in `engine.jobs.registry`; `create_run` dispatches to the
kind's launcher, `process` spawns, cancels, resumes and lists jobs.

Statuses: created, running, done, failed, cancelled (from events); `list_jobs` reports `starting` from a run's
creation until its process has announced itself, and `interrupted` for a run whose events say running but whose
process is gone (killed with -9, machine rebooted): `--resume` continues it from its last complete epoch. Newest
first.
"""

from __future__ import annotations

from typing import Any

from engine.jobs.process import ACTIVE_STATES, cancel, job_info, launch, list_jobs, resume, run_job, spawn
from engine.jobs.registry import KINDS, get_kind
from engine.jobs.runs import export_dataset
from storage.workspace import Workspace


def create_run(ws: Workspace, values: dict[str, Any]) -> str:
    """Make `runs/<id>/` for a job of `values["kind"]` (default train); returns the run id. Nothing is launched."""
    return get_kind(values.get("kind") or "train").create(ws, values)


__all__ = [
    "ACTIVE_STATES",
    "KINDS",
    "cancel",
    "create_run",
    "export_dataset",
    "get_kind",
    "job_info",
    "launch",
    "list_jobs",
    "resume",
    "run_job",
    "spawn",
]
