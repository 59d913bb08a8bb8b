"""A workspace built the way a user builds one: `dynascope import` of a real SST-2 slice (../shared/data), then two
tiny real `dynascope train` runs of the offline MiniLM (two seeds, named `seed-1` and `seed-2`, evaluated on a
held-out slice after each epoch), through the CLI in subprocesses. Built once per test session (a pytest plugin: `pytest_plugins = ["tests.real_run_fixtures"]`);
each test gets a private copy, since tests write annotations, exports and jobs into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.workspace import Workspace
from tests.conftest import REPO, run_cli

N_TRAIN = (
    110  # three pages of examples (50, 50, 10): the last page's ids have three digits, the first page's two
)
N_HELD = 40  # the next dev sentences: the evaluation set
EPOCHS = 2
DATASET = "sst2-slice"
HELD = "sst2-held"
SEEDS = (1, 2)
TRAIN_ARGS = ("--max-length", "32", "--batch-size", "16", "--lr", "1e-4")  # and --epochs


@dataclass(frozen=True)
class RealRuns:
    """What the template workspace holds: the dataset, the two finished runs (seeds 1, 2) and the eval set."""

    root: Path
    dataset: str
    run_a: str
    run_b: str
    held: str
    n_train: int
    epochs: int


def write_slice(source: Path, target: Path, start: int, count: int) -> None:
    """Rows start..start+count of a real TSV (its header kept): a small real dataset, written outside the repo."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text(lines[0] + "".join(lines[1 + start : 1 + start + count]), encoding="utf-8")


def train_processes(ws: Workspace, extra: tuple[str, ...] = ()) -> list[subprocess.Popen]:
    """Both runs at once (one CPU thread each): the CLI's `train`, exactly as a user types it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = []
    for seed in SEEDS:
        args = (
            "train",
            DATASET,
            "--epochs",
            str(EPOCHS),
            *TRAIN_ARGS,
            "--seed",
            str(seed),
            "--name",
            f"seed-{seed}",
            "--eval",
            HELD,
            "--eval-each-epoch",
            *extra,
            "--json",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tui_app", "--workspace", str(ws.root), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO,
            )
        )
    return procs


def build_real_workspace(root: Path, data_dir: Path) -> RealRuns:
    ws = Workspace(root / "ws").create()
    source = data_dir / "sst2" / "dev.tsv"
    for name, start, count in ((DATASET, 0, N_TRAIN), (HELD, N_TRAIN, N_HELD)):
        path = root / f"{name}.tsv"
        write_slice(source, path, start, count)
        imported = run_cli(ws, "import", str(path), "--name", name)
        assert imported.code == 0, imported.stderr
    run_ids = []
    for proc in train_processes(ws):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        summary = json.loads(stdout)
        assert summary["status"] == "done" and summary["epochs_done"] == EPOCHS, summary
        run_ids.append(summary["run_id"])
    assert len(set(run_ids)) == 2
    return RealRuns(ws.root, DATASET, run_ids[0], run_ids[1], HELD, N_TRAIN, EPOCHS)


def link_weights_copy_rest(src: str, dst: str) -> None:
    if Path(src).parent.name == "model":
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def trained_runs_template(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> RealRuns:
    return build_real_workspace(tmp_path_factory.mktemp("real-runs"), data_dir)


@pytest.fixture
def trained_ws(trained_runs_template: RealRuns, tmp_path: Path) -> tuple[Workspace, RealRuns]:
    """A private copy of the real workspace (the trained weights hard-linked: nothing rewrites them in place)."""
    root = tmp_path / "ws"
    shutil.copytree(trained_runs_template.root, root, copy_function=link_weights_copy_rest)
    return Workspace(root), trained_runs_template
