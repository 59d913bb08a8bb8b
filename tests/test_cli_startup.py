"""A command imports its own module, not every command's: `dynascope metrics` and `dynascope import-dynamics` start
without the job kinds (which pull in the LLM client), torch, the app, or pyarrow."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click

from engine.cli.main import COMMAND_MODULE, MODULES, LazyCommands, cli

REPO = Path(__file__).resolve().parent.parent


def test_the_command_map_names_every_command_of_every_module() -> None:
    declared = {
        command.name: module for module in MODULES for command in importlib.import_module(module).COMMANDS
    }
    assert COMMAND_MODULE == declared


def test_listing_loads_every_command_and_lookup_only_its_module() -> None:
    commands = LazyCommands(MODULES, COMMAND_MODULE)
    assert isinstance(commands["map-diff"], click.Command)
    assert set(dict.keys(commands)) == {"map-diff"}  # only its module's commands are loaded so far
    assert sorted(commands) == sorted(COMMAND_MODULE)
    assert set(cli.commands) == set(COMMAND_MODULE) and "metrics" in cli.commands
    # a name the map does not know still resolves when a module defines it (after importing them all)
    partial = LazyCommands(MODULES, {})
    assert partial.get("metrics") is not None and partial.get("no-such-command") is None


def loaded_running(*args: str) -> set[str]:
    """Top-level packages and dynascope modules loaded by the CLI running `args` in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from engine.cli.main import cli\n"
        f"cli({list(args)!r}, prog_name='dynascope', standalone_mode=False)\n"
        "names = {m.split('.')[0] for m in sys.modules} | {m for m in sys.modules if m.startswith('engine.')}\n"
        "print(json.dumps(sorted(names)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_metrics_and_import_dynamics_load_only_their_module() -> None:
    for command in ("metrics", "import-dynamics"):
        loaded = loaded_running(command, "--help")
        assert "engine.cli.analysis" in loaded, command
        others = {m for m in MODULES if m != "engine.cli.analysis"} & loaded
        assert not others, (command, others)
        # nor pyarrow, numpy or rich: imported where a command writes Arrow data or prints on stderr
        heavy = {
            "openai",
            "pydantic",
            "torch",
            "transformers",
            "textual",
            "tui_app",
            "pandas",
            "pyarrow",
            "numpy",
        }
        heavy &= loaded
        assert not heavy, (command, heavy)
