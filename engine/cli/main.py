"""The `dynascope` command line. Stable: scripts depend on it.

Every listing has --json (one JSON document on stdout, nothing else there). Exit codes: 0 success, 1 the job
failed, 2 bad usage or bad input (with a message on stderr that says what and where). `python -m engine.cli` runs
it without the app; the `dynascope` console script (tui_app) passes an app opener in the click context.

Each command module is imported only when one of its commands runs: a command pays for its own imports, not for
every other command's (the job kinds' module alone pulls in the LLM client). `dynascope --help` and a name not in
COMMAND_MODULE import them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, ItemsView, Iterator, KeysView, ValuesView
from typing import Any

import click

from engine.cli.common import open_app, user_errors, workspace_option
from storage.workspace import resolve_workspace

AppOpener = Callable[..., None]  # (ws, demo=False): opens the app on ws

# The command modules (each defines a COMMANDS tuple), in the order `--help` lists them.
MODULES = (
    "engine.cli.data",
    "engine.cli.split",
    "engine.cli.augment",
    "engine.cli.kinds",
    "engine.cli.jobs",
    "engine.cli.analysis",
    "engine.cli.mapdiff",
    "engine.cli.error_analysis",
    "engine.cli.llm",
)
# Which module defines each command, so that running one imports only its module (tests/test_cli_startup.py
# checks this against the modules' COMMANDS; a command missing here still works, by importing every module).
COMMAND_MODULE = {
    **dict.fromkeys(("import", "datasets", "examples", "sql", "runs", "demo"), "engine.cli.data"),
    "split": "engine.cli.split",
    "extra-answers": "engine.cli.augment",
    **dict.fromkeys(("train", "retrain", "eval", "attack", "generate"), "engine.cli.kinds"),
    **dict.fromkeys(("jobs", "job"), "engine.cli.jobs"),
    **dict.fromkeys(("metrics", "map", "select", "import-dynamics", "compare"), "engine.cli.analysis"),
    "map-diff": "engine.cli.mapdiff",
    "error-analysis": "engine.cli.error_analysis",
    "llm": "engine.cli.llm",
}


class LazyCommands(dict[str, click.Command]):
    """The group's commands, filled from the command modules on first use: looking up one name imports its
    module only; listing them (help, a typo's suggestions) imports every module."""

    def __init__(self, modules: tuple[str, ...], command_module: dict[str, str]) -> None:
        super().__init__()
        self._pending = list(modules)
        self._command_module = command_module

    def _load(self, module: str) -> None:
        if module in self._pending:
            self._pending.remove(module)
            for command in importlib.import_module(module).COMMANDS:
                super().__setitem__(command.name, command)

    def _load_all(self) -> None:
        for module in list(self._pending):
            self._load(module)

    def _load_for(self, name: object) -> None:
        if not super().__contains__(name):
            module = self._command_module.get(name) if isinstance(name, str) else None
            if module is not None:
                self._load(module)
            if not super().__contains__(name):
                self._load_all()

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self._load_for(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> click.Command:
        self._load_for(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._load_for(name)
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return super().__iter__()

    def __len__(self) -> int:
        self._load_all()
        return super().__len__()

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        self._load_all()
        return super().keys()

    def values(self) -> ValuesView[click.Command]:  # type: ignore[override]
        self._load_all()
        return super().values()

    def items(self) -> ItemsView[str, click.Command]:  # type: ignore[override]
        self._load_all()
        return super().items()


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@workspace_option
@click.version_option(package_name="dynascope")
@click.pass_context
@user_errors  # opening the app (no command) meets the same errors as a command: a message, never a traceback
def cli(ctx: click.Context, workspace: str | None) -> None:
    """dynascope: which training examples make your model fragile. Without a command, opens the app."""
    if ctx.invoked_subcommand is None:
        open_app(resolve_workspace(workspace))


cli.commands = LazyCommands(MODULES, COMMAND_MODULE)


def main(app_opener: AppOpener | None = None) -> None:
    """Run the command line; `app_opener(ws)` opens the terminal app (dynascope without a command),
    `app_opener(ws, demo=True)` opens it setting up the demo."""
    cli(prog_name="dynascope", obj={"open_app": app_opener})


if __name__ == "__main__":  # pragma: no cover
    main()
