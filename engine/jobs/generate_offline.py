"""The generate job's pipelines that ask no LLM: `blend` (real and generated examples at a ratio) and
`round-trip` (a generated QA pair is kept only when a trained dynascope QA run recovers its answer, seed 004).

Both land a dataset like the LLM pipelines (storage.generated): the examples, and every record with its
provenance (for `round-trip` the rejected ones too, with reason `round-trip` and the run's prediction and F1).
The launcher exports the source datasets into the run's inputs; the job process does the work, so `round-trip`
runs its model outside the launcher like any job.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.errors import BadInputError
from engine.jobs.runs import ALL_EXAMPLE_COLUMNS, export_dataset
from storage.artifacts import append_event, read_config
from storage.catalog import open_catalog
from storage.generated import write_generated
from storage.workspace import Workspace

OFFLINE_PIPELINES = ("blend", "round-trip")
REAL_FILE = "real.parquet"
GENERATED_FILE = "generated.parquet"
NO_MODEL = "none"  # provenance's model for a blend (no model decided anything)


def prepare_offline(ws: Workspace, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """(config additions, inputs) for an offline pipeline, checked here in the launcher."""
    with open_catalog(ws) as con:
        table, meta = export_dataset(con, config["from"], what="source dataset", columns=ALL_EXAMPLE_COLUMNS)
        if config["pipeline"] == "blend":
            if not config.get("generated"):
                raise BadInputError("a blend needs the generated dataset to mix in (--generated DATASET)")
            other, other_meta = export_dataset(
                con, config["generated"], what="generated dataset", columns=ALL_EXAMPLE_COLUMNS
            )
    if config["pipeline"] == "blend":
        from engine.generation.blend import blend_counts

        if other_meta["task"] != meta["task"]:
            raise BadInputError(
                f"'{config['from']}' is {meta['task']} but '{config['generated']}' is {other_meta['task']}"
            )
        if meta["task"] == "classification" and meta["label_names"] != other_meta["label_names"]:
            raise BadInputError(
                f"'{config['from']}' and '{config['generated']}' have different labels: "
                f"{meta['label_names']} vs {other_meta['label_names']}"
            )
        n_real, n_generated = blend_counts(int(config["n"]), float(config["ratio"]))
        for name, rows, wanted in (
            (config["from"], table, n_real),
            (config["generated"], other, n_generated),
        ):
            if wanted > rows.num_rows:
                raise BadInputError(
                    f"a blend of {config['n']} at ratio {config['ratio']:g} needs {wanted} examples of "
                    f"'{name}', which has {rows.num_rows}: lower --n or change --ratio"
                )
        extra = {"task": meta["task"], "version": meta.get("version"), "label_names": meta["label_names"],
                 "is_pair": bool(meta["is_pair"]), "model": NO_MODEL, "n_sources": int(config["n"])}  # fmt: skip
        return extra, {REAL_FILE: table, GENERATED_FILE: other}
    # round-trip
    if not config.get("run"):
        raise BadInputError("round-trip needs the trained QA run that checks each pair (--run RUN)")
    run_cfg = read_config(ws.run_dir(config["run"]))
    if run_cfg is None:
        raise BadInputError(f"no run named '{config['run']}' in {ws.root}; see `dynascope runs`")
    if run_cfg.get("task") != "qa" or meta["task"] != "qa":
        raise BadInputError(
            f"round-trip needs a QA run and a QA dataset; run {config['run']} is {run_cfg.get('task')}, "
            f"'{config['from']}' is {meta['task']}"
        )
    if not (ws.run_dir(config["run"]) / "model").is_dir():
        raise BadInputError(f"run {config['run']} has no saved model (is it finished?)")
    import pyarrow.compute as pc

    answerable = pc.invert(pc.fill_null(table.column("is_impossible"), False))
    table = table.filter(answerable)
    if table.num_rows == 0:
        raise BadInputError(f"'{config['from']}' has no answerable pairs to check")
    extra = {"task": "qa", "version": "v1.1", "model": f"run:{config['run']}", "n_sources": table.num_rows}
    return extra, {GENERATED_FILE: table}


def _record(
    config: dict[str, Any], row: dict[str, Any], parent_dataset: str, example_id: str
) -> dict[str, Any]:
    return {
        "example_id": example_id,
        "pipeline": config["pipeline"],
        "model": config["model"],
        "prompt_id": None,
        "prompt_version": None,
        "parent_dataset": parent_dataset,
        "parent_example_id": row["example_id"],
        "endpoint_host": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached": False,
        "accepted": True,
        "reason": None,
        "verdicts": "{}",
        "text": row["text"],
        "text_pair": row.get("text_pair"),
        "answers": row.get("answers"),
    }


EXAMPLE_COLUMNS = ("text", "text_pair", "label", "label_name", "answers", "is_impossible", "title", "orig_id")


def _example(row: dict[str, Any], example_id: str, row_idx: int) -> dict[str, Any]:
    return {"example_id": example_id, "row_idx": row_idx, **{c: row.get(c) for c in EXAMPLE_COLUMNS}}


def run_blend(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from engine.generation.blend import blend_rows

    real = pq.read_table(run_dir / "inputs" / REAL_FILE).to_pylist()
    generated = pq.read_table(run_dir / "inputs" / GENERATED_FILE).to_pylist()
    picked = blend_rows(real, generated, int(config["n"]), float(config["ratio"]), int(config["seed"]))
    examples: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for part, row in picked:
        example_id = f"{part}/{row['example_id']}"
        source = config["from"] if part == "real" else config["generated"]
        examples.append(_example(row, example_id, len(examples)))
        records.append({**_record(config, row, source, example_id), "verdicts": json.dumps({"part": part})})
    parts = Counter(part for part, _ in picked)
    return {
        "parts": dict(parts),
        "summary": {"accepted": len(examples), "rejected": {}, "sources": len(real) + len(generated)},
        "examples": examples,
        "records": records,
    }


def run_round_trip(run_dir: Path, config: dict[str, Any], flag: Any) -> dict[str, Any] | None:
    """Predict every pair with the run's model; keep it when the SQuAD F1 of the prediction against the pair's
    answer is at least the threshold."""
    import pyarrow.parquet as pq

    from engine.evaluation.scoring import load_run_model, score_table
    from engine.training.config import TrainConfig

    table = pq.read_table(run_dir / "inputs" / GENERATED_FILE)
    source_dir = run_dir.parent / config["run"]
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    model = load_run_model(source_dir, cfg)
    meta = {"task": "qa", "version": "v1.1"}

    last = [0.0]

    def on_batch(done: int, total: int) -> None:  # at most one progress event a second, and the last batch's
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            last[0] = now
            append_event(run_dir, "progress", epoch=0, n_epochs=1, step=done, total=total, unit="item")

    scored = score_table(
        source_dir, model, cfg, config["from"], table, meta, stop=lambda: flag.requested, on_batch=on_batch
    )
    if scored is None:
        return None
    _, per_example = scored
    by_id = {r["example_id"]: r for r in per_example.to_pylist()}
    threshold = float(config["threshold"])
    examples: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for row in table.to_pylist():
        verdict = by_id[row["example_id"]]
        f1 = float(verdict["score"])
        keep = f1 >= threshold
        record = _record(config, row, config["from"], row["example_id"])
        record["verdicts"] = json.dumps(
            {"round-trip": {"prediction": verdict["prediction"], "f1": f1, "threshold": threshold}}
        )
        if keep:
            examples.append(_example(row, row["example_id"], len(examples)))
        else:
            record.update(accepted=False, reason="round-trip")
        records.append(record)
    rejected = Counter(r["reason"] for r in records if not r["accepted"])
    return {
        "summary": {"accepted": len(examples), "rejected": dict(rejected), "sources": table.num_rows},
        "examples": examples,
        "records": records,
    }


def run_offline(run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    """The job process of an offline pipeline: compute, then write the dataset files for sync."""
    if config["pipeline"] == "blend":
        out: dict[str, Any] | None = run_blend(run_dir, config)
    else:
        out = run_round_trip(run_dir, config, flag)
    if out is None:
        return "cancelled"
    summary = {
        "dataset": config["name"],
        "task": config["task"],
        "version": config.get("version"),
        "label_names": config.get("label_names"),
        "is_pair": config.get("is_pair", True),
        "parent_dataset": config["from"],
        "pipeline": config["pipeline"],
        **out["summary"],
        **({"parts": out["parts"]} if "parts" in out else {}),
    }
    write_generated(run_dir, out["examples"], out["records"], summary)
    append_event(
        run_dir,
        "log",
        message=f"{summary['accepted']} examples for '{summary['dataset']}'; rejected: {summary['rejected']}",
    )
    return "done"


# ---- augment-region's check by a trained run ---------------------------------------------------------------


def check_label_run(ws: Workspace, config: dict[str, Any], meta: dict[str, Any]) -> None:
    """augment-region needs a finished classification run with the source's labels (checked in the launcher)."""
    if not config.get("run"):
        raise BadInputError(
            "augment-region needs the trained run that checks each rewrite's label (--run RUN)"
        )
    run_cfg = read_config(ws.run_dir(config["run"]))
    if run_cfg is None:
        raise BadInputError(f"no run named '{config['run']}' in {ws.root}; see `dynascope runs`")
    if run_cfg.get("task") != "classification":
        raise BadInputError(
            f"augment-region needs a classification run; {config['run']} is {run_cfg.get('task')}"
        )
    if not (ws.run_dir(config["run"]) / "model").is_dir():
        raise BadInputError(f"run {config['run']} has no saved model (is it finished?)")
    missing = set(meta["label_names"] or []) - set(run_cfg.get("label_names") or [])
    if missing:
        raise BadInputError(
            f"run {config['run']} was not trained on the labels {sorted(missing)} of '{meta['name']}'"
        )


