"""The `attack` job kind: attack a trained classification run's predictions on a dataset (pgd, char-swap,
word-swap; engine.evaluation.attacks) and report clean accuracy, accuracy under attack (Aua%), the attack success
rate and the mean number of model queries (#Query), the vocabulary of seed 003's Table 3.

The launcher exports the dataset (its first `limit` examples) into the job's run folder; the job process loads
the run's model as evaluation does and writes its per-example results into its own run folder, never the
catalog: `attack/parts/part-NNNNNN.parquet` every few examples (atomic; a resumed job skips the examples they
hold: it gives the same rows, each example's letters being drawn from its own seeded generator), then
`attack/results.parquet` and `attack/summary.json` last. `storage.sync` folds them into the catalog tables
`attacks` and `attack_results`. Progress goes to events.jsonl like evaluate's (one "epoch": the examples).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.analysis.attacks import QA_METHODS  # engine.evaluation.qa_attacks implements each
from engine.errors import BadInputError
from engine.jobs.runs import export_dataset, write_run
from engine.jobs.spec import Field, JobKind
from engine.training.config import CHECKPOINT
from storage.artifacts import (
    append_event,
    attack_dir,
    attack_results_path,
    attack_summary_path,
    read_config,
    write_json_atomic,
    write_parquet_atomic,
)
from storage.catalog import open_catalog
from storage.workspace import Workspace

CLASSIFICATION_METHODS = ("pgd", "word-swap", "char-swap")  # engine.evaluation.attacks implements each
METHODS = CLASSIFICATION_METHODS + QA_METHODS
INPUT = "attack.parquet"
PART_SIZE = 8  # examples per part file: what a cancel or a kill can lose at most


def _source_config(ws: Workspace, run_id: str, method: str) -> dict[str, Any]:
    config = read_config(ws.run_dir(run_id))
    if config is None:
        raise BadInputError(f"no run named '{run_id}' in {ws.root}; see `dynascope runs`")
    task = config.get("task")
    wanted = "qa" if method in QA_METHODS else "classification"
    if task != wanted:
        methods = QA_METHODS if task == "qa" else CLASSIFICATION_METHODS
        raise BadInputError(
            f"run {run_id} is a {task or config.get('kind')} run; the {method} attack needs a {wanted} run "
            f"(methods for this run: {', '.join(methods) if task in ('qa', 'classification') else 'none'})"
        )
    if task == "classification" and not config.get("label_names"):
        raise BadInputError(
            f"run {run_id} has no trained classifier to attack (no label names in its config)"
        )
    run_dir = ws.run_dir(run_id)
    if not (run_dir / "model").is_dir() and not (run_dir / CHECKPOINT).is_file():
        raise BadInputError(f"run {run_id} has no trained weights yet (no model/ and no checkpoint)")
    return config


def create_attack_run(ws: Workspace, values: dict[str, Any]) -> str:
    """An attack job on a trained classification run: the dataset's examples exported into its run folder."""
    from engine.evaluation.sets import map_labels

    config = ATTACK.parse(values)
    source, dataset, method = config["run"], config["dataset"], config["method"]
    source_cfg = _source_config(ws, source, method)
    with open_catalog(ws) as con:
        table, meta = export_dataset(con, dataset, limit=config.get("limit"), what="dataset")
    if meta["task"] != source_cfg["task"]:
        raise BadInputError(
            f"'{dataset}' is a {meta['task']} dataset but run {source} is a {source_cfg['task']} run"
        )
    if table.num_rows == 0:
        raise BadInputError(f"'{dataset}' has no examples")
    if source_cfg["task"] == "qa":
        return _create_qa_attack(ws, config, source_cfg, table, meta)
    table = map_labels(table, source_cfg["label_names"], meta.get("label_names"), dataset)
    full = {k: v for k, v in config.items() if k not in ("created_at", "run")}
    full.update(
        kind="attack",
        artifacts=list(ATTACK.artifacts),
        run=source,
        source_run=source,
        dataset=dataset,
        model=source_cfg.get("model"),
        task="classification",
        label_names=source_cfg["label_names"],
        max_queries=config.get("max_queries") or ATTACK.field("max_queries").default,
        seed=config.get("seed", ATTACK.field("seed").default),
        n_examples=table.num_rows,
    )
    if method == "pgd":
        full.update(
            steps=config.get("steps", ATTACK.field("steps").default),
            budget=config.get("budget") or ATTACK.field("budget").default,
        )
    else:
        full.update(max_change=config.get("max_change") or ATTACK.field("max_change").default)
    if method == "word-swap":
        full.update(min_similarity=config.get("min_similarity", ATTACK.field("min_similarity").default))
    return write_run(ws, f"attack-{method}-{source}", full, {INPUT: table})


