"""The `train` job kind: fine-tune a model on a dataset (or a selection of it) while recording per-example
training dynamics, then score the evaluation sets exported with the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.jobs.mitigation import check_request as check_mitigation
from engine.jobs.mitigation import describe as describe_mitigation
from engine.jobs.mitigation import resolve as resolve_mitigation
from engine.jobs.runs import export_dataset, write_run
from engine.jobs.spec import Field, JobKind, fields_from_settings
from engine.training.config import CHECKPOINT, DEFAULT_MODEL, TrainConfig
from engine.training.objectives import MITIGATED_IDS
from storage.artifacts import append_event
from storage.catalog import open_catalog
from storage.workspace import Workspace

# The hyperparameters a user sets; each one's default, help and bounds live in TrainConfig.
HYPERPARAMETERS = (
    "model",
    "epochs",
    "max_length",
    "batch_size",
    "lr",
    "seed",
    "limit",
    "dynamics",
    "adversarial_dynamics",
    "adv_steps",
    "adv_lr",
    "adv_init",
    "adv_radius",
    "objective",
    "qa_objective",
    "tagging_loss_weight",
    "mitigation",
    "mitigation_from",
    "mitigation_fraction",
    "flood_level",
    "smoothing",
    "grad_accum",
    "warmup_ratio",
    "nproc",
    "eval_each_epoch",
)
DATASET = Field("dataset", str, "the dataset to train on (dynascope datasets)", required=True, argument=True)
SUBSET = Field("subset", str, "train on the examples of this selection (a dataset of its own)", form=False)
EVAL = Field(
    "eval", list, "evaluate on these datasets after training (repeatable; comma-separated in the app)"
)
RUN_NAME = Field(
    "name",
    str,
    "a name for the run, shown with it in every listing and screen (the run id starts with it)",
)
TRAIN_SETTINGS = fields_from_settings(TrainConfig, HYPERPARAMETERS)


def resolve_model(model: str) -> str:
    """A local folder becomes an absolute path (the job may run from elsewhere); a hub id stays as given."""
    if model != DEFAULT_MODEL and (
        model.startswith((".", "/", "~")) or os.sep in model and Path(model).exists()
    ):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise BadInputError(
                f"--model {model}: no such folder (give a Hugging Face model id or a local folder)"
            )
        return str(path.resolve())
    return model


def create_train_run(ws: Workspace, values: dict[str, Any]) -> str:
    """Validate, export the training examples and evaluation sets, write the run folder; returns the run id.
    Keys outside the kind's fields are kept as given (retrain adds source_run and selection)."""
    from engine.evaluation.sets import eval_file_stem, map_labels

    cfg = TRAIN.parse(values)
    if "name" in cfg:
        cfg["name"] = check_run_name(str(cfg["name"]))
    cfg.setdefault("model", DEFAULT_MODEL)
    cfg["model"] = resolve_model(str(cfg["model"]))
    if cfg.get("adversarial_dynamics") and cfg.get("dynamics") == "none":
        raise BadInputError(
            "--adversarial-dynamics records into the epoch's dynamics shard: it needs --dynamics inline or "
            "epoch-end, not none"
        )
    # a plain train names every mitigation option itself; a retrain also inherits them (it checks its own)
    check_mitigation(cfg, cfg if values.get("kind", "train") == "train" else {})
    dataset, subset = cfg["dataset"], cfg.get("subset")
    eval_names = list(dict.fromkeys(cfg.pop("eval", None) or []))
    for name in eval_names:
        eval_file_stem(name)
    with open_catalog(ws) as con:
        _, meta = export_dataset(con, dataset, limit=0)
        if subset:
            train, sub_meta = export_dataset(con, subset, cfg.get("limit"), what="subset")
            outside = con.execute(
                """SELECT count(*) FROM examples s WHERE s.dataset = ? AND NOT EXISTS
                   (SELECT 1 FROM examples d WHERE d.dataset = ? AND d.example_id = s.example_id)""",
                [subset, dataset],
            ).fetchone()[0]  # type: ignore[index]
            if outside:
                raise BadInputError(f"--subset {subset}: {outside} of its examples are not in '{dataset}'")
        else:
            train, _ = export_dataset(con, dataset, cfg.get("limit"))
        evals = [export_dataset(con, name, what="evaluation set") for name in eval_names]
        mitigated = resolve_mitigation(ws, con, cfg, train)
    if train.num_rows == 0:
        raise BadInputError(f"'{subset or dataset}' has no examples to train on")
    if meta["task"] == "classification":
        unlabeled = train.column("label").null_count
        if unlabeled:
            raise BadInputError(
                f"'{subset or dataset}' has {unlabeled} unlabeled examples; training needs labels"
            )
        if subset:
            # a subset may hold fewer classes, so its own class indices can differ: re-index by label name
            train = map_labels(train, meta["label_names"] or [], sub_meta["label_names"], subset)
    if meta["task"] != "qa":
        for name in ("qa_objective", "tagging_loss_weight"):
            if cfg.get(name) not in (None, "cls", 0):
                flag = TRAIN.field(name).flag
                raise BadInputError(f"{flag} is for QA datasets; '{dataset}' is {meta['task']}: leave it out")
    for _table, emeta in evals:
        if emeta["task"] != meta["task"]:
            raise BadInputError(
                f"--eval {emeta['name']}: a {emeta['task']} dataset, but '{dataset}' is {meta['task']}"
            )
    full = dict(cfg)  # keep what callers add (source_run, selection, ...)
    full |= TrainConfig.from_dict(
        {
            **cfg,
            "task": meta["task"],
            "label_names": meta["label_names"],
            "version": meta["version"],
            "is_pair": meta["is_pair"],
            "eval_sets": [emeta for _, emeta in evals],
        }
    ).to_dict()
    full.update(
        kind=values.get("kind", "train"),
        artifacts=list(TRAIN.artifacts),
        n_train_examples=train.num_rows,
        el2n_epoch=int(cfg.get("el2n_epoch", 0)),
    )
    inputs = {"train.parquet": train} | {f"eval/{m['name']}.parquet": t for t, m in evals}
    if mitigated is not None:  # the ids the job regularises, read from its own folder
        inputs[str(Path(MITIGATED_IDS).relative_to("inputs"))] = mitigated[0]
        full["mitigated"] = mitigated[1]
    return write_run(ws, cfg.get("name") or subset or dataset, full, inputs, n_epochs=full["epochs"])