def label_check(run_dir: Path, config: dict[str, Any], entries: dict[int, dict[str, Any]], stop: Any) -> bool:
    """Predict every accepted rewrite with the run's model; one whose prediction is not its label is rejected with
    reason `label-check`. Each record gets the verdict (the run's prediction). False when stopped."""
    from engine.evaluation.scoring import load_run_model, score_table
    from engine.training.config import TrainConfig

    pending = [
        (item, k, rec)
        for item, entry in sorted(entries.items())
        if entry["ok"]
        for k, rec in enumerate(entry["records"])
        if rec["accepted"]
    ]
    if not pending:
        return True
    table = pa.Table.from_pylist(
        [
            {
                "example_id": f"{item}/{k}",
                "text": rec["text"],
                "text_pair": rec["text_pair"],
                "label": rec["label"],
                "label_name": rec["label_name"],
                "answers": None,
                "is_impossible": None,
                "orig_id": None,
            }
            for item, k, rec in pending
        ]  # fmt: skip
    )
    source_dir = run_dir.parent / config["run"]
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    meta = {"task": "classification", "label_names": config.get("label_names")}
    scored = score_table(
        source_dir, load_run_model(source_dir, cfg), cfg, config["from"], table, meta, stop=stop
    )
    if scored is None:
        return False
    verdicts = {r["example_id"]: r for r in scored[1].to_pylist()}
    for item, k, rec in pending:
        verdict = verdicts[f"{item}/{k}"]
        rec["verdicts"]["label-check"] = {"run": config["run"], "prediction": verdict["prediction"]}
        if not verdict["correct"]:
            rec["accepted"], rec["reason"] = False, "label-check"
    return True
