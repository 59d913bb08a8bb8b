"""Region boundaries fitted to the run (engine.analysis.bounds) and the label mix of regions and selections, on
real runs: a 4-class task (AG News, from ../shared/data) and SST-2 trained with the demo run's recipe (fewer
examples, so the file runs in a few minutes on 2 cores).

On both, no default region is empty or holds more than 80% of the examples, and the rule printed with the map
recomputes its counts from `dynascope metrics --json`. Selections report their label counts; a balanced one's
counts differ by at most one between labels.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from engine.demo import DEMO_RUN
from storage.workspace import Workspace
from tests.conftest import run_cli

N_EXAMPLES = 200
RULE = re.compile(
    r"regions: ambiguous if variability >= (?P<band>[0-9.e-]+) \(.*?\); "
    r"else easy if confidence >= (?P<split>[0-9.e-]+) \(.*?\), hard below"
)


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, data_dir) -> tuple[Workspace, dict[str, str]]:  # noqa: ANN001
    ws = Workspace(tmp_path_factory.mktemp("fitted") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "ag_news" / "test.csv.gz"), "--name", "ag").code == 0
    assert run_cli(ws, "import", str(data_dir / "sst2" / "train.tsv.gz"), "--name", "sst2-train").code == 0
    recipe = {k: DEMO_RUN[k] for k in ("max_length", "epochs", "batch_size", "lr", "seed")}
    options = [x for k, v in recipe.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    runs = {}
    for name, dataset in (("ag", "ag"), ("sst2", "sst2-train")):
        result = run_cli(ws, "train", dataset, "--limit", str(N_EXAMPLES), *options, "--json")
        assert result.code == 0, result.stderr
        runs[name] = result.json()["run_id"]
    return ws, runs


def recount(rows: list[dict], band: float, split: float) -> dict[str, int]:
    """The map's regions by the printed rule, from the per-example metrics."""
    counts = Counter(
        "ambiguous" if r["variability"] >= band else "easy" if r["confidence"] >= split else "hard"
        for r in rows
    )
    return {region: counts.get(region, 0) for region in ("easy", "ambiguous", "hard")}


@pytest.mark.parametrize("task", ["ag", "sst2"])
def test_default_regions_fit_the_run_and_the_printed_rule_recounts_them(real_runs, task):  # noqa: ANN001
    ws, runs = real_runs
    run_id = runs[task]
    as_json = run_cli(ws, "map", run_id, "--json")
    assert as_json.code == 0, as_json.stderr
    doc = as_json.json()
    assert doc["bounds_fitted"] is True
    regions = doc["regions"]
    total = sum(regions.values())
    assert total == N_EXAMPLES
    for n in regions.values():
        assert 0 < n <= 0.8 * total, (task, regions, doc["rule"])

    text = run_cli(ws, "map", run_id)
    assert text.code == 0, text.stderr
    match = RULE.search(text.stdout)
    assert match, text.stdout
    band, split = float(match["band"]), float(match["split"])
    assert (band, split) == (doc["bounds"]["ambiguous_variability"], doc["bounds"]["easy_confidence"])
    chance = "1/4" if task == "ag" else "1/2"
    assert chance in match.group(0)  # the split says how it relates to chance

    metrics = run_cli(ws, "metrics", run_id, "--json")
    assert metrics.code == 0, metrics.stderr
    rows = metrics.json()
    assert recount(rows, band, split) == regions
    # `metrics` names each example's region by the same fitted rule
    assert dict(Counter(r["region"] for r in rows)) == {k: v for k, v in regions.items() if v}
    # the label mix: per region, the counts add up to the region; over all, to the examples
    mix = doc["label_mix"]
    assert sum(mix["all"].values()) == total
    for region, n in regions.items():
        assert sum(mix[region].values()) == n
    assert len(mix["all"]) == (4 if task == "ag" else 2)

    # fixed numbers stay available
    fixed = run_cli(ws, "map", run_id, "--bounds", "0.2,0.5", "--json").json()
    assert fixed["bounds_fitted"] is False and fixed["bounds"] == {
        "ambiguous_variability": 0.2,
        "easy_confidence": 0.5,
    }
    assert fixed["regions"] == recount(rows, 0.2, 0.5)


def test_selections_report_their_label_counts_and_balance_them(real_runs):  # noqa: ANN001
    ws, runs = real_runs
    run_id = runs["ag"]
    balanced = run_cli(
        ws,
        "select",
        run_id,
        "--region",
        "hard",
        "--fraction",
        "0.4",
        "--balanced",
        "--name",
        "ag-hard-bal",
        "--json",
    )
    assert balanced.code == 0, balanced.stderr
    result = balanced.json()
    counts = result["per_group"]
    assert len(counts) == 4 and sum(counts.values()) == result["n_examples"] == 80
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert sum(result["candidates_per_group"].values()) == N_EXAMPLES

    plain = run_cli(ws, "select", run_id, "--region", "ambiguous", "--fraction", "0.33", "--name", "ag-amb")
    assert plain.code == 0, plain.stderr
    line = next(x for x in plain.stdout.splitlines() if "labels: " in x)
    # the reported counts are the new dataset's
    rows = run_cli(ws, "examples", "ag-amb", "--limit", "1000", "--json").json()
    stored = Counter(str(r["label_name"] if r["label_name"] is not None else r["label"]) for r in rows)
    assert sum(stored.values()) == 66
    for label, n in stored.items():
        assert f"{label}: {n} (" in line, (line, stored)
    if len(stored) < 4:  # an unbalanced selection that leaves a label out says so, and what to do
        assert "no example of" in line and "--balanced" in plain.stdout
