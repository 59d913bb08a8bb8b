"""Shared fixtures: the real data folder, a fresh workspace, and the CLI run as a user runs it (a subprocess) or
in this process (the same click command, for tables of cheap refusals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.workspace import Workspace

# the fixture plugins and helpers that test modules also import by name: rewritten asserts wherever they are
# imported first (else pytest warns that an already imported plugin cannot be rewritten)
pytest.register_assert_rewrite(
    "tests.real_run_fixtures",
    "tests.llm_fixtures",
    "tests.tui_fixtures",
    "tests.qa_v2_fixture",
    "tests.generate_fixture",
)


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


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):  # noqa: ANN201
        return json.loads(self.stdout)


def run_cli(ws: Workspace, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """`dynascope ARGS --workspace WS` in a subprocess, exactly as a user runs it."""
    return finish_cli(start_cli(ws, *args, env=env), timeout=timeout)


def start_cli(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """run_cli without waiting for it: several commands at once (say two trainings, one CPU thread each);
    finish_cli collects each."""
    return subprocess.Popen(
        [sys.executable, "-m", "tui_app", "--workspace", str(ws.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **OFFLINE_ENV, **(env or {})},
        cwd=REPO,
    )


def finish_cli(proc: subprocess.Popen[str], timeout: float = 600) -> CliResult:
    """Wait for a command start_cli started; past `timeout` it is killed and TimeoutExpired raised."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return CliResult(proc.returncode, stdout, stderr)


@pytest.fixture
def cli(ws: Workspace):  # noqa: ANN201
    def call(*args: str, **kwargs) -> CliResult:  # noqa: ANN003
        return run_cli(ws, *args, **kwargs)

    return call


@pytest.fixture
def cli_in_process(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """`call(ws, *args, env=...)`: run_cli's twin in this process, about 2 s cheaper a call. The same click command
    the console script runs (with its app opener); what one process would hold across calls is made fresh per
    call: the environment (set with monkeypatch, undone after the test), the working folder, the notes printed
    once per process. An exception that escapes the command is appended to stderr as the traceback a process
    would print (exit 1), so "no traceback" still means one."""
    from click.testing import CliRunner  # here, not at the top: collecting the suite stays light

    from engine.cli import common as cli_common
    from engine.cli.main import cli as cli_command
    from tui_app.__main__ import open_app

    monkeypatch.chdir(REPO)
    for name, value in OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)

    def call(ws: Workspace, *args: str, env: dict[str, str] | None = None) -> CliResult:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(cli_common, "_noted", set())
        result = CliRunner().invoke(
            cli_command,
            ["--workspace", str(ws.root), *args],
            prog_name="dynascope",
            obj={"open_app": open_app},
            catch_exceptions=True,
        )
        stderr = result.stderr
        if result.exc_info is not None and not isinstance(result.exc_info[1], SystemExit):
            stderr += "".join(traceback.format_exception(*result.exc_info))
        return CliResult(result.exit_code, result.stdout, stderr)

    return call


def open_files_under(root: Path) -> list[str]:
    """The files under `root` this process holds open (Linux /proc): a command run in-process must leave none,
    as no process keeps the catalog open."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # the descriptor listing the folder itself, closed by now
            continue
        if target.startswith(f"{root}/") or target == str(root):
            held.append(target)
    return sorted(held)
