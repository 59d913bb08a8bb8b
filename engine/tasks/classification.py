"""Sequence classification, single text or text pair (SST-2, AG News, QQP, SNLI/MNLI).

Per example: gold probability = softmax of the gold class; correct = argmax equals gold; margin = gold logit minus
the largest other logit (AUM, Pleiss et al. 2020); EL2N = L2 norm of softmax minus the one-hot gold (Paul et al.
2021); prediction = the predicted label's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from engine.tasks import Batch, ForwardOut, Head, Logits, model_inputs, pad_sequences


@dataclass
class ClassificationItem:
    example_id: str
    input_ids: list[int]
    token_type_ids: list[int] | None
    label: int


class ClassificationAdapter:
    task = "classification"
    extra_columns: dict[str, pa.DataType] = {}

    def __init__(self, tokenizer: Any, *, max_length: int, label_names: list[str]) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.label_names = list(label_names)

    def model_class(self) -> Any:
        return AutoModelForSequenceClassification

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.label_names),
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {n: i for i, n in enumerate(self.label_names)},
        }

    def encode(self, table: pa.Table) -> list[ClassificationItem]:
        ids = [str(x) for x in table.column("example_id").to_pylist()]
        texts = table.column("text").to_pylist()
        pairs = (
            table.column("text_pair").to_pylist() if "text_pair" in table.column_names else [None] * len(ids)
        )
        labels = table.column("label").to_pylist()
        is_pair = any(p is not None for p in pairs)
        if is_pair:
            # longest_first trims whichever side is longer, so neither text is dropped entirely
            enc = self.tokenizer(
                texts, [p or "" for p in pairs], truncation="longest_first", max_length=self.max_length
            )
        else:
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        type_ids = enc.get("token_type_ids")
        return [
            ClassificationItem(
                ids[i], enc["input_ids"][i], type_ids[i] if type_ids is not None else None, int(labels[i])
            )
            for i in range(len(ids))
        ]

    def collate(self, items: list[ClassificationItem]) -> Batch:
        input_ids = pad_sequences([it.input_ids for it in items], self.tokenizer.pad_token_id or 0)
        tensors = {
            "input_ids": input_ids,
            "attention_mask": pad_sequences([[1] * len(it.input_ids) for it in items], 0),
            "labels": torch.tensor([it.label for it in items], dtype=torch.long),
        }
        if items[0].token_type_ids is not None:
            tensors["token_type_ids"] = pad_sequences([it.token_type_ids or [] for it in items], 0)
        return Batch(tensors, [it.example_id for it in items])

    def forward(self, model: Any, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> Logits:
        return {"logits": model(**model_inputs(batch, inputs_embeds)).logits.float()}

    def heads(self, batch: Batch, logits: Logits) -> list[Head]:
        return [Head(logits["logits"], batch.tensors["labels"])]

    @torch.no_grad()
    def record(self, batch: Batch, out: ForwardOut) -> dict[str, list[Any]]:
        logits = out.logits["logits"].detach().float()
        labels = batch.tensors["labels"]
        probs = logits.softmax(-1)
        onehot = F.one_hot(labels, logits.shape[-1]).bool()
        gold_logit = logits.gather(1, labels[:, None]).squeeze(1)
        other = logits.masked_fill(onehot, float("-inf")).max(-1).values
        pred = logits.argmax(-1)
        el2n = (probs - onehot.float()).norm(dim=-1)
        return {
            "example_id": batch.example_ids,
            "gold_prob": probs.gather(1, labels[:, None]).squeeze(1).tolist(),
            "correct": (pred == labels).tolist(),
            "loss": out.losses.detach().float().tolist(),
            "margin": (gold_logit - other).tolist(),
            "el2n": el2n.tolist(),
            "prediction": [self.label_names[i] for i in pred.tolist()],
        }
