"""The objectives of `engine.training.objectives`, in torch. Each one is written once for every task, over the
adapter's `heads` (per unit: scores with invalid classes masked, gold class, valid classes):

- `CrossEntropy`: the mean over the task's heads of the cross-entropy of the gold class (classification: the
  label; QA: the start and the end token of the window's target span).

Per-example choices: a batch's `meta` may carry per-example values (e.g. which examples a mitigation regularises,
or weights); `per_unit` spreads them over the units (QA: every window of an example gets its value), and
`Selective` applies one objective to the selected examples and another to the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        losses = [F.cross_entropy(h.scores.float(), h.target, reduction="none") for h in heads]
        return torch.stack(losses).mean(0)


class Selective:
    """`selected` on the examples whose `batch.meta[key]` is true, `base` on the others (a missing key: none is
    selected). Both losses come from the same logits; only the chosen one reaches each unit's gradient."""

    def __init__(self, base: Any, selected: Any, key: str = "selected") -> None:
        self.base, self.selected, self.key = base, selected, key
        self.name = f"{base.name}+{selected.name}@{key}"

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        plain: torch.Tensor = self.base.per_unit_loss(adapter, batch, logits)
        chosen = batch.meta.get(self.key)
        if chosen is None:
            return plain
        mask = per_unit(batch, [bool(c) for c in chosen])
        return torch.where(mask, self.selected.per_unit_loss(adapter, batch, logits), plain)
