"""The app's acceptance flows, driven through Pilot on a real workspace (SST-2 dev and a SQuAD dev subset imported
from ../shared/data, with recorded dynamics): data map -> boundary -> region -> examples -> detail -> tag, a tag
found again after a restart, case studies exported, filters, QA detail, SQL console, compare, help, palette, keys."""

from __future__ import annotations

import re

from engine.analysis.cases import case_studies, case_studies_markdown, run_completeness
from engine.analysis.pages import ExampleFilter, query_page
from engine.analysis.regions import Bounds
from engine.analysis.runs import get_run
from storage.catalog import open_catalog
from tests.tui_helpers import make_app, screen_text, settle
from tui_app.config import Settings, load_settings
from tui_app.screens.cases import CasesScreen
from tui_app.screens.compare import CompareScreen
from tui_app.screens.datamap import DataMapScreen
from tui_app.screens.detail import DetailScreen
from tui_app.screens.examples import PAGE_SIZE, ExamplesScreen
from tui_app.screens.help import HelpScreen
from tui_app.screens.home import HomeScreen
from tui_app.screens.sql import SqlScreen

SIZE = (120, 36)

pytest_plugins = ["tests.tui_fixtures"]  # the tui_ws fixture


def cells(table, row: int) -> list[str]:  # noqa: ANN001
    return [str(c) for c in table.get_row_at(row)]


def sql_count(ws, where: str, run_id: str = "sst2-run") -> int:  # noqa: ANN001
    with open_catalog(ws) as con:
        return con.execute(
            f"SELECT count(*) FROM example_metrics WHERE run_id = ? AND ({where})", [run_id]
        ).fetchone()[0]


async def test_map_boundary_region_examples_detail_tag_and_restart(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "sst2-run" in screen_text(app) and "accuracy 0.812" in screen_text(app)
        await pilot.press("m")  # the runs table has the cursor on the first run: sst2-run
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DataMapScreen) and screen.run_id == "sst2-run"
        before = dict(screen.counts)
        assert sum(before.values()) == 872 and all(before.values())
        # the boundaries are fitted to the run (engine.analysis.bounds): the top third is ambiguous
        assert screen.fitted == screen.bounds
        fitted = screen.bounds.cartography
        assert before["ambiguous"] == sql_count(tui_ws, f"variability >= {fitted.ambiguous_variability!r}")
        assert abs(before["ambiguous"] - 872 / 3) < 872 * 0.02
        assert re.search(rf"ambiguous\s+{before['ambiguous']:,}\s", screen_text(app))
        assert "(fitted to the run)" in screen_text(app)
        # the selected region's label mix, against all examples: counts as the catalog has them
        assert screen.mix is not None
        text = screen_text(app)
        assert "labels in easy (vs all)" in text
        for label in screen.mix.labels:
            n = sql_count(
                tui_ws,
                f"variability < {fitted.ambiguous_variability!r} AND confidence >= {fitted.easy_confidence!r} "
                f"AND example_id IN (SELECT example_id FROM examples WHERE dataset = 'sst2-dev' "
                f"AND coalesce(label_name, label::VARCHAR) = '{label}')",
            )
            assert re.search(rf"{re.escape(label[:10])}\s+{n:,}\s", text), (label, n, text)

        await pilot.press("right", "right", "right")  # ambiguous variability + 0.03
        await settle(app, pilot)
        after = dict(screen.counts)
        moved = round(fitted.ambiguous_variability + 0.03, 4)
        assert screen.bounds.cartography.ambiguous_variability == moved
        assert after["ambiguous"] == sql_count(tui_ws, f"variability >= {moved!r}") < before["ambiguous"]
        assert sum(after.values()) == 872
        text = screen_text(app)
        assert f"ambiguous var>={moved:g}" in text and "(moved)" in text
        assert re.search(rf"ambiguous\s+{after['ambiguous']:,}\s", text)

        await pilot.press("up")  # easy confidence + 0.05
        await settle(app, pilot)
        easy = round(fitted.easy_confidence + 0.05, 4)
        assert screen.counts["easy"] == sql_count(
            tui_ws, f"variability < {moved!r} AND confidence >= {easy!r}"
        )

        await pilot.press("2", "enter")  # the ambiguous region -> its examples
        await settle(app, pilot)
        examples = app.screen
        assert isinstance(examples, ExamplesScreen)
        assert examples.total == after["ambiguous"]
        assert examples.filter is not None and examples.filter.region == "ambiguous"
        text = screen_text(app)
        assert (
            "run/sst2-run/examples?cartography=ambiguous" in text
            and f"{after['ambiguous']:,} rows · page 1/" in text
        )
        table = examples.query_one("#examples")
        var_col = examples.columns.index("variability")
        region_col = examples.columns.index("region")
        for row in range(table.row_count):
            row_cells = cells(table, row)
            assert float(row_cells[var_col]) >= moved - 1e-3 and row_cells[region_col] == "ambiguous"
        first_id = cells(table, 0)[0]

        await pilot.press("enter")
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.example_id == first_id
        assert detail.detail is not None and len(detail.detail.trajectory) == 5
        text = screen_text(app)
        assert "trajectory: gold probability per epoch" in text
        for epoch in range(1, 6):  # shown from 1, as the CLI counts epochs
            assert f"epoch {epoch}: gold p" in text
        assert "variability" in text and "tags: (none" in text

        await pilot.press("t")
        await pilot.press(*"needs-review", "enter")
        await settle(app, pilot)
        assert "tags: needs-review" in screen_text(app)
        await pilot.press("a")
        await pilot.press(*"label looks wrong", "enter")
        await settle(app, pilot)
        assert "label looks wrong" in screen_text(app)
        assert not app.errors

    # A new app on the same workspace: the tag is in the catalog, and the tag filter finds the example.
    app2 = make_app(tui_ws)
    async with app2.run_test(size=SIZE) as pilot:
        await settle(app2, pilot)
        app2.open_examples(run_id="sst2-run")
        await settle(app2, pilot)
        examples = app2.screen
        assert isinstance(examples, ExamplesScreen) and examples.total == 872
        await pilot.press("t")
        await pilot.press(*"needs-review", "enter")
        await settle(app2, pilot)
        assert examples.total == 1 and "tag=needs-review" in screen_text(app2)
        await pilot.press("enter")
        await settle(app2, pilot)
        assert isinstance(app2.screen, DetailScreen) and app2.screen.example_id == first_id
        text = screen_text(app2)
        assert "tags: needs-review" in text and "label looks wrong" in text
        assert not app2.errors


