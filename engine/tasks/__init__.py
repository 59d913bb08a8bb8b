"""Task adapters: everything that differs between classification and extractive QA lives behind one small interface.

The training loop, the recorder, the job runner and evaluation only ever talk to a `TaskAdapter`:

- `encode(table)` turns the examples (a pyarrow table with the catalog's example columns) into one *item* per
  example. An item may hold several model inputs (QA windows); keeping them together means a batch always holds
  whole examples, so every example's dynamics row can be computed from the batch that trained on it, and the
  windows of one example never end up on different ranks.
- `collate(items)` pads a list of items into a `Batch` (dynamic padding: to the longest sequence of the batch).
- `forward(model, batch)` runs the model and returns the per-unit training losses (one per feature) and the
  logits the recorder needs, so inline recording never runs a second forward pass.
- `record(batch, out)` turns those logits into one dynamics row per example (columns of
  `storage.metrics.DYNAMICS_COLUMNS` except epoch/rank, plus task extras).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import torch


@dataclass
class Batch:
    """Model inputs (tensors) plus what the recorder needs to map outputs back to examples."""

    tensors: dict[str, torch.Tensor]
    example_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        return Batch({k: v.to(device) for k, v in self.tensors.items()}, self.example_ids, self.meta)

    @property
    def n_examples(self) -> int:
        return len(self.example_ids)


@dataclass
class ForwardOut:
    """Per-feature losses (the training loss is their mean) and the detached logits for recording."""

    losses: torch.Tensor
    logits: dict[str, torch.Tensor]


class TaskAdapter(Protocol):
    task: str
    extra_columns: dict[str, pa.DataType]

    def model_class(self) -> Any: ...

    def model_kwargs(self) -> dict[str, Any]: ...

    def encode(self, table: pa.Table) -> list[Any]: ...

    def collate(self, items: list[Any]) -> Batch: ...

    def forward(self, model: Any, batch: Batch) -> ForwardOut: ...

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
        )
    raise ValueError(f"unknown task {task!r}; expected classification or qa")


def pad_sequences(seqs: list[list[int]], pad_value: int) -> torch.Tensor:
    """Right-pad to the longest sequence of the batch (dynamic padding)."""
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_value, dtype=torch.long)
    for i, seq in enumerate(seqs):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch.tensors[k] for k in keys if k in batch.tensors}
