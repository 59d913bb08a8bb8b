"""Console entry point: the engine's CLI, with the app plugged in for `dynascope` without a command."""

from __future__ import annotations

from engine.cli.main import main as cli_main
from storage.workspace import Workspace


def open_app(ws: Workspace, demo: bool = False) -> None:
    from tui_app.app import DynascopeApp

    DynascopeApp(ws, demo=demo).run()


def main() -> None:
    cli_main(app_opener=open_app)


if __name__ == "__main__":
    main()
