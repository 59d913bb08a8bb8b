"""Mitigation training (Zheng et al., seed 003 section 4.2): Flooding or label smoothing on the p% most robust
examples of an earlier run, the plain cross-entropy on the others.

- On real logits of the real offline model (SST-2, AG News, SQuAD windows): the chosen examples' per-unit losses
  are `|ce - b| + b` (flooding) or the cross-entropy against `y (1 - alpha) + alpha / C` (label smoothing, computed
  by hand), the others' equal the cross-entropy exactly; flooding's gradient flips sign below the level.
- End to end through the CLI: a source run with adversarial dynamics, then `train --mitigation flooding
  --mitigation-from SOURCE --mitigation-fraction 0.5`: config.json and the run folder name exactly the 50%
  lowest-sensitivity examples of `dynascope metrics SOURCE --json`, and the losses the job recorded are flooded
  for those examples and plain for the others. A retrain mitigates from its source run by default.
- Bad requests exit 2 with a message that names the problem, quickly, and create nothing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from engine.tasks import Batch
from engine.training.config import DEFAULT_MODEL, TrainConfig
from engine.training.losses import CrossEntropy, Flooding, LabelSmoothing, Selective, per_unit
from engine.training.model import load_tokenizer
from engine.training.objectives import MITIGATED_IDS, compute, for_run, get_objective
from storage.artifacts import read_config, read_events, shard_scan_sql
from storage.workspace import Workspace
from tests.conftest import run_cli
from tests.test_loss_seam import classification_setup, qa_setup, squad_subset
from tests.tui_helpers import write_run

N = 32  # training examples of the end-to-end runs
TINY = ("--limit", str(N), "--max-length", "32", "--epochs", "1", "--batch-size", "8", "--seed", "3")


# ---- the losses, on real logits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def sst2(tokenizer, data_dir):  # noqa: ANN001, ANN201
    return classification_setup(tokenizer, str(data_dir / "sst2" / "dev.tsv"), "sst2")


@pytest.fixture(scope="module")
def ag_news(tokenizer, data_dir):  # noqa: ANN001, ANN201
    return classification_setup(tokenizer, str(data_dir / "ag_news" / "test.csv.gz"), "ag-news")


@pytest.fixture(scope="module")
def squad(tokenizer, data_dir):  # noqa: ANN001, ANN201
    return qa_setup(tokenizer, squad_subset(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", 4, 0))


def every_other(batch: Batch) -> tuple[set[str], torch.Tensor]:
    """Half of the batch's examples chosen, and the per-unit mask of their units."""
    chosen = {eid for i, eid in enumerate(batch.example_ids) if i % 2 == 0}
    mask = per_unit(batch, [eid in chosen for eid in batch.example_ids])
    assert mask.any() and not mask.all()
    return chosen, mask


@torch.no_grad()
def test_flooding_reaches_exactly_the_chosen_examples(sst2):  # noqa: ANN001
    adapter, model, batch = sst2
    logits = adapter.forward(model, batch)
    ce = F.cross_entropy(logits["logits"], batch.tensors["labels"], reduction="none")
    level = float(ce.median())  # some losses below the level (flooded up), some above (unchanged)
    chosen, mask = every_other(batch)
    losses = Selective(CrossEntropy(), Flooding(level), ids=chosen).per_unit_loss(adapter, batch, logits)
    expected = torch.where(mask, (ce - level).abs() + level, ce)
    torch.testing.assert_close(losses, expected, rtol=0, atol=1e-6)
    assert torch.equal(losses[~mask], CrossEntropy().per_unit_loss(adapter, batch, logits)[~mask])
    flooded_below = mask & (ce < level)
    assert flooded_below.any(), "no chosen example below the level: the formula was not exercised"
    torch.testing.assert_close(losses[flooded_below], 2 * level - ce[flooded_below])
    # the same through the seam, as the training step calls it
    out = compute(adapter, Selective(CrossEntropy(), Flooding(level), ids=chosen), model, batch)
    torch.testing.assert_close(out.losses, expected, rtol=0, atol=1e-6)


