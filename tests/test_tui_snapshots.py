"""Text snapshots of the main screens at a fixed terminal size with fixed data (tests/__snapshots__/*.txt).

The capture is the screen's text (what a user reads), so a colour-theme change does not break it but a layout
change does. Update on purpose with DYNASCOPE_UPDATE_SNAPSHOTS=1 and review the diff.
"""

from __future__ import annotations

import pytest

from tests.conftest import DATA_DIR
from tests.tui_helpers import check_snapshot, make_app, normalise, screen_text, settle
from tui_app.screens.mapdiff import MapDiffScreen

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


async def capture(app, pilot) -> str:  # noqa: ANN001
    await settle(app, pilot, rounds=3)
    return normalise(screen_text(app), DATA_DIR)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
async def test_snapshots_main_screens(tui_ws, size):  # noqa: ANN001
    tag = f"{size[0]}x{size[1]}"
    app = make_app(tui_ws)
    async with app.run_test(size=size) as pilot:
        shots = {"home": await capture(app, pilot)}
        app.open_map("sst2-run")
        shots["datamap"] = await capture(app, pilot)
        await pilot.press("2", "enter")
        shots["examples-ambiguous"] = await capture(app, pilot)
        await pilot.press("question_mark")
        shots["help-examples"] = await capture(app, pilot)
        await pilot.press("escape")
        await pilot.press("enter")
        shots["detail"] = await capture(app, pilot)
        app.go_home()
        app.open_map("squad-run", kind="robustness")
        shots["datamap-robustness"] = await capture(app, pilot)
        app.go_home()
        app.open_cases("sst2-run")
        shots["cases"] = await capture(app, pilot)
        app.go_home()
        app.open_compare()
        shots["compare"] = await capture(app, pilot)
        app.go_home()
        app.open_run_view("sst2-run")
        shots["runview"] = await capture(app, pilot)
        app.go_home()
        app.open_run_view(["sst2-run", "sst2-run-b"])
        shots["runview-compare"] = await capture(app, pilot)
        app.go_home()
        app.push_screen(MapDiffScreen("sst2-run", "sst2-run-b"))
        shots["mapdiff"] = await capture(app, pilot)
        app.go_home()
        app.open_attacks("sst2-run")
        shots["attacks"] = await capture(app, pilot)
        app.go_home()
        app.open_error_analysis("squad-run")
        shots["error-analysis"] = await capture(app, pilot)
        app.go_home()
        app.open_jobs("sst2-run")
        shots["jobs"] = await capture(app, pilot)
        app.go_home()
        app.open_sql()
        await settle(app, pilot)
        await pilot.press(*"SELECT run_id, status, epochs_done FROM runs ORDER BY run_id", "f5")
        shots["sql"] = await capture(app, pilot)
        assert not app.errors
    for name, text in shots.items():
        check_snapshot(f"{name}-{tag}", text)


async def test_snapshot_generate_job_panel(ws):  # noqa: ANN001
    """The jobs screen on a finished generate job at 80x24: the generation panel in place of the metrics."""
    from tests.generate_fixture import ENTRIES, write_generate_run

    write_generate_run(ws, "gen-ctx-demo", ENTRIES, done=True)
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.open_jobs("gen-ctx-demo")
        await pilot.pause(0.2)
        text = await capture(app, pilot)
        assert "items 3/3 · accepted 1 · rejected 1 (too-long 1)" in text
        assert not app.errors
    check_snapshot("jobs-generate-80x24", text)
