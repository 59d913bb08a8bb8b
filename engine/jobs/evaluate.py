"""The `evaluate` job kind: score a trained run on datasets (accuracy, SQuAD EM / F1, worst case). Results land in
the trained run's eval/ folder, so they belong to that run in the catalog; progress goes to this job's events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.jobs.runs import export_dataset, write_run
from engine.jobs.spec import Field, JobKind
from storage.artifacts import append_event, read_config
from storage.catalog import open_catalog
from storage.workspace import Workspace


def create_evaluate_run(ws: Workspace, values: dict[str, Any]) -> str:
    """An evaluate job: scores a trained run on datasets exported here; results land in the trained run's
    eval/ folder (so they belong to that run in the catalog), progress in this job's events."""
    from engine.evaluation.sets import eval_file_stem

    config = EVALUATE.parse(values)
    source = config.get("run")
    names = list(dict.fromkeys(config.get("eval") or []))
    if not source:
        raise BadInputError("an evaluate job needs the run to evaluate (run)")
    if not names:
        raise BadInputError("an evaluate job needs at least one dataset to evaluate on (eval)")
    source_cfg = read_config(ws.run_dir(source))
    if source_cfg is None:
        raise BadInputError(f"no run named '{source}' in {ws.root}")
    for name in names:
        eval_file_stem(name)
    with open_catalog(ws) as con:
        evals = [export_dataset(con, name, what="evaluation set") for name in names]
    for _table, meta in evals:
        if meta["task"] != source_cfg.get("task"):
            raise BadInputError(
                f"'{meta['name']}' is a {meta['task']} dataset; run {source} is {source_cfg.get('task')}"
            )
    full = {k: v for k, v in config.items() if k not in ("created_at", "eval")}
    full.update(
        kind="evaluate",
        artifacts=list(EVALUATE.artifacts),
        run=source,
        source_run=source,
        dataset=names[0],
        model=source_cfg.get("model"),
        task=source_cfg.get("task"),
        eval_sets=[m for _, m in evals],
    )
    inputs = {f"eval/{m['name']}.parquet": t for t, m in evals}
    return write_run(ws, f"eval-{source}", full, inputs)


def run_evaluate_job(run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    import pyarrow.parquet as pq

    from engine.evaluation.scoring import evaluate_table, load_run_model
    from engine.training.config import TrainConfig

    source_dir = run_dir.parent / config["run"]
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    if config.get("batch_size"):
        cfg.eval_batch_size = int(config["batch_size"])
    model = load_run_model(source_dir, cfg)
    sets = config["eval_sets"]
    for index, meta in enumerate(sets):
        if flag.requested:
            return "cancelled"
        append_event(run_dir, "log", message=f"evaluating {config['run']} on {meta['name']}")
        table = pq.read_table(run_dir / "inputs" / "eval" / f"{meta['name']}.parquet")
        # one "epoch" per evaluation set, so the app's progress bar and ETA read as for training (throttled)
        started, last = time.monotonic(), [0.0]

        def on_batch(
            done: int, total: int, index: int = index, started: float = started, last: list = last
        ) -> None:
            now = time.monotonic()
            if now - last[0] < 1.0 and done not in (1, total):
                return
            last[0] = now
            eta = (now - started) / done * (total - done)
            append_event(
                run_dir,
                "progress",
                epoch=index,
                n_epochs=len(sets),
                unit="set",  # engine.analysis.progress: `set i/n` in every view
                step=done,
                total=total,
                eta_s=round(eta, 1),
            )

        summary = evaluate_table(
            source_dir, model, cfg, meta["name"], table, meta, stop=lambda: flag.requested, on_batch=on_batch
        )
        if summary is None:
            return "cancelled"
        append_event(
            run_dir, "metrics", metrics={f"{meta['name']}/{k}": v for k, v in summary["metrics"].items()}
        )
    return "done"


def evaluate_inline(ws: Workspace, values: dict[str, Any]) -> list[dict[str, Any]]:
    """`dynascope eval` without --detach: score the run on each set in this process (no job folder); the
    results land in the run's eval/ folder and the catalog like a job's."""
    from engine.evaluation.scoring import eval_file_stem, evaluate_table, load_run_model
    from engine.training.config import TrainConfig
    from storage.sync import sync

    config = EVALUATE.parse(values)
    run_id = config["run"]
    run_dir = ws.run_dir(run_id)
    source_cfg = read_config(run_dir)
    if source_cfg is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}; see `dynascope runs`")
    cfg = TrainConfig.from_dict(source_cfg)
    if config.get("batch_size"):
        cfg.eval_batch_size = int(config["batch_size"])
    names = list(dict.fromkeys(config["eval"]))
    for name in names:
        eval_file_stem(name)
    with open_catalog(ws) as con:  # read the sets, then close: the model runs without holding the catalog
        sync(ws, con)
        sets = [export_dataset(con, name, what="evaluation set") for name in names]
    for table, meta in sets:
        if table.num_rows == 0:
            raise BadInputError(f"'{meta['name']}' has no examples")
    model = load_run_model(run_dir, cfg)
    results = []
    for table, meta in sets:
        summary = evaluate_table(run_dir, model, cfg, meta["name"], table, meta)
        assert summary is not None  # no stop callback: it runs to the end
        results.append(
            {
                "run_id": run_id,
                "eval_set": meta["name"],
                "n_examples": summary["n_examples"],
                "metrics": summary["metrics"],
            }
        )
    with open_catalog(ws) as con:
        sync(ws, con)  # registers eval/<set>.parquet and its summary
    return results


EVALUATE = JobKind(
    name="evaluate",
    help="Evaluate RUN on datasets: accuracy, or SQuAD EM/F1 (v2.0: HasAns/NoAns; adversarial: worst case too).",
    fields=(
        Field("run", str, "the trained run to evaluate (dynascope runs)", required=True, argument=True),
        Field(
            "eval", list, "datasets to evaluate on (comma-separated in the app)", required=True, argument=True
        ),
        Field("batch_size", int, "examples per forward pass (default: the run's)", minimum=1, form=False),
    ),
    create=create_evaluate_run,
    run=run_evaluate_job,
    artifacts=("eval",),
    resumable=False,
    command="eval",
    inline=evaluate_inline,
)
