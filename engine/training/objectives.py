"""Training objectives: the named loss of a run, computed per unit from the task adapter's logits (the loss seam).

The adapter's forward returns logits only; the objective named by the run's spec (`TrainConfig.objective`) turns
them into one loss per unit (per example for classification, per window for QA), so the loss can differ between
examples (a mitigation regularises only selected examples). The training step's mean of these is what it
backpropagates, and inline dynamics record them together with the same logits: no extra forward pass.

This module stays torch-free (the app and the CLI import the names through the config); the implementations live
in `engine.training.losses` and are imported when an objective is first used. A new objective is one class there
(`per_unit_loss(adapter, batch, logits) -> Tensor[units]`) plus one entry in `REGISTRY`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from engine.tasks import Batch, ForwardOut, Logits, TaskAdapter

# name -> class in engine.training.losses
REGISTRY: dict[str, str] = {"cross_entropy": "CrossEntropy"}
OBJECTIVES = tuple(REGISTRY)


class Objective(Protocol):
    name: str

    def per_unit_loss(self, adapter: TaskAdapter, batch: Batch, logits: Logits) -> torch.Tensor:
        """One loss per unit of the batch (shape [units]), differentiable with respect to the logits."""
        ...


def get_objective(name: str, **params: Any) -> Objective:
    """The objective registered under `name`, built with its parameters (e.g. a flooding level)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)}")
    from engine.training import losses

    objective: Objective = getattr(losses, REGISTRY[name])(**params)
    return objective


def compute(
    adapter: TaskAdapter,
    objective: Objective | str,
    model: Any,
    batch: Batch,
    inputs_embeds: torch.Tensor | None = None,
) -> ForwardOut:
    """One forward pass and the objective's per-unit losses on its logits (what training backpropagates and what
    the recorder reads)."""
    from engine.tasks import ForwardOut

    if isinstance(objective, str):
        objective = get_objective(objective)
    logits = adapter.forward(model, batch, inputs_embeds)
    return ForwardOut(objective.per_unit_loss(adapter, batch, logits), logits)
