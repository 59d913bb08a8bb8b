"""Where a generated example came from, as the app shows it beside the example: its `generation_provenance` row
(pipeline, model, endpoint host, prompt template id and version, tokens, cache, each filter's verdict, accepted or
rejected with the reason) and its parent example (text, answers); and per generated dataset, what was kept and
what was rejected, by reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb

from engine.analysis.sql import rows_as_dicts

PROVENANCE_FIELDS = (
    "pipeline",
    "model",
    "endpoint_host",
    "prompt_id",
    "prompt_version",
    "prompt_tokens",
    "completion_tokens",
    "cached",
    "accepted",
    "reason",
    "verdicts",
    "parent_dataset",
    "parent_example_id",
)


@dataclass
class GeneratedSummary:
    """A generated dataset's records: how many were kept, and the rejected ones by reason."""

    dataset: str
    pipelines: list[str]
    accepted: int
    rejected: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        text = f"generated ({', '.join(self.pipelines)}): {self.accepted:,} kept"
        if self.rejected:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in self.rejected.items())
            text += f", {sum(self.rejected.values()):,} rejected ({reasons})"
        return text


@dataclass
class Provenance:
    """One generated example's provenance row and its parent example (None when the parent is not in the catalog
    any more)."""

    dataset: str
    example_id: str
    task: str
    row: dict[str, Any]
    parent: dict[str, Any] | None

    @property
    def verdicts(self) -> dict[str, Any]:
        try:
            value = json.loads(self.row.get("verdicts") or "{}")
        except (TypeError, json.JSONDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def parent_answers(self) -> list[dict[str, Any]]:
        return answers_of(self.parent or {})


def answers_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        value = json.loads(record.get("answers") or "[]")
    except (TypeError, json.JSONDecodeError):
        return []
    return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []


def generated_summary(con: duckdb.DuckDBPyConnection, dataset: str) -> GeneratedSummary | None:
    """None for a dataset that no generate job made."""
    rows = con.execute(
        """SELECT pipeline, accepted, reason, count(*) FROM generation_provenance WHERE dataset = ?
           GROUP BY ALL ORDER BY count(*) DESC, reason""",
        [dataset],
    ).fetchall()
    if not rows:
        return None
    rejected: dict[str, int] = {}
    for _, accepted, reason, n in rows:
        if not accepted:
            rejected[str(reason)] = rejected.get(str(reason), 0) + int(n)
    return GeneratedSummary(
        dataset,
        sorted({str(r[0]) for r in rows}),
        sum(int(r[3]) for r in rows if r[1]),
        rejected,
    )


def get_provenance(con: duckdb.DuckDBPyConnection, dataset: str, example_id: str) -> Provenance | None:
    """The example's provenance and parent; None when it was not generated."""
    cur = con.execute(
        f"""SELECT {", ".join(f"p.{c}" for c in PROVENANCE_FIELDS)}, d.task
            FROM generation_provenance p JOIN datasets d ON d.name = p.dataset
            WHERE p.dataset = ? AND p.example_id = ?""",
        [dataset, example_id],
    )
    found = rows_as_dicts(cur)
    if not found:
        return None
    row = found[0]
    task = str(row.pop("task"))
    parent = None
    if row["parent_dataset"] and row["parent_example_id"]:
        cur = con.execute(
            """SELECT example_id, text, text_pair, label_name, label, answers, is_impossible FROM examples
               WHERE dataset = ? AND example_id = ?""",
            [row["parent_dataset"], row["parent_example_id"]],
        )
        parents = rows_as_dicts(cur)
        parent = parents[0] if parents else None
    return Provenance(dataset, example_id, task, row, parent)


def last_generate_endpoint(con: duckdb.DuckDBPyConnection) -> tuple[str, str] | None:
    """(base url, model) of the newest generate job that asked an LLM: what the app offers for the next one."""
    row = con.execute(
        """SELECT json_extract_string(config, '$.base_url'), json_extract_string(config, '$.model') FROM runs
           WHERE kind = 'generate' AND json_extract_string(config, '$.base_url') IS NOT NULL
           ORDER BY created_at DESC, run_id DESC LIMIT 1"""
    ).fetchone()
    return (str(row[0]), str(row[1])) if row and row[1] else None


def free_dataset_name(con: duckdb.DuckDBPyConnection, wanted: str) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`, ... when a dataset has the name."""
    taken = {
        r[0] for r in con.execute("SELECT name FROM datasets WHERE name LIKE ? || '%'", [wanted]).fetchall()
    }
    name, k = wanted, 1
    while name in taken:
        k += 1
        name = f"{wanted}-{k}"
    return name


REJECTED_LIMIT = 1000  # rows the rejected list reads; the summary counts them all


def rejected_records(
    con: duckdb.DuckDBPyConnection, dataset: str, limit: int = REJECTED_LIMIT
) -> list[dict[str, Any]]:
    """The generated dataset's rejected records (never in `examples`): id, reason and text, by reason then id."""
    cur = con.execute(
        """SELECT example_id, reason, text FROM generation_provenance WHERE dataset = ? AND NOT accepted
           ORDER BY reason, example_id LIMIT ?""",
        [dataset, int(limit)],
    )
    return rows_as_dicts(cur)
