"""The arrows of DESIGN.md: tui_app -> engine, storage; engine -> storage; storage -> duckdb, pyarrow."""

from __future__ import annotations

import json
import pkgutil
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
    loaded = loaded_after_importing(["engine.cli"])
    assert "torch" not in loaded and "transformers" not in loaded