def test_flooding_turns_the_gradient_around_below_the_level(sst2):  # noqa: ANN001
    adapter, model, batch = sst2
    with torch.no_grad():
        logits = adapter.forward(model, batch)["logits"]
    grads = {}
    for name, objective in (("ce", CrossEntropy()), ("flood", Flooding(10.0))):  # every loss below 10
        x = logits.clone().requires_grad_(True)
        objective.per_unit_loss(adapter, batch, {"logits": x}).sum().backward()
        grads[name] = x.grad
    torch.testing.assert_close(grads["flood"], -grads["ce"])


@pytest.mark.parametrize("task", ["sst2", "ag_news"])
@torch.no_grad()
def test_label_smoothing_matches_a_hand_computation(task, request):  # noqa: ANN001
    adapter, model, batch = request.getfixturevalue(task)
    logits = adapter.forward(model, batch)
    z, y = logits["logits"].double(), batch.tensors["labels"]
    n_classes = z.shape[1]
    alpha = 0.4
    chosen, mask = every_other(batch)
    losses = Selective(CrossEntropy(), LabelSmoothing(alpha), ids=chosen).per_unit_loss(
        adapter, batch, logits
    )
    # by hand: the paper's targets y (1 - alpha) + alpha / C, then the cross-entropy with the log-softmax
    hand = []
    for i in range(len(y)):
        logp = [float(z[i, c] - torch.logsumexp(z[i], 0)) for c in range(n_classes)]
        target = [(1 - alpha) * (c == int(y[i])) + alpha / n_classes for c in range(n_classes)]
        smoothed = -sum(t * lp for t, lp in zip(target, logp, strict=True))
        hand.append(smoothed if mask[i] else -logp[int(y[i])])
    torch.testing.assert_close(losses.double(), torch.tensor(hand, dtype=torch.float64), rtol=0, atol=1e-5)
    # and torch's own label smoothing agrees (same alpha convention)
    ls = F.cross_entropy(logits["logits"], y, reduction="none", label_smoothing=alpha)
    torch.testing.assert_close(losses[mask], ls[mask], rtol=0, atol=1e-6)
    # the default alpha puts 0.8 on the gold label of a 2-class task, as the authors' released code does
    default = TrainConfig.__dataclass_fields__["smoothing"].default
    assert math.isclose(1 - default + default / 2, 0.8)


@torch.no_grad()
def test_qa_windows_of_a_chosen_question_are_regularised_and_no_others(squad):  # noqa: ANN001
    """QA: flooding on each window's loss (the mean of the start and end NLL); label smoothing over the window's
    tokens (C = its non-padding tokens, padding gets no target mass)."""
    adapter, model, batch = squad
    logits = adapter.forward(model, batch)
    ce = CrossEntropy().per_unit_loss(adapter, batch, logits)
    chosen, mask = every_other(batch)
    assert batch.n_units > batch.n_examples  # several windows per question
    level = float(ce.max()) + 1  # every window below the level
    flooded = Selective(CrossEntropy(), Flooding(level), ids=chosen).per_unit_loss(adapter, batch, logits)
    torch.testing.assert_close(flooded, torch.where(mask, 2 * level - ce, ce), rtol=0, atol=1e-5)

    alpha = 0.1
    smoothed = Selective(CrossEntropy(), LabelSmoothing(alpha), ids=chosen).per_unit_loss(
        adapter, batch, logits
    )
    valid = batch.tensors["attention_mask"].bool()
    expected = []
    for u in range(batch.n_units):
        per_head = []
        for key, gold in (("start_logits", "start_positions"), ("end_logits", "end_positions")):
            scores = logits[key][u][valid[u]].double()
            logp = scores - torch.logsumexp(scores, 0)
            target = torch.full_like(logp, alpha / len(logp))
            target[int(batch.tensors[gold][u])] += 1 - alpha
            per_head.append(
                float(-(target * logp).sum()) if mask[u] else float(-logp[int(batch.tensors[gold][u])])
            )
        expected.append(sum(per_head) / 2)
    torch.testing.assert_close(
        smoothed.double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-4
    )


