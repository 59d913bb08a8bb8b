"""Training objectives: the named loss of a run, computed per unit from the task adapter's logits (the loss seam).

The adapter's forward returns logits only; the objective named by the run's spec (`TrainConfig.objective`) turns
them into one loss per unit (per example for classification, per window for QA), so the loss can differ between
examples (a mitigation regularises only selected examples). The training step's mean of these is what it
backpropagates, and inline dynamics record them together with the same logits: no extra forward pass.

This module stays torch-free (the app and the CLI import the names through the config); the implementations live
in `engine.training.losses` and are imported when an objective is first used. A new objective is one class there
(`per_unit_loss(adapter, batch, logits) -> Tensor[units]`) plus one entry in `REGISTRY` (and one in `PARAMETERS`
when TrainConfig settings parameterise it). `for_run` builds what a run trains with, mitigation included.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from engine.tasks import Batch, ForwardOut, Logits, TaskAdapter

# name -> class in engine.training.losses
REGISTRY: dict[str, str] = {
    "cross_entropy": "CrossEntropy",
    "flooding": "Flooding",
    "label_smoothing": "LabelSmoothing",
}
OBJECTIVES = tuple(REGISTRY)
# an objective's parameters: constructor argument -> the TrainConfig setting that holds it
PARAMETERS: dict[str, dict[str, str]] = {
    "flooding": {"level": "flood_level"},
    "label_smoothing": {"alpha": "smoothing"},
}

# How a QA run treats sequences without an answer (seed 001, section 5.2; engine.tasks.qa):
# - cls: the Hugging Face convention, the target of an unanswerable window is the [CLS] token; "no answer" when the
#   [CLS] score beats the best span;
# - uniform-null: every token of an unanswerable window (an unanswerable question, or a window that does not hold
#   the answer) is an equally likely start and end, ys_k = ye_k = 1/n; several gold spans share the target;
#   "no answer" when the best span score s_i + e_j (raw logits) is negative.
# The sequence-tagging loss (`losses.SpanTagging`) pushes every span score of an unanswerable window below zero and
# the gold spans' above; its weight defaults to 1 with uniform-null (the rule needs it) and 0 with cls.
QA_OBJECTIVES = ("cls", "uniform-null")
DEFAULT_TAGGING_WEIGHT = {"cls": 0.0, "uniform-null": 1.0}

# Mitigation (seed 003, section 4.2): the regularising objective applied to the p% most robust examples of an
# earlier run, the run's own objective to the others. The launcher resolves the examples from the catalog and
# writes their ids to MITIGATED_IDS in the run folder; the job reads them from there (it never opens the catalog).
MITIGATIONS: dict[str, str] = {"flooding": "flooding", "label-smoothing": "label_smoothing"}
MITIGATION_CHOICES = ("none", *MITIGATIONS)
MITIGATED_IDS = "inputs/mitigated.parquet"  # relative to the run folder; one column, example_id


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


def configured(name: str, cfg: Any) -> Objective:
    """The objective `name` with its parameters taken from a TrainConfig (e.g. flooding's level b)."""
    params = {arg: getattr(cfg, setting) for arg, setting in PARAMETERS.get(name, {}).items()}
    return get_objective(name, **params)


def tagging_weight(cfg: Any) -> float:
    """The weight of the sequence-tagging loss of a QA run: as set, else its objective's default."""
    if getattr(cfg, "task", "qa") != "qa":
        return 0.0
    weight = getattr(cfg, "tagging_loss_weight", None)
    if weight is None:
        return DEFAULT_TAGGING_WEIGHT[getattr(cfg, "qa_objective", None) or "cls"]
    return float(weight)


def for_run(cfg: Any, run_dir: Path) -> Objective:
    """What a run trains with: its objective, with a mitigation the regularised loss on the examples listed
    in `run_dir / MITIGATED_IDS` (the plain objective on the others), and for QA the sequence-tagging loss added
    with its weight."""
    objective = _with_mitigation(cfg, run_dir)
    weight = tagging_weight(cfg)
    if weight > 0:
        from engine.training.losses import SpanTagging

        return SpanTagging(objective, weight)
    return objective


def _with_mitigation(cfg: Any, run_dir: Path) -> Objective:
    base = configured(cfg.objective, cfg)
    mitigation = getattr(cfg, "mitigation", "none") or "none"
    if mitigation == "none":
        return base
    if mitigation not in MITIGATIONS:
        raise ValueError(
            f"unknown mitigation {mitigation!r}; expected one of {', '.join(MITIGATION_CHOICES)}"
        )
    import pyarrow.parquet as pq

    from engine.training.losses import Selective

    path = Path(run_dir) / MITIGATED_IDS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the launcher writes the mitigated examples there")
    ids = pq.read_table(path, columns=["example_id"]).column("example_id").to_pylist()
    return Selective(base, configured(MITIGATIONS[mitigation], cfg), ids=ids)


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
