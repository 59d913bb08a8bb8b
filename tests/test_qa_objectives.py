"""The two QA objectives (seed 001, section 5.2) on hand-made logits over real tokenised windows:

- uniform-null targets: 1/n over every token of an unanswerable sequence (an unanswerable question, or a window
  without the answer), spread evenly over several gold spans, never on padding; cls keeps the [CLS] targets;
- the sequence-tagging loss is 0 exactly when every span score of an unanswerable window is negative (and every gold
  span of an answerable one positive);
- inference: uniform-null answers "" exactly when the best span score s_i + e_j is negative, cls when [CLS] wins;
- what the dynamics record for an unanswerable example under each objective.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pytest
import torch

from engine.tasks import Batch, ForwardOut
from engine.tasks.qa import QAAdapter, no_answer_probability
from engine.training.config import DEFAULT_MODEL, TrainConfig
from engine.training.losses import CrossEntropy, LabelSmoothing, SpanTagging, span_tagging_loss
from engine.training.model import load_tokenizer
from engine.training.objectives import for_run, tagging_weight

FILLER = "The committee met in the old hall on many occasions over the following years. "
CONTEXT = (
    "Marie Curie was born in Warsaw in 1867. She moved to Paris to study physics. "
    + FILLER * 4
    + "Her second Nobel Prize, in chemistry, came in 1911."
)


def answer(text: str) -> dict[str, Any]:
    return {"text": text, "answer_start": CONTEXT.index(text)}


EXAMPLES = [
    # two different gold spans in the first window: both are targets
    (
        "two-spans",
        "Where was she born?",
        [answer("Warsaw"), answer("Warsaw in 1867"), answer("Warsaw")],
        False,
    ),
    # the answer is at the end: the earlier windows do not hold it
    ("late", "When was the second prize?", [answer("1911")], False),
    ("none", "What did she eat?", [], True),
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer(DEFAULT_MODEL)


def table() -> pa.Table:
    return pa.table(
        {
            "example_id": [e[0] for e in EXAMPLES],
            "text": [e[1] for e in EXAMPLES],
            "text_pair": [CONTEXT] * len(EXAMPLES),
            "answers": [json.dumps(e[2]) for e in EXAMPLES],
            "is_impossible": [e[3] for e in EXAMPLES],
        }
    )


def batch_for(tokenizer: Any, qa_objective: str) -> tuple[QAAdapter, Batch]:
    adapter = QAAdapter(tokenizer, max_length=48, stride=8, allow_null=True, qa_objective=qa_objective)
    return adapter, adapter.collate(adapter.encode(table()))


def windows_of(batch: Batch, example_id: str) -> list[int]:
    j = batch.example_ids.index(example_id)
    return [i for i, owner in enumerate(batch.meta["owner"]) if owner == j]


def test_the_hand_made_batch_has_what_the_cases_need(tokenizer):
    _, batch = batch_for(tokenizer, "uniform-null")
    windows = batch.meta["windows"]
    assert len(windows_of(batch, "late")) >= 3 and len(windows_of(batch, "none")) >= 3
    first = windows[windows_of(batch, "two-spans")[0]]
    assert len(first.spans) == 2  # "Warsaw" twice is one span; "Warsaw in 1867" another
    assert batch.tensors["attention_mask"].sum(-1).min() < batch.tensors["attention_mask"].shape[1]  # padding


def test_uniform_null_targets_are_1_over_n_on_unanswerable_sequences_and_split_over_gold_spans(tokenizer):
    adapter, batch = batch_for(tokenizer, "uniform-null")
    windows = batch.meta["windows"]
    mask = batch.tensors["attention_mask"].bool()
    for key in ("start_target", "end_target"):
        target = batch.tensors[key]
        torch.testing.assert_close(target.sum(-1), torch.ones(batch.n_units))
        assert (target[~mask] == 0).all()  # never on padding
        for i, w in enumerate(windows):
            n = int(mask[i].sum())
            if not w.spans:  # an unanswerable question's window, or one without the answer
                assert torch.allclose(target[i, :n], torch.full((n,), 1 / n))
    late = windows_of(batch, "late")
    assert [bool(windows[i].spans) for i in late] == [False] * (len(late) - 1) + [True]
    first = windows_of(batch, "two-spans")[0]
    (s1, e1), (s2, e2) = windows[first].spans
    assert s1 == s2 and e1 != e2  # both start at "Warsaw"
    start, end = batch.tensors["start_target"][first], batch.tensors["end_target"][first]
    assert start[s1] == pytest.approx(1.0) and end[e1] == pytest.approx(0.5) and end[e2] == pytest.approx(0.5)
    # the cross-entropy against those targets: -sum q log p per head, averaged over start and end
    torch.manual_seed(0)
    logits = {k: torch.randn(batch.tensors["input_ids"].shape) for k in ("start_logits", "end_logits")}
    expected = []
    for i in range(batch.n_units):
        ce = 0.0
        for key, target in (("start_logits", "start_target"), ("end_logits", "end_target")):
            logp = logits[key][i][mask[i]].log_softmax(-1)
            ce -= float((batch.tensors[target][i][mask[i]] * logp).sum()) / 2
        expected.append(ce)
    got = CrossEntropy().per_unit_loss(adapter, batch, logits)
    assert got.tolist() == pytest.approx(expected, abs=1e-5)
    assert LabelSmoothing(alpha=0.0).per_unit_loss(adapter, batch, logits).tolist() == pytest.approx(
        expected, abs=1e-5
    )


def test_cls_keeps_the_cls_targets(tokenizer):
    _, batch = batch_for(tokenizer, "cls")
    assert "start_target" not in batch.tensors
    windows = batch.meta["windows"]
    for i in windows_of(batch, "none") + windows_of(batch, "late")[:-1]:
        assert (windows[i].start, windows[i].end) == (0, 0)
    first = windows[windows_of(batch, "two-spans")[0]]
    assert (first.start, first.end) == first.spans[0]  # only the first gold answer is the target


def test_the_tagging_loss_is_zero_exactly_when_every_span_of_an_unanswerable_window_is_negative():
    torch.manual_seed(1)
    width = 12
    candidates = torch.ones((1, width, width), dtype=torch.bool).triu()
    candidates[:, :3] = candidates[:, :, :3] = False  # a question part: no span there
    no_gold = torch.zeros_like(candidates)
    seen = set()
    for shift in torch.linspace(-4, 2, 60):
        start, end = torch.randn(1, width) + shift, torch.randn(1, width)
        scores = start[:, :, None] + end[:, None, :]
        all_negative = bool(scores[candidates].max() < 0)
        loss = span_tagging_loss(start, end, candidates, no_gold)
        assert (float(loss) == 0.0) == all_negative
        seen.add(all_negative)
        if not all_negative:  # the loss is the mean positive part over the candidate spans
            assert float(loss) == pytest.approx(float(scores[candidates].clamp(min=0).mean()), rel=1e-5)
    assert seen == {True, False}
    # positive scores outside the candidates (the question, padding) cost nothing
    start, end = torch.full((1, width), -1.0), torch.full((1, width), -1.0)
    start[0, 0] = end[0, 0] = 10.0
    assert float(span_tagging_loss(start, end, candidates, no_gold)) == 0.0
    # a gold span must score above 0; the others below
    gold = torch.zeros_like(candidates)
    gold[0, 5, 6] = True
    assert float(span_tagging_loss(start, end, candidates, gold)) == pytest.approx(2.0)  # relu(-(-1 - 1))
    start[0, 5], end[0, 6] = 3.0, 3.0  # gold 6 > 0, but (5, j) = 2 and (i, 6) = 2 for the others
    assert float(span_tagging_loss(start, end, candidates, gold)) > 0
    start[0, 5], end[0, 6] = 0.5, 0.6  # gold 1.1 > 0, every other span <= -0.4
    assert float(span_tagging_loss(start, end, candidates, gold)) == 0.0


def test_the_tagging_loss_through_the_seam_reads_the_windows_gold_spans(tokenizer):
    adapter, batch = batch_for(tokenizer, "uniform-null")
    candidates, gold = adapter.span_tags(batch)
    windows = batch.meta["windows"]
    for i, w in enumerate(windows):
        assert sorted(map(tuple, gold[i].nonzero().tolist())) == sorted(w.spans)
        assert candidates[i].any() and not candidates[i][~batch.tensors["context_mask"][i]].any()
    shape = batch.tensors["input_ids"].shape
    negative = {"start_logits": torch.full(shape, -1.0), "end_logits": torch.full(shape, -1.0)}
    plain = CrossEntropy().per_unit_loss(adapter, batch, negative)
    tagged = SpanTagging(CrossEntropy(), weight=2.0).per_unit_loss(adapter, batch, negative)
    for i, w in enumerate(windows):  # every span score is -2: only a gold span costs, 2 * relu(2)
        assert float(tagged[i] - plain[i]) == pytest.approx(4.0 if w.spans else 0.0, abs=1e-5)


def record_with(adapter: QAAdapter, batch: Batch, start: torch.Tensor, end: torch.Tensor) -> dict[str, list]:
    logits = {"start_logits": start, "end_logits": end}
    return adapter.record(batch, ForwardOut(CrossEntropy().per_unit_loss(adapter, batch, logits), logits))


@pytest.mark.parametrize("best", [-3.0, -0.01, 0.01, 2.0])
def test_uniform_null_answers_nothing_exactly_when_the_best_span_score_is_negative(tokenizer, best):
    adapter, batch = batch_for(tokenizer, "uniform-null")
    shape = batch.tensors["input_ids"].shape
    start, end = torch.full(shape, -20.0), torch.full(shape, -20.0)
    start[:, 0] = end[:, 0] = 50.0  # a huge [CLS] score: uniform-null ignores it
    # in every window one chosen context span (t, t + 1) scores `best`, every other span far below
    chosen = {}
    for i in range(batch.n_units):
        t = int(batch.tensors["context_mask"][i].nonzero()[1])
        start[i, t], end[i, t + 1] = best / 2, best / 2
        chosen[i] = (t, t + 1)
    rows = record_with(adapter, batch, start, end)
    items = batch.meta["items"]
    for j, item in enumerate(items):
        if best < 0:
            assert rows["prediction"][j] == ""
        else:  # the chosen span of the example's first window (all tie; the first wins)
            i = windows_of(batch, item.example_id)[0]
            offsets = batch.meta["windows"][i].offsets
            text = item.context[offsets[chosen[i][0], 0] : offsets[chosen[i][1], 1]]
            assert rows["prediction"][j] == text != ""
    none = batch.example_ids.index("none")
    assert rows["correct"][none] == (best < 0)
    assert rows["gold_prob"][none] == pytest.approx(1 / (1 + math.exp(best)))
    assert (rows["gold_prob"][none] > 0.5) == rows["correct"][none]
    assert rows["margin"][none] == pytest.approx(-best) and rows["answer_in_window"][none]
    # v1.1 (no unanswerable questions) never abstains
    v11 = QAAdapter(tokenizer, max_length=48, stride=8, allow_null=False, qa_objective="uniform-null")
    assert "" not in record_with(v11, batch, start, end)["prediction"]


@pytest.mark.parametrize("cls_wins", [True, False])
def test_cls_answers_nothing_when_cls_beats_the_best_span(tokenizer, cls_wins):
    adapter, batch = batch_for(tokenizer, "cls")
    shape = batch.tensors["input_ids"].shape
    start, end = torch.zeros(shape), torch.zeros(shape)
    start[:, 0] = end[:, 0] = 5.0 if cls_wins else -5.0  # every span scores 0 + 0, negative or not
    rows = record_with(adapter, batch, start, end)
    assert all((p == "") == cls_wins for p in rows["prediction"])
    none = batch.example_ids.index("none")
    assert rows["correct"][none] == cls_wins
    # the gold probability of an unanswerable example under cls: p(start = [CLS]) p(end = [CLS]), best window
    p_cls = [
        math.exp(start[i, 0]) / (math.exp(start[i, 0]) + int(batch.tensors["attention_mask"][i].sum()) - 1)
        for i in windows_of(batch, "none")
    ]
    assert rows["gold_prob"][none] == pytest.approx(max(p_cls) ** 2, rel=1e-4)


def test_the_no_answer_probability_is_a_sigmoid_of_the_best_span_score():
    assert no_answer_probability(0.0) == 0.5 and no_answer_probability(float("-inf")) == 1.0
    assert no_answer_probability(-2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))


def test_the_tagging_weight_defaults_by_objective_and_wraps_the_run_objective(tmp_path):
    cls = TrainConfig(dataset="d", task="qa")
    uniform = TrainConfig(dataset="d", task="qa", qa_objective="uniform-null")
    assert tagging_weight(cls) == 0.0 and tagging_weight(uniform) == 1.0
    assert tagging_weight(TrainConfig(dataset="d", task="qa", tagging_loss_weight=0.5)) == 0.5
    assert tagging_weight(TrainConfig(dataset="d", task="classification", qa_objective="cls")) == 0.0
    assert for_run(cls, tmp_path).name == "cross_entropy"
    wrapped = for_run(uniform, tmp_path)
    assert (
        isinstance(wrapped, SpanTagging)
        and wrapped.weight == 1.0
        and wrapped.name == "cross_entropy+span_tagging"
    )
