"""Task adapters: everything that differs between classification and extractive QA lives behind one small interface.

The training loop, the recorder, the job runner and evaluation only ever talk to a `TaskAdapter`:

- `encode(table)` turns the examples (a pyarrow table with the catalog's example columns) into one *item* per
  example. An item may hold several model inputs (QA windows); keeping them together means a batch always holds
  whole examples, so every example's dynamics row can be computed from the batch that trained on it, and the
  windows of one example never end up on different ranks.
- `collate(items)` pads a list of items into a `Batch` (dynamic padding: to the longest sequence of the batch).
  The batch also holds the per-unit *targets* (classification: `labels`; QA: `start_positions`, `end_positions`
  and the padding in `attention_mask`), one unit per model input (a QA example has one unit per window).
- `forward(model, batch, inputs_embeds=None)` runs the model and returns its logits only (a dict of float
  tensors, one row per unit). `inputs_embeds` (see `embed`) replaces `input_ids`, which is how PGD perturbs the
  input embeddings.
- `heads(batch, logits)` describes what the task predicts per unit as classification heads (scores with invalid
  classes masked, the gold class, the valid classes), so a training objective (`engine.training.objectives`)
  is written once for every task.
- `record(batch, out)` turns a `ForwardOut` (the step's per-unit losses and logits) into one dynamics row per
  example (columns of `storage.metrics.DYNAMICS_COLUMNS` except epoch/rank, plus task extras). Inline recording
  reads the training step's own `ForwardOut`: no second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import torch

Logits = dict[str, torch.Tensor]


@dataclass
class Batch:
    """Model inputs and per-unit targets (tensors) plus what the recorder needs to map outputs back to examples.

    `meta` may also carry per-example values an objective reads (for instance which examples a mitigation
    regularises); `unit_owner` maps them onto the units."""

    tensors: dict[str, torch.Tensor]
    example_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        return Batch({k: v.to(device) for k, v in self.tensors.items()}, self.example_ids, self.meta)

    @property
    def n_examples(self) -> int:
        return len(self.example_ids)

    @property
    def n_units(self) -> int:
        return int(self.tensors["input_ids"].shape[0])

    def unit_owner(self) -> torch.Tensor:
        """The example index (0 .. n_examples - 1) of every unit: itself for classification, the window's
        question for QA."""
        device = self.tensors["input_ids"].device
        owner = self.meta.get("owner")
        if owner is None:
            return torch.arange(self.n_examples, device=device)
        return torch.as_tensor(owner, dtype=torch.long, device=device)


@dataclass
class ForwardOut:
    """Per-unit losses (the training loss is their mean) and the logits they came from, for recording."""

    losses: torch.Tensor
    logits: Logits


@dataclass
class Head:
    """One distribution a task predicts per unit, for the objectives: `scores` [units, classes] (float, invalid
    classes already masked with a large negative value), `target` [units] the gold class, `valid` [units, classes]
    the classes that exist (None: all of them; QA: the window's tokens, not its padding), `soft` a target
    distribution over the classes when the task's targets are not one class (QA uniform-null: 1/n over an
    unanswerable window's tokens, or spread over several gold spans); the objectives then use it instead."""

    scores: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor | None = None
    soft: torch.Tensor | None = (
        None  # [units, classes] a target distribution replacing `target` (QA uniform-null)
    )


class TaskAdapter(Protocol):
    task: str
    extra_columns: dict[str, pa.DataType]

    def model_class(self) -> Any: ...

    def model_kwargs(self) -> dict[str, Any]: ...

    def encode(self, table: pa.Table) -> list[Any]: ...

    def collate(self, items: list[Any]) -> Batch: ...

    def forward(self, model: Any, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> Logits: ...

    def heads(self, batch: Batch, logits: Logits) -> list[Head]: ...

    def record(self, batch: Batch, out: ForwardOut) -> dict[str, list[Any]]: ...


def make_adapter(
    task: str,
    tokenizer: Any,
    *,
    max_length: int,
    label_names: list[str] | None = None,
    version: str | None = None,
    stride: int | None = None,
    max_answer_length: int = 30,
    qa_objective: str = "cls",
) -> TaskAdapter:
    if task == "classification":
        from engine.tasks.classification import ClassificationAdapter

        if not label_names:
            raise ValueError("classification needs the dataset's label names")
        return ClassificationAdapter(tokenizer, max_length=max_length, label_names=label_names)
    if task == "qa":
        from engine.tasks.qa import QAAdapter

        return QAAdapter(
            tokenizer,
            max_length=max_length,
            stride=stride,
            allow_null=version == "v2.0",
            max_answer_length=max_answer_length,
            qa_objective=qa_objective,
        )
    raise ValueError(f"unknown task {task!r}; expected classification or qa")


def pad_sequences(seqs: list[list[int]], pad_value: int) -> torch.Tensor:
    """Right-pad to the longest sequence of the batch (dynamic padding)."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_value, dtype=torch.long)
    for i, seq in enumerate(seqs):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def model_inputs(batch: Batch, inputs_embeds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The model's keyword arguments; with `inputs_embeds` they replace `input_ids` (masks and token types stay)."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {k: batch.tensors[k] for k in keys if k in batch.tensors}
    if inputs_embeds is not None:
        del inputs["input_ids"]
        inputs["inputs_embeds"] = inputs_embeds
    return inputs


def embed(model: Any, batch: Batch) -> torch.Tensor:
    """The model's input (word) embeddings of the batch's `input_ids`, [units, length, hidden]: what PGD perturbs
    and hands back to `forward` as `inputs_embeds` (position and token-type embeddings are added by the model)."""
    inner = getattr(model, "module", model)  # DDP / accelerate wrappers keep the model in .module
    embeddings: torch.Tensor = inner.get_input_embeddings()(batch.tensors["input_ids"])
    return embeddings
