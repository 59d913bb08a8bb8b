"""Nearest training examples by a run's own encoder: mean-pooled last hidden states of (question, context) pairs
(truncated to the run's max length), cosine similarity; and the error analysis across adversarial variants that
uses them (engine.analysis.error_analysis holds the logic; this module adds the model)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from storage.catalog import open_catalog
from storage.workspace import Workspace


@torch.no_grad()
def embed_pairs(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str | None]], max_length: int, batch_size: int = 32
) -> np.ndarray:
    """L2-normalised mean-pooled encoder states [len(pairs), hidden] (the task head is left out)."""
    encoder = model.base_model
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        firsts, seconds = [a for a, _ in chunk], [b or "" for _, b in chunk]
        enc = tokenizer(
            firsts,
            seconds,
            truncation="only_second",
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        hidden = encoder(**{k: v for k, v in enc.items() if k != "offset_mapping"}).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def nearest(queries: np.ndarray, keys: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per query row, the k most similar key rows (index, cosine), most similar first; ties by index."""
    sims = queries @ keys.T
    out = []
    for row in sims:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        out.append([(int(j), float(row[j])) for j in order])
    return out


def error_analysis(ws: Workspace, run_id: str, eval_set: str, k: int = 5) -> dict[str, Any]:
    """The error-analysis table of `run_id` on the adversarial set `eval_set` (engine.analysis.error_analysis):
    the catalog is read and closed before the model runs."""
    from engine.analysis import error_analysis as ea
    from engine.evaluation.scoring import load_run_model, load_tokenizer_for
    from engine.training.config import TrainConfig
    from storage.artifacts import read_config
    from storage.sync import sync

    with open_catalog(ws) as con:
        sync(ws, con)
        questions = ea.adversarial_questions(con, run_id, eval_set)
        training, rule = ea.training_examples(con, run_id)
    run_dir = ws.run_dir(run_id)
    cfg = TrainConfig.from_dict(read_config(run_dir) or {})
    model = load_run_model(run_dir, cfg)
    tokenizer = load_tokenizer_for(run_dir, cfg)
    max_length = int(cfg.max_length or 128)
    keys = embed_pairs(model, tokenizer, [(t["question"], t["context"]) for t in training], max_length)
    queries = embed_pairs(model, tokenizer, [(q["question"], q["context"]) for q in questions], max_length)
    found = nearest(queries, keys, k)
    neighbours = {
        q["original_id"]: [(training[j]["example_id"], s) for j, s in near]
        for q, near in zip(questions, found)
    }
    rows = ea.error_table(questions, neighbours, {t["example_id"]: t["region"] for t in training})
    summary = ea.summary(rows)
    return {
        "run_id": run_id,
        "eval_set": eval_set,
        "k": k,
        "regions": rule,
        "summary": summary,
        "questions": rows,
    }
