"""Evaluations of every run (accuracy, EM/F1, worst-case F1 ...), flattened to one number per metric name, for
comparing runs across evaluation sets, each set in a group relative to the run's training data:

- adversarial: the set holds adversarial variants (examples with an `orig_id`: AddSent, AddOneSent);
- in-domain: the set is the run's training dataset or comes from the same data: the same root dataset (a
  selection or split follows `parent` to the dataset it was cut from) or the same imported source file;
- shift: any other set of the same task (natural distribution shift: another SQuAD-format set, another corpus).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from engine.analysis.runs import origin
from engine.analysis.sql import rows_as_dicts

COMPARE_METRICS = ("accuracy", "exact", "f1", "worst_f1", "worst_exact")
GROUPS = ("in-domain", "adversarial", "shift")


class DatasetLineage:
    """Each dataset's root (following `parent`), source file and whether it holds adversarial variants."""

    def __init__(self, con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
        rows = con.execute("SELECT name, parent, source FROM datasets").fetchall()
        self.parent = {name: parent for name, parent, _ in rows}
        self.source = {name: source for name, _, source in rows}
        self.adversarial: set[str] = set()
        if names:
            marks = ", ".join("?" for _ in names)
            found = con.execute(
                f"SELECT DISTINCT dataset FROM examples WHERE orig_id IS NOT NULL AND dataset IN ({marks})",
                names,
            ).fetchall()
            self.adversarial = {name for (name,) in found}

    def root(self, name: str) -> str:
        seen = {name}
        while self.parent.get(name) and self.parent[name] not in seen:
            name = self.parent[name]  # type: ignore[assignment]
            seen.add(name)
        return name

    def group(self, train_dataset: str | None, eval_set: str) -> str:
        """The group (GROUPS) of `eval_set` for a run trained on `train_dataset` (see the module's docstring)."""
        if eval_set in self.adversarial:
            return "adversarial"
        if train_dataset:
            train, other = self.root(train_dataset), self.root(eval_set)
            if train == other or (
                self.source.get(train) and self.source.get(train) == self.source.get(other)
            ):
                return "in-domain"
        return "shift"


def set_groups(rows: list[dict[str, Any]], runs: list[str] | None = None) -> dict[str, str]:
    """Each evaluation set's group over the evaluations of `runs` (default all): the runs' common group, or
    "mixed" when the runs disagree (runs trained on different data); sets in GROUPS order, within a group in
    the order the evaluations come (oldest run first)."""
    found: dict[str, set[str]] = {}
    for row in rows:
        if runs is None or row["run_id"] in runs:
            found.setdefault(row["eval_set"], set()).add(row["group"])
    groups = {name: next(iter(g)) if len(g) == 1 else "mixed" for name, g in found.items()}
    order = {g: i for i, g in enumerate(GROUPS)}
    return dict(
        sorted(groups.items(), key=lambda kv: order.get(kv[1], len(GROUPS)))
    )  # stable: keeps the order


def evaluations(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every evaluation with its metrics flattened and its set's group for that run (`group`, GROUPS)."""
    cur = con.execute(
        """SELECT e.run_id, e.eval_set, e.n_examples, e.metrics, r.kind, r.dataset,
                  json_extract(r.config, '$.selection') AS selection
           FROM evaluations e LEFT JOIN runs r USING (run_id) ORDER BY r.created_at, e.run_id, e.eval_set"""
    )
    rows = rows_as_dicts(cur)
    lineage = DatasetLineage(con, sorted({row["eval_set"] for row in rows}))
    for row in rows:
        row["origin"] = origin(row)
        row["group"] = lineage.group(row["dataset"], row["eval_set"])
        try:
            row["metrics"] = _flatten(json.loads(row["metrics"]))
        except (TypeError, json.JSONDecodeError):
            row["metrics"] = {}
    return rows


def _flatten(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                out[name] = float(value)
            elif isinstance(value, dict):
                out.update(_flatten(value, f"{name}."))
    return out


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for name in row["metrics"]:
            if name not in names:
                names.append(name)
    preferred = [m for m in COMPARE_METRICS if m in names]
    return preferred + sorted(n for n in names if n not in preferred)