def check_run_name(name: str) -> str:
    """A run name as given, trimmed; BadInputError for one that cannot be shown on a line of a listing."""
    name = name.strip()
    if len(name) > 80:
        raise BadInputError(f"--name: {len(name)} characters; a run name has at most 80")
    if any(not ch.isprintable() for ch in name):
        raise BadInputError(
            f"--name {name!r}: control characters cannot be shown in a listing; use plain text"
        )
    return name


def run_train_job(run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    """One process trains; with nproc > 1 a supervisor starts the ranks (`engine.jobs.rank`) with torchrun."""
    from engine.jobs.rank import evaluate_after_training, evaluate_each_epoch, supervise_ranks
    from engine.training.loop import run_training

    mitigation = describe_mitigation(config)
    if mitigation and not (run_dir / CHECKPOINT).exists():  # said once, not again on resume
        append_event(run_dir, "log", message=mitigation)
    if int(config.get("nproc") or 1) > 1:
        return supervise_ranks(run_dir, int(config["nproc"]), flag)
    return run_training(
        run_dir,
        flag,
        after_training=evaluate_after_training(run_dir),
        after_epoch=evaluate_each_epoch(run_dir),
    )


TRAIN = JobKind(
    name="train",
    help="Train a model on DATASET while recording per-example training dynamics.",
    fields=(DATASET, RUN_NAME, *TRAIN_SETTINGS, SUBSET, EVAL),
    create=create_train_run,
    run=run_train_job,
    artifacts=("dynamics", "eval"),
)