def test_the_mitigation_objectives_are_registered_with_their_settings(tmp_path):  # noqa: ANN001
    assert get_objective("flooding").level == 0.2
    cfg = TrainConfig(dataset="d", task="classification", objective="flooding", flood_level=0.5)
    assert for_run(cfg, tmp_path).level == 0.5  # --objective flooding: every example (the paper's baseline)
    cfg = TrainConfig(dataset="d", task="classification", mitigation="label-smoothing", mitigation_from="r")
    with pytest.raises(FileNotFoundError, match="mitigated.parquet"):
        for_run(cfg, tmp_path)


def test_the_settings_reach_the_cli_and_the_app_form_from_one_place():
    from engine.jobs.retrain import RETRAIN
    from engine.jobs.train import TRAIN

    fields = {f.name: f for f in TRAIN.fields}
    assert fields["mitigation"].choices == ("none", "flooding", "label-smoothing")
    assert fields["mitigation"].default == "none" and fields["mitigation_fraction"].default == 0.3
    assert (fields["flood_level"].default, fields["smoothing"].default) == (0.2, 0.4)
    assert (
        fields["mitigation_fraction"].flag == "--mitigation-fraction" and fields["mitigation_fraction"].form
    )
    assert (
        "authors' code" in fields["smoothing"].help and "y(1 - alpha) + alpha/C" in fields["smoothing"].help
    )
    inherited = {f.name: f for f in RETRAIN.fields}
    assert all(inherited[n].default is None for n in ("mitigation", "mitigation_from", "mitigation_fraction"))


# ---- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):  # noqa: ANN001, ANN201
    """SST-2 dev imported; a real source run with adversarial dynamics; a plain run without them."""
    ws = Workspace(tmp_path_factory.mktemp("mitigation") / "ws").create()
    assert run_cli(ws, "import", str(data_dir / "sst2" / "dev.tsv"), "--name", "sst2-dev").code == 0
    source = run_cli(ws, "train", "sst2-dev", *TINY, "--adversarial-dynamics", "--adv-steps", "1", "--json")
    assert source.code == 0, source.stderr
    plain_ids = [str(i) for i in range(N)]
    write_run(ws, "plain-run", "sst2-dev", plain_ids, epochs=2, adversarial=False)
    return ws, source.json()["run_id"]


def lowest_sensitivity(ws: Workspace, run_id: str, fraction: float) -> list[str]:
    """A recount from `dynascope metrics RUN --json`: the floor(fraction * n) lowest sensitivities (ties by id)."""
    result = run_cli(ws, "metrics", run_id, "--json")
    assert result.code == 0, result.stderr
    rows = [r for r in result.json() if r.get("sensitivity") is not None]
    assert len(rows) == N
    rows.sort(key=lambda r: (r["sensitivity"], r["example_id"]))
    return [r["example_id"] for r in rows[: math.floor(fraction * len(rows))]]


def recorded(run_dir: Path) -> dict[str, tuple[float, float]]:
    """example id -> (gold probability, loss) the job recorded from its training step (inline dynamics)."""
    rows = duckdb.sql(f"SELECT example_id, gold_prob, loss FROM {shard_scan_sql(run_dir)}").fetchall()
    return {eid: (p, loss) for eid, p, loss in rows}


def test_train_with_flooding_on_the_most_robust_half(workspace):  # noqa: ANN001
    ws, source = workspace
    result = run_cli(
        ws,
        "train",
        "sst2-dev",
        *TINY,
        "--mitigation",
        "flooding",
        "--mitigation-from",
        source,
        "--mitigation-fraction",
        "0.5",
        "--flood-level",
        "1.0",  # above every loss of a one-epoch run, so each flooded loss visibly differs from the plain one
        "--json",
    )
    assert result.code == 0, result.stderr
    assert result.json()["status"] == "done"
    run_dir = ws.run_dir(result.json()["run_id"])
    config = read_config(run_dir)
    assert config is not None
    assert (config["mitigation"], config["mitigation_from"], config["mitigation_fraction"]) == (
        "flooding",
        source,
        0.5,
    )
    summary = config["mitigated"]
    expected = lowest_sensitivity(ws, source, 0.5)
    assert summary["n_selected"] == summary["n_in_training"] == len(expected) == N // 2
    assert (summary["from"], summary["ranking"], summary["ids_file"]) == (
        source,
        "sensitivity ASC",
        MITIGATED_IDS,
    )
    ids = pq.read_table(run_dir / MITIGATED_IDS).column("example_id").to_pylist()
    assert ids == expected  # most robust first

    # the job applied the flooded loss to exactly those examples: its recorded losses come from the same
    # logits as its gold probabilities, so plain = -log p and flooded = |plain - b| + b
    rows = recorded(run_dir)
    assert len(rows) == N
    b = 1.0
    for eid, (p, loss) in rows.items():
        plain = -math.log(p)
        want = abs(plain - b) + b if eid in set(ids) else plain
        assert loss == pytest.approx(want, rel=1e-4, abs=1e-5), eid
    assert any(abs(loss + math.log(p)) > 0.1 for eid, (p, loss) in rows.items() if eid in set(ids))
    logs = [e.get("message", "") for e in read_events(run_dir) if e.get("type") == "log"]
    assert any("mitigation: flooding (b 1.0) on 16 of 32 training examples" in m for m in logs), logs


