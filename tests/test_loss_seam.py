"""The loss seam: adapters return logits only (from `input_ids` or `inputs_embeds`), the run's objective turns them
into per-unit losses. On real batches with the real offline model, for every task:

- the per-unit losses through the seam equal the loss the adapters fused into their forward before the seam
  (computed here independently: cross-entropy of the label; QA: the mean of the start and end NLL over a
  log-softmax with the padding masked), to 1e-6;
- a forward through `inputs_embeds` (from `embed`) equals the forward through `input_ids`.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.importing.sources import ImportOptions, load_source, parse_squad
from engine.tasks import Batch, embed
from engine.tasks.qa import NEG
from engine.training.config import DEFAULT_MODEL, TrainConfig
from engine.training.losses import CrossEntropy, Selective, per_unit
from engine.training.model import build_adapter, load_model, load_tokenizer
from engine.training.objectives import OBJECTIVES, REGISTRY, compute, get_objective

MAX_LENGTH = 64
N_CLASSIFICATION = 8
N_QA = 6  # questions per SQuAD batch; at 64 tokens their long contexts take several windows each


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(DEFAULT_MODEL)


def classification_setup(tokenizer: Any, path: str, name: str) -> tuple[Any, Any, Batch]:
    spec = load_source(path, name, ImportOptions())
    cfg = TrainConfig(
        dataset=name, task="classification", max_length=MAX_LENGTH, label_names=spec.label_names
    )
    adapter = build_adapter(cfg, tokenizer)
    torch.manual_seed(0)
    model = load_model(adapter, cfg.model).eval()
    return adapter, model, adapter.collate(adapter.encode(spec.examples.slice(0, N_CLASSIFICATION)))


def squad_subset(path: Any, n_answerable: int, n_unanswerable: int) -> dict:
    """Questions on real contexts of 700+ characters (so each one takes several 64-token windows)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    want = {False: n_answerable, True: n_unanswerable}
    out: dict = {"version": data.get("version", "1.1"), "data": []}
    for article in data["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if len(para["context"]) < 700:
                continue
            qas = []
            for qa in para["qas"]:
                kind = bool(qa.get("is_impossible", False))
                if want[kind] > 0:
                    want[kind] -= 1
                    qas.append(qa)
            if qas:
                paragraphs.append({"context": para["context"], "qas": qas})
        if paragraphs:
            out["data"].append({"title": article["title"], "paragraphs": paragraphs})
        if not any(want.values()):
            return out
    raise AssertionError(f"{path}: not enough long-context questions")


def qa_setup(tokenizer: Any, subset: dict) -> tuple[Any, Any, Batch]:
    table, version, _ = parse_squad(subset, "subset", False)
    cfg = TrainConfig(dataset="squad", task="qa", max_length=MAX_LENGTH, version=version)
    adapter = build_adapter(cfg, tokenizer, version=version)
    torch.manual_seed(0)
    model = load_model(adapter, cfg.model).eval()
    batch = adapter.collate(adapter.encode(table))
    return adapter, model, batch


@pytest.fixture(scope="module")
def sst2(tokenizer, data_dir):
    return classification_setup(tokenizer, str(data_dir / "sst2" / "dev.tsv"), "sst2")


@pytest.fixture(scope="module")
def ag_news(tokenizer, data_dir):
    # title + description: a text pair, 4 classes
    return classification_setup(tokenizer, str(data_dir / "ag_news" / "test.csv.gz"), "ag-news")


@pytest.fixture(scope="module")
def squad_v11(tokenizer, data_dir):
    return qa_setup(tokenizer, squad_subset(data_dir / "squad_v1.1" / "dev-v1.1.json.gz", N_QA, 0))


@pytest.fixture(scope="module")
def squad_v20(tokenizer, data_dir):
    path = data_dir / "squad_v2.0" / "dev-v2.0-reconstructed.json.gz"
    return qa_setup(tokenizer, squad_subset(path, N_QA // 2, N_QA - N_QA // 2))


def old_classification_losses(model: Any, batch: Batch) -> torch.Tensor:
    """The loss the classification adapter fused into its forward before the seam."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    logits = model(**{k: batch.tensors[k] for k in keys if k in batch.tensors}).logits.float()
    return F.cross_entropy(logits, batch.tensors["labels"], reduction="none")


def old_qa_losses(model: Any, batch: Batch) -> torch.Tensor:
    """The loss the QA adapter fused into its forward before the seam, per window."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    out = model(**{k: batch.tensors[k] for k in keys if k in batch.tensors})
    pad = batch.tensors["attention_mask"] == 0
    start_lp = out.start_logits.float().masked_fill(pad, NEG).log_softmax(-1)
    end_lp = out.end_logits.float().masked_fill(pad, NEG).log_softmax(-1)
    s, e = batch.tensors["start_positions"], batch.tensors["end_positions"]
    return -(start_lp.gather(1, s[:, None]).squeeze(1) + end_lp.gather(1, e[:, None]).squeeze(1)) / 2


CASES = [
    ("sst2", old_classification_losses),
    ("ag_news", old_classification_losses),
    ("squad_v11", old_qa_losses),
    ("squad_v20", old_qa_losses),
]


def test_the_batches_are_what_the_cases_claim(sst2, ag_news, squad_v11, squad_v20):
    assert "token_type_ids" in ag_news[2].tensors and ag_news[1].config.num_labels == 4
    assert sst2[1].config.num_labels == 2
    for _, _, batch in (squad_v11, squad_v20):
        n_windows = [len(it.windows) for it in batch.meta["items"]]
        assert batch.n_examples == N_QA and max(n_windows) > 1 and batch.n_units == sum(n_windows)
    assert not squad_v11[0].allow_null and squad_v20[0].allow_null
    impossible = [not it.golds for it in squad_v20[2].meta["items"]]
    assert any(impossible) and not all(impossible)


@pytest.mark.parametrize(("case", "old"), CASES)
@torch.no_grad()
def test_losses_through_the_seam_equal_the_fused_ones(request, case, old):
    adapter, model, batch = request.getfixturevalue(case)
    out = compute(adapter, "cross_entropy", model, batch)
    expected = old(model, batch)
    assert out.losses.shape == (batch.n_units,)
    assert torch.isfinite(expected).all() and expected.min() > 0
    torch.testing.assert_close(out.losses, expected, rtol=0, atol=1e-6)
    # the recorder reads the same per-unit losses and logits: one row per example
    rows = adapter.record(batch, out)
    assert rows["example_id"] == batch.example_ids
    if adapter.task == "classification":
        assert rows["loss"] == pytest.approx(expected.tolist(), abs=1e-6)


@pytest.mark.parametrize("case", [case for case, _ in CASES])
@torch.no_grad()
def test_a_forward_through_inputs_embeds_equals_one_through_input_ids(request, case):
    adapter, model, batch = request.getfixturevalue(case)
    from_ids = adapter.forward(model, batch)
    embeddings = embed(model, batch)
    assert embeddings.shape == (*batch.tensors["input_ids"].shape, model.config.hidden_size)
    from_embeds = adapter.forward(model, batch, inputs_embeds=embeddings)
    assert from_ids.keys() == from_embeds.keys()
    for key in from_ids:
        torch.testing.assert_close(from_embeds[key], from_ids[key], rtol=0, atol=1e-6)


def test_a_perturbed_embedding_changes_the_loss_and_carries_its_gradient(squad_v20):
    """What PGD needs: the per-unit losses are differentiable with respect to the input embeddings."""
    adapter, model, batch = squad_v20
    delta = torch.zeros_like(embed(model, batch).detach(), requires_grad=True)
    out = compute(adapter, "cross_entropy", model, batch, inputs_embeds=embed(model, batch).detach() + delta)
    out.losses.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0


class Doubled:
    name = "doubled"

    def per_unit_loss(self, adapter: Any, batch: Batch, logits: Any) -> torch.Tensor:
        return 2 * CrossEntropy().per_unit_loss(adapter, batch, logits)


@torch.no_grad()
def test_an_objective_can_differ_between_examples(squad_v11):
    """A per-example choice in batch.meta reaches every window of the chosen examples and no other."""
    adapter, model, batch = squad_v11
    plain = compute(adapter, "cross_entropy", model, batch).losses
    chosen = [i % 2 == 0 for i in range(batch.n_examples)]
    batch.meta["regularise"] = chosen
    try:
        mixed = compute(adapter, Selective(CrossEntropy(), Doubled(), key="regularise"), model, batch).losses
    finally:
        del batch.meta["regularise"]
    mask = per_unit(batch, chosen)
    assert mask.shape == plain.shape and mask.any() and not mask.all()
    torch.testing.assert_close(mixed, torch.where(mask, 2 * plain, plain), rtol=0, atol=1e-6)
    assert batch.unit_owner().tolist() == batch.meta["owner"]


def test_the_registry_names_its_objectives():
    assert OBJECTIVES == tuple(REGISTRY) and "cross_entropy" in OBJECTIVES
    for name in OBJECTIVES:
        assert get_objective(name).name == name
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("no-such-loss")


def test_classification_batches_map_units_to_themselves(sst2):
    _, _, batch = sst2
    assert batch.unit_owner().tolist() == list(range(batch.n_examples))
    assert per_unit(batch, list(range(batch.n_examples))).tolist() == list(range(batch.n_examples))
