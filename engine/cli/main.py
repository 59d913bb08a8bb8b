"""The `dynascope` command line. Stable: scripts depend on it.

Every listing has --json (one JSON document on stdout, nothing else there). Exit codes: 0 success, 1 the job
failed, 2 bad usage or bad input (with a message on stderr that says what and where). `python -m engine.cli` runs
it without the app; the `dynascope` console script (tui_app) passes an app opener in the click context.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from engine.cli import analysis, augment, data, error_analysis, jobs, kinds, llm, mapdiff, split
from engine.cli.common import open_app, user_errors, workspace_option
from storage.workspace import resolve_workspace

AppOpener = Callable[..., None]  # (ws, demo=False): opens the app on ws


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@workspace_option
@click.version_option(package_name="dynascope")
@click.pass_context
@user_errors  # opening the app (no command) meets the same errors as a command: a message, never a traceback
def cli(ctx: click.Context, workspace: str | None) -> None:
    """dynascope: which training examples make your model fragile. Without a command, opens the app."""
    if ctx.invoked_subcommand is None:
        open_app(resolve_workspace(workspace))


for _module in (data, split, augment, kinds, jobs, analysis, mapdiff, error_analysis, llm):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(app_opener: AppOpener | None = None) -> None:
    """Run the command line; `app_opener(ws)` opens the terminal app (dynascope without a command),
    `app_opener(ws, demo=True)` opens it setting up the demo."""
    cli(prog_name="dynascope", obj={"open_app": app_opener})


if __name__ == "__main__":  # pragma: no cover
    main()
