"""What the screens read comes from `engine.analysis` (the torch-free read layer: regions, maps, pages, examples,
case studies, evaluations, runs), imported there directly; this module holds no SQL.

It keeps the few names the jobs screen reads through it: the datasets and runs its form offers, and the job list.
"""

from __future__ import annotations

from typing import Any

from engine.analysis.datasets import list_datasets
from engine.analysis.runs import runs_overview as list_runs
from storage.workspace import Workspace

__all__ = ["list_datasets", "list_jobs", "list_runs"]


def list_jobs(ws: Workspace) -> list[dict[str, Any]]:
    """Every run's job state from its folder (engine.jobs: events.jsonl and the process table, no catalog)."""
    from engine import jobs as engine_jobs

    return list(engine_jobs.list_jobs(ws))
