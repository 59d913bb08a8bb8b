"""A generate job's new dataset in its run folder, and how sync lands it in the catalog.

The job (engine.jobs.generate) writes generated/examples.parquet (the accepted examples, in the examples table's
columns), generated/records.parquet (every generated example, accepted or rejected, with its provenance) and
generated/summary.json last: sync lands the dataset once the summary exists, and only once (the dataset's name is
taken from then on; a name taken meanwhile by an import makes the run broken, with the reason).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from storage.artifacts import BrokenRunError, write_json_atomic, write_parquet_atomic
from storage.datasets import DatasetSpec, dataset_exists, insert_dataset

if TYPE_CHECKING:
    import pyarrow as pa

PROVENANCE_COLUMNS = (
    "example_id",
    "pipeline",
    "model",
    "prompt_id",
    "prompt_version",
    "parent_dataset",
    "parent_example_id",
    "endpoint_host",
    "prompt_tokens",
    "completion_tokens",
    "cached",
    "accepted",
    "reason",
    "verdicts",
    "text",
    "text_pair",
    "answers",
)


def generated_dir(run_dir: Path) -> Path:
    return run_dir / "generated"


def generated_paths(run_dir: Path) -> tuple[Path, Path, Path]:
    """(examples, records, summary)."""
    folder = generated_dir(run_dir)
    return folder / "examples.parquet", folder / "records.parquet", folder / "summary.json"


def read_generated_summary(run_dir: Path) -> dict[str, Any] | None:
    summary_path = generated_paths(run_dir)[2]
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError as exc:
        raise BrokenRunError(run_dir, f"generated/summary.json is not JSON: {exc}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("dataset"), str):
        raise BrokenRunError(run_dir, "generated/summary.json has no dataset name")
    return summary


def sync_generated(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    run_dir: Path,
    rel: str,
    registered: MutableMapping[str, Any],
) -> bool:
    """Land the run's generated dataset and its provenance (inside the caller's transaction); True if it did."""
    summary = read_generated_summary(run_dir)
    examples_path, records_path, _ = generated_paths(run_dir)
    if summary is None or rel in registered:
        return False
    name = summary["dataset"]
    if dataset_exists(con, name):
        raise BrokenRunError(
            run_dir, f"its dataset name '{name}' was taken by another dataset; rename that one to land this"
        )
    insert_dataset(
        con,
        DatasetSpec(
            name=name,
            task=str(summary.get("task") or "qa"),
            source=f"generate:{run_id}",
            format="generated",
            examples=_read_parquet(examples_path),
            is_pair=bool(summary.get("is_pair", True)),
            version=summary.get("version"),
            label_names=summary.get("label_names"),
            parent=summary.get("parent_dataset"),
        ),
    )
    src = "'" + records_path.as_posix().replace("'", "''") + "'"
    cols = ", ".join(PROVENANCE_COLUMNS)
    con.execute(
        f"INSERT INTO generation_provenance (dataset, run_id, {cols}) SELECT ?, ?, {cols} FROM read_parquet({src})",
        [name, run_id],
    )
    con.execute(
        "INSERT INTO artifacts (path, run_id, kind, n_rows) VALUES (?, ?, 'generated', ?)",
        [rel, run_id, int(summary.get("accepted") or 0)],
    )
    registered[rel] = None
    return True


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq  # here, not at the top: a command that only reads the catalog does without

    return pq.read_table(path)


def record_schema() -> pa.Schema:
    """The provenance records' columns (strings but for these)."""
    import pyarrow as pa

    types = {
        "prompt_version": pa.int32(),
        "prompt_tokens": pa.int32(),
        "completion_tokens": pa.int32(),
        "cached": pa.bool_(),
        "accepted": pa.bool_(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in PROVENANCE_COLUMNS])


def write_generated(
    run_dir: Path, examples: list[dict[str, Any]], records: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    """The dataset files for sync: the examples (catalog example columns), every record with its provenance
    (accepted or rejected), and the summary last (its presence marks the dataset complete)."""
    import pyarrow as pa

    from storage.datasets import example_schema

    examples_path, records_path, summary_path = generated_paths(run_dir)
    write_parquet_atomic(pa.Table.from_pylist(examples, schema=example_schema()), examples_path)
    write_parquet_atomic(pa.Table.from_pylist(records, schema=record_schema()), records_path)
    write_json_atomic(summary_path, summary)
