"""Plain-text captures of the running app's screen (for tests, snapshots and the README's screenshot)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.app import App


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as text: one line per row, trailing spaces removed."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True
    )
    console.print(render)
    text = console.export_text(styles=False)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


async def capture_screen(app: App[Any], size: tuple[int, int], open_screen, settle_s: float = 0.5) -> str:  # noqa: ANN001
    """Run the app headless at `size`, call `open_screen(app)`, wait for its workers, and return the text."""
    async with app.run_test(size=size) as pilot:
        for _ in range(2):
            await pilot.pause()
            await app.workers.wait_for_complete()
        open_screen(app)
        for _ in range(3):
            await pilot.pause(settle_s)
            await app.workers.wait_for_complete()
        await pilot.pause()
        return screen_text(app)


def main() -> None:
    """`python -m tui_app.capture --workspace WS [--run RUN] [--size 100x30] [--out FILE]`: the data map screen as
    text (the README's screenshot)."""
    import argparse
    import asyncio
    from pathlib import Path

    from storage.workspace import resolve_workspace
    from tui_app.app import DynascopeApp
    from tui_app.config import Settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--run", default=None, help="run id (default: the latest run with metrics)")
    parser.add_argument("--screen", choices=["map", "examples", "home", "jobs"], default="map")
    parser.add_argument("--size", default="100x30")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    app = DynascopeApp(resolve_workspace(args.workspace), settings=Settings())
    openers = {
        "map": lambda a: a.open_map(args.run),
        "examples": lambda a: a.open_examples(run_id=args.run),
        "home": lambda a: None,
        "jobs": lambda a: a.open_jobs(args.run),
    }
    text = asyncio.run(capture_screen(app, (width, height), openers[args.screen]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