async def test_case_studies_export(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_map("sst2-run")
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        cases = app.screen
        assert isinstance(cases, CasesScreen) and cases.run_id == "sst2-run"
        assert {r: len(v) for r, v in cases.studies.items()} == {"easy": 5, "ambiguous": 5, "hard": 5}
        await pilot.press("e")
        await settle(app, pilot)
        path = cases.last_export
        assert path is not None and path.is_file() and path.parent == tui_ws.root / "exports"
        assert path.name.startswith("case-studies-sst2-run-all-cartography-")
        text = path.read_text()
        assert text.startswith("# Case studies: run sst2-run\n")
        assert "Run: complete (done, 5 of 5 epochs)." in text
        assert "nearest the region's centre" in text
        for region in ("easy", "ambiguous", "hard"):
            assert f"## {region} (5 examples)" in text
            for row in cases.studies[region]:
                assert f"### {row['example_id']}" in text
                assert " ".join(str(row["text"]).split()) in text
        # every easy example is easy under the map's (fitted) bounds, every ambiguous one ambiguous
        b = cases.bounds.cartography
        assert b != Bounds().cartography  # fitted to the run, not the fixed defaults
        assert all(
            r["variability"] < b.ambiguous_variability and r["confidence"] >= b.easy_confidence
            for r in cases.studies["easy"]
        )
        assert all(r["variability"] >= b.ambiguous_variability for r in cases.studies["ambiguous"])

        await pilot.press("s")  # a seeded random sample
        await settle(app, pilot)
        await pilot.press("e")
        await settle(app, pilot)
        random_path = cases.last_export
        assert (
            random_path is not None and random_path != path and path.read_text() == text
        )  # never overwritten
        random_text = random_path.read_text()
        assert "random sample, seed 1" in random_text and random_text != text
        with open_catalog(tui_ws) as con:
            again = case_studies(con, "sst2-run", "sst2-dev", "cartography", cases.bounds, 5, "random", 1)
            run = get_run(con, "sst2-run")
        assert run is not None
        expected = case_studies_markdown(
            "sst2-run",
            "sst2-dev",
            "cartography",
            cases.bounds,
            "random",
            1,
            again,
            completeness=run_completeness(tui_ws, run),
        )
        assert re.sub(r"Exported [^\n]* UTC\.\n\n", "", random_text) == expected
        assert not app.errors


async def test_examples_filters_sort_and_paging(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_examples(run_id="sst2-run")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, ExamplesScreen) and screen.total == 872
        table = screen.query_one("#examples")
        assert table.row_count == PAGE_SIZE
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.page == 1 and "page=2" in screen_text(app) and cells(table, 0)[1] == str(PAGE_SIZE)
        # The pages either side were read ahead: the next key paints them without a query, and they are right.
        assert set(screen.prefetched) == {0, 2}
        await pilot.press("n")
        await settle(app, pilot)
        assert screen.page == 2 and screen.last_ms == 0.0 and cells(table, 0)[1] == str(2 * PAGE_SIZE)
        assert "page 3/18 · read ahead" in screen_text(app)
        assert [cells(table, r)[1] for r in range(table.row_count)] == [
            str(2 * PAGE_SIZE + r) for r in range(PAGE_SIZE)
        ]
        await pilot.press("p")
        await settle(app, pilot)
        assert screen.page == 1 and cells(table, 0)[1] == str(PAGE_SIZE) and "page=2" in screen_text(app)

        await pilot.press("w")
        await pilot.press(*"confidence < 0.3", "enter")
        await settle(app, pilot)
        assert screen.total == sql_count(tui_ws, "confidence < 0.3") and screen.page == 0
        assert "where=confidence < 0.3" in screen_text(app)

        await pilot.press("b")
        await pilot.press("1", "enter")
        await settle(app, pilot)
        with open_catalog(tui_ws) as con:
            expected = con.execute(
                """SELECT count(*) FROM example_metrics m JOIN examples e ON e.dataset = 'sst2-dev'
                   AND e.example_id = m.example_id WHERE m.run_id = 'sst2-run' AND m.confidence < 0.3 AND e.label = 1"""
            ).fetchone()[0]
        assert screen.total == expected and "label=1" in screen_text(app)

        await pilot.press("x")  # clear, then a text search
        await settle(app, pilot)
        assert screen.total == 872
        await pilot.press("slash")
        await pilot.press(*"charming", "enter")
        await settle(app, pilot)
        assert 0 < screen.total < 20
        text_col = screen.columns.index("text")
        assert all(
            "charming" in cells(table, r)[text_col].lower() or cells(table, r)[text_col].endswith("…")
            for r in range(table.row_count)
        )

        await pilot.press("x", "f")
        await pilot.press(*"variability 0.1..0.2", "enter")
        await settle(app, pilot)
        assert screen.total == sql_count(tui_ws, "variability BETWEEN 0.1 AND 0.2")
        await pilot.press("s", "s", "s")  # row_idx -> label -> confidence -> variability
        await settle(app, pilot)
        await pilot.press("d")  # descending
        await settle(app, pilot)
        assert screen.filter.sort == "variability" and screen.filter.descending
        var_col = screen.columns.index("variability")
        values = [float(cells(table, r)[var_col]) for r in range(table.row_count)]
        assert values == sorted(values, reverse=True) and values[0] <= 0.2
        assert "sort=-variability" in screen_text(app)

        await pilot.press("g")  # region filter on top: easy, under the run's fitted boundaries
        await settle(app, pilot)
        b = screen.filter.map_bounds.cartography
        assert b != Bounds().cartography
        assert screen.total == sql_count(
            tui_ws,
            "variability BETWEEN 0.1 AND 0.2 AND "
            f"variability < {b.ambiguous_variability!r} AND confidence >= {b.easy_confidence!r}",
        )
        assert "easy: labels: " in screen_text(app)  # the region's label mix

        await pilot.press("w")
        await pilot.press(*"no_such_column > 1", "enter")
        await settle(app, pilot)
        assert app.errors and "no_such_column" in app.errors[-1]
        assert isinstance(app.screen, ExamplesScreen)  # an error is a notification, the app goes on


async def test_qa_detail_highlights_gold_and_predicted_spans(tui_ws):  # noqa: ANN001
    with open_catalog(tui_ws) as con:
        flt = ExampleFilter(
            dataset="squad-dev", run_id="squad-run", where="correctness > 0 AND correctness < 1"
        )
        page = query_page(con, flt, 1, 0)
    example_id = page.rows[0][0]
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.open_detail("squad-dev", example_id, "squad-run")
        await settle(app, pilot)
        detail = app.screen.detail
        assert detail is not None and detail.task == "qa" and len(detail.trajectory) == 4
        text = screen_text(app)
        assert "question:" in text and "context:" in text
        assert " gold " in text and "pred " in text and "epoch" in text
        assert "adv loss" in text  # adversarial dynamics were recorded for this run
        gold = detail.answers[0]["text"]
        assert gold in text
        body = app.screen.body_text
        styles = {str(span.style) for span in body.spans}
        assert any("green3" in s for s in styles)  # the gold answer
        assert len(styles) >= 2  # and at least one predicted span in another colour
        assert not app.errors


async def test_sql_console_compare_help_and_palette(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("s")
        await settle(app, pilot)
        assert isinstance(app.screen, SqlScreen)
        await pilot.press(*"SELECT count(*) AS n FROM examples WHERE dataset = 'sst2-dev'", "f5")
        await settle(app, pilot)
        assert "872" in screen_text(app) and "1 row(s)" in screen_text(app)
        await pilot.press("e")
        app.screen.query_one("#sql").text = "DELETE FROM annotations"
        await pilot.press("f5")
        await settle(app, pilot)
        assert app.errors and "read-only" in app.errors[-1]
        await pilot.press("escape", "escape")
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)

        await pilot.press("v")
        await settle(app, pilot)
        assert isinstance(app.screen, CompareScreen)
        text = screen_text(app)
        assert (
            "sst2-run" in text
            and "0.812" in text
            and "0.774" in text
            and "accuracy by evaluation set" in text
        )
        await pilot.press("m")  # next metric: exact (SQuAD)
        await settle(app, pilot)
        assert app.screen.metric == "exact" and "41.3" in screen_text(app)
        await pilot.press("escape")
        await settle(app, pilot)

        app.open_map("sst2-run")
        await settle(app, pilot)
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "datamap.x_up" in text and "Examples" in text and "nav.back" in text
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.screen, DataMapScreen)

        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Data map",
            "Examples",
            "Case studies",
            "Jobs",
            "New job",
            "Compare runs",
            "SQL console",
            "DataMap: Case studies",
            "DataMap: Examples",
        ):
            assert title in titles
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"SQL console")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, SqlScreen)
        assert not [e for e in app.errors if "read-only" not in e]


