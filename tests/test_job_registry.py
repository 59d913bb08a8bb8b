"""The job registry is the one home of every job setting: the CLI's options, the app's form (fields, defaults,
validation) and run creation all derive from it, and agree, for a classification and a QA dataset."""

from __future__ import annotations

import click
from click.testing import CliRunner

from engine.cli.main import cli
from engine.errors import BadInputError
from engine.jobs import create_run
from engine.jobs.registry import KINDS
from engine.jobs.spec import number_text
from storage.artifacts import read_config
from tests.tui_helpers import make_app, settle
from tui_app.screens.jobs import JobForm, text_of

pytest_plugins = ["tests.tui_fixtures"]  # tui_ws: sst2-dev (classification) and squad-dev (QA) with runs

SIZE = (120, 36)
COMMANDS = {name: kind.command for name, kind in KINDS.items()}  # generated from the registry
JOB_OPTIONS = {"detach", "resume_run", "workspace", "as_json"}  # how a job is started, not what it is


def test_cli_options_are_the_registry_fields():
    for kind_name, command_name in COMMANDS.items():
        kind = KINDS[kind_name]
        command = cli.commands[command_name]
        params = {p.name: p for p in command.params}
        assert set(params) - JOB_OPTIONS == {f.name for f in kind.fields}, kind_name
        for f in kind.fields:
            param = params[f.name]
            if f.argument:
                assert isinstance(param, click.Argument)
                continue
            assert isinstance(param, click.Option) and f.flag in param.opts
            assert param.default is None  # absent means "the kind's default" (or the source run's)
            if f.choices:
                assert isinstance(param.type, click.Choice) and tuple(param.type.choices) == f.choices
            assert param.help == f.help_text()
            if f.minimum is not None:
                assert number_text(f.minimum) in (param.help or "")
            default = f.default_for("classification")
            if default not in (None, False) and not kind_name == "retrain":
                assert f"default: {default}" in (param.help or "") or "for classification" in (
                    param.help or ""
                )


def test_no_other_module_lists_the_job_kinds():
    import tui_app.screens.jobs as screen

    assert not hasattr(screen, "JOB_KINDS") and not hasattr(screen, "DEFAULTS")
    assert list(KINDS) == ["train", "retrain", "evaluate", "attack", "generate"]


async def open_form(app, pilot, preset):  # noqa: ANN001, ANN201
    app.open_jobs(new=True, preset=preset)
    await settle(app, pilot, rounds=4)
    form = app.screen
    assert isinstance(form, JobForm), type(form)
    return form


def created_config(ws, values):  # noqa: ANN001, ANN201
    """What run creation makes of the same request with every setting left out (nothing is launched)."""
    return read_config(ws.run_dir(create_run(ws, values)))


async def test_form_defaults_equal_run_creation_for_classification_and_qa(tui_ws):  # noqa: ANN001
    train = KINDS["train"]
    # the run name has no default (a run without one is shown by its id)
    settings = [f for f in train.fields if f.form and f.name not in ("dataset", "eval", "name")]
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, {"kind": "train", "dataset": "sst2-dev"})
        cls_config = created_config(tui_ws, {"kind": "train", "dataset": "sst2-dev"})
        for f in settings:
            assert form.value(f.name) == text_of(cls_config[f.name]), f.name
        assert form.value("max_length") == "128"

        # choosing a QA dataset lays the form out again with the QA defaults: those of the CLI
        form.query_one("#f-dataset").value = "squad-dev"
        await settle(app, pilot, rounds=4)
        form = app.screen
        assert isinstance(form, JobForm)
        # the widget that had focus was replaced: its successor has it, so keys still reach the form
        assert app.focused is form.query_one("#f-dataset")
        qa_config = created_config(tui_ws, {"kind": "train", "dataset": "squad-dev"})
        for f in settings:
            assert form.value(f.name) == text_of(qa_config[f.name]), f.name
        assert (form.value("max_length"), form.value("batch_size"), form.value("lr")) == (
            "384",
            "16",
            "5e-05",
        )
        assert qa_config["max_length"] == 384 and cls_config["max_length"] == 128


async def test_retrain_form_carries_the_source_runs_settings(tui_ws):  # noqa: ANN001
    source = read_config(tui_ws.run_dir("sst2-run"))
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, {"kind": "retrain", "run": "sst2-run", "region": "ambiguous"})
        assert form.value("epochs") == str(source["epochs"]) == "5"
        assert form.value("seed") == str(source["seed"]) == "7"
        assert form.value("model") == source["model"]
        spec = form.collect()
    config = created_config(tui_ws, spec)
    assert (config["epochs"], config["seed"], config["model"]) == (5, 7, source["model"])
    assert config["source_run"] == "sst2-run" and config["subset"] == config["selection"]["name"]


