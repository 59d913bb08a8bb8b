"""pytest fixtures of the app's tests (a plugin: `pytest_plugins = ["tests.tui_fixtures"]` in a test module)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage.workspace import Workspace
from tests.tui_helpers import REAL_EVAL_SET, REAL_TRAIN_ARGS, build_workspace


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


# ---- a workspace built by a real small training run (the run view, names, case-study exports) ---------------


@pytest.fixture(scope="session")
def real_run_template(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str]:
    """SST-2 dev imported, and one run named `baseline` trained for real through the CLI (about 20-40 s)."""
    from tests.conftest import run_cli
    from tests.tui_helpers import import_dataset

    ws = Workspace(tmp_path_factory.mktemp("real-run") / "ws").create()
    import_dataset(ws, data_dir / "sst2" / "dev.tsv", "sst2-dev")
    import_dataset(ws, data_dir / "sst2" / "dev.tsv", REAL_EVAL_SET, limit=64)
    done = run_cli(ws, "train", "sst2-dev", "--name", "baseline", *REAL_TRAIN_ARGS, "--json")
    assert done.code == 0, done.stderr
    return ws.root, done.json()["run_id"]


@pytest.fixture
def real_ws(real_run_template: tuple[Path, str], tmp_path: Path) -> Workspace:
    """A private copy of the real-run workspace, without the weights (no test here reads them)."""
    root = tmp_path / "ws"
    shutil.copytree(real_run_template[0], root, ignore=shutil.ignore_patterns("checkpoints", "model"))
    return Workspace(root)