async def test_keys_remapped_from_the_config_file(tui_ws, tmp_path, monkeypatch):  # noqa: ANN001
    config = tmp_path / "config.toml"
    config.write_text('theme = "textual-light"\n[keymap]\n"datamap.x_up" = "L"\n"home.map" = "M"\n')
    monkeypatch.setenv("DYNASCOPE_CONFIG", str(config))
    settings = load_settings()
    assert settings.keymap == {"datamap.x_up": "L", "home.map": "M"} and settings.theme == "textual-light"
    app = make_app(tui_ws, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert app.theme == "textual-light"
        await pilot.press("M")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DataMapScreen)
        fitted = screen.bounds.cartography.ambiguous_variability
        await pilot.press("L")
        await settle(app, pilot)
        assert screen.bounds.cartography.ambiguous_variability == round(fitted + 0.01, 4)
    broken = tmp_path / "broken.toml"
    broken.write_text("[keymap\n")
    assert load_settings(broken).problems and load_settings(broken).keymap == {}
    assert Settings().keymap == {}


async def test_usable_at_80x24(tui_ws):  # noqa: ANN001
    app = make_app(tui_ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        for key, screen_type, needle in (
            ("m", DataMapScreen, "easy"),
            ("e", ExamplesScreen, "rows · page"),
            ("c", CasesScreen, "ambiguous"),
            ("v", CompareScreen, "sst2-run"),
        ):
            await pilot.press(key)
            await settle(app, pilot)
            assert isinstance(app.screen, screen_type)
            text = screen_text(app)
            assert needle in text and len(text.splitlines()) == 24
            await pilot.press("escape")
            await settle(app, pilot)
        assert not app.errors
