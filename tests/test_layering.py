"""The arrows of DESIGN.md: tui_app -> engine, storage; engine -> storage; storage -> duckdb, pyarrow."""

from __future__ import annotations

import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def modules_of(package: str) -> list[str]:
    return [package] + [f"{package}.{m.name}" for m in pkgutil.walk_packages([str(REPO / package)])]


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(out.stdout))


def test_engine_and_storage_never_load_textual():
    loaded = loaded_after_importing(modules_of("storage") + modules_of("engine"))
    assert "engine" in loaded and "storage" in loaded
    assert "textual" not in loaded and "tui_app" not in loaded


def test_storage_loads_neither_torch_nor_the_engine():
    loaded = loaded_after_importing(modules_of("storage"))
    assert not {"torch", "transformers", "textual", "engine", "tui_app"} & loaded


def test_cli_starts_without_torch():
    # `dynascope datasets` must answer fast over SSH: the CLI module defers the heavy imports to the commands
    loaded = loaded_after_importing(["engine.cli.main", "engine.jobs"])
    assert "torch" not in loaded and "transformers" not in loaded


def test_engine_analysis_is_a_torch_free_read_layer():
    analysis = [
        f"engine.analysis.{m.name}" for m in pkgutil.iter_modules([str(REPO / "engine" / "analysis")])
    ]
    loaded = loaded_after_importing(["engine.analysis", *analysis])
    assert not {"torch", "transformers", "textual", "tui_app"} & loaded


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the contracts in pyproject.toml (layers, no UI below the app, acyclic siblings)."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(exe), "--no-cache"], capture_output=True, text=True, cwd=cwd, env=env)


def test_import_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_module_in_storage_importing_textual_breaks_the_contracts(tmp_path):
    # a copy of the packages with one deliberate violation: the same contracts must now fail
    for package in ("storage", "engine", "tui_app"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "storage" / "violation.py").write_text("import textual  # deliberately against the layers\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "storage.violation" in result.stdout and "BROKEN" in result.stdout
    # and an upward import (storage -> tui_app) is caught by the layers contract
    (tmp_path / "storage" / "violation.py").write_text("import tui_app.app\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "Layers" in result.stdout, result.stdout


def test_job_requests_are_checked_without_torch():
    # a bad option answers at once: the launcher (registry, run creation) imports no torch
    loaded = loaded_after_importing(
        [
            "engine.jobs",
            "engine.jobs.train",
            "engine.jobs.retrain",
            "engine.jobs.evaluate",
            "engine.cli.kinds",
        ]
    )
    assert "torch" not in loaded and "transformers" not in loaded