def test_retrain_mitigates_from_its_source_run_by_default(workspace):  # noqa: ANN001
    ws, source = workspace
    result = run_cli(
        ws,
        "retrain",
        source,
        "--region",
        "easy",
        "--fraction",
        "0.5",
        "--mitigation",
        "label-smoothing",
        "--json",
    )
    assert result.code == 0, result.stderr
    run_dir = ws.run_dir(result.json()["run_id"])
    config = read_config(run_dir)
    assert config is not None
    assert (config["mitigation"], config["mitigation_from"], config["smoothing"]) == (
        "label-smoothing",
        source,
        0.4,
    )
    trained = set(pq.read_table(run_dir / "inputs" / "train.parquet").column("example_id").to_pylist())
    ids = pq.read_table(run_dir / MITIGATED_IDS).column("example_id").to_pylist()
    robust = lowest_sensitivity(ws, source, 0.3)  # the default fraction, of the source run's examples
    assert ids == [eid for eid in robust if eid in trained]
    assert config["mitigated"]["n_in_training"] == len(ids) > 0


def runs_and_datasets(ws: Workspace) -> tuple[list[str], list[str]]:
    datasets = run_cli(ws, "datasets", "--json").json()
    return sorted(p.name for p in ws.runs_dir.iterdir()), sorted(d["name"] for d in datasets)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mitigation", "flooding", "--mitigation-from", "no-such-run"), "no run named 'no-such-run'"),
        (("--mitigation", "flooding", "--mitigation-from", "plain-run"), "recorded no adversarial dynamics"),
        (
            ("--mitigation", "flooding", "--mitigation-from", "SOURCE", "--mitigation-fraction", "0"),
            "> 0 and <= 1",
        ),
        (
            ("--mitigation", "flooding", "--mitigation-from", "SOURCE", "--mitigation-fraction", "1.5"),
            "got 1.5",
        ),
        (("--mitigation-from", "SOURCE"), "no --mitigation is given"),
        (("--mitigation-fraction", "0.5"), "no --mitigation is given"),
        (("--mitigation", "label-smoothing"), "needs --mitigation-from RUN"),
        (
            ("--mitigation", "flooding", "--mitigation-from", "SOURCE", "--objective", "flooding"),
            "--objective",
        ),
    ],
)
def test_bad_mitigation_requests_are_refused_and_create_nothing(workspace, args, message):  # noqa: ANN001
    ws, source = workspace
    before = runs_and_datasets(ws)
    args = tuple(source if a == "SOURCE" else a for a in args)
    t0 = time.monotonic()
    result = run_cli(ws, "train", "sst2-dev", *TINY, *args)
    elapsed = time.monotonic() - t0
    assert result.code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    if "plain-run" in args:
        assert "--adversarial-dynamics" in result.stderr  # says what to do
    assert elapsed < 10
    assert runs_and_datasets(ws) == before


def test_a_retrain_mitigating_from_a_run_without_adversarial_records_writes_nothing(workspace):  # noqa: ANN001
    ws, _ = workspace
    before = runs_and_datasets(ws)
    result = run_cli(ws, "retrain", "plain-run", "--region", "easy", "--mitigation", "flooding")
    assert result.code == 2
    assert "--mitigation-from plain-run" in result.stderr and "--adversarial-dynamics" in result.stderr
    assert runs_and_datasets(ws) == before  # not even the selection's dataset
