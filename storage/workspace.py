"""Where a workspace lives on disk and how its folders are named."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKSPACE = "dynascope-ws"
WORKSPACE_ENV = "DYNASCOPE_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create(self) -> Workspace:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return self

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_workspace(path: str | os.PathLike[str] | None = None) -> Workspace:
    """--workspace wins, then $DYNASCOPE_WORKSPACE, then ./dynascope-ws."""
    chosen = path or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    return Workspace(Path(chosen).expanduser().resolve())
