"""Evaluate a trained run on a dataset: accuracy for classification; EM / F1 for SQuAD v1.1; HasAns / NoAns /
overall for v2.0; for adversarial SQuAD (examples with an `orig_id`) both the plain average over all rows and
Jia & Liang's worst case per original question.

Writes `runs/<id>/eval/<set>.parquet` (example_id, prediction, correct, score: F1 for QA, 1/0 for
classification) and then `runs/<id>/eval/<set>.json` ({"n_examples", "metrics"}) last: `storage.sync` only
registers an evaluation whose summary exists, so a crash mid-evaluation leaves nothing half-registered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from engine.errors import BadInputError
from engine.evaluation.sets import eval_file_stem, map_labels
from engine.tasks.squad_metric import aggregate, score_predictions, squad_v2_summary, worst_case
from engine.training.config import CHECKPOINT, TrainConfig
from engine.training.model import build_adapter, evaluate, load_model, load_tokenizer
from storage.artifacts import eval_dir, write_json_atomic, write_parquet_atomic

EVAL_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("prediction", pa.string()),
        ("correct", pa.bool_()),
        ("score", pa.float64()),
    ]
)


def classification_metrics(rows: dict[str, list[Any]]) -> tuple[dict[str, Any], list[float]]:
    correct = rows["correct"]
    n = len(correct)
    return {"accuracy": sum(correct) / n if n else 0.0, "total": n}, [1.0 if c else 0.0 for c in correct]


def qa_metrics(
    rows: dict[str, list[Any]], table: pa.Table, version: str | None
) -> tuple[dict[str, Any], list[float]]:
    ids = [str(x) for x in table.column("example_id").to_pylist()]
    golds = {
        i: [a["text"] for a in json.loads(ans or "[]")]
        for i, ans in zip(ids, table.column("answers").to_pylist())
    }
    per = score_predictions(dict(zip(rows["example_id"], rows["prediction"])), golds, v2=version == "v2.0")
    if version == "v2.0":
        impossible = table.column("is_impossible").to_pylist()
        metrics: dict[str, Any] = squad_v2_summary(per, {i: not bool(x) for i, x in zip(ids, impossible)})
    else:
        metrics = dict(aggregate(per))
    orig = table.column("orig_id").to_pylist() if "orig_id" in table.column_names else [None] * len(ids)
    if any(o is not None for o in orig):
        # adversarial SQuAD: `exact` / `f1` above are the plain average over every row
        metrics.update(worst_case(per, dict(zip(ids, orig))))
    return metrics, [per[i][1] for i in rows["example_id"]]


def score_rows(
    cfg: TrainConfig, rows: dict[str, list[Any]], table: pa.Table, version: str | None
) -> tuple[dict[str, Any], pa.Table]:
    # `correct` comes from the adapter: exact match after SQuAD normalisation for QA, argmax == gold otherwise
    metrics, scores = qa_metrics(rows, table, version) if cfg.task == "qa" else classification_metrics(rows)
    per_example = pa.table(
        {
            "example_id": rows["example_id"],
            "prediction": rows["prediction"],
            "correct": rows["correct"],
            "score": scores,
        },
        schema=EVAL_SCHEMA,
    )
    return metrics, per_example


def evaluate_table(
    run_dir: Path,
    model: Any,
    cfg: TrainConfig,
    name: str,
    table: pa.Table,
    meta: dict[str, Any],
    stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any] | None:
    """Score `table` (catalog example columns) with `model`; write the eval files; return the summary."""
    scored = score_table(run_dir, model, cfg, name, table, meta, stop=stop, on_batch=on_batch)
    if scored is None:
        return None
    metrics, per_example = scored
    stem = eval_file_stem(name)
    folder = eval_dir(run_dir)
    write_parquet_atomic(per_example, folder / f"{stem}.parquet")
    summary = {"n_examples": per_example.num_rows, "metrics": metrics, "eval_set": name}
    write_json_atomic(folder / f"{stem}.json", summary)  # last: its presence marks the evaluation complete
    return summary


def score_table(
    run_dir: Path,
    model: Any,
    cfg: TrainConfig,
    name: str,
    table: pa.Table,
    meta: dict[str, Any],
    stop: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], pa.Table] | None:
    """Score `table` with `model`: (metrics, per-example rows), nothing written; None when stopped."""
    if meta.get("task") != cfg.task:
        raise BadInputError(f"'{name}' is a {meta.get('task')} dataset but the run trained {cfg.task}")
    if cfg.task == "classification":
        table = map_labels(table, cfg.label_names or [], meta.get("label_names"), name)
    adapter = build_adapter(cfg, load_tokenizer_for(run_dir, cfg), version=meta.get("version"))
    rows = evaluate(
        model, adapter, adapter.encode(table), batch_size=cfg.eval_batch_size, stop=stop, on_batch=on_batch
    )
    if rows is None:
        return None
    return score_rows(cfg, rows, table, meta.get("version"))


def load_tokenizer_for(run_dir: Path, cfg: TrainConfig) -> Any:
    final = run_dir / "model"
    return load_tokenizer(str(final) if final.is_dir() else cfg.model)


def load_run_model(run_dir: Path, cfg: TrainConfig) -> Any:
    """The final model, or the last complete epoch's weights for a run that stopped early."""
    final = run_dir / "model"
    adapter = build_adapter(cfg, load_tokenizer_for(run_dir, cfg))
    if final.is_dir():
        model = load_model(adapter, str(final))
    elif (run_dir / CHECKPOINT).is_file():
        model = load_model(adapter, cfg.model)
        model.load_state_dict(
            torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)["model"]
        )
    else:
        raise BadInputError(f"run {run_dir.name} has no trained weights yet (no model/ and no checkpoint)")
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval()


def evaluate_exported_sets(
    run_dir: Path, model: Any, cfg: TrainConfig, stop: Callable[[], bool] | None = None
) -> None:
    """The `--eval` sets the launcher exported into inputs/eval/ (job processes never read the catalog)."""
    from storage.artifacts import append_event

    for meta in cfg.eval_sets:
        name = meta["name"]
        table = pq.read_table(run_dir / "inputs" / "eval" / f"{eval_file_stem(name)}.parquet")
        summary = evaluate_table(run_dir, model, cfg, name, table, meta, stop=stop)
        if summary is not None:
            append_event(
                run_dir, "metrics", metrics={f"eval/{name}/{k}": v for k, v in summary["metrics"].items()}
            )


def score_exported_sets_now(
    run_dir: Path, model: Any, cfg: TrainConfig, stop: Callable[[], bool] | None = None
) -> dict[str, float]:
    """The `--eval` sets scored with the model as it is now (after an epoch), as `eval/<set>/<metric>` numbers
    for the epoch's summary; nothing written (the final evaluation writes the files). Empty when stopped."""
    out: dict[str, float] = {}
    for meta in cfg.eval_sets:
        name = meta["name"]
        table = pq.read_table(run_dir / "inputs" / "eval" / f"{eval_file_stem(name)}.parquet")
        scored = score_table(run_dir, model, cfg, name, table, meta, stop=stop)
        if scored is None:
            return {}
        for key, value in scored[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "total":
                out[f"eval/{name}/{key}"] = float(value)
    return out
