"""Evaluation sets as the launcher prepares them, without torch (so a job request is checked in well under a
second): the set's name as a file name, and its labels in the run's class order."""

from __future__ import annotations

import re

import pyarrow as pa

from engine.errors import BadInputError

SAFE_NAME = re.compile(r"^[A-Za-z0-9._=+-]+$")


def eval_file_stem(name: str) -> str:
    if not SAFE_NAME.match(name):
        raise BadInputError(
            f"evaluation set name {name!r} must be letters, digits, '.', '_', '-' only (it names a file)"
        )
    return name


def map_labels(
    table: pa.Table, train_labels: list[str], eval_labels: list[str] | None, name: str
) -> pa.Table:
    """Re-index the eval set's labels by name into the run's label order (datasets may order classes differently)."""
    names = table.column("label_name").to_pylist() if "label_name" in table.column_names else None
    labels = table.column("label").to_pylist()
    if any(v is None for v in labels):
        raise BadInputError(
            f"'{name}' has unlabeled examples; evaluation needs a gold label for every example"
        )
    if names is None or any(n is None for n in names):
        names = [eval_labels[v] if eval_labels else str(v) for v in labels]
    index = {n: i for i, n in enumerate(train_labels)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise BadInputError(
            f"'{name}' has labels {unknown} that the run never trained on (run labels: {train_labels})"
        )
    return table.set_column(
        table.column_names.index("label"), "label", pa.array([index[n] for n in names], pa.int32())
    )
