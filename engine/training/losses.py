"""The objectives of `engine.training.objectives`, in torch. Each one is written once for every task, over the
adapter's `heads` (per unit: scores with invalid classes masked, gold class, valid classes):

- `CrossEntropy`: the mean over the task's heads of the cross-entropy of the gold class (classification: the
  label; QA: the start and the end token of the window's target span).
- `Flooding`: `|loss - b| + b` on another objective's per-unit loss (Ishida et al. 2020; seed 003 eq. 4): below
  the flood level b the gradient points uphill, so the loss hovers around b instead of reaching zero.
- `LabelSmoothing`: the cross-entropy against `y (1 - alpha) + alpha / C` per head (Szegedy et al. 2016; seed 003
  eq. 5), C the head's valid classes (classification: the labels; QA: the window's tokens, padding excluded).

- `SpanTagging`: another objective plus `weight` times the sequence-tagging loss of QA windows (seed 001,
  section 5.2; `span_tagging_loss`): a hinge on the sign of every candidate span score `s_i + e_j` (raw logits),
  negative for the spans of a window without an answer, positive for gold spans.

Targets: a head may carry a target distribution (`Head.soft`: QA uniform-null gives every token of an unanswerable
window 1/n and spreads an answerable window's target over its gold spans); the cross-entropy is then taken against
that distribution, and label smoothing smooths it instead of the one-hot target.

Per-example choices: a batch's `meta` may carry per-example values (e.g. which examples a mitigation regularises,
or weights); `per_unit` spreads them over the units (QA: every window of an example gets its value), and
`Selective` applies one objective to the selected examples and another to the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from engine.tasks import Batch, Logits, TaskAdapter


def per_unit(batch: Batch, values: Sequence[Any] | torch.Tensor) -> torch.Tensor:
    """Per-example values [examples] spread over the batch's units [units]."""
    owner = batch.unit_owner()
    return torch.as_tensor(values, device=owner.device)[owner]


class CrossEntropy:
    name = "cross_entropy"

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        heads = adapter.heads(batch, logits)
        losses = [
            F.cross_entropy(h.scores.float(), h.target if h.soft is None else h.soft, reduction="none")
            for h in heads
        ]
        return torch.stack(losses).mean(0)


class Flooding:
    """`|inner - b| + b` per unit (inner: cross-entropy unless given). Equal to `inner` above the level b; below
    it the sign of the gradient flips (gradient ascent), so the training loss floats around b."""

    name = "flooding"

    def __init__(self, level: float = 0.2, inner: Any = None) -> None:
        if not level > 0:
            raise ValueError(f"the flood level must be > 0, got {level}")
        self.level = float(level)
        self.inner = inner if inner is not None else CrossEntropy()

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        loss: torch.Tensor = self.inner.per_unit_loss(adapter, batch, logits)
        return (loss - self.level).abs() + self.level


class LabelSmoothing:
    """Cross-entropy against smoothed targets `(1 - alpha) * onehot + alpha / C` over each head's C valid classes
    (the paper's eq. 5; for classification the same as torch's `cross_entropy(label_smoothing=alpha)`), averaged
    over the task's heads like `CrossEntropy`. alpha = 0 is plain cross-entropy."""

    name = "label_smoothing"

    def __init__(self, alpha: float = 0.4) -> None:
        if not 0 <= alpha <= 1:
            raise ValueError(f"the smoothing alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        losses = []
        for h in adapter.heads(batch, logits):
            scores = h.scores.float()
            valid = h.valid if h.valid is not None else torch.ones_like(scores, dtype=torch.bool)
            n_valid = valid.sum(-1, keepdim=True).clamp(min=1).to(scores.dtype)
            target = torch.where(valid, self.alpha / n_valid, torch.zeros_like(scores))
            gold = F.one_hot(h.target, scores.shape[-1]).to(scores.dtype) if h.soft is None else h.soft
            target = target + (1 - self.alpha) * gold
            logp = scores.log_softmax(-1)
            losses.append(-torch.where(valid, target * logp, torch.zeros_like(logp)).sum(-1))
        return torch.stack(losses).mean(0)


def span_tagging_loss(
    start: torch.Tensor, end: torch.Tensor, candidates: torch.Tensor, gold: torch.Tensor
) -> torch.Tensor:
    """The sequence-tagging loss per window [units], from raw start / end logits [units, L] and the candidate
    spans and gold spans [units, L, L] (bool; gold within candidates). Every span score `s_i + e_j` is tagged: a
    gold span should score above 0, every other candidate below 0 (a window without an answer has no gold span,
    so all of its spans should be negative); the loss is the mean hinge `relu(s_i + e_j)` over the non-gold
    candidates plus the mean `relu(-(s_i + e_j))` over the gold spans (an empty set adds 0). It is 0 exactly when
    every tag holds (up to the boundary 0 itself), which is what inference reads: no answer when the best span
    score is negative."""
    scores = start.float()[:, :, None] + end.float()[:, None, :]
    others = candidates & ~gold
    zero = torch.zeros_like(scores)
    above = torch.where(others, F.relu(scores), zero).sum((1, 2)) / others.sum((1, 2)).clamp(min=1)
    below = torch.where(gold, F.relu(-scores), zero).sum((1, 2)) / gold.sum((1, 2)).clamp(min=1)
    return above + below


class SpanTagging:
    """`inner` plus `weight` times the sequence-tagging loss of each QA window (`span_tagging_loss`); the adapter
    says which spans are candidates and which are gold (`span_tags`)."""

    def __init__(self, inner: Any, weight: float = 1.0) -> None:
        if not weight >= 0:
            raise ValueError(f"the tagging loss weight must be >= 0, got {weight}")
        self.inner, self.weight = inner, float(weight)
        self.name = f"{inner.name}+span_tagging"

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        span_tags = getattr(adapter, "span_tags", None)
        if span_tags is None:
            raise ValueError(f"the sequence-tagging loss is for extractive QA, not {adapter.task}")
        loss: torch.Tensor = self.inner.per_unit_loss(adapter, batch, logits)
        candidates, gold = span_tags(batch)
        tagging = span_tagging_loss(logits["start_logits"], logits["end_logits"], candidates, gold)
        return loss + self.weight * tagging


class Selective:
    """`selected` on the chosen examples, `base` on the others. Chosen: the examples whose id is in `ids` when
    given (a mitigation's list, read from the run folder), else those whose `batch.meta[key]` is true (a missing
    key: none). Both losses come from the same logits; only the chosen one reaches each unit's gradient."""

    def __init__(
        self, base: Any, selected: Any, key: str = "selected", ids: Iterable[str] | None = None
    ) -> None:
        self.base, self.selected, self.key = base, selected, key
        self.ids = None if ids is None else frozenset(ids)
        self.name = f"{base.name}+{selected.name}@{'ids' if ids is not None else key}"

    def chosen(self, batch: Batch) -> list[bool] | None:
        if self.ids is not None:
            return [eid in self.ids for eid in batch.example_ids]
        chosen = batch.meta.get(self.key)
        return None if chosen is None else [bool(c) for c in chosen]

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        plain: torch.Tensor = self.base.per_unit_loss(adapter, batch, logits)
        chosen = self.chosen(batch)
        if chosen is None or not any(chosen):
            return plain
        mask = per_unit(batch, chosen)
        return torch.where(mask, self.selected.per_unit_loss(adapter, batch, logits), plain)
