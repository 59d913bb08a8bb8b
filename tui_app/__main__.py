"""Console entry point: the engine's CLI, with the app plugged in for `dynascope` without a command."""

from __future__ import annotations

from engine import cli as engine_cli
from storage.workspace import Workspace


def open_app(ws: Workspace) -> None:
    from tui_app.app import DynascopeApp

    DynascopeApp(ws).run()


def main() -> None:
    engine_cli.APP_OPENER = open_app
    engine_cli.main()


if __name__ == "__main__":
    main()
