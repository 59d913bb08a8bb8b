"""`dynascope retrain` on a real small run (the offline MiniLM on real SST-2 rows): it trains on exactly the
examples `dynascope select` picks, inherits the source run's settings unless overridden, and runs, jobs and
home say what it trained on and where it came from. Home shows the training accuracy the job wrote."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
import pytest

from engine.jobs import list_jobs
from storage.artifacts import read_config, read_events
from tests.conftest import run_cli
from tests.tui_helpers import make_app, screen_text, settle
from tui_app.screens.home import HomeScreen

N = 96


@pytest.fixture(scope="module")
def source(tmp_path_factory, data_dir):  # noqa: ANN001, ANN201
    from storage.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("retrain") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2-dev").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2-dev",
        "--limit",
        str(N),
        "--max-length",
        "48",
        "--epochs",
        "2",
        "--batch-size",
        "12",
        "--lr",
        "1e-4",
        "--seed",
        "5",
        "--json",
    )
    assert result.code == 0, result.stderr
    return ws, result.json()["run_id"]


def selected_ids(ws, dataset: str) -> list[str]:  # noqa: ANN001
    result = run_cli(ws, "examples", dataset, "--limit", "100000", "--json")
    assert result.code == 0, result.stderr
    return sorted(row["example_id"] for row in result.json())


def trained_ids(ws, run_id: str) -> list[str]:  # noqa: ANN001
    return sorted(
        pq.read_table(ws.run_dir(run_id) / "inputs" / "train.parquet").column("example_id").to_pylist()
    )


def test_retrain_trains_on_the_selection_with_the_source_settings(source):  # noqa: ANN001
    ws, run_id = source
    result = run_cli(
        ws, "retrain", run_id, "--region", "ambiguous", "--fraction", "0.25", "--epochs", "1", "--json"
    )
    assert result.code == 0, result.stderr
    retrain_id = result.json()["run_id"]
    assert result.json()["status"] == "done"

    # the same selection made by `dynascope select` holds exactly the examples the retrain trained on
    check = run_cli(
        ws, "select", run_id, "--region", "ambiguous", "--fraction", "0.25", "--name", "check", "--json"
    )
    assert check.code == 0, check.stderr
    config = read_config(ws.run_dir(retrain_id))
    assert config is not None
    subset = config["subset"]
    assert trained_ids(ws, retrain_id) == selected_ids(ws, "check") == selected_ids(ws, subset)
    assert len(trained_ids(ws, retrain_id)) == N // 4

    # inherited: everything the user did not override; overridden: epochs
    parent = read_config(ws.run_dir(run_id))
    assert parent is not None
    for key in ("model", "max_length", "batch_size", "lr", "seed", "dynamics", "objective", "warmup_ratio"):
        assert config[key] == parent[key], key
    assert (config["lr"], config["max_length"], config["batch_size"], config["seed"]) == (1e-4, 48, 12, 5)
    assert config["epochs"] == 1 and parent["epochs"] == 2

    runs = {r["run_id"]: r for r in run_cli(ws, "runs", "--json").json()}
    row = runs[retrain_id]
    assert row["kind"] == "retrain" and row["subset"] == subset and row["trained_on"] == subset
    assert row["source_run"] == run_id and row["dataset"] == "sst2-dev"
    assert row["origin"] == f"ambiguous 25% of {run_id}"
    assert row["epochs_done"] == 1 and row["status"] == "done"
    job = next(j for j in list_jobs(ws) if j["run_id"] == retrain_id)
    assert job["dataset"] == subset and job["origin"] == row["origin"]

    # with map boundaries instead of a ranking: every example the map puts in the region
    with_bounds = run_cli(
        ws, "retrain", run_id, "--region", "hard", "--bounds", "0.5,0.6", "--epochs", "1", "--json"
    )
    assert with_bounds.code == 0, with_bounds.stderr
    bounds_run = with_bounds.json()["run_id"]
    con = duckdb.connect(str(ws.catalog_path), read_only=True)
    try:
        expected = sorted(
            r[0]
            for r in con.execute(
                "SELECT example_id FROM example_metrics WHERE run_id = ? AND variability < 0.5 AND confidence < 0.6",
                [run_id],
            ).fetchall()
        )
    finally:
        con.close()
    assert expected and trained_ids(ws, bounds_run) == expected
    assert read_config(ws.run_dir(bounds_run))["selection"]["bounds"] == "0.5,0.6"  # type: ignore[index]

    # bad input: clear message, nothing created
    before = set(ws.run_ids())
    both = run_cli(ws, "retrain", run_id, "--region", "hard", "--bounds", "0.5,0.6", "--fraction", "0.2")
    assert both.code == 2 and "not both" in both.stderr
    unknown = run_cli(ws, "retrain", "no-such-run", "--region", "hard", "--fraction", "0.2")
    assert unknown.code == 2 and "no run named 'no-such-run'" in unknown.stderr
    assert set(ws.run_ids()) == before


async def test_home_shows_the_training_accuracy_of_a_real_run(source):  # noqa: ANN001
    ws, run_id = source
    epoch_ends = [e for e in read_events(ws.run_dir(run_id)) if e.get("type") == "epoch_end"]
    accuracy = epoch_ends[-1]["metrics"]["train_accuracy"]
    app = make_app(ws)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, HomeScreen)
        assert f"train_accuracy {accuracy:.3f}" in screen_text(app), screen_text(app)