def _create_qa_attack(
    ws: Workspace, config: dict[str, Any], source_cfg: dict[str, Any], table: Any, meta: dict[str, Any]
) -> str:
    full = {k: v for k, v in config.items() if k not in ("created_at", "run")}
    full.update(
        kind="attack",
        artifacts=list(ATTACK.artifacts),
        run=config["run"],
        source_run=config["run"],
        dataset=config["dataset"],
        model=source_cfg.get("model"),
        task="qa",
        version=source_cfg.get("version"),
        seed=config.get("seed", ATTACK.field("seed").default),
        n_examples=table.num_rows,
    )
    return write_run(ws, f"attack-{config['method']}-{config['run']}", full, {INPUT: table})


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "max_queries",
        "seed",
        "limit",
        "max_change",
        "min_similarity",
        "steps",
        "budget",
        "step_size",
        "batch_size",
        "wordnet",
    )
    return {k: config[k] for k in keys if config.get(k) is not None}


def _read_parts(run_dir: Path) -> dict[str, list[Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.evaluation.attacks import ATTACK_SCHEMA

    paths = sorted((attack_dir(run_dir) / "parts").glob("part-*.parquet"))
    if not paths:
        return {name: [] for name in ATTACK_SCHEMA.names}
    table = pa.concat_tables([pq.ParquetFile(p).read().cast(ATTACK_SCHEMA) for p in paths])
    return table.to_pydict()  # type: ignore[no-any-return]


def run_attack_job(run_dir: Path, config: dict[str, Any], flag: Any) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.evaluation import attacks
    from engine.evaluation.scoring import load_run_model, load_tokenizer_for
    from engine.training.config import TrainConfig
    from engine.training.model import build_adapter

    source_dir = run_dir.parent / config["run"]
    cfg = TrainConfig.from_dict(read_config(source_dir) or {})
    batch_size = int(config.get("batch_size") or cfg.eval_batch_size)
    model = load_run_model(source_dir, cfg)
    adapter = build_adapter(cfg, load_tokenizer_for(source_dir, cfg))
    if config["method"] in QA_METHODS:
        return _run_qa_attack(run_dir, config, flag, model, adapter, batch_size)
    label_names = list(cfg.label_names or [])
    table = pq.ParquetFile(run_dir / "inputs" / INPUT).read()
    pairs = table.column("text_pair").to_pylist() if "text_pair" in table.column_names else None
    examples = [
        attacks.Example(str(i), str(t), (pairs[k] if pairs else None), int(y))
        for k, (i, t, y) in enumerate(
            zip(
                table.column("example_id").to_pylist(),
                table.column("text").to_pylist(),
                table.column("label").to_pylist(),
            )
        )
    ]
    method = config["method"]
    done = set(_read_parts(run_dir)["example_id"])
    todo = [k for k, ex in enumerate(examples) if ex.example_id not in done]
    if done:
        append_event(
            run_dir, "log", message=f"resuming: {len(done)} of {len(examples)} examples already attacked"
        )
    append_event(run_dir, "log", message=f"{method} attack on {config['run']}: {len(todo)} examples")
    victim = attacks.Victim(model, adapter, batch_size)
    pgd = attacks.PGDAttack(
        steps=int(config.get("steps", 8)),
        budget=float(config.get("budget") or ATTACK.field("budget").default),
        step_size=config.get("step_size"),
    )
    max_queries = int(config.get("max_queries") or 1)
    if method == "pgd" and pgd.queries > max_queries:
        pgd = attacks.PGDAttack(steps=max(0, max_queries - 2), budget=pgd.budget, step_size=pgd.step_size)
    seed, max_change = int(config.get("seed") or 0), float(config.get("max_change") or 1.0)
    tools = None
    if method == "word-swap":
        from engine.evaluation import synonyms

        tools = attacks.WordSwapTools(
            wordnet=synonyms.load_wordnet(),
            neighbours=synonyms.EmbeddingNeighbours(model, adapter.tokenizer),  # type: ignore[attr-defined]
            encoder=synonyms.default_sentence_encoder(),
            min_similarity=float(config.get("min_similarity", 0.8)),
        )
        if tools.wordnet is None:
            append_event(
                run_dir,
                "log",
                message="WordNet not found (install wordnet-base or set $DYNASCOPE_WORDNET): "
                "substitutes from the encoder's embedding neighbours only",
            )
        config = {**config, "wordnet": tools.wordnet is not None}
    started, last = time.monotonic(), 0.0
    total = len(examples)
    for start in range(0, len(todo), PART_SIZE):
        if flag.requested:
            return "cancelled"
        chunk = [examples[k] for k in todo[start : start + PART_SIZE]]
        if method == "pgd":
            rows = attacks.pgd(model, adapter, chunk, label_names, pgd)
        elif tools is not None:
            rows = [
                attacks.word_swap(
                    victim, ex, label_names, tools, max_queries=max_queries, max_change=max_change
                )
                for ex in chunk
            ]
        else:
            rows = [
                attacks.char_swap(
                    victim, ex, label_names, max_queries=max_queries, seed=seed, max_change=max_change
                )
                for ex in chunk
            ]
        part = pa.Table.from_pylist(rows, schema=attacks.ATTACK_SCHEMA)
        index = todo[start]
        write_parquet_atomic(part, attack_dir(run_dir) / "parts" / f"part-{index:06d}.parquet")
        now = time.monotonic()
        finished = len(done) + start + len(chunk)
        if now - last >= 1.0 or finished == total:
            last = now
            _progress(run_dir, started, start + len(chunk), finished, total)
    return _finish(run_dir, config, [ex.example_id for ex in examples], attacks.summarise)


def _progress(run_dir: Path, started: float, attacked_now: int, finished: int, total: int) -> None:
    rate = attacked_now / max(time.monotonic() - started, 1e-9)
    append_event(
        run_dir,
        "progress",
        epoch=0,
        n_epochs=1,
        step=finished,
        total=total,
        examples_per_s=round(rate, 2),
        eta_s=round((total - finished) / rate, 1) if rate > 0 else None,
    )


def _run_qa_attack(
    run_dir: Path, config: dict[str, Any], flag: Any, model: Any, adapter: Any, batch_size: int
) -> str:
    """negation / entity-rename (engine.evaluation.qa_attacks): the texts are attacked without the model, which
    then answers each question on its clean and its attacked context, a part of PART_SIZE examples at a time."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.evaluation import attacks, qa_attacks
    from engine.training.model import evaluate

    table = pq.ParquetFile(run_dir / "inputs" / INPUT).read()
    examples = [
        qa_attacks.QAExample(str(i), str(q), str(c), json.loads(a or "[]"))
        for i, q, c, a in zip(
            table.column("example_id").to_pylist(),
            table.column("text").to_pylist(),
            table.column("text_pair").to_pylist(),
            table.column("answers").to_pylist(),
        )
    ]
    impossible = (
        table.column("is_impossible").to_pylist()
        if "is_impossible" in table.column_names
        else [False] * len(examples)
    )
    for ex, no_answer in zip(examples, impossible):
        if no_answer:
            ex.answers = []
    method, seed = config["method"], int(config.get("seed") or 0)
    v2 = bool(adapter.allow_null)  # a v2.0 run: scored the v2.0 way, "" may be its answer

    def predict(asks: list[tuple[str, str, str]]) -> list[str]:
        ask = pa.table(
            {
                "example_id": [a[0] for a in asks],
                "text": [a[1] for a in asks],
                "text_pair": [a[2] for a in asks],
                "answers": ["[]"] * len(asks),
            }
        )
        rows = evaluate(model, adapter, adapter.encode(ask), batch_size=batch_size)
        assert rows is not None  # no stop callback: it always finishes
        by_id = dict(zip(rows["example_id"], rows["prediction"]))
        return [by_id[a[0]] for a in asks]

    done = set(_read_parts(run_dir)["example_id"])
    todo = [k for k, ex in enumerate(examples) if ex.example_id not in done]
    append_event(run_dir, "log", message=f"{method} attack on {config['run']}: {len(todo)} examples")
    started = time.monotonic()
    for start in range(0, len(todo), PART_SIZE):
        if flag.requested:
            return "cancelled"
        chunk = [examples[k] for k in todo[start : start + PART_SIZE]]
        attacked = [qa_attacks.attack_example(ex, method, seed) for ex in chunk]
        rows = qa_attacks.result_rows(method, chunk, attacked, predict, v2)
        part = pa.Table.from_pylist(rows, schema=attacks.ATTACK_SCHEMA)
        write_parquet_atomic(part, attack_dir(run_dir) / "parts" / f"part-{todo[start]:06d}.parquet")
        _progress(run_dir, started, start + len(chunk), len(done) + start + len(chunk), len(examples))
    return _finish(run_dir, config, [ex.example_id for ex in examples], qa_attacks.summarise_qa)


def _finish(run_dir: Path, config: dict[str, Any], ids: list[str], summarise: Any) -> str:
    """All parts as attack/results.parquet in the input's order, then the summary (last: it marks the end)."""
    import pyarrow as pa

    from engine.evaluation import attacks

    method = config["method"]
    results = _read_parts(run_dir)
    order = {example_id: k for k, example_id in enumerate(ids)}
    table_out = pa.table(results, schema=attacks.ATTACK_SCHEMA)
    table_out = table_out.take(
        sorted(range(table_out.num_rows), key=lambda r: order[results["example_id"][r]])
    )
    write_parquet_atomic(table_out, attack_results_path(run_dir))
    metrics = summarise(table_out.to_pydict())
    summary = {
        "n_examples": table_out.num_rows,
        "metrics": metrics,
        "method": method,
        "source_run": config["run"],
        "dataset": config["dataset"],
        "settings": _settings(config),
    }
    write_json_atomic(attack_summary_path(run_dir), summary)  # last: its presence marks the attack complete
    numbers = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    append_event(run_dir, "metrics", metrics={f"attack/{method}/{k}": v for k, v in numbers.items()})
    return "done"


ATTACK = JobKind(
    name="attack",
    help=(
        "Attack RUN's predictions on DATASET. Classification: pgd (embedding space, an L2 budget), char-swap "
        "(TextBugger-style typos on the most important words) or word-swap; reports Clean%, Aua%, the attack "
        "success rate and #Query (model queries per attacked example). Extractive QA: negation (the answer's "
        "sentence negated: the question becomes unanswerable) or entity-rename (a capitalised-name answer "
        "renamed throughout the context); reports EM / F1 before and under attack and their drop."
    ),
    fields=(
        Field("run", str, "the trained run to attack (dynascope runs)", required=True, argument=True),
        Field("dataset", str, "the dataset whose examples are attacked", required=True, argument=True),
        Field("method", str, "the attack", required=True, choices=METHODS),
        Field("limit", int, "attack the first N examples only", minimum=1),
        Field(
            "max_queries",
            int,
            "model queries per example at most, the clean one included",
            200,
            minimum=1,
            when=("method", CLASSIFICATION_METHODS),
        ),
        Field("seed", int, "seed of the attack's random choices", 0, minimum=0),
        Field(
            "max_change",
            float,
            "char-swap, word-swap: share of an example's words changed at most (at least one word)",
            0.3,
            minimum=0,
            maximum=1,
            exclusive_minimum=True,
            when=("method", ("char-swap", "word-swap")),
        ),
        Field(
            "min_similarity",
            float,
            "word-swap: sentence similarity (MiniLM, cosine) a perturbed text keeps with the original at least",
            0.8,
            minimum=-1,
            maximum=1,
            when=("method", ("word-swap",)),
        ),
        Field(
            "steps",
            int,
            "pgd: ascent steps from a zero perturbation",
            8,
            minimum=0,
            maximum=1000,
            when=("method", ("pgd",)),
        ),
        Field(
            "budget",
            float,
            "pgd: L2 radius of the perturbation, over the example's whole sequence of input embeddings (a "
            "MiniLM word embedding has a norm of about 1.1)",
            0.5,
            minimum=0,
            exclusive_minimum=True,
            when=("method", ("pgd",)),
        ),
        Field(
            "step_size",
            float,
            "pgd: step size (default 2.5 x budget / steps)",
            minimum=0,
            exclusive_minimum=True,
            form=False,
        ),
        Field("batch_size", int, "texts per forward pass (default: the run's)", minimum=1, form=False),
    ),
    create=create_attack_run,
    run=run_attack_job,
    artifacts=("attack",),
    resumable=True,
)
