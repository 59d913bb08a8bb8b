"""Shared fixtures: the real data folder, a fresh workspace, and the CLI run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.workspace import Workspace

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DYNASCOPE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data; a missing folder fails the tests that need it (CI included), never a skip."""
    if not DATA_DIR.is_dir():
        message = f"the real data folder {DATA_DIR} is missing (set DYNASCOPE_DATA_DIR or put ../shared beside the repo)"
        pytest.fail(message)  # the real data is part of the test set: never a silent skip
    return DATA_DIR


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").create()


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):  # noqa: ANN201
        return json.loads(self.stdout)


def run_cli(ws: Workspace, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """`dynascope ARGS --workspace WS` in a subprocess, exactly as a user runs it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "tui_app", "--workspace", str(ws.root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(ws: Workspace):  # noqa: ANN201
    def call(*args: str, **kwargs) -> CliResult:  # noqa: ANN003
        return run_cli(ws, *args, **kwargs)

    return call
