"""pytest fixtures of the app's tests (a plugin: `pytest_plugins = ["tests.tui_fixtures"]` in a test module)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.workspace import Workspace
from tests.tui_helpers import build_workspace


@pytest.fixture(scope="session")
def tui_template(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, str]]:
    ws = Workspace(tmp_path_factory.mktemp("tui-template") / "ws").create()
    info = build_workspace(ws, data_dir)
    return ws.root, info


@pytest.fixture
def tui_ws(tui_template: tuple[Path, dict[str, str]], tmp_path: Path) -> Workspace:
    """A private copy of the fixed workspace (tests write annotations, exports and jobs into it)."""
    root = tmp_path / "ws"
    shutil.copytree(tui_template[0], root)
    return Workspace(root)