async def test_form_and_cli_refuse_out_of_bounds_values_with_the_same_message(tui_ws):  # noqa: ANN001
    train = KINDS["train"]
    bounded = [f for f in train.fields if f.minimum is not None and f.form]
    assert {"epochs", "max_length", "batch_size", "lr"} <= {f.name for f in bounded}
    runner = CliRunner()
    runs_before = set(tui_ws.run_ids())
    app = make_app(tui_ws)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        form = await open_form(app, pilot, {"kind": "train", "dataset": "sst2-dev"})
        for f in bounded:
            low = f.minimum if f.exclusive_minimum else f.minimum - 1
            bad = str(int(low)) if f.type is int else str(low)
            form.query_one(f"#f-{f.name}").value = bad
            try:
                form.collect()
                raise AssertionError(f"the form accepted {f.name}={bad}")
            except BadInputError as exc:
                message = str(exc)
            form.query_one(f"#f-{f.name}").value = text_of(f.default_for("classification"))
            result = runner.invoke(
                cli,
                ["--workspace", str(tui_ws.root), "train", "sst2-dev", f.flag, bad],
                catch_exceptions=False,
            )
            assert result.exit_code == 2, (f.name, result.output)
            assert message in " ".join(result.output.split()), (message, result.output)
    assert set(tui_ws.run_ids()) == runs_before  # a refused request creates no run folder


def test_sync_folds_in_only_what_the_job_kind_declares(tui_ws):  # noqa: ANN001
    """A kind's `artifacts` go into config.json; sync registers those and nothing else from the run folder."""
    from storage.artifacts import write_config
    from storage.catalog import open_catalog
    from storage.sync import sync
    from tests.tui_helpers import write_run

    with open_catalog(tui_ws) as con:
        ids = [
            r[0]
            for r in con.execute(
                "SELECT example_id FROM examples WHERE dataset = 'sst2-dev' LIMIT 50"
            ).fetchall()
        ]
    for run_id, artifacts in (("declares-eval", ["eval"]), ("declares-dynamics", ["dynamics", "eval"])):
        write_run(tui_ws, run_id, "sst2-dev", ids, epochs=2)
        config = read_config(tui_ws.run_dir(run_id))
        write_config(tui_ws.run_dir(run_id), {**config, "artifacts": artifacts})
    with open_catalog(tui_ws) as con:
        sync(tui_ws, con)
        counts = dict(
            con.execute(
                """SELECT r.run_id, (SELECT count(*) FROM example_metrics m WHERE m.run_id = r.run_id)
                   FROM runs r WHERE r.run_id LIKE 'declares-%'"""
            ).fetchall()
        )
    assert counts == {"declares-eval": 0, "declares-dynamics": 50}
    assert all(set(k.artifacts) <= {"dynamics", "eval", "attack", "generated"} for k in KINDS.values())


def test_form_conditions_name_a_choice_field_of_their_kind() -> None:
    """A field shown only for some values of another (`Field.when`) names a drop-down of the same kind and values it
    offers: a typo would hide the field from the form for good."""
    from engine.jobs.registry import KINDS

    conditional = 0
    for kind in KINDS.values():
        for f in kind.fields:
            if f.when is None:
                continue
            conditional += 1
            name, values = f.when
            controller = kind.field(name)
            assert controller.choices and controller.form, (kind.name, f.name)
            assert values and set(values) <= set(controller.choices), (kind.name, f.name, values)
    assert conditional  # the generate kind's pipeline-specific fields at least


def test_the_attack_form_shows_only_the_chosen_method_s_settings() -> None:
    """A QA attack's form asks nothing about word swaps or PGD; each classification method shows its own."""
    from tui_app.screens.jobs import FormContext, JobForm

    context = FormContext(datasets={"squad": "qa", "sst2": "classification"}, runs=["r1"])
    shown = {
        method: [f.name for f in JobForm(context, preset={"kind": "attack", "method": method}).form_fields()]
        for method in ("pgd", "word-swap", "char-swap", "negation", "entity-rename")
    }
    common = ["run", "dataset", "method", "limit"]
    assert shown["pgd"] == [*common, "max_queries", "seed", "steps", "budget"]
    assert shown["word-swap"] == [*common, "max_queries", "seed", "max_change", "min_similarity"]
    assert shown["char-swap"] == [*common, "max_queries", "seed", "max_change"]
    assert shown["negation"] == shown["entity-rename"] == [*common, "seed"]
